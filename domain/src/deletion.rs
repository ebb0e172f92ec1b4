//! Which entity events delete their entity: a fact of the domain, stated here by event type (the
//! name an [`EventEnvelope`](crate::EventEnvelope) carries in `event_type`), so that readers of
//! the log (projections, the lake) need not guess it from the name's spelling.

/// The event types that delete their entity: each entity's deletion event (the one its `evolve`
/// turns into [`Lifecycle::Deleted`](crate::Lifecycle::Deleted)). Telemetry deletes
/// (`AttributesDeleted`) delete values, not entities, and are not entity events.
pub const DELETION_EVENT_TYPES: [&str; 9] = [
    "TenantDeleted",
    "CustomerDeleted",
    "UserDeleted",
    "DeviceDeleted",
    "DeviceProfileDeleted",
    "AssetProfileDeleted",
    "AssetDeleted",
    "DashboardDeleted",
    "RelationDeleted",
];

/// Whether an entity event of type `event_type` deletes its entity.
pub fn is_deletion(event_type: &str) -> bool {
    DELETION_EVENT_TYPES.contains(&event_type)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::DomainEvent;
    use crate::asset::AssetEvent;
    use crate::customer::CustomerEvent;
    use crate::dashboard::DashboardEvent;
    use crate::device::DeviceEvent;
    use crate::profile::{AssetProfileEvent, DeviceProfileEvent, ProfileEvent};
    use crate::relation::RelationEvent;
    use crate::tenant::TenantEvent;
    use crate::user::UserEvent;

    /// The type of every entity's deletion event, as the event encodes it.
    fn deletion_events() -> Vec<String> {
        vec![
            TenantEvent::TenantDeleted {}.encode().0,
            CustomerEvent::CustomerDeleted {}.encode().0,
            UserEvent::UserDeleted {}.encode().0,
            DeviceEvent::DeviceDeleted {}.encode().0,
            DeviceProfileEvent::deleted().encode().0,
            AssetProfileEvent::deleted().encode().0,
            AssetEvent::AssetDeleted {}.encode().0,
            DashboardEvent::DashboardDeleted {}.encode().0,
            RelationEvent::RelationDeleted {}.encode().0,
        ]
    }

    /// Every entity's deletion event is a deletion, and every listed type is one of them.
    #[test]
    fn every_entitys_deletion_event_is_a_deletion() {
        let deletions = deletion_events();
        for event_type in &deletions {
            assert!(is_deletion(event_type), "{event_type}");
        }
        for event_type in DELETION_EVENT_TYPES {
            assert!(deletions.iter().any(|d| d == event_type), "{event_type} is no entity's deletion event");
        }
    }

    /// Events that change or end something else than the entity's life are not deletions.
    #[test]
    fn other_events_are_not_deletions() {
        let others = [
            UserEvent::UserSessionsRevoked {}.encode().0,
            DeviceProfileEvent::default_cleared().encode().0,
            RelationEvent::RelationUpdated { additional_info: json!({}) }.encode().0,
        ];
        for event_type in others.iter().map(String::as_str).chain(["DeviceCreated", "AttributesDeleted", "TimeseriesDeleted", "", "Deleted"]) {
            assert!(!is_deletion(event_type), "{event_type}");
        }
    }
}
