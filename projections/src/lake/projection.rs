//! What each lake projection reads from the log and the rows it makes of it.
//!
//! A projection decodes one log message at a time into rows of its table. A message it cannot
//! read (corrupt JSON, an unknown schema version) is refused with a reason and ends up in the
//! dead-letter table; the projection goes on.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use thinglake_domain::relation::RelationEvent;
use thinglake_domain::telemetry::{KvEntry, KvValue, TelemetryData, TelemetryMessage};
use thinglake_domain::{Actor, ActorKind, DomainEvent, EntityType, EventEnvelope};
use thinglake_infra::subjects::{
    LAKE_ATTRIBUTE_VERSIONS, LAKE_ENTITY_VERSIONS, LAKE_EVENTS, LAKE_RELATION_VERSIONS, LAKE_TELEMETRY, LAKE_TELEMETRY_HOURLY, Subjects,
};
use uuid::Uuid;

use crate::lake::table::{self, RowBuilder, TableSpec, day_of, month_of};

/// Highest envelope schema version the lake reads; newer events are dead-lettered until the
/// projection learns them.
pub const KNOWN_EVENT_SCHEMA_VERSION: u32 = 1;

/// One message of the log.
#[derive(Debug, Clone)]
pub struct LogMessage {
    pub seq: u64,
    pub subject: String,
    pub payload: Bytes,
}

/// The log stream a projection reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Events,
    Telemetry,
}

impl Source {
    pub fn stream(self, subjects: &Subjects) -> String {
        match self {
            Source::Events => subjects.events_stream(),
            Source::Telemetry => subjects.telemetry_stream(),
        }
    }
}

/// A projection from the log into one table.
pub trait Projection: Send + 'static {
    /// The projection's name: its consumer, its Delta `txn` application id and its table.
    fn name(&self) -> &'static str;
    fn spec(&self) -> TableSpec;
    fn source(&self) -> Source;
    /// A narrower subject filter than the whole stream, if the projection reads only part of it.
    fn filter_subject(&self, _subjects: &Subjects) -> Option<String> {
        None
    }
    /// Whether the projection keeps state across messages that must be rebuilt from the log up
    /// to the committed sequence before it resumes.
    fn needs_priming(&self) -> bool {
        false
    }
    /// Replays one committed message into the projection's state without making rows.
    fn prime(&mut self, _message: &LogMessage) {}
    /// Appends the message's rows (possibly none); `Err` carries why it cannot be read.
    fn decode(&mut self, message: &LogMessage, rows: &mut RowBuilder) -> Result<(), String>;
    /// Whether the projection's state is kept per entity (the last token of the subject): then
    /// its messages can be decoded on several threads only when split by entity.
    fn state_per_entity(&self) -> bool {
        self.needs_priming()
    }
    /// Appends the rows of an entity event read back from the `events` table, for projections
    /// of the events stream that are rebuilt from it ([`Archive::EventsTable`]).
    fn decode_event(&mut self, _seq: u64, _event: &EventEnvelope, _rows: &mut RowBuilder) -> Result<(), String> {
        Ok(())
    }
    /// The columns of the `events` table that [`Self::decode_archived`] reads (`None`: all of
    /// them). A rebuild decodes only these from the Parquet files; the other fields of the
    /// [`ArchivedEvent`] it passes are empty.
    fn archived_columns(&self) -> Option<&'static [&'static str]> {
        None
    }
    /// Like [`Self::decode_event`], with the event as a row of the `events` table.
    fn decode_archived(&mut self, event: &ArchivedEvent<'_>, rows: &mut RowBuilder) -> Result<(), String> {
        let envelope = event.envelope()?;
        self.decode_event(event.seq, &envelope, rows)
    }
}

/// An entity event as a row of the `events` table (its columns' values; those of columns the
/// projection does not read, [`Projection::archived_columns`], are empty or zero).
#[derive(Debug, Clone, Copy)]
pub struct ArchivedEvent<'a> {
    pub seq: u64,
    pub event_id: &'a str,
    pub tenant_id: &'a str,
    pub entity_type: &'a str,
    pub entity_id: &'a str,
    pub version: i64,
    pub event_type: &'a str,
    pub schema_version: i32,
    pub occurred_at: i64,
    pub recorded_at: i64,
    pub actor_kind: &'a str,
    pub actor_id: Option<&'a str>,
    pub actor_name: Option<&'a str>,
    /// The payload as JSON text.
    pub payload: &'a str,
}

impl ArchivedEvent<'_> {
    /// The event's envelope, or why the row does not make one.
    pub fn envelope(&self) -> Result<EventEnvelope, String> {
        let uuid = |name: &str, text: &str| Uuid::parse_str(text).map_err(|e| format!("{name}: {e}"));
        Ok(EventEnvelope {
            event_id: uuid("event_id", self.event_id)?,
            tenant_id: uuid("tenant_id", self.tenant_id)?,
            entity_type: self.entity_type.parse().map_err(|e: thinglake_domain::DomainError| e.to_string())?,
            entity_id: uuid("entity_id", self.entity_id)?,
            version: u64::try_from(self.version).map_err(|e| format!("version: {e}"))?,
            event_type: self.event_type.to_string(),
            schema_version: u32::try_from(self.schema_version).map_err(|e| format!("schema_version: {e}"))?,
            occurred_at: self.occurred_at,
            recorded_at: self.recorded_at,
            actor: Actor {
                kind: serde_json::from_value(Value::String(self.actor_kind.to_string()))
                    .map_err(|e| format!("actor_kind: {e}"))?,
                id: self.actor_id.and_then(|id| Uuid::parse_str(id).ok()),
                name: self.actor_name.map(str::to_string),
            },
            payload: serde_json::from_str(self.payload).map_err(|e| format!("payload: {e}"))?,
        })
    }
}

/// Where a rebuild finds the rows of log messages that were trimmed from the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Archive {
    /// In the table itself: its rows below the log's first sequence are kept.
    OwnTable,
    /// In the `events` table: its rows are replayed through the projection.
    EventsTable,
    /// In the `telemetry` table: its points are aggregated again (the hourly rollup).
    TelemetryTable,
}

/// The projections Thinglake runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectionKind {
    Telemetry,
    TelemetryHourly,
    Events,
    EntityVersions,
    AttributeVersions,
    RelationVersions,
}

impl ProjectionKind {
    pub const ALL: [ProjectionKind; 6] = [
        ProjectionKind::Telemetry,
        ProjectionKind::TelemetryHourly,
        ProjectionKind::Events,
        ProjectionKind::EntityVersions,
        ProjectionKind::AttributeVersions,
        ProjectionKind::RelationVersions,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ProjectionKind::Telemetry => LAKE_TELEMETRY,
            ProjectionKind::TelemetryHourly => LAKE_TELEMETRY_HOURLY,
            ProjectionKind::Events => LAKE_EVENTS,
            ProjectionKind::EntityVersions => LAKE_ENTITY_VERSIONS,
            ProjectionKind::AttributeVersions => LAKE_ATTRIBUTE_VERSIONS,
            ProjectionKind::RelationVersions => LAKE_RELATION_VERSIONS,
        }
    }

    /// Where the rows of trimmed log messages come from in a rebuild.
    pub fn archive(self) -> Archive {
        match self {
            ProjectionKind::EntityVersions | ProjectionKind::RelationVersions => Archive::EventsTable,
            ProjectionKind::Telemetry | ProjectionKind::Events | ProjectionKind::AttributeVersions => Archive::OwnTable,
            ProjectionKind::TelemetryHourly => Archive::TelemetryTable,
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// A fresh projection of this kind.
    pub fn projection(self) -> Box<dyn Projection> {
        match self {
            ProjectionKind::Telemetry => Box::new(TelemetryProjection),
            ProjectionKind::TelemetryHourly => Box::new(crate::lake::rollup::TelemetryHourlyProjection),
            ProjectionKind::Events => Box::new(EventsProjection),
            ProjectionKind::EntityVersions => Box::new(EntityVersionsProjection::default()),
            ProjectionKind::AttributeVersions => Box::new(AttributeVersionsProjection),
            ProjectionKind::RelationVersions => Box::new(RelationVersionsProjection::default()),
        }
    }
}

pub(crate) fn telemetry_message(message: &LogMessage) -> Result<TelemetryMessage, String> {
    let parsed: TelemetryMessage =
        serde_json::from_slice(&message.payload).map_err(|e| format!("not a telemetry message: {e}"))?;
    if parsed.schema_version != TelemetryMessage::SCHEMA_VERSION {
        return Err(format!(
            "unknown telemetry schema version {} (this build reads v{})",
            parsed.schema_version,
            TelemetryMessage::SCHEMA_VERSION
        ));
    }
    Ok(parsed)
}

fn envelope(message: &LogMessage) -> Result<EventEnvelope, String> {
    let parsed: EventEnvelope =
        serde_json::from_slice(&message.payload).map_err(|e| format!("not an event envelope: {e}"))?;
    if parsed.schema_version > KNOWN_EVENT_SCHEMA_VERSION {
        return Err(format!(
            "unknown event schema version {} of {} (this build reads up to v{KNOWN_EVENT_SCHEMA_VERSION})",
            parsed.schema_version, parsed.event_type
        ));
    }
    Ok(parsed)
}

fn push_value(rows: &mut RowBuilder, value: Option<&KvValue>) {
    let json = match value {
        Some(KvValue::Json(j)) => Some(j.to_string()),
        _ => None,
    };
    rows.bool(match value {
        Some(KvValue::Bool(b)) => Some(*b),
        _ => None,
    })
    .i64(match value {
        Some(KvValue::Long(l)) => Some(*l),
        _ => None,
    })
    .f64(match value {
        Some(KvValue::Double(d)) => Some(*d),
        _ => None,
    })
    .str(match value {
        Some(KvValue::String(s)) => Some(s.as_str()),
        _ => None,
    })
    .str(json.as_deref());
}

pub(crate) fn seq(message: &LogMessage) -> i64 {
    i64::try_from(message.seq).unwrap_or(i64::MAX)
}

/// Where a time-series point comes from: its message's tenant and entity as text.
pub(crate) struct PointSource {
    pub tenant: String,
    pub entity_type: String,
    pub entity_id: String,
    pub received_at: i64,
    pub seq: i64,
}

/// Calls `f` with every time-series point of a telemetry message (none for attribute messages).
pub(crate) fn each_point(message: &LogMessage, mut f: impl FnMut(&PointSource, i64, &KvEntry)) -> Result<(), String> {
    let parsed = telemetry_message(message)?;
    let TelemetryData::Timeseries { batches } = &parsed.data else { return Ok(()) };
    let source = PointSource {
        tenant: parsed.tenant_id.to_string(),
        entity_type: parsed.entity_type.to_string(),
        entity_id: parsed.entity_id.to_string(),
        received_at: parsed.received_at,
        seq: seq(message),
    };
    for batch in batches {
        for kv in &batch.values {
            f(&source, batch.ts, kv);
        }
    }
    Ok(())
}

/// `telemetry`: every time-series point of the telemetry stream.
#[derive(Debug)]
pub struct TelemetryProjection;

impl Projection for TelemetryProjection {
    fn name(&self) -> &'static str {
        LAKE_TELEMETRY
    }
    fn spec(&self) -> TableSpec {
        table::telemetry()
    }
    fn source(&self) -> Source {
        Source::Telemetry
    }
    fn decode(&mut self, message: &LogMessage, rows: &mut RowBuilder) -> Result<(), String> {
        each_point(message, |source, ts, kv| {
            rows.str(Some(&source.tenant))
                .date32(Some(day_of(ts)))
                .str(Some(&source.entity_type))
                .str(Some(&source.entity_id))
                .str(Some(&kv.key))
                .i64(Some(ts));
            push_value(rows, Some(&kv.value));
            rows.i64(Some(source.received_at)).i64(Some(source.seq));
            rows.end_row();
        })
    }
}

/// `attribute_versions`: every attribute set or deleted on the telemetry stream.
#[derive(Debug)]
pub struct AttributeVersionsProjection;

impl Projection for AttributeVersionsProjection {
    fn name(&self) -> &'static str {
        LAKE_ATTRIBUTE_VERSIONS
    }
    fn spec(&self) -> TableSpec {
        table::attribute_versions()
    }
    fn source(&self) -> Source {
        Source::Telemetry
    }
    fn decode(&mut self, message: &LogMessage, rows: &mut RowBuilder) -> Result<(), String> {
        let parsed = telemetry_message(message)?;
        let tenant = parsed.tenant_id.to_string();
        let entity_id = parsed.entity_id.to_string();
        let entity_type = parsed.entity_type.to_string();
        let mut row = |scope: &str, key: &str, ts: i64, value: Option<&KvValue>| {
            rows.str(Some(&tenant)).str(Some(&entity_type)).str(Some(&entity_id)).str(Some(scope)).str(Some(key)).i64(Some(ts));
            push_value(rows, value);
            rows.bool(Some(value.is_none())).i64(Some(parsed.received_at)).i64(Some(seq(message)));
            rows.end_row();
        };
        match &parsed.data {
            TelemetryData::Timeseries { .. } => {}
            TelemetryData::Attributes { scope, ts, values } => {
                for kv in values {
                    row(scope.as_str(), &kv.key, *ts, Some(&kv.value));
                }
            }
            TelemetryData::AttributesDeleted { scope, keys } => {
                for key in keys {
                    row(scope.as_str(), key, parsed.received_at, None);
                }
            }
        }
        Ok(())
    }
}

/// `events`: every entity event, as the audit trail and the replay archive.
#[derive(Debug)]
pub struct EventsProjection;

impl Projection for EventsProjection {
    fn name(&self) -> &'static str {
        LAKE_EVENTS
    }
    fn spec(&self) -> TableSpec {
        table::events()
    }
    fn source(&self) -> Source {
        Source::Events
    }
    fn decode(&mut self, message: &LogMessage, rows: &mut RowBuilder) -> Result<(), String> {
        // Borrowed from the message where the row takes the text as it is.
        let e: EnvelopeRef<'_> =
            serde_json::from_slice(&message.payload).map_err(|e| format!("not an event envelope: {e}"))?;
        if e.schema_version > KNOWN_EVENT_SCHEMA_VERSION {
            return Err(format!(
                "unknown event schema version {} of {} (this build reads up to v{KNOWN_EVENT_SCHEMA_VERSION})",
                e.schema_version, e.event_type
            ));
        }
        let (mut tenant, mut event_id, mut entity_id) =
            ([0; uuid::fmt::Hyphenated::LENGTH], [0; uuid::fmt::Hyphenated::LENGTH], [0; uuid::fmt::Hyphenated::LENGTH]);
        let actor_id = e.actor.id.map(|id| id.to_string());
        rows.str(Some(&*e.tenant_id.hyphenated().encode_lower(&mut tenant)))
            .str(Some(&month_of(e.recorded_at)))
            .i64(Some(seq(message)))
            .str(Some(&*e.event_id.hyphenated().encode_lower(&mut event_id)))
            .str(Some(e.entity_type.as_str()))
            .str(Some(&*e.entity_id.hyphenated().encode_lower(&mut entity_id)))
            .i64(Some(e.version as i64))
            .str(Some(&e.event_type))
            .i32(Some(e.schema_version as i32))
            .i64(Some(e.occurred_at))
            .i64(Some(e.recorded_at))
            .str(Some(e.actor.kind.as_str()))
            .str(actor_id.as_deref())
            .str(e.actor.name.as_deref())
            .str(Some(&e.payload.to_string()));
        rows.end_row();
        Ok(())
    }
}

/// An [`EventEnvelope`] read with its strings borrowed from the message where it can.
#[derive(Deserialize)]
struct EnvelopeRef<'a> {
    event_id: Uuid,
    tenant_id: Uuid,
    entity_type: EntityType,
    entity_id: Uuid,
    version: u64,
    #[serde(borrow)]
    event_type: Cow<'a, str>,
    schema_version: u32,
    occurred_at: i64,
    recorded_at: i64,
    #[serde(borrow)]
    actor: ActorRef<'a>,
    payload: Value,
}

#[derive(Deserialize)]
struct ActorRef<'a> {
    kind: ActorKind,
    #[serde(default)]
    id: Option<Uuid>,
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
}

/// `entity_versions`: the state of every entity after each of its events. The state is the
/// shallow merge of the event payloads so far (creation and update events carry the entity's
/// fields), kept in memory and rebuilt from the log at start.
///
/// Each field of a state is kept serialized (`"key":value`, in key order as `serde_json`
/// writes a map): a version's state is written by joining them, without serializing the whole
/// state again per event; only the changed fields are serialized.
#[derive(Debug, Default)]
pub struct EntityVersionsProjection {
    states: HashMap<Uuid, BTreeMap<String, String>>,
    state_text: String,
}

impl EntityVersionsProjection {
    /// Merges an event's payload into its entity's state and writes the new state into
    /// `self.state_text` (the same text as `serde_json::to_string` of the merged map).
    fn fold(&mut self, entity: Uuid, payload: &Value) -> Result<(), String> {
        let state = self.states.entry(entity).or_default();
        if let Value::Object(changes) = payload {
            for (k, v) in changes {
                let mut field = Vec::with_capacity(k.len() + 16);
                serde_json::to_writer(&mut field, k).map_err(|e| e.to_string())?;
                field.push(b':');
                serde_json::to_writer(&mut field, v).map_err(|e| e.to_string())?;
                let field = String::from_utf8(field).map_err(|e| e.to_string())?;
                match state.get_mut(k) {
                    Some(existing) => *existing = field,
                    None => {
                        state.insert(k.clone(), field);
                    }
                }
            }
        }
        self.state_text.clear();
        self.state_text.push('{');
        for (i, field) in state.values().enumerate() {
            if i > 0 {
                self.state_text.push(',');
            }
            self.state_text.push_str(field);
        }
        self.state_text.push('}');
        Ok(())
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

fn is_deletion(event_type: &str) -> bool {
    event_type.ends_with("Deleted")
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
            let _ = self.fold(e.entity_id, &e.payload);
        }
    }
    fn decode(&mut self, message: &LogMessage, rows: &mut RowBuilder) -> Result<(), String> {
        let e = envelope(message)?;
        self.decode_event(message.seq, &e, rows)
    }
    fn decode_event(&mut self, seq: u64, e: &EventEnvelope, rows: &mut RowBuilder) -> Result<(), String> {
        if e.entity_type == EntityType::Relation {
            return Ok(());
        }
        self.fold(e.entity_id, &e.payload)?;
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
    fn decode_archived(&mut self, event: &ArchivedEvent<'_>, rows: &mut RowBuilder) -> Result<(), String> {
        let entity_type: EntityType = event.entity_type.parse().map_err(|e: thinglake_domain::DomainError| e.to_string())?;
        if entity_type == EntityType::Relation {
            return Ok(());
        }
        let entity = Uuid::parse_str(event.entity_id).map_err(|e| e.to_string())?;
        Uuid::parse_str(event.tenant_id).map_err(|e| e.to_string())?;
        let payload: Value = serde_json::from_str(event.payload).map_err(|e| e.to_string())?;
        self.fold(entity, &payload)?;
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

/// A relation's identity, known from its creation event.
#[derive(Debug, Clone)]
struct RelationRow {
    from_type: String,
    from_id: String,
    to_type: String,
    to_id: String,
    relation_type: String,
    type_group: String,
    additional_info: Option<String>,
}

/// `relation_versions`: every version of every relation, with its ends (kept in memory from
/// the creation events, rebuilt from the relation subjects at start).
#[derive(Debug, Default)]
pub struct RelationVersionsProjection {
    relations: HashMap<Uuid, RelationRow>,
}

impl RelationVersionsProjection {
    fn fold(&mut self, e: &EventEnvelope) -> Result<&RelationRow, String> {
        let event = RelationEvent::from_envelope(e).map_err(|err| err.to_string())?;
        match event {
            RelationEvent::RelationCreated { key, additional_info, .. } => {
                let type_group = serde_json::to_value(key.type_group)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                let row = RelationRow {
                    from_type: key.from.entity_type.to_string(),
                    from_id: key.from.id.to_string(),
                    to_type: key.to.entity_type.to_string(),
                    to_id: key.to.id.to_string(),
                    relation_type: key.relation_type,
                    type_group,
                    additional_info: Some(additional_info.to_string()),
                };
                self.relations.insert(e.entity_id, row);
            }
            RelationEvent::RelationUpdated { additional_info } => {
                if let Some(row) = self.relations.get_mut(&e.entity_id) {
                    row.additional_info = Some(additional_info.to_string());
                }
            }
            RelationEvent::RelationDeleted {} => {}
        }
        self.relations.get(&e.entity_id).ok_or_else(|| format!("relation {} has no creation event", e.entity_id))
    }
}

impl Projection for RelationVersionsProjection {
    fn name(&self) -> &'static str {
        LAKE_RELATION_VERSIONS
    }
    fn spec(&self) -> TableSpec {
        table::relation_versions()
    }
    fn source(&self) -> Source {
        Source::Events
    }
    fn filter_subject(&self, subjects: &Subjects) -> Option<String> {
        Some(subjects.all_relation_events())
    }
    fn needs_priming(&self) -> bool {
        true
    }
    fn prime(&mut self, message: &LogMessage) {
        if let Ok(e) = envelope(message) {
            let _ = self.fold(&e);
        }
    }
    fn decode(&mut self, message: &LogMessage, rows: &mut RowBuilder) -> Result<(), String> {
        let e = envelope(message)?;
        self.decode_event(message.seq, &e, rows)
    }
    fn decode_event(&mut self, seq: u64, e: &EventEnvelope, rows: &mut RowBuilder) -> Result<(), String> {
        if e.entity_type != EntityType::Relation {
            return Ok(());
        }
        let row = self.fold(e)?.clone();
        rows.str(Some(&e.tenant_id.to_string()))
            .str(Some(&e.entity_id.to_string()))
            .i64(Some(e.version as i64))
            .i64(Some(i64::try_from(seq).unwrap_or(i64::MAX)))
            .str(Some(&row.from_type))
            .str(Some(&row.from_id))
            .str(Some(&row.to_type))
            .str(Some(&row.to_id))
            .str(Some(&row.relation_type))
            .str(Some(&row.type_group))
            .str(row.additional_info.as_deref())
            .bool(Some(is_deletion(&e.event_type)))
            .i64(Some(e.recorded_at));
        rows.end_row();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use deltalake_core::arrow::array::AsArray as _;
    use deltalake_core::arrow::datatypes::Int64Type;
    use serde_json::{Map, json};
    use thinglake_infra::subjects::Subjects;

    use super::*;

    fn envelope_of(entity: Uuid, version: u64, event_type: &str, payload: Value) -> EventEnvelope {
        EventEnvelope {
            event_id: Uuid::now_v7(),
            tenant_id: Uuid::from_u128(7),
            entity_type: EntityType::Device,
            entity_id: entity,
            version,
            event_type: event_type.to_string(),
            schema_version: 1,
            occurred_at: 1_700_000_000_000,
            recorded_at: 1_700_000_000_001,
            actor: Actor::user(Uuid::from_u128(9), "ann@example.com"),
            payload,
        }
    }

    fn payloads() -> Vec<Value> {
        vec![
            json!({"name": "pump \"1\"", "type": "default", "label": null, "info": {"a": [1, 2.5, -0.0, 1e300]}}),
            json!({"label": "Ünïcødé \u{1F600} \n\t", "z": true, "a\"key\\": 12345678901234567i64}),
            json!({"name": "pump 2", "info": {"nested": {"deep": "x"}}}),
            json!("not an object"),
            json!({}),
            json!({"type": "other", "extra": 3.25}),
        ]
    }

    /// The state kept serialized per field is the text `serde_json` writes for the merged map.
    #[test]
    fn entity_states_are_the_json_of_the_merged_payloads() {
        let entity = Uuid::from_u128(1);
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

    /// Rebuilding from the `events` table (its rows' texts) gives the rows of the log.
    #[test]
    fn entity_versions_from_events_table_rows_equal_those_from_the_log() {
        let subjects = Subjects::default();
        let mut events = EventsProjection;
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
