//! A dashboard: a titled layout of widgets (ThingsBoard's dashboard JSON), owned by a tenant and
//! assignable to any number of its customers, whose users then read it.
//!
//! The `configuration` is kept as the client sent it (widgets with their data sources — entity,
//! keys, time window, aggregation — and layout); the platform checks only that it is an object.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::customer_assignment;
use crate::envelope::{Aggregate, DomainEvent, Lifecycle};
use crate::error::{DomainError, Result, check_len, check_text};
use crate::id::{CustomerId, DashboardId, EntityType, TenantId};

/// What a save of a dashboard carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DashboardFields {
    pub title: String,
    /// A preview image (a data URL), as ThingsBoard keeps it.
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub mobile_hide: bool,
    #[serde(default)]
    pub mobile_order: Option<i64>,
    /// Widgets, their data sources and layout; free JSON (an object or null).
    #[serde(default)]
    pub configuration: Value,
}

impl DashboardFields {
    fn validate(&self) -> Result<()> {
        check_text("title", &self.title, 255)?;
        if let Some(image) = &self.image {
            check_len("image", image, 1_000_000)?;
        }
        if !(self.configuration.is_null() || self.configuration.is_object()) {
            return Err(DomainError::Invalid { field: "configuration", reason: "must be a JSON object".into() });
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Dashboard {
    pub id: DashboardId,
    pub tenant_id: TenantId,
    pub fields: DashboardFields,
    /// The customers whose users may read it, in the order they were assigned.
    pub assigned_customers: Vec<CustomerId>,
    pub created_time: i64,
}

impl Dashboard {
    pub fn is_assigned_to(&self, customer: CustomerId) -> bool {
        self.assigned_customers.contains(&customer)
    }
}

pub type DashboardState = Lifecycle<Dashboard>;

#[derive(Debug, Clone)]
pub enum DashboardCommand {
    CreateDashboard { id: DashboardId, tenant_id: TenantId, fields: DashboardFields, now: i64 },
    UpdateDashboard { fields: DashboardFields },
    AssignDashboardToCustomer { customer_id: CustomerId },
    UnassignDashboardFromCustomer { customer_id: CustomerId },
    DeleteDashboard,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "eventType", content = "payload")]
pub enum DashboardEvent {
    DashboardCreated {
        id: DashboardId,
        tenant_id: TenantId,
        #[serde(flatten)]
        fields: DashboardFields,
        created_time: i64,
    },
    DashboardUpdated {
        #[serde(flatten)]
        fields: DashboardFields,
    },
    DashboardAssignedToCustomer {
        customer_id: CustomerId,
    },
    DashboardUnassignedFromCustomer {
        customer_id: CustomerId,
    },
    DashboardDeleted {},
}

impl DomainEvent for DashboardEvent {}

impl Aggregate for DashboardState {
    const ENTITY_TYPE: EntityType = EntityType::Dashboard;
    type Command = DashboardCommand;
    type Event = DashboardEvent;

    fn decide(&self, command: DashboardCommand) -> Result<Vec<DashboardEvent>> {
        let id = self.any().map(|d| d.id.0).unwrap_or_default();
        match command {
            DashboardCommand::CreateDashboard { id, tenant_id, fields, now } => {
                if !matches!(self, Lifecycle::Absent) {
                    return Err(DomainError::AlreadyExists { entity_type: EntityType::Dashboard, id: id.0 });
                }
                fields.validate()?;
                Ok(vec![DashboardEvent::DashboardCreated { id, tenant_id, fields, created_time: now }])
            }
            DashboardCommand::UpdateDashboard { fields } => {
                let dashboard = self.live(EntityType::Dashboard, id)?;
                fields.validate()?;
                if dashboard.fields == fields {
                    return Ok(vec![]);
                }
                Ok(vec![DashboardEvent::DashboardUpdated { fields }])
            }
            DashboardCommand::AssignDashboardToCustomer { customer_id } => {
                let dashboard = self.live(EntityType::Dashboard, id)?;
                customer_assignment::assign(dashboard.assigned_customers.as_slice(), customer_id, |customer_id| {
                    DashboardEvent::DashboardAssignedToCustomer { customer_id }
                })
            }
            DashboardCommand::UnassignDashboardFromCustomer { customer_id } => {
                let dashboard = self.live(EntityType::Dashboard, id)?;
                let customers = dashboard.assigned_customers.as_slice();
                customer_assignment::unassign(EntityType::Dashboard, customers, customer_id, |customer_id| {
                    DashboardEvent::DashboardUnassignedFromCustomer { customer_id }
                })
            }
            DashboardCommand::DeleteDashboard => {
                self.live(EntityType::Dashboard, id)?;
                Ok(vec![DashboardEvent::DashboardDeleted {}])
            }
        }
    }

    fn evolve(self, event: &DashboardEvent) -> Self {
        match event {
            DashboardEvent::DashboardCreated { id, tenant_id, fields, created_time } => Lifecycle::Live(Dashboard {
                id: *id,
                tenant_id: *tenant_id,
                fields: fields.clone(),
                assigned_customers: Vec::new(),
                created_time: *created_time,
            }),
            DashboardEvent::DashboardUpdated { fields } => self.map_live(|d| Dashboard { fields: fields.clone(), ..d }),
            DashboardEvent::DashboardAssignedToCustomer { customer_id } => self.map_live(|mut d| {
                if !d.is_assigned_to(*customer_id) {
                    d.assigned_customers.push(*customer_id);
                }
                d
            }),
            DashboardEvent::DashboardUnassignedFromCustomer { customer_id } => self.map_live(|mut d| {
                d.assigned_customers.retain(|c| c != customer_id);
                d
            }),
            DashboardEvent::DashboardDeleted {} => self.into_deleted(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use uuid::Uuid;

    use super::*;

    fn fields(title: &str) -> DashboardFields {
        DashboardFields {
            title: title.into(),
            image: None,
            mobile_hide: false,
            mobile_order: None,
            configuration: json!({"widgets": {}}),
        }
    }

    fn created() -> DashboardState {
        let command = DashboardCommand::CreateDashboard {
            id: DashboardId(Uuid::from_u128(7)),
            tenant_id: TenantId(Uuid::from_u128(1)),
            fields: fields("Plant"),
            now: 3,
        };
        DashboardState::replay(&DashboardState::Absent.decide(command).expect("valid"))
    }

    fn customer(n: u128) -> CustomerId {
        CustomerId(Uuid::from_u128(n))
    }

    #[test]
    fn a_dashboard_can_be_assigned_to_several_customers_and_unassigned_from_one() {
        let mut state = created();
        for c in [customer(20), customer(21), customer(20)] {
            let events = state.decide(DashboardCommand::AssignDashboardToCustomer { customer_id: c }).expect("live");
            state = events.iter().fold(state, |s, e| s.evolve(e));
        }
        assert_eq!(state.as_live().map(|d| d.assigned_customers.clone()), Some(vec![customer(20), customer(21)]));
        let events = state.decide(DashboardCommand::UnassignDashboardFromCustomer { customer_id: customer(20) }).expect("assigned");
        let state = state.evolve(&events[0]);
        assert_eq!(state.as_live().map(|d| d.assigned_customers.clone()), Some(vec![customer(21)]));
    }

    #[test]
    fn unassigning_a_customer_it_is_not_assigned_to_is_rejected() {
        let err = created().decide(DashboardCommand::UnassignDashboardFromCustomer { customer_id: customer(9) }).unwrap_err();
        assert!(matches!(err, DomainError::NotAllowed { .. }));
    }

    #[test]
    fn a_configuration_that_is_not_an_object_is_rejected() {
        let bad = DashboardFields { configuration: json!([1, 2]), ..fields("x") };
        let err = created().decide(DashboardCommand::UpdateDashboard { fields: bad }).unwrap_err();
        assert!(matches!(err, DomainError::Invalid { field: "configuration", .. }));
    }

    #[test]
    fn events_round_trip_through_their_envelope_form() {
        let event = DashboardEvent::DashboardUpdated { fields: fields("Plant 2") };
        let (event_type, payload) = event.encode();
        assert_eq!(DashboardEvent::decode(&event_type, 1, payload).expect("readable"), event);
    }
}
