//! A customer of a tenant: devices, assets, dashboards and users can be assigned to it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::contact::Contact;
use crate::envelope::{Aggregate, DomainEvent, Lifecycle};
use crate::error::{DomainError, Result, check_text};
use crate::id::{CustomerId, EntityType, TenantId};

/// What a save of a customer carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerFields {
    pub title: String,
    #[serde(flatten)]
    pub contact: Contact,
    #[serde(default)]
    pub additional_info: Value,
}

impl CustomerFields {
    fn validate(&self) -> Result<()> {
        check_text("title", &self.title, 255)?;
        self.contact.validate()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    pub id: CustomerId,
    pub tenant_id: TenantId,
    pub fields: CustomerFields,
    pub created_time: i64,
}

pub type CustomerState = Lifecycle<Customer>;

#[derive(Debug, Clone)]
pub enum CustomerCommand {
    CreateCustomer { id: CustomerId, tenant_id: TenantId, fields: CustomerFields, now: i64 },
    UpdateCustomer { fields: CustomerFields },
    DeleteCustomer,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "eventType", content = "payload")]
pub enum CustomerEvent {
    CustomerCreated {
        id: CustomerId,
        tenant_id: TenantId,
        #[serde(flatten)]
        fields: CustomerFields,
        created_time: i64,
    },
    CustomerUpdated {
        #[serde(flatten)]
        fields: CustomerFields,
    },
    CustomerDeleted {},
}

impl DomainEvent for CustomerEvent {}

impl Aggregate for CustomerState {
    const ENTITY_TYPE: EntityType = EntityType::Customer;
    type Command = CustomerCommand;
    type Event = CustomerEvent;

    fn decide(&self, command: CustomerCommand) -> Result<Vec<CustomerEvent>> {
        let id = self.any().map(|c| c.id.0).unwrap_or_default();
        match command {
            CustomerCommand::CreateCustomer { id, tenant_id, fields, now } => {
                if !matches!(self, Lifecycle::Absent) {
                    return Err(DomainError::AlreadyExists { entity_type: EntityType::Customer, id: id.0 });
                }
                fields.validate()?;
                Ok(vec![CustomerEvent::CustomerCreated { id, tenant_id, fields, created_time: now }])
            }
            CustomerCommand::UpdateCustomer { fields } => {
                let customer = self.live(EntityType::Customer, id)?;
                fields.validate()?;
                if customer.fields == fields {
                    return Ok(vec![]);
                }
                Ok(vec![CustomerEvent::CustomerUpdated { fields }])
            }
            CustomerCommand::DeleteCustomer => {
                self.live(EntityType::Customer, id)?;
                Ok(vec![CustomerEvent::CustomerDeleted {}])
            }
        }
    }

    fn evolve(self, event: &CustomerEvent) -> Self {
        match event {
            CustomerEvent::CustomerCreated { id, tenant_id, fields, created_time } => Lifecycle::Live(Customer {
                id: *id,
                tenant_id: *tenant_id,
                fields: fields.clone(),
                created_time: *created_time,
            }),
            CustomerEvent::CustomerUpdated { fields } => self.map_live(|c| Customer { fields: fields.clone(), ..c }),
            CustomerEvent::CustomerDeleted {} => self.into_deleted(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn fields(title: &str) -> CustomerFields {
        CustomerFields { title: title.into(), contact: Contact::default(), additional_info: Value::Null }
    }

    fn create(title: &str) -> CustomerCommand {
        CustomerCommand::CreateCustomer {
            id: CustomerId(Uuid::from_u128(2)),
            tenant_id: TenantId(Uuid::from_u128(1)),
            fields: fields(title),
            now: 7,
        }
    }

    #[test]
    fn renaming_a_customer_records_the_new_title() {
        let state = CustomerState::replay(&CustomerState::Absent.decide(create("A")).expect("valid"));
        let events = state.decide(CustomerCommand::UpdateCustomer { fields: fields("B") }).expect("valid");
        let state = events.iter().fold(state, |s, e| s.evolve(e));
        assert_eq!(state.as_live().map(|c| c.fields.title.as_str()), Some("B"));
    }

    #[test]
    fn an_overlong_title_is_rejected() {
        let err = CustomerState::Absent.decide(create(&"x".repeat(256))).unwrap_err();
        assert!(matches!(err, DomainError::TooLong { field: "title", .. }));
    }

    #[test]
    fn creating_twice_is_rejected() {
        let state = CustomerState::replay(&CustomerState::Absent.decide(create("A")).expect("valid"));
        assert!(matches!(state.decide(create("A")), Err(DomainError::AlreadyExists { .. })));
    }
}
