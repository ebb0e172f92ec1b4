//! Who is calling, and what their role lets them see and change.

use thinglake_domain::user::Authority;
use thinglake_domain::{Actor, CustomerId, TenantId, UserId};

use crate::error::{Error, Result};

/// An authenticated user, as read from a verified access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: UserId,
    pub email: String,
    pub authority: Authority,
    pub tenant_id: TenantId,
    pub customer_id: CustomerId,
    /// The user's token version the caller signed in under; see [`crate::Platform::check_session`].
    pub token_version: u64,
}

impl Principal {
    /// The actor recorded on the events this user causes.
    pub fn actor(&self) -> Actor {
        Actor::user(self.user_id.0, self.email.clone())
    }

    pub fn require_sys_admin(&self) -> Result<()> {
        match self.authority {
            Authority::SysAdmin => Ok(()),
            _ => Err(Error::Forbidden),
        }
    }

    /// A tenant administrator; returns their tenant.
    pub fn require_tenant_admin(&self) -> Result<TenantId> {
        match self.authority {
            Authority::TenantAdmin => Ok(self.tenant_id),
            _ => Err(Error::Forbidden),
        }
    }

    /// A tenant administrator or a customer user; returns their tenant.
    pub fn require_tenant_user(&self) -> Result<TenantId> {
        match self.authority {
            Authority::TenantAdmin | Authority::CustomerUser => Ok(self.tenant_id),
            Authority::SysAdmin => Err(Error::Forbidden),
        }
    }

    /// Whether this user may read an entity of `tenant` assigned to `customer`.
    pub fn can_read(&self, tenant: TenantId, customer: CustomerId) -> bool {
        match self.authority {
            Authority::SysAdmin => false,
            Authority::TenantAdmin => self.tenant_id == tenant,
            Authority::CustomerUser => self.tenant_id == tenant && !customer.is_null() && self.customer_id == customer,
        }
    }

    pub fn check_read(&self, tenant: TenantId, customer: CustomerId) -> Result<()> {
        if self.can_read(tenant, customer) { Ok(()) } else { Err(Error::Forbidden) }
    }

    /// Only a tenant administrator of `tenant` may change its entities.
    pub fn check_write(&self, tenant: TenantId) -> Result<()> {
        if self.authority == Authority::TenantAdmin && self.tenant_id == tenant { Ok(()) } else { Err(Error::Forbidden) }
    }

    /// The customer scope of a customer user (`None` for a tenant administrator).
    pub fn customer_scope(&self) -> Option<CustomerId> {
        (self.authority == Authority::CustomerUser).then_some(self.customer_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn principal(authority: Authority, customer: CustomerId) -> Principal {
        Principal {
            user_id: UserId(Uuid::from_u128(1)),
            email: "u@x.io".into(),
            authority,
            tenant_id: TenantId(Uuid::from_u128(10)),
            customer_id: customer,
            token_version: 0,
        }
    }

    #[test]
    fn a_customer_user_reads_only_its_customers_entities() {
        let mine = CustomerId(Uuid::from_u128(20));
        let user = principal(Authority::CustomerUser, mine);
        let tenant = TenantId(Uuid::from_u128(10));
        assert!(user.can_read(tenant, mine));
        assert!(!user.can_read(tenant, CustomerId(Uuid::from_u128(21))));
        assert!(!user.can_read(tenant, CustomerId::NULL));
        assert!(user.check_write(tenant).is_err());
    }

    #[test]
    fn a_tenant_admin_is_confined_to_its_tenant() {
        let admin = principal(Authority::TenantAdmin, CustomerId::NULL);
        assert!(admin.can_read(TenantId(Uuid::from_u128(10)), CustomerId::NULL));
        assert!(!admin.can_read(TenantId(Uuid::from_u128(11)), CustomerId::NULL));
        assert!(admin.check_write(TenantId(Uuid::from_u128(11))).is_err());
    }

    #[test]
    fn a_system_admin_reads_no_tenant_entities() {
        let sys = principal(Authority::SysAdmin, CustomerId::NULL);
        assert!(!sys.can_read(TenantId(Uuid::from_u128(10)), CustomerId::NULL));
    }
}
