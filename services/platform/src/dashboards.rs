//! Dashboard use cases: save (create or update), read, list, assign to and unassign from
//! customers, and delete. Tenant administrators change their tenant's dashboards; customer users
//! read only the dashboards assigned to their customer. Titles need not be unique, as in
//! ThingsBoard, so no key is claimed.

use serde_json::Value;
use thinglake_domain::dashboard::{Dashboard, DashboardCommand, DashboardFields, DashboardState};
use thinglake_domain::{CustomerId, DashboardId, EntityType, Lifecycle};
use thinglake_projections::Entities;
use thinglake_projections::entities::Table;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::quotas::LimitedEntity;
use crate::execute::{DecideChecked, Outcome};
use crate::{Platform, Principal, now_ms};

/// A dashboard as the API shows it: the entity, its version and its customers' titles.
#[derive(Debug, Clone)]
pub struct DashboardView {
    pub dashboard: Dashboard,
    pub version: u64,
    /// The assigned customers with their titles, in assignment order.
    pub assigned_customers: Vec<(CustomerId, String)>,
}

/// What a save of a dashboard carries (ThingsBoard's dashboard JSON, minus what the server owns).
#[derive(Debug, Clone, Default)]
pub struct DashboardInput {
    /// Present to update an existing dashboard.
    pub id: Option<DashboardId>,
    pub title: String,
    pub image: Option<String>,
    pub mobile_hide: bool,
    pub mobile_order: Option<i64>,
    pub configuration: Value,
    /// The version the caller read; a stale one is refused.
    pub version: Option<u64>,
}

pub(crate) fn dashboards(e: &Entities) -> &Table<DashboardState> {
    &e.dashboards
}

impl Platform {
    /// Creates a dashboard (no id) or updates one (with id), ThingsBoard's
    /// `POST /api/dashboard`: an id that names no dashboard of the caller is 404, never a
    /// dashboard created with that id.
    pub async fn save_dashboard(&self, p: &Principal, input: DashboardInput) -> Result<DashboardView> {
        let tenant = p.require_tenant_admin()?;
        let fields = fields_of(&input);
        let outcome = match input.id {
            Some(id) => {
                let current = self.dashboard_for_write(p, id)?;
                self.execute(current.tenant_id.0, id.0, input.version, &p.actor(), dashboards, |_| {
                    Ok(DashboardCommand::UpdateDashboard { fields: fields.clone() })
                })
                .await?
            }
            None => {
                self.check_entity_limit(tenant, LimitedEntity::Dashboard)?;
                let id = DashboardId(Uuid::now_v7());
                let command = DashboardCommand::CreateDashboard { id, tenant_id: tenant, fields, now: now_ms() };
                DashboardState::Absent.decide_checked(&command)?;
                self.execute(tenant.0, id.0, None, &p.actor(), dashboards, |_| Ok(command.clone())).await?
            }
        };
        self.dashboard_view(outcome)
    }

    /// A dashboard the caller may read: any of the tenant's for its administrator, one assigned
    /// to their customer for a customer user.
    pub fn dashboard(&self, p: &Principal, id: DashboardId) -> Result<DashboardView> {
        let entities = self.view().read();
        let v = entities.dashboards.get(&id.0).ok_or_else(|| Error::not_found(EntityType::Dashboard, id.0))?;
        let dashboard = v.state.as_live().ok_or_else(|| Error::not_found(EntityType::Dashboard, id.0))?;
        check_read(p, dashboard)?;
        Ok(view_of(&entities, dashboard.clone(), v.position.version))
    }

    /// The caller's dashboards, oldest first: all of the tenant's for a tenant administrator
    /// (those assigned to `customer` when given), those assigned to their customer for a customer
    /// user.
    pub fn dashboards(&self, p: &Principal, customer: Option<CustomerId>) -> Result<Vec<DashboardView>> {
        let tenant = p.require_tenant_user()?;
        if let Some(c) = customer {
            p.check_read(tenant, c)?;
        }
        let scope = p.customer_scope().or(customer);
        let entities = self.view().read();
        let mut out: Vec<DashboardView> = entities
            .dashboards
            .values()
            .filter_map(|v| v.state.as_live().map(|d| (d, v.position.version)))
            .filter(|(d, _)| d.tenant_id == tenant && scope.is_none_or(|c| d.is_assigned_to(c)))
            .map(|(d, version)| view_of(&entities, d.clone(), version))
            .collect();
        out.sort_by_key(|v| (v.dashboard.created_time, v.dashboard.id));
        Ok(out)
    }

    /// Deletes a dashboard.
    pub async fn delete_dashboard(&self, p: &Principal, id: DashboardId) -> Result<()> {
        let dashboard = self.dashboard_for_write(p, id)?;
        self.execute(dashboard.tenant_id.0, id.0, None, &p.actor(), dashboards, |_| Ok(DashboardCommand::DeleteDashboard))
            .await?;
        Ok(())
    }

    /// Lets `customer`'s users read the dashboard.
    pub async fn assign_dashboard(&self, p: &Principal, customer: CustomerId, id: DashboardId) -> Result<DashboardView> {
        let dashboard = self.dashboard_for_write(p, id)?;
        self.customer_in_tenant(dashboard.tenant_id, customer)?;
        self.change_dashboard(p, &dashboard, DashboardCommand::AssignDashboardToCustomer { customer_id: customer }).await
    }

    /// Takes the dashboard away from `customer`'s users.
    pub async fn unassign_dashboard(&self, p: &Principal, customer: CustomerId, id: DashboardId) -> Result<DashboardView> {
        let dashboard = self.dashboard_for_write(p, id)?;
        self.change_dashboard(p, &dashboard, DashboardCommand::UnassignDashboardFromCustomer { customer_id: customer }).await
    }

    async fn change_dashboard(&self, p: &Principal, dashboard: &Dashboard, command: DashboardCommand) -> Result<DashboardView> {
        let outcome =
            self.execute(dashboard.tenant_id.0, dashboard.id.0, None, &p.actor(), dashboards, |_| Ok(command.clone())).await?;
        self.dashboard_view(outcome)
    }

    fn dashboard_for_write(&self, p: &Principal, id: DashboardId) -> Result<Dashboard> {
        self.live_for_write(p, dashboards, EntityType::Dashboard, id.0, |d| d.tenant_id)
    }

    fn dashboard_view(&self, outcome: Outcome<DashboardState>) -> Result<DashboardView> {
        match outcome.state {
            Lifecycle::Live(dashboard) => Ok(view_of(&self.view().read(), dashboard, outcome.position.version)),
            _ => Err(Error::not_found(EntityType::Dashboard, Uuid::nil())),
        }
    }
}

/// A tenant administrator reads the tenant's dashboards; a customer user those assigned to
/// their customer.
fn check_read(p: &Principal, d: &Dashboard) -> Result<()> {
    let customer = p.customer_scope().filter(|c| d.is_assigned_to(*c)).unwrap_or(CustomerId::NULL);
    p.check_read(d.tenant_id, customer)
}

fn fields_of(input: &DashboardInput) -> DashboardFields {
    DashboardFields {
        title: input.title.clone(),
        image: input.image.clone(),
        mobile_hide: input.mobile_hide,
        mobile_order: input.mobile_order,
        configuration: input.configuration.clone(),
    }
}

fn view_of(entities: &Entities, dashboard: Dashboard, version: u64) -> DashboardView {
    let assigned_customers = dashboard
        .assigned_customers
        .iter()
        .map(|c| {
            let title = entities.customers.get(&c.0).and_then(|v| v.state.any()).map(|c| c.fields.title.clone()).unwrap_or_default();
            (*c, title)
        })
        .collect();
    DashboardView { dashboard, version, assigned_customers }
}
