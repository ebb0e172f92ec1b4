//! The `entity_versions` table's decoder: the state of every entity after each of its events,
//! merged from the event payloads (from their JSON text where it is as serde_json writes it).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use serde::de::IgnoredAny;
use serde_json::Value;
use thinglake_domain::{EntityId, EntityType, EventEnvelope, TenantEntityId, TenantId, is_deletion};
use thinglake_lake::table::{self, LAKE_ENTITY_VERSIONS, RowBuilder, TableSpec};
use uuid::Uuid;

use super::contract::{ArchivedEvent, LogMessage, Projection, Source, envelope};
use super::json_text::{Member, Shape, object_members};
use crate::error::DecodeError;

/// `entity_versions`: the state of every entity after each of its events. The state is the
/// shallow merge of the event payloads so far (creation and update events carry the entity's
/// fields), kept in memory and rebuilt from the log at start.
///
/// Each field of a state is kept serialized (`"key":value`, in key order as `serde_json`
/// writes a map): a version's state is written by joining them, without serializing the whole
/// state again per event; only the changed fields are serialized.
#[derive(Debug, Default)]
pub struct EntityVersionsProjection {
    /// By tenant, entity type and id: entities that share an id never share a state.
    states: HashMap<TenantEntityId, BTreeMap<String, String>>,
    state_text: String,
    /// Where the members of the payload being merged are (reused from event to event).
    members: Vec<Member>,
    /// The last tenant id of the `events` table found to be a UUID, and that UUID.
    checked_tenant: String,
    checked_tenant_id: Uuid,
}

impl EntityVersionsProjection {
    /// Merges an event's payload into its entity's state and writes the new state into
    /// `self.state_text` (the same text as `serde_json::to_string` of the merged map).
    fn fold(&mut self, entity: TenantEntityId, payload: &Value) -> Result<(), DecodeError> {
        let state = self.states.entry(entity).or_default();
        if let Value::Object(changes) = payload {
            for (k, v) in changes {
                let mut field = Vec::with_capacity(k.len() + 16);
                serde_json::to_writer(&mut field, k).expect("a string key serializes");
                field.push(b':');
                serde_json::to_writer(&mut field, v).expect("a JSON value serializes");
                let field = String::from_utf8(field).expect("serde_json writes UTF-8");
                match state.get_mut(k) {
                    Some(existing) => *existing = field,
                    None => {
                        state.insert(k.clone(), field);
                    }
                }
            }
        }
        self.write_state(entity);
        Ok(())
    }

    /// Like [`Self::fold`], with the payload as JSON text: when the text is as `serde_json`
    /// writes a `Value` (the `events` table's payloads are), each member's text (`"key":value`)
    /// is taken as it is, without parsing the payload into a `Value` and serializing its fields
    /// again; other text goes through [`Self::fold`]. The state is the same either way.
    fn fold_text(&mut self, entity: TenantEntityId, payload: &str) -> Result<(), DecodeError> {
        // serde_json checks that the text is JSON; the scan below only finds where its members
        // are and whether they are written as serde_json writes them.
        let not_json = |source| DecodeError::Json { field: "payload", source };
        serde_json::from_str::<IgnoredAny>(payload).map_err(not_json)?;
        match object_members(payload, &mut self.members) {
            Shape::Irregular => {
                let payload: Value = serde_json::from_str(payload).map_err(not_json)?;
                return self.fold(entity, &payload);
            }
            Shape::Other => {
                self.states.entry(entity).or_default();
            }
            Shape::Object => {
                let state = self.states.entry(entity).or_default();
                for member in &self.members {
                    let field = &payload[member.key.start..member.end];
                    let quoted = &payload[member.key.clone()];
                    let key: Cow<'_, str> = if member.escaped_key {
                        Cow::Owned(serde_json::from_str::<String>(quoted).map_err(not_json)?)
                    } else {
                        Cow::Borrowed(&quoted[1..quoted.len() - 1])
                    };
                    match state.get_mut(&*key) {
                        Some(existing) => {
                            existing.clear();
                            existing.push_str(field);
                        }
                        None => {
                            state.insert(key.into_owned(), field.to_string());
                        }
                    }
                }
            }
        }
        self.write_state(entity);
        Ok(())
    }

    /// Writes `entity`'s state into `self.state_text`, its fields joined in key order.
    fn write_state(&mut self, entity: TenantEntityId) {
        self.state_text.clear();
        self.state_text.push('{');
        if let Some(state) = self.states.get(&entity) {
            for (i, field) in state.values().enumerate() {
                if i > 0 {
                    self.state_text.push(',');
                }
                self.state_text.push_str(field);
            }
        }
        self.state_text.push('}');
    }

    #[allow(clippy::too_many_arguments)]
    fn push_row(
        &self,
        rows: &mut RowBuilder,
        tenant: &str,
        entity_type: &str,
        entity_id: &str,
        version: i64,
        seq: u64,
        event_type: &str,
        recorded_at: i64,
        changes: &str,
    ) {
        rows.str(Some(tenant))
            .str(Some(entity_type))
            .str(Some(entity_id))
            .i64(Some(version))
            .i64(Some(i64::try_from(seq).unwrap_or(i64::MAX)))
            .str(Some(event_type))
            .i64(Some(recorded_at))
            .bool(Some(is_deletion(event_type)))
            .str(Some(changes))
            .str(Some(&self.state_text));
        rows.end_row();
    }
}

impl Projection for EntityVersionsProjection {
    fn name(&self) -> &'static str {
        LAKE_ENTITY_VERSIONS
    }
    fn spec(&self) -> TableSpec {
        table::entity_versions()
    }
    fn source(&self) -> Source {
        Source::Events
    }
    fn needs_priming(&self) -> bool {
        true
    }
    fn prime(&mut self, message: &LogMessage) {
        if let Ok(e) = envelope(message)
            && e.entity_type != EntityType::Relation
        {
            let _ = self.fold(e.tenant_entity(), &e.payload);
        }
    }
    fn decode(&mut self, message: &LogMessage, rows: &mut RowBuilder) -> Result<(), DecodeError> {
        let e = envelope(message)?;
        self.decode_event(message.seq, &e, rows)
    }
    fn decode_event(&mut self, seq: u64, e: &EventEnvelope, rows: &mut RowBuilder) -> Result<(), DecodeError> {
        if e.entity_type == EntityType::Relation {
            return Ok(());
        }
        self.fold(e.tenant_entity(), &e.payload)?;
        let changes = e.payload.to_string();
        self.push_row(
            rows,
            &e.tenant_id.to_string(),
            e.entity_type.as_str(),
            &e.entity_id.to_string(),
            e.version as i64,
            seq,
            &e.event_type,
            e.recorded_at,
            &changes,
        );
        Ok(())
    }
    fn archived_columns(&self) -> Option<&'static [&'static str]> {
        Some(&["tenant_id", "seq", "entity_type", "entity_id", "version", "event_type", "recorded_at", "payload"])
    }
    /// The columns of the `events` table are the texts this projection writes (ids, entity
    /// type, payload as written by `serde_json`): they are used as they are, and only the
    /// payload is parsed, to merge it into the state.
    fn decode_archived(&mut self, event: &ArchivedEvent<'_>, rows: &mut RowBuilder) -> Result<(), DecodeError> {
        let entity_type: EntityType = event.entity_type.parse()?;
        if entity_type == EntityType::Relation {
            return Ok(());
        }
        let entity = Uuid::parse_str(event.entity_id).map_err(|source| DecodeError::Id { field: "entity_id", source })?;
        // The rows of a tenant's files follow each other: its id is checked once per run of them.
        if event.tenant_id != self.checked_tenant {
            self.checked_tenant_id =
                Uuid::parse_str(event.tenant_id).map_err(|source| DecodeError::Id { field: "tenant_id", source })?;
            self.checked_tenant.clear();
            self.checked_tenant.push_str(event.tenant_id);
        }
        let key = TenantEntityId::new(TenantId(self.checked_tenant_id), EntityId::new(entity_type, entity));
        self.fold_text(key, event.payload)?;
        self.push_row(
            rows,
            event.tenant_id,
            entity_type.as_str(),
            event.entity_id,
            event.version,
            event.seq,
            event.event_type,
            event.recorded_at,
            event.payload,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use deltalake_core::arrow::array::AsArray as _;
    use deltalake_core::arrow::datatypes::Int64Type;
    use serde_json::{Map, json};
    use thinglake_domain::Actor;
    use thinglake_infra::subjects::Subjects;

    use super::*;
    use crate::lake::projection::events::EventsProjection;
    use crate::lake::projection::fixtures::{domain_payloads, envelope_of, key, payload_texts, payloads, random_numbers, random_value};

    /// The state kept serialized per field is the text `serde_json` writes for the merged map.
    #[test]
    fn entity_states_are_the_json_of_the_merged_payloads() {
        let entity = key(Uuid::from_u128(1));
        let mut projection = EntityVersionsProjection::default();
        let mut merged = Map::new();
        for payload in payloads() {
            projection.fold(entity, &payload).expect("folds");
            if let Value::Object(changes) = &payload {
                for (k, v) in changes {
                    merged.insert(k.clone(), v.clone());
                }
            }
            assert_eq!(projection.state_text, serde_json::to_string(&merged).expect("serializes"));
        }
    }

    /// Entities of two tenants (and types) that carry one id keep their own states.
    #[test]
    fn entities_sharing_an_id_keep_their_own_states() {
        let id = Uuid::from_u128(9);
        let device = key(id);
        let asset = TenantEntityId::new(TenantId(Uuid::from_u128(0xb)), EntityId::new(EntityType::Asset, id));
        let mut projection = EntityVersionsProjection::default();
        projection.fold(device, &json!({"name": "pump", "label": "a"})).expect("folds");
        projection.fold_text(asset, r#"{"name":"plant"}"#).expect("folds");
        assert_eq!(projection.state_text, r#"{"name":"plant"}"#, "the asset's state has nothing of the device's");
        projection.fold(device, &json!({"label": "b"})).expect("folds");
        assert_eq!(projection.state_text, r#"{"label":"b","name":"pump"}"#);
    }

    /// Merging a payload from its text gives the state merging the parsed payload gives, for
    /// every text (the old way: `fold` of the parsed `Value`), and fails where parsing fails.
    #[test]
    fn states_merged_from_payload_texts_equal_those_merged_from_parsed_payloads() {
        let entity = key(Uuid::from_u128(3));
        let (mut from_text, mut from_value) = (EntityVersionsProjection::default(), EntityVersionsProjection::default());
        for text in payload_texts() {
            let parsed = serde_json::from_str::<Value>(&text);
            let merged = from_text.fold_text(entity, &text);
            assert_eq!(merged.is_ok(), parsed.is_ok(), "{text}");
            if let Ok(parsed) = parsed {
                from_value.fold(entity, &parsed).expect("folds");
                assert_eq!(from_text.state_text, from_value.state_text, "after {text}");
                assert_eq!(from_text.states, from_value.states, "after {text}");
            }
        }
        assert!(from_text.state_text.contains("cødé"), "{}", from_text.state_text);
    }

    /// Random payloads as serde_json writes them merge to the state of the parsed ones.
    #[test]
    fn random_payload_texts_merge_like_parsed_payloads() {
        let mut next = random_numbers();
        let (mut from_text, mut from_value) = (EntityVersionsProjection::default(), EntityVersionsProjection::default());
        let mut members = Vec::new();
        for i in 0..3_000u128 {
            let entity = key(Uuid::from_u128(i % 7));
            let payload = Value::Object((0..next(6)).map(|k| (format!("f{}", next(9) + k), random_value(&mut next, 1))).collect());
            let text = payload.to_string();
            assert_eq!(object_members(&text, &mut members), Shape::Object, "{text}");
            from_text.fold_text(entity, &text).expect("folds");
            from_value.fold(entity, &payload).expect("folds");
            assert_eq!(from_text.state_text, from_value.state_text, "after {text}");
        }
        assert_eq!(from_text.states, from_value.states);
    }

    /// Every entity event type's payload, as written to the `events` table, merges into the
    /// state the parsed payload does (on one entity, so that each event changes the state of
    /// the ones before it).
    #[test]
    fn states_of_every_event_type_merged_from_text_equal_those_merged_from_parsed_payloads() {
        let entity = key(Uuid::from_u128(3));
        let (mut from_text, mut from_value) = (EntityVersionsProjection::default(), EntityVersionsProjection::default());
        let mut members = Vec::new();
        let events = domain_payloads();
        assert_eq!(events.len(), 44);
        for (event_type, payload) in events {
            let text = payload.to_string();
            assert_eq!(object_members(&text, &mut members), Shape::Object, "{event_type}: {text}");
            from_text.fold_text(entity, &text).expect("folds");
            from_value.fold(entity, &payload).expect("folds");
            assert_eq!(from_text.state_text, from_value.state_text, "after {event_type}");
        }
        assert!(from_text.state_text.contains(r#""title":"Übersicht""#), "{}", from_text.state_text);
    }

    /// Rebuilding from the `events` table (its rows' texts) gives the rows of the log.
    #[test]
    fn entity_versions_from_events_table_rows_equal_those_from_the_log() {
        let subjects = Subjects::default();
        let mut events = EventsProjection::default();
        let mut from_log = EntityVersionsProjection::default();
        let (mut archive, mut log_rows) = (RowBuilder::new(table::events().schema), RowBuilder::new(table::entity_versions().schema));
        for (i, payload) in payloads().into_iter().enumerate() {
            let entity = Uuid::from_u128(1 + i as u128 % 2);
            let event_type = if i == 5 { "DeviceDeleted" } else { "DeviceUpdated" };
            let e = envelope_of(entity, i as u64 + 1, event_type, payload);
            let message = LogMessage {
                seq: i as u64 + 10,
                subject: subjects.entity(e.tenant_id, e.entity_type, entity),
                payload: Bytes::from(serde_json::to_vec(&e).expect("serializes")),
            };
            events.decode(&message, &mut archive).expect("an events row");
            from_log.decode(&message, &mut log_rows).expect("an entity version");
        }
        let archive = archive.finish().expect("a batch");
        let text = |name: &str| archive.column_by_name(name).expect("column").as_string::<i32>().clone();
        let long = |name: &str| archive.column_by_name(name).expect("column").as_primitive::<Int64Type>().clone();
        let (tenant, entity_type, entity_id, event_type, payload, event_id, actor_kind, actor_id, actor_name) = (
            text("tenant_id"),
            text("entity_type"),
            text("entity_id"),
            text("event_type"),
            text("payload"),
            text("event_id"),
            text("actor_kind"),
            text("actor_id"),
            text("actor_name"),
        );
        let (seq, version, occurred_at, recorded_at) = (long("seq"), long("version"), long("occurred_at"), long("recorded_at"));
        let mut from_archive = EntityVersionsProjection::default();
        let mut archived_rows = RowBuilder::new(table::entity_versions().schema);
        let mut generic = Vec::new();
        for row in 0..archive.num_rows() {
            let event = ArchivedEvent {
                seq: seq.value(row) as u64,
                event_id: event_id.value(row),
                tenant_id: tenant.value(row),
                entity_type: entity_type.value(row),
                entity_id: entity_id.value(row),
                version: version.value(row),
                event_type: event_type.value(row),
                schema_version: 1,
                occurred_at: occurred_at.value(row),
                recorded_at: recorded_at.value(row),
                actor_kind: actor_kind.value(row),
                actor_id: Some(actor_id.value(row)),
                actor_name: Some(actor_name.value(row)),
                payload: payload.value(row),
            };
            from_archive.decode_archived(&event, &mut archived_rows).expect("an entity version");
            generic.push(event.envelope().expect("an envelope"));
        }
        let from_log = log_rows.finish().expect("a batch");
        assert_eq!(from_log.num_rows(), 6);
        assert_eq!(archived_rows.finish().expect("a batch"), from_log);
        // The envelope read back from the row is the one on the log, but for the payload's
        // text normalisation (none here).
        assert_eq!(generic[1].actor, Actor::user(Uuid::from_u128(9), "ann@example.com"));
        assert_eq!(generic[1].payload, payloads()[1]);
    }
}
