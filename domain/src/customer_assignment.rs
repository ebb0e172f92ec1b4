//! Assigning a tenant's device, asset or dashboard to customers, whose users may then read it.
//!
//! A device or an asset has at most one customer ([`CustomerId::NULL`] when it has none):
//! assigning it moves it, and unassigning takes it from the one it has. A dashboard may be
//! assigned to any number of customers, as in ThingsBoard, and is unassigned from one of them.
//! The decisions are the same for the three aggregates; each records them in its own event types
//! (`DeviceAssignedToCustomer`, `AssetUnassignedFromCustomer`, …).

use crate::error::{DomainError, Result};
use crate::id::{CustomerId, EntityType};

/// The customers an entity is assigned to, as its aggregate keeps them: a [`CustomerId`] when it
/// has at most one, a list in assignment order when it may have several.
pub trait AssignedCustomers {
    /// Whether `customer`'s users are given the entity.
    fn includes(&self, customer: CustomerId) -> bool;
}

impl AssignedCustomers for CustomerId {
    fn includes(&self, customer: CustomerId) -> bool {
        *self == customer
    }
}

impl AssignedCustomers for [CustomerId] {
    fn includes(&self, customer: CustomerId) -> bool {
        self.contains(&customer)
    }
}

/// Decides assigning an entity to `customer`: the event `assigned` makes, or none when the
/// entity is assigned to it already. The null customer is no customer to assign to.
pub fn assign<E>(
    customers: &(impl AssignedCustomers + ?Sized),
    customer: CustomerId,
    assigned: impl FnOnce(CustomerId) -> E,
) -> Result<Vec<E>> {
    if customer.is_null() {
        return Err(DomainError::Required { field: "customerId" });
    }
    if customers.includes(customer) {
        return Ok(vec![]);
    }
    Ok(vec![assigned(customer)])
}

/// Decides unassigning an entity of at most one customer from the customer it has: the event
/// `unassigned` makes for that customer.
pub fn unassign_sole<E>(
    entity_type: EntityType,
    customer: CustomerId,
    unassigned: impl FnOnce(CustomerId) -> E,
) -> Result<Vec<E>> {
    if customer.is_null() {
        return Err(DomainError::NotAllowed { reason: format!("{} isn't assigned to any customer", entity_type.token()) });
    }
    Ok(vec![unassigned(customer)])
}

/// Decides unassigning an entity from `customer`, one of those it is assigned to: the event
/// `unassigned` makes.
pub fn unassign<E>(
    entity_type: EntityType,
    customers: &(impl AssignedCustomers + ?Sized),
    customer: CustomerId,
    unassigned: impl FnOnce(CustomerId) -> E,
) -> Result<Vec<E>> {
    if !customers.includes(customer) {
        return Err(DomainError::NotAllowed {
            reason: format!("{} isn't assigned to customer {customer}", entity_type.token()),
        });
    }
    Ok(vec![unassigned(customer)])
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn customer(n: u128) -> CustomerId {
        CustomerId(Uuid::from_u128(n))
    }

    #[test]
    fn assigning_to_the_customer_it_has_changes_nothing() {
        assert_eq!(assign(&customer(1), customer(1), Some), Ok(vec![]));
        assert_eq!(assign(&customer(1), customer(2), Some), Ok(vec![Some(customer(2))]));
        assert_eq!(assign([customer(1), customer(2)].as_slice(), customer(2), Some), Ok(vec![]));
    }

    #[test]
    fn assigning_to_the_null_customer_is_rejected() {
        assert_eq!(assign(&CustomerId::NULL, CustomerId::NULL, Some), Err(DomainError::Required { field: "customerId" }));
    }

    #[test]
    fn an_entity_without_a_customer_cannot_be_unassigned() {
        let err = unassign_sole(EntityType::Asset, CustomerId::NULL, Some).unwrap_err();
        assert_eq!(err, DomainError::NotAllowed { reason: "asset isn't assigned to any customer".into() });
        assert_eq!(unassign_sole(EntityType::Asset, customer(3), Some), Ok(vec![Some(customer(3))]));
    }

    #[test]
    fn unassigning_names_one_of_the_entitys_customers() {
        let customers = [customer(1), customer(2)];
        assert_eq!(unassign(EntityType::Dashboard, customers.as_slice(), customer(2), Some), Ok(vec![Some(customer(2))]));
        let err = unassign(EntityType::Dashboard, customers.as_slice(), customer(3), Some).unwrap_err();
        assert!(matches!(err, DomainError::NotAllowed { reason } if reason.contains("isn't assigned to customer")));
    }
}
