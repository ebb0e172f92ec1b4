//! The event envelope every change on the log carries, and the encoding of typed events into it.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::{DomainError, Result};
use crate::id::{EntityId, EntityType, TenantEntityId, TenantId};

/// Who caused an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub kind: ActorKind,
    /// The user's, device's or rule's id; none for the system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    /// A readable name (a user's email), for the audit trail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActorKind {
    User,
    Device,
    Rule,
    System,
}

impl ActorKind {
    /// The wire name (as `serde` writes it), `user`.
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::User => "user",
            ActorKind::Device => "device",
            ActorKind::Rule => "rule",
            ActorKind::System => "system",
        }
    }
}

impl Actor {
    pub fn system() -> Self {
        Self { kind: ActorKind::System, id: None, name: None }
    }

    pub fn user(id: Uuid, email: impl Into<String>) -> Self {
        Self { kind: ActorKind::User, id: Some(id), name: Some(email.into()) }
    }

    pub fn device(id: Uuid) -> Self {
        Self { kind: ActorKind::Device, id: Some(id), name: None }
    }
}

/// Payload fields that hold secrets or credentials: password and token hashes, device access
/// tokens (`DeviceCreated`'s `credentials.accessToken`, `DeviceCredentialsUpdated`'s
/// `access_token`) and device profiles' provisioning secrets. They stay on the log, which replay
/// needs, and are removed from every event shown to a user (history, SQL).
pub const SECRET_FIELDS: [&str; 10] = [
    "password_hash",
    "passwordHash",
    "activation_token_hash",
    "activationTokenHash",
    "token_hash",
    "tokenHash",
    "access_token",
    "accessToken",
    "provision_device_secret",
    "provisionDeviceSecret",
];

/// Removes [`SECRET_FIELDS`] from a payload, at any depth.
pub fn redact_secrets(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for field in SECRET_FIELDS {
                map.remove(field);
            }
            map.values_mut().for_each(redact_secrets);
        }
        Value::Array(items) => items.iter_mut().for_each(redact_secrets),
        _ => {}
    }
}

/// Folds an event payload into an entity's payload state: a shallow merge, the payload's
/// top-level fields replacing earlier ones (creation and update events carry the entity's
/// fields). The lake's `entity_versions.state` and the auditor's change lists fold the same way.
pub fn fold_payload(state: &mut Map<String, Value>, payload: &Value) {
    if let Value::Object(fields) = payload {
        for (k, v) in fields {
            state.insert(k.clone(), v.clone());
        }
    }
}

/// What an event changed: each top-level field of `payload` whose value differs from `before`
/// (the fold of the entity's earlier payloads), as `{"from": old or null, "to": new}`.
pub fn payload_changes(before: &Map<String, Value>, payload: &Value) -> Map<String, Value> {
    let mut changes = Map::new();
    if let Value::Object(fields) = payload {
        for (k, to) in fields {
            let from = before.get(k);
            if from != Some(to) {
                let mut change = Map::new();
                change.insert("from".into(), from.cloned().unwrap_or(Value::Null));
                change.insert("to".into(), to.clone());
                changes.insert(k.clone(), Value::Object(change));
            }
        }
    }
    changes
}

/// One immutable fact on the log. `version` is the entity's version after this event (its first
/// event has version 1); the stream sequence is metadata of the log, not part of the envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    pub event_id: Uuid,
    pub tenant_id: Uuid,
    pub entity_type: EntityType,
    pub entity_id: Uuid,
    pub version: u64,
    pub event_type: String,
    pub schema_version: u32,
    /// Milliseconds since the Unix epoch, when the command was decided.
    pub occurred_at: i64,
    /// Milliseconds since the Unix epoch, when the event was handed to the log.
    pub recorded_at: i64,
    pub actor: Actor,
    pub payload: Value,
}

impl EventEnvelope {
    pub fn entity(&self) -> EntityId {
        EntityId::new(self.entity_type, self.entity_id)
    }

    /// The entity with the tenant whose subject holds its events.
    pub fn tenant_entity(&self) -> TenantEntityId {
        TenantEntityId::new(TenantId(self.tenant_id), self.entity())
    }
}

/// A typed domain event. Implementors are enums tagged adjacently as
/// `#[serde(tag = "eventType", content = "payload")]`, so the variant name is the event type.
pub trait DomainEvent: Serialize + DeserializeOwned + Clone + std::fmt::Debug + Send + Sync + 'static {
    /// The schema version this code writes.
    const SCHEMA_VERSION: u32 = 1;

    /// Lifts a payload written under an older schema version to the current one. Events are never
    /// rewritten on the log; they are upcast every time they are read.
    fn upcast(event_type: &str, schema_version: u32, payload: Value) -> Result<Value> {
        if schema_version == Self::SCHEMA_VERSION {
            Ok(payload)
        } else {
            Err(DomainError::UnreadableEvent {
                event_type: event_type.to_string(),
                schema_version,
                reason: format!("unknown schema version (this build reads v{})", Self::SCHEMA_VERSION),
            })
        }
    }

    /// Splits the event into its type name and payload.
    fn encode(&self) -> (String, Value) {
        let tagged = serde_json::to_value(self).expect("domain events serialize to JSON");
        match tagged {
            Value::Object(mut map) => {
                let event_type = match map.remove("eventType") {
                    Some(Value::String(s)) => s,
                    _ => panic!("domain events are tagged with eventType"),
                };
                let payload = map.remove("payload").unwrap_or(Value::Null);
                (event_type, payload)
            }
            _ => panic!("domain events serialize to JSON objects"),
        }
    }

    /// Reads an event back from its type name, schema version and payload.
    fn decode(event_type: &str, schema_version: u32, payload: Value) -> Result<Self> {
        let payload = Self::upcast(event_type, schema_version, payload)?;
        let tagged = serde_json::json!({ "eventType": event_type, "payload": payload });
        serde_json::from_value(tagged).map_err(|e| DomainError::UnreadableEvent {
            event_type: event_type.to_string(),
            schema_version,
            reason: e.to_string(),
        })
    }

    /// Reads the typed event out of an envelope.
    fn from_envelope(envelope: &EventEnvelope) -> Result<Self> {
        Self::decode(&envelope.event_type, envelope.schema_version, envelope.payload.clone())
    }
}

/// An event-sourced entity: a pure `decide` from command to events and a pure `evolve` from
/// events to state. No clock, randomness or I/O: commands carry `now` and new ids.
pub trait Aggregate: Clone + Default + std::fmt::Debug + Send + Sync + 'static {
    const ENTITY_TYPE: EntityType;
    type Command;
    type Event: DomainEvent;

    fn decide(&self, command: Self::Command) -> Result<Vec<Self::Event>>;
    fn evolve(self, event: &Self::Event) -> Self;

    /// Replays events from the initial state.
    fn replay<'a>(events: impl IntoIterator<Item = &'a Self::Event>) -> Self {
        events.into_iter().fold(Self::default(), |state, e| state.evolve(e))
    }
}

/// The life of one entity: never created, live, or deleted (kept, for history).
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Lifecycle<T> {
    #[default]
    Absent,
    Live(T),
    Deleted(T),
}

impl<T> Lifecycle<T> {
    /// The live entity, or why there is none.
    pub fn live(&self, entity_type: EntityType, id: Uuid) -> Result<&T> {
        match self {
            Lifecycle::Live(t) => Ok(t),
            Lifecycle::Absent => Err(DomainError::NotFound { entity_type, id }),
            Lifecycle::Deleted(_) => Err(DomainError::Deleted { entity_type, id }),
        }
    }

    pub fn as_live(&self) -> Option<&T> {
        match self {
            Lifecycle::Live(t) => Some(t),
            _ => None,
        }
    }

    /// The entity whether live or deleted (for history).
    pub fn any(&self) -> Option<&T> {
        match self {
            Lifecycle::Live(t) | Lifecycle::Deleted(t) => Some(t),
            Lifecycle::Absent => None,
        }
    }

    /// Applies a change to a live entity; events never reach a state that cannot take them, but
    /// if one does (a corrupted log) the state is left as it was.
    pub fn map_live(self, f: impl FnOnce(T) -> T) -> Self {
        match self {
            Lifecycle::Live(t) => Lifecycle::Live(f(t)),
            other => other,
        }
    }

    pub fn into_deleted(self) -> Self {
        match self {
            Lifecycle::Live(t) => Lifecycle::Deleted(t),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_actor_kinds_name_is_its_wire_form() {
        for kind in [ActorKind::User, ActorKind::Device, ActorKind::Rule, ActorKind::System] {
            assert_eq!(serde_json::to_value(kind).expect("serializes"), Value::String(kind.as_str().to_string()));
        }
    }

    #[test]
    fn secrets_are_removed_at_any_depth() {
        let mut payload = serde_json::json!({
            "email": "a@b.io",
            "password_hash": "$argon2id$...",
            "nested": {"token_hash": "abc", "activationTokenHash": "def", "keep": 1},
            "credentials": {"id": "c", "accessToken": "A1_TEST_TOKEN", "createdTime": 1},
            "access_token": "NEW_TOKEN",
            "profileData": {"provisionConfiguration": {"type": "X", "provisionDeviceSecret": "s"}},
        });
        redact_secrets(&mut payload);
        assert_eq!(
            payload,
            serde_json::json!({
                "email": "a@b.io",
                "nested": {"keep": 1},
                "credentials": {"id": "c", "createdTime": 1},
                "profileData": {"provisionConfiguration": {"type": "X"}},
            })
        );
    }

    #[test]
    fn changes_are_the_fields_whose_value_differs_from_the_fold_before() {
        let mut state = Map::new();
        fold_payload(&mut state, &serde_json::json!({"name": "a", "label": null, "created_time": 1}));
        let update = serde_json::json!({"name": "b", "label": null, "type": "t"});
        let changes = payload_changes(&state, &update);
        assert_eq!(
            Value::Object(changes),
            serde_json::json!({"name": {"from": "a", "to": "b"}, "type": {"from": null, "to": "t"}})
        );
        fold_payload(&mut state, &update);
        assert!(payload_changes(&state, &update).is_empty(), "saving the same fields changes nothing");
        assert!(payload_changes(&state, &serde_json::json!({})).is_empty());
    }
}
