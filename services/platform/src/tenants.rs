//! Tenant use cases, all the system administrator's: save (create or update), read, list,
//! delete. A new tenant gets its default device and asset profiles; a deleted tenant's entities
//! are deleted with it ([`crate::tenant_deletion`]).

use thinglake_domain::tenant::{Tenant, TenantCommand, TenantFields, TenantState};
use thinglake_domain::user::Authority;
use thinglake_domain::{EntityType, TenantId};
use thinglake_projections::Entities;
use thinglake_projections::entities::Table;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::{Platform, Principal};

/// A tenant as the API shows it: the entity and its version.
#[derive(Debug, Clone)]
pub struct TenantView {
    pub tenant: Tenant,
    pub version: u64,
}

/// What a save of a tenant carries.
#[derive(Debug, Clone)]
pub struct TenantInput {
    /// Present to update an existing tenant.
    pub id: Option<TenantId>,
    pub fields: TenantFields,
    /// The version the caller read; a stale one is refused.
    pub version: Option<u64>,
}

pub(crate) fn tenants(e: &Entities) -> &Table<TenantState> {
    &e.tenants
}

impl Platform {
    /// Creates a tenant (no id) or updates one (with id; an id that names no tenant is 404, never
    /// a tenant created with that id) (`POST /api/tenant`).
    pub async fn save_tenant(&self, p: &Principal, input: TenantInput) -> Result<TenantView> {
        p.require_sys_admin()?;
        let actor = p.actor();
        let outcome = match input.id.filter(|id| !id.is_null()) {
            Some(id) => {
                self.live_tenant(id)?;
                let fields = input.fields;
                self.execute(id.0, id.0, input.version, &actor, tenants, |_| Ok(TenantCommand::UpdateTenant { fields: fields.clone() }))
                    .await?
            }
            None => {
                let id = TenantId(Uuid::now_v7());
                let command = TenantCommand::CreateTenant { id, fields: input.fields, now: self.now_ms() };
                let outcome = self.execute(id.0, id.0, None, &actor, tenants, |_| Ok(command.clone())).await?;
                self.ensure_default_profiles(id, &actor).await?;
                outcome
            }
        };
        match outcome.state {
            TenantState::Live(tenant) => Ok(TenantView { tenant, version: outcome.position.version }),
            _ => Err(Error::not_found(EntityType::Tenant, input.id.map(|id| id.0).unwrap_or_default())),
        }
    }

    /// A tenant: any for the system administrator, its own for a tenant administrator.
    pub fn tenant(&self, p: &Principal, id: TenantId) -> Result<TenantView> {
        match p.authority {
            Authority::SysAdmin => {}
            Authority::TenantAdmin if p.tenant_id == id => {}
            _ => return Err(Error::Forbidden),
        }
        let entities = self.view().read();
        let v = entities.tenants.get(&id.0).ok_or_else(|| Error::not_found(EntityType::Tenant, id.0))?;
        let tenant = v.state.as_live().ok_or_else(|| Error::not_found(EntityType::Tenant, id.0))?;
        Ok(TenantView { tenant: tenant.clone(), version: v.position.version })
    }

    /// All live tenants, oldest first.
    pub fn tenants(&self, p: &Principal) -> Result<Vec<TenantView>> {
        p.require_sys_admin()?;
        let entities = self.view().read();
        let mut out: Vec<TenantView> = entities
            .tenants
            .values()
            .filter_map(|v| v.state.as_live().map(|t| TenantView { tenant: t.clone(), version: v.position.version }))
            .collect();
        out.sort_by_key(|v| (v.tenant.created_time, v.tenant.id));
        Ok(out)
    }

    /// Deletes a tenant, then everything it owns (`DELETE /api/tenant/{id}`). Deleting a tenant
    /// whose deletion did not finish (the node died halfway) finishes it; a tenant already gone
    /// with nothing left is a 404.
    pub async fn delete_tenant(&self, p: &Principal, id: TenantId) -> Result<()> {
        p.require_sys_admin()?;
        let live = self.view().read().tenants.get(&id.0).map(|v| v.state.as_live().is_some());
        match live {
            Some(true) => {
                self.execute(id.0, id.0, None, &p.actor(), tenants, |_| Ok(TenantCommand::DeleteTenant)).await?;
            }
            Some(false) if self.tenant_has_live_entities(id) => {}
            _ => return Err(Error::not_found(EntityType::Tenant, id.0)),
        }
        self.delete_tenant_entities(id, &p.actor()).await?;
        Ok(())
    }

    /// Checks that `tenant` exists and is not deleted.
    pub(crate) fn live_tenant(&self, tenant: TenantId) -> Result<()> {
        match self.view().read().tenants.get(&tenant.0).map(|v| v.state.as_live().is_some()) {
            Some(true) => Ok(()),
            _ => Err(Error::not_found(EntityType::Tenant, tenant.0)),
        }
    }
}
