//! What each lake projection reads from the log and the rows it makes of it.
//!
//! A projection decodes one log message at a time into rows of its table. A message it cannot
//! read (corrupt JSON, an unknown schema version) is refused with a reason and ends up in the
//! dead-letter table; the projection goes on.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{Map, Value};
use thinglake_domain::relation::RelationEvent;
use thinglake_domain::telemetry::{KvEntry, KvValue, TelemetryData, TelemetryMessage};
use thinglake_domain::{DomainEvent, EntityType, EventEnvelope};
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
        let e = envelope(message)?;
        let actor_id = e.actor.id.map(|id| id.to_string());
        let actor_kind = serde_json::to_value(e.actor.kind).ok().and_then(|v| v.as_str().map(str::to_string));
        rows.str(Some(&e.tenant_id.to_string()))
            .str(Some(&month_of(e.recorded_at)))
            .i64(Some(seq(message)))
            .str(Some(&e.event_id.to_string()))
            .str(Some(&e.entity_type.to_string()))
            .str(Some(&e.entity_id.to_string()))
            .i64(Some(e.version as i64))
            .str(Some(&e.event_type))
            .i32(Some(e.schema_version as i32))
            .i64(Some(e.occurred_at))
            .i64(Some(e.recorded_at))
            .str(Some(actor_kind.as_deref().unwrap_or("system")))
            .str(actor_id.as_deref())
            .str(e.actor.name.as_deref())
            .str(Some(&e.payload.to_string()));
        rows.end_row();
        Ok(())
    }
}

/// `entity_versions`: the state of every entity after each of its events. The state is the
/// shallow merge of the event payloads so far (creation and update events carry the entity's
/// fields), kept in memory and rebuilt from the log at start.
#[derive(Debug, Default)]
pub struct EntityVersionsProjection {
    states: HashMap<Uuid, Map<String, Value>>,
}

impl EntityVersionsProjection {
    fn fold(&mut self, e: &EventEnvelope) -> &Map<String, Value> {
        let state = self.states.entry(e.entity_id).or_default();
        if let Value::Object(changes) = &e.payload {
            for (k, v) in changes {
                state.insert(k.clone(), v.clone());
            }
        }
        state
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
            self.fold(&e);
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
        // Serialized in place: no copy of the whole state per event.
        let state = serde_json::to_string(self.fold(e)).map_err(|err| err.to_string())?;
        rows.str(Some(&e.tenant_id.to_string()))
            .str(Some(&e.entity_type.to_string()))
            .str(Some(&e.entity_id.to_string()))
            .i64(Some(e.version as i64))
            .i64(Some(i64::try_from(seq).unwrap_or(i64::MAX)))
            .str(Some(&e.event_type))
            .i64(Some(e.recorded_at))
            .bool(Some(is_deletion(&e.event_type)))
            .str(Some(&e.payload.to_string()))
            .str(Some(&state));
        rows.end_row();
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
