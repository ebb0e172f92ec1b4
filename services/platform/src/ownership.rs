//! Changing an entity's owner (ThingsBoard 4.x's `/api/owner/…`, what the 4.4 Python client's
//! assign and unassign calls use): owned by a customer means assigned to it; owned by the tenant
//! means unassigned.

use thinglake_domain::asset::Asset;
use thinglake_domain::device::Device;
use thinglake_domain::{AssetId, CustomerId, DeviceId, DomainError, EntityId, EntityType, TenantId};

use crate::error::{Error, Result};
use crate::{Platform, Principal};

/// Who owns a device or an asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Tenant(TenantId),
    Customer(CustomerId),
}

impl Platform {
    /// Makes `owner` the owner of `entity` (a device or an asset). Giving an entity to the owner
    /// it already has changes nothing.
    pub async fn change_owner(&self, p: &Principal, owner: Owner, entity: EntityId) -> Result<()> {
        let tenant = p.require_tenant_admin()?;
        let current = match entity.entity_type {
            EntityType::Device => self.entity::<Device>(p, DeviceId(entity.id))?.device.customer_id,
            EntityType::Asset => self.entity::<Asset>(p, AssetId(entity.id))?.asset.customer_id,
            other => {
                return Err(Error::Rejected(DomainError::NotAllowed {
                    reason: format!("the owner of an entity of type {other} cannot be changed"),
                }));
            }
        };
        match owner {
            Owner::Tenant(t) if t != tenant => Err(Error::Forbidden),
            Owner::Tenant(_) if current.is_null() => Ok(()),
            Owner::Tenant(_) => match entity.entity_type {
                EntityType::Device => self.unassign::<Device>(p, Some(current), DeviceId(entity.id)).await.map(drop),
                _ => self.unassign::<Asset>(p, Some(current), AssetId(entity.id)).await.map(drop),
            },
            Owner::Customer(c) => match entity.entity_type {
                EntityType::Device => self.assign::<Device>(p, c, DeviceId(entity.id)).await.map(drop),
                _ => self.assign::<Asset>(p, c, AssetId(entity.id)).await.map(drop),
            },
        }
    }
}
