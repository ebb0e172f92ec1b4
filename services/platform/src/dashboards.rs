//! Dashboard use cases: save (create or update). Reading, listing, assigning to and unassigning
//! from customers, and deleting are the [`crate::customer_assignment`] use cases of an
//! [`Assignable`]: tenant administrators change their tenant's dashboards; customer users read
//! only the dashboards assigned to their customer. Titles need not be unique, as in ThingsBoard,
//! so no key is claimed.

use serde_json::Value;
use thinglake_domain::dashboard::{Dashboard, DashboardCommand, DashboardFields, DashboardState};
use thinglake_domain::{CustomerId, DashboardId, TenantId};
use thinglake_infra::claims::ClaimKey;
use thinglake_projections::Entities;
use thinglake_projections::entities::Table;
use uuid::Uuid;

use crate::customer_assignment::Assignable;
use crate::error::Result;
use crate::execute::DecideChecked;
use crate::quotas::LimitedEntity;
use crate::{Platform, Principal};

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

impl Assignable for Dashboard {
    type State = DashboardState;
    type Id = DashboardId;
    type View = DashboardView;

    fn table(entities: &Entities) -> &Table<DashboardState> {
        dashboards(entities)
    }

    fn live(state: &DashboardState) -> Option<&Dashboard> {
        state.as_live()
    }

    fn id(&self) -> DashboardId {
        self.id
    }

    fn tenant_id(&self) -> TenantId {
        self.tenant_id
    }

    fn created_time(&self) -> i64 {
        self.created_time
    }

    fn is_assigned_to(&self, customer: CustomerId) -> bool {
        Dashboard::is_assigned_to(self, customer)
    }

    /// Titles need not be unique: a dashboard holds no key.
    fn claimed_keys(&self) -> Vec<ClaimKey> {
        Vec::new()
    }

    fn assign(customer_id: CustomerId) -> DashboardCommand {
        DashboardCommand::AssignDashboardToCustomer { customer_id }
    }

    /// A dashboard is unassigned from the customer named; naming none unassigns nothing.
    fn unassign(customer: Option<CustomerId>) -> DashboardCommand {
        DashboardCommand::UnassignDashboardFromCustomer { customer_id: customer.unwrap_or(CustomerId::NULL) }
    }

    fn delete() -> DashboardCommand {
        DashboardCommand::DeleteDashboard
    }

    fn view(entities: &Entities, dashboard: Dashboard, version: u64) -> DashboardView {
        view_of(entities, dashboard, version)
    }
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
                let current = self.for_write::<Dashboard>(p, id)?;
                self.execute(current.tenant_id.0, id.0, input.version, &p.actor(), dashboards, |_| {
                    Ok(DashboardCommand::UpdateDashboard { fields: fields.clone() })
                })
                .await?
            }
            None => {
                self.check_entity_limit(tenant, LimitedEntity::Dashboard)?;
                let id = DashboardId(Uuid::now_v7());
                let command = DashboardCommand::CreateDashboard { id, tenant_id: tenant, fields, now: self.now_ms() };
                DashboardState::Absent.decide_checked(&command)?;
                self.execute(tenant.0, id.0, None, &p.actor(), dashboards, |_| Ok(command.clone())).await?
            }
        };
        self.outcome_view::<Dashboard>(outcome)
    }
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
