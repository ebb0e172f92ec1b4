//! What deleting a tenant takes with it: its users, devices, relations, dashboards, assets,
//! customers and device and asset profiles, each deleted by its own event (with the actor who
//! deleted the tenant), and the unique keys they held (emails, access tokens, names, titles)
//! released so another tenant may take them.
//!
//! The tenant's `TenantDeleted` comes first: from then on its users cannot sign in and its
//! devices' tokens are refused ([`Platform::device_by_token`] checks the tenant), whatever is
//! left. The cascade is restartable: it deletes whatever of the tenant is still live, so a node
//! that dies halfway leaves work that a second `DELETE /api/tenant/{id}` or the next start
//! ([`Platform::finish_tenant_deletions`]) finishes.

use thinglake_domain::customer::CustomerCommand;
use thinglake_domain::dashboard::DashboardCommand;
use thinglake_domain::device::DeviceCommand;
use thinglake_domain::asset::AssetCommand;
use thinglake_domain::profile::{AssetProfileFields, DeviceProfileFields, ProfileCommand, ProfileFields};
use thinglake_domain::relation::RelationCommand;
use thinglake_domain::user::UserCommand;
use thinglake_domain::{Actor, Aggregate, Lifecycle, TenantId};
use thinglake_infra::claims::ClaimKey;
use thinglake_projections::Entities;
use thinglake_projections::entities::{Table, live_of_tenant};
use tracing::info;
use uuid::Uuid;

use crate::assets::assets;
use crate::customers::customers;
use crate::dashboards::dashboards;
use crate::devices::devices;
use crate::error::Result;
use crate::profiles::ProfileKind;
use crate::relations::relations;
use crate::users::users;
use crate::Platform;

impl Platform {
    /// Deletes every live entity of a deleted tenant, as `actor`; answers how many.
    pub(crate) async fn delete_tenant_entities(&self, tenant: TenantId, actor: &Actor) -> Result<usize> {
        let t = tenant.0;
        let mut deleted = 0;
        deleted += self.delete_each(tenant, actor, users, || UserCommand::DeleteUser, |u| vec![ClaimKey::user_email(&u.fields.email)]).await?;
        deleted += self
            .delete_each(tenant, actor, devices, || DeviceCommand::DeleteDevice, |d| {
                vec![ClaimKey::device_name(t, &d.fields.name), ClaimKey::access_token(&d.credentials.access_token)]
            })
            .await?;
        deleted += self.delete_each(tenant, actor, relations, || RelationCommand::DeleteRelation, |_| Vec::new()).await?;
        deleted += self.delete_each(tenant, actor, dashboards, || DashboardCommand::DeleteDashboard, |_| Vec::new()).await?;
        deleted += self.delete_each(tenant, actor, assets, || AssetCommand::DeleteAsset, |a| vec![ClaimKey::asset_name(t, &a.fields.name)]).await?;
        deleted += self
            .delete_each(tenant, actor, customers, || CustomerCommand::DeleteCustomer, |c| vec![ClaimKey::customer_title(t, &c.fields.title)])
            .await?;
        deleted += self
            .delete_each(tenant, actor, AssetProfileFields::table, || ProfileCommand::DeleteProfileWithTenant, |p| {
                vec![AssetProfileFields::claim_key(t, p.fields.name())]
            })
            .await?;
        deleted += self
            .delete_each(tenant, actor, DeviceProfileFields::table, || ProfileCommand::DeleteProfileWithTenant, |p| {
                vec![DeviceProfileFields::claim_key(t, p.fields.name())]
            })
            .await?;
        if deleted > 0 {
            info!(tenant = %t, deleted, "deleted the entities of a deleted tenant");
        }
        Ok(deleted)
    }

    /// Finishes the deletion of every deleted tenant that still has live entities (a node died
    /// halfway through a cascade). Run at start, once the read model caught up.
    pub async fn finish_tenant_deletions(&self) -> Result<usize> {
        let unfinished: Vec<Uuid> = {
            let entities = self.view().read();
            entities
                .tenants
                .iter()
                .filter(|(id, v)| matches!(v.state, Lifecycle::Deleted(_)) && has_live_entities(&entities, **id))
                .map(|(id, _)| *id)
                .collect()
        };
        let mut deleted = 0;
        for tenant in unfinished {
            deleted += self.delete_tenant_entities(TenantId(tenant), &Actor::system()).await?;
        }
        Ok(deleted)
    }

    /// Whether a tenant still has live entities of its own.
    pub(crate) fn tenant_has_live_entities(&self, tenant: TenantId) -> bool {
        has_live_entities(&self.view().read(), tenant.0)
    }

    /// Deletes each live entity of `table` on the tenant's subject and releases its `keys`. An
    /// entity deleted meanwhile (by another node finishing the same cascade) is passed over.
    async fn delete_each<T, C>(
        &self,
        tenant: TenantId,
        actor: &Actor,
        table: fn(&Entities) -> &Table<Lifecycle<T>>,
        command: impl Fn() -> C + Send + Sync,
        keys: impl Fn(&T) -> Vec<ClaimKey> + Send + Sync,
    ) -> Result<usize>
    where
        Lifecycle<T>: Aggregate<Command = C> + Send + Sync,
        T: Send + Sync,
        C: Send,
    {
        let live: Vec<(Uuid, Vec<ClaimKey>)> = table(&self.view().read())
            .iter()
            .filter(|(_, v)| v.tenant_id == tenant.0)
            .filter_map(|(id, v)| v.state.as_live().map(|e| (*id, keys(e))))
            .collect();
        let mut deleted = 0;
        for (id, keys) in live {
            match self.execute(tenant.0, id, None, actor, table, |_| Ok(command())).await {
                Ok(_) => deleted += 1,
                Err(_) if table(&self.view().read()).get(&id).is_none_or(|v| v.state.as_live().is_none()) => {}
                Err(e) => return Err(e),
            }
            for key in &keys {
                self.release_key(key, id).await;
            }
        }
        Ok(deleted)
    }
}

/// Whether any entity on the tenant's subject (other than the tenant) is live.
fn has_live_entities(e: &Entities, tenant: Uuid) -> bool {
    fn any<T>(table: &Table<Lifecycle<T>>, tenant: Uuid) -> bool {
        live_of_tenant(table, tenant).next().is_some()
    }
    any(&e.users, tenant)
        || any(&e.devices, tenant)
        || any(&e.relations, tenant)
        || any(&e.dashboards, tenant)
        || any(&e.assets, tenant)
        || any(&e.customers, tenant)
        || any(&e.asset_profiles, tenant)
        || any(&e.device_profiles, tenant)
}
