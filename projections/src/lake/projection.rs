//! What each lake projection reads from the log and the rows it makes of it.
//!
//! A projection decodes one log message at a time into rows of its table. A message it cannot
//! read (corrupt JSON, an unknown schema version) is refused with a reason and ends up in the
//! dead-letter table; the projection goes on.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;
use thinglake_domain::relation::RelationEvent;
use thinglake_domain::telemetry::{KvEntry, KvValue, TelemetryData, TelemetryMessage};
use thinglake_domain::{Actor, ActorKind, DomainEvent, EntityId, EntityType, EventEnvelope, TenantEntityId, TenantId};
use thinglake_infra::subjects::Subjects;
use thinglake_lake::partition::{day_of, month_of};
use thinglake_lake::rollup::hour_of;
use thinglake_lake::table::{
    self, LAKE_ATTRIBUTE_VERSIONS, LAKE_ENTITY_VERSIONS, LAKE_EVENTS, LAKE_RELATION_VERSIONS, LAKE_TELEMETRY, LAKE_TELEMETRY_HOURLY,
    RowBuilder, TableSpec,
};
use uuid::Uuid;

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
            ProjectionKind::TelemetryHourly => Box::new(TelemetryHourlyProjection),
            ProjectionKind::Events => Box::new(EventsProjection::default()),
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
    // Written before the parsers refused them, a point the lake cannot partition by day sends
    // its whole message to the dead letters (the point's row would fail the table's write).
    if let Some(e) = batches.iter().find_map(|b| thinglake_domain::telemetry::check_ts(b.ts).err()) {
        return Err(format!("point not writable: {e}"));
    }
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

/// `telemetry_hourly`: the rollup projection, one partial row per point (see
/// [`crate::lake::rollup`]), merged per chunk by the runner.
#[derive(Debug, Default)]
pub struct TelemetryHourlyProjection;

impl Projection for TelemetryHourlyProjection {
    fn name(&self) -> &'static str {
        LAKE_TELEMETRY_HOURLY
    }
    fn spec(&self) -> TableSpec {
        table::telemetry_hourly()
    }
    fn source(&self) -> Source {
        Source::Telemetry
    }
    fn decode(&mut self, message: &LogMessage, rows: &mut RowBuilder) -> Result<(), String> {
        // The month partition, formatted once per day met.
        let mut month: Option<(i32, String)> = None;
        each_point(message, |source, ts, kv| {
            let day = day_of(ts);
            if month.as_ref().is_none_or(|(d, _)| *d != day) {
                month = Some((day, month_of(ts)));
            }
            let month = month.as_ref().map_or("", |(_, m)| m.as_str());
            let (long, double) = match &kv.value {
                KvValue::Long(l) => (Some(*l), None),
                KvValue::Double(d) => (None, Some(*d)),
                _ => (None, None),
            };
            rows.str(Some(&source.tenant))
                .str(Some(month))
                .str(Some(&source.entity_type))
                .str(Some(&source.entity_id))
                .str(Some(&kv.key))
                .i64(Some(hour_of(ts)))
                .i64(Some(1))
                .i64(Some(i64::from(long.is_some())))
                .i64(Some(i64::from(double.is_some())))
                .i64(Some(long.unwrap_or(0)))
                .f64(Some(double.unwrap_or(0.0)))
                .i64(long)
                .i64(long)
                .f64(double)
                .f64(double)
                .i64(Some(source.seq));
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
#[derive(Debug, Default)]
pub struct EventsProjection {
    /// Where the members of the envelope being decoded are (reused from event to event).
    members: Vec<Member>,
    /// The day of the last event's `recorded_at` and its month partition's text.
    month: Option<(i32, String)>,
}

impl EventsProjection {
    /// The `month` partition of `recorded_at`, kept from the previous event of the same day.
    fn month(&mut self, recorded_at: i64) -> &str {
        let day = day_of(recorded_at);
        if self.month.as_ref().is_none_or(|(d, _)| *d != day) {
            self.month = Some((day, month_of(recorded_at)));
        }
        &self.month.as_ref().expect("set just above").1
    }

    /// The row of an envelope written as serde_json writes an [`EventEnvelope`] (ids as lower-case
    /// hyphenated UUIDs, the payload as serde_json writes a `Value`), from the texts of the
    /// message as they are; `None` for any other envelope, which [`Self::decode_parsed`] reads.
    /// The row is the same either way.
    fn decode_text(&mut self, message: &LogMessage, rows: &mut RowBuilder) -> Option<Result<(), String>> {
        // serde_json checks the JSON (the payload too, without building it) and reads the fields.
        let e: EnvelopeText<'_> = serde_json::from_slice(&message.payload).ok()?;
        if e.schema_version > KNOWN_EVENT_SCHEMA_VERSION {
            return None;
        }
        let uuid_text = |text: &Cow<'_, str>| is_hyphenated_lower_uuid(text);
        if !(uuid_text(&e.event_id) && uuid_text(&e.tenant_id) && uuid_text(&e.entity_id))
            || e.actor.id.as_ref().is_some_and(|id| !uuid_text(id))
        {
            return None;
        }
        // The payload's text: a member of the envelope written as serde_json writes it, whose
        // objects list their keys in serde_json's order.
        let text = std::str::from_utf8(&message.payload).ok()?;
        if object_members(text, &mut self.members) != Shape::Object {
            return None;
        }
        let member = self.members.iter().find(|m| &text[m.key.clone()] == "\"payload\"")?;
        let payload = &text[member.key.end + 1..member.end];
        if !keys_in_order(payload) {
            return None;
        }
        let row = EventRow {
            tenant_id: &e.tenant_id,
            month: self.month(e.recorded_at),
            event_id: &e.event_id,
            entity_type: e.entity_type.as_str(),
            entity_id: &e.entity_id,
            version: e.version,
            event_type: &e.event_type,
            schema_version: e.schema_version,
            occurred_at: e.occurred_at,
            recorded_at: e.recorded_at,
            actor_kind: e.actor.kind.as_str(),
            actor_id: e.actor.id.as_deref(),
            actor_name: e.actor.name.as_deref(),
            payload,
        };
        row.push(seq(message), rows);
        Some(Ok(()))
    }

    /// The row of any envelope, its payload parsed into a `Value` and written again.
    fn decode_parsed(&mut self, message: &LogMessage, rows: &mut RowBuilder) -> Result<(), String> {
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
        let payload = e.payload.to_string();
        let row = EventRow {
            tenant_id: e.tenant_id.hyphenated().encode_lower(&mut tenant),
            month: self.month(e.recorded_at),
            event_id: e.event_id.hyphenated().encode_lower(&mut event_id),
            entity_type: e.entity_type.as_str(),
            entity_id: e.entity_id.hyphenated().encode_lower(&mut entity_id),
            version: e.version,
            event_type: &e.event_type,
            schema_version: e.schema_version,
            occurred_at: e.occurred_at,
            recorded_at: e.recorded_at,
            actor_kind: e.actor.kind.as_str(),
            actor_id: actor_id.as_deref(),
            actor_name: e.actor.name.as_deref(),
            payload: &payload,
        };
        row.push(seq(message), rows);
        Ok(())
    }
}

/// One `events` row: an envelope's fields as text, however they were read.
struct EventRow<'a> {
    tenant_id: &'a str,
    month: &'a str,
    event_id: &'a str,
    entity_type: &'a str,
    entity_id: &'a str,
    version: u64,
    event_type: &'a str,
    schema_version: u32,
    occurred_at: i64,
    recorded_at: i64,
    actor_kind: &'a str,
    actor_id: Option<&'a str>,
    actor_name: Option<&'a str>,
    payload: &'a str,
}

impl EventRow<'_> {
    /// Appends the row of the message at stream sequence `seq`, in the table's column order.
    fn push(&self, seq: i64, rows: &mut RowBuilder) {
        rows.str(Some(self.tenant_id))
            .str(Some(self.month))
            .i64(Some(seq))
            .str(Some(self.event_id))
            .str(Some(self.entity_type))
            .str(Some(self.entity_id))
            .i64(Some(self.version as i64))
            .str(Some(self.event_type))
            .i32(Some(self.schema_version as i32))
            .i64(Some(self.occurred_at))
            .i64(Some(self.recorded_at))
            .str(Some(self.actor_kind))
            .str(self.actor_id)
            .str(self.actor_name)
            .str(Some(self.payload));
        rows.end_row();
    }
}

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
    /// The platform writes envelopes as serde_json writes them: their texts go into the row as
    /// they are ([`EventsProjection::decode_text`]); anything else is parsed and written again.
    fn decode(&mut self, message: &LogMessage, rows: &mut RowBuilder) -> Result<(), String> {
        match self.decode_text(message, rows) {
            Some(decoded) => decoded,
            None => self.decode_parsed(message, rows),
        }
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

/// An [`EventEnvelope`] with its ids as text and its payload only checked to be JSON: what
/// [`EventsProjection::decode_text`] takes as it is.
#[derive(Deserialize)]
struct EnvelopeText<'a> {
    #[serde(borrow)]
    event_id: Cow<'a, str>,
    #[serde(borrow)]
    tenant_id: Cow<'a, str>,
    entity_type: EntityType,
    #[serde(borrow)]
    entity_id: Cow<'a, str>,
    version: u64,
    #[serde(borrow)]
    event_type: Cow<'a, str>,
    schema_version: u32,
    occurred_at: i64,
    recorded_at: i64,
    #[serde(borrow)]
    actor: ActorText<'a>,
    #[allow(dead_code)]
    payload: IgnoredAny,
}

#[derive(Deserialize)]
struct ActorText<'a> {
    kind: ActorKind,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
}

/// Whether `text` is a UUID as `Uuid`'s `Display` writes it (hyphenated, lower-case hex).
fn is_hyphenated_lower_uuid(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == uuid::fmt::Hyphenated::LENGTH
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
        })
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
    fn fold(&mut self, entity: TenantEntityId, payload: &Value) -> Result<(), String> {
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
        self.write_state(entity);
        Ok(())
    }

    /// Like [`Self::fold`], with the payload as JSON text: when the text is as `serde_json`
    /// writes a `Value` (the `events` table's payloads are), each member's text (`"key":value`)
    /// is taken as it is, without parsing the payload into a `Value` and serializing its fields
    /// again; other text goes through [`Self::fold`]. The state is the same either way.
    fn fold_text(&mut self, entity: TenantEntityId, payload: &str) -> Result<(), String> {
        // serde_json checks that the text is JSON; the scan below only finds where its members
        // are and whether they are written as serde_json writes them.
        serde_json::from_str::<IgnoredAny>(payload).map_err(|e| e.to_string())?;
        match object_members(payload, &mut self.members) {
            Shape::Irregular => {
                let payload: Value = serde_json::from_str(payload).map_err(|e| e.to_string())?;
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
                        Cow::Owned(serde_json::from_str::<String>(quoted).map_err(|e| e.to_string())?)
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
            let _ = self.fold(e.tenant_entity(), &e.payload);
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
    fn decode_archived(&mut self, event: &ArchivedEvent<'_>, rows: &mut RowBuilder) -> Result<(), String> {
        let entity_type: EntityType = event.entity_type.parse().map_err(|e: thinglake_domain::DomainError| e.to_string())?;
        if entity_type == EntityType::Relation {
            return Ok(());
        }
        let entity = Uuid::parse_str(event.entity_id).map_err(|e| e.to_string())?;
        // The rows of a tenant's files follow each other: its id is checked once per run of them.
        if event.tenant_id != self.checked_tenant {
            self.checked_tenant_id = Uuid::parse_str(event.tenant_id).map_err(|e| e.to_string())?;
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

/// A member of a JSON object's text: its quoted key's byte range and where its value ends (the
/// value follows the key's `:` directly).
#[derive(Debug, Clone)]
struct Member {
    key: std::ops::Range<usize>,
    end: usize,
    /// Whether the key has escapes (its text is not the key itself).
    escaped_key: bool,
}

/// What [`object_members`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// An object written as `serde_json` writes a `Value`; its members are listed.
    Object,
    /// Not an object (a payload without fields).
    Other,
    /// Not written as `serde_json` writes a `Value` (whitespace between tokens, other escapes or
    /// number forms): its members' texts are not those serde_json would write.
    Irregular,
}

/// Lists the members of `text`, JSON text already checked to be valid, into `members`, if it is
/// an object written as `serde_json` writes a `Value`: compact, strings escaped as serde_json
/// escapes them (`\"`, `\\`, `\b\f\n\r\t`, other control characters as `\u00xx`, nothing
/// else), numbers in the form serde_json prints the number they parse to. Then each member's
/// text is the one serde_json writes for it.
fn object_members(text: &str, members: &mut Vec<Member>) -> Shape {
    members.clear();
    let b = text.as_bytes();
    match b.first() {
        Some(b'{') => {}
        Some(c) if c.is_ascii_whitespace() => return Shape::Irregular,
        _ => return Shape::Other,
    }
    let scanned = (|| {
        let mut i = 1;
        if b.get(i) == Some(&b'}') {
            return Some(i + 1);
        }
        loop {
            if b.get(i) != Some(&b'"') {
                return None;
            }
            let (after_key, escaped_key) = scan_string(b, i)?;
            if b.get(after_key) != Some(&b':') {
                return None;
            }
            let end = scan_value(text, after_key + 1)?;
            members.push(Member { key: i..after_key, end, escaped_key });
            match b.get(end) {
                Some(b',') => i = end + 1,
                Some(b'}') => return Some(end + 1),
                _ => return None,
            }
        }
    })();
    match scanned {
        Some(end) if end == b.len() => Shape::Object,
        _ => Shape::Irregular,
    }
}

/// The end of the string starting at `b[start]` (a `"`) and whether it has escapes, or `None`
/// if it has an escape serde_json does not write.
fn scan_string(b: &[u8], start: usize) -> Option<(usize, bool)> {
    let mut i = start + 1;
    let mut escaped = false;
    loop {
        match *b.get(i)? {
            b'"' => return Some((i + 1, escaped)),
            b'\\' => {
                escaped = true;
                match *b.get(i + 1)? {
                    b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                    b'u' => {
                        let hex = b.get(i + 2..i + 6)?;
                        let lower_hex = |c: u8| c.is_ascii_digit() || (b'a'..=b'f').contains(&c);
                        // Only the control characters without a short escape.
                        let control = hex[0] == b'0' && hex[1] == b'0' && matches!(hex[2], b'0' | b'1') && lower_hex(hex[3]);
                        if !control || matches!(&hex[2..], b"08" | b"09" | b"0a" | b"0c" | b"0d") {
                            return None;
                        }
                        i += 6;
                    }
                    _ => return None,
                }
            }
            _ => i += 1,
        }
    }
}

/// The end of the value starting at `text[start]` (valid JSON), or `None` if it is not written
/// as serde_json writes values.
fn scan_value(text: &str, start: usize) -> Option<usize> {
    let b = text.as_bytes();
    let mut i = start;
    let mut depth = 0usize;
    loop {
        match *b.get(i)? {
            b'"' => i = scan_string(b, i)?.0,
            b'{' | b'[' => {
                depth += 1;
                i += 1;
            }
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                i += 1;
            }
            b'-' | b'0'..=b'9' => i = scan_number(text, i)?,
            b't' | b'n' => i += 4,
            b'f' => i += 5,
            b',' | b':' => i += 1,
            // Whitespace.
            _ => return None,
        }
        if depth == 0 {
            return Some(i);
        }
    }
}

/// The end of the number starting at `text[start]`, or `None` if serde_json would print the
/// number it parses to otherwise (`1.50`, `1E2`, `-0`, integers beyond 64 bits).
fn scan_number(text: &str, start: usize) -> Option<usize> {
    let b = text.as_bytes();
    let end = start + b[start..].iter().take_while(|c| matches!(c, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')).count();
    let number = &text[start..end];
    let digits = number.strip_prefix('-').unwrap_or(number);
    // Integers up to 18 digits fit i64 and u64 and print as written (JSON has no leading zeros).
    let plain = number == "0"
        || (digits.len() <= 18 && digits.bytes().all(|c| c.is_ascii_digit()) && !digits.starts_with('0'));
    // Else as serde_json prints the number it parses (a `Value` compares to text as a string).
    if plain || serde_json::from_str::<Value>(number).ok().map(|n| n.to_string()).as_deref() == Some(number) {
        Some(end)
    } else {
        None
    }
}

/// Objects nested deeper than this are left to serde_json (its own limit is 128 levels).
const MAX_KEY_DEPTH: usize = 64;

/// A key in a JSON text: its quoted text's byte range and whether it has escapes.
type KeyText = (std::ops::Range<usize>, bool);

/// Whether every object in `text` — valid JSON whose values [`scan_value`] found written as
/// serde_json writes them — lists its keys as serde_json writes a `Value`'s map: in increasing
/// order without duplicates, at most [`MAX_KEY_DEPTH`] levels deep. Then `text` is what
/// serde_json writes for the `Value` it parses to.
fn keys_in_order(text: &str) -> bool {
    let b = text.as_bytes();
    // A key's text (its quoted text's range, whether it has escapes) as a string.
    let key = |(range, escaped): &KeyText| -> Option<Cow<'_, str>> {
        if *escaped {
            serde_json::from_str::<String>(&text[range.clone()]).ok().map(Cow::Owned)
        } else {
            Some(Cow::Borrowed(&text[range.start + 1..range.end - 1]))
        }
    };
    // Per open container: `None` for an array, for an object its previous key.
    let mut open: Vec<Option<Option<KeyText>>> = Vec::new();
    let mut expect_key = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'{' => {
                open.push(Some(None));
                if open.len() > MAX_KEY_DEPTH {
                    return false;
                }
                expect_key = true;
                i += 1;
            }
            b'[' => {
                open.push(None);
                if open.len() > MAX_KEY_DEPTH {
                    return false;
                }
                expect_key = false;
                i += 1;
            }
            b'}' | b']' => {
                open.pop();
                expect_key = false;
                i += 1;
            }
            b',' => {
                expect_key = matches!(open.last(), Some(Some(_)));
                i += 1;
            }
            b'"' => {
                let Some((end, escaped)) = scan_string(b, i) else { return false };
                if expect_key {
                    let Some(Some(previous)) = open.last_mut() else { return false };
                    let current = (i..end, escaped);
                    // Keys compare as strings: by their bytes (UTF-8), as a `String` orders.
                    if let Some(previous) = previous.as_ref() {
                        let in_order = if previous.1 || escaped {
                            key(previous).zip(key(&current)).is_some_and(|(p, c)| p < c)
                        } else {
                            b[previous.0.start + 1..previous.0.end - 1] < b[i + 1..end - 1]
                        };
                        if !in_order {
                            return false;
                        }
                    }
                    *previous = Some(current);
                    expect_key = false;
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    true
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
    use deltalake_core::arrow::array::{AsArray as _, RecordBatch};
    use deltalake_core::arrow::datatypes::Int64Type;
    use serde_json::{Map, json};
    use thinglake_domain::DomainEvent as _;
    use thinglake_infra::subjects::Subjects;

    use super::*;

    /// A device of the nil tenant.
    fn key(id: Uuid) -> TenantEntityId {
        TenantEntityId::new(TenantId(Uuid::nil()), EntityId::new(EntityType::Device, id))
    }

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

    /// Payload texts not written as serde_json writes them: whitespace, other escapes, other
    /// number forms.
    const IRREGULAR: [&str; 14] = [
        r#"{ "name": "spaced" }"#,
        r#"{"name" :"a","label":"b"}"#,
        r#"{"path":"a\/b"}"#,
        r#"{"name":"\u00e9t\u00C9"}"#,
        r#"{"c":"\u001F\u0008"}"#,
        r#"{"n":1.50}"#,
        r#"{"n":1E2}"#,
        r#"{"n":1e300}"#,
        r#"{"n":-0}"#,
        r#"{"n":123456789012345678901234567890}"#,
        r#"{"n":[1, 2]}"#,
        r#"{"\u0041":"escaped key"}"#,
        r#" {"lead":"space"}"#,
        r#"{"del":"\u007f"}"#,
    ];

    /// Payload texts written as serde_json writes them, with every kind of value and escape.
    const REGULAR: [&str; 5] = [
        r#"{"k\"ey\\":"v\"\\\b\f\n\r\t\u0000\u001f","e":"","t":true,"f":false,"z":null}"#,
        r#"{"a":1,"a":2,"b":{"a":3},"b":null}"#,
        r#"{"n":[-1,0,1.5,-2.5e-10,1e+300,18446744073709551615,-9223372036854775808,[],{}],"o":{"a":{"b":[{"c":null}]}}}"#,
        r#"{"ünï":"cødé 😀","name":"pump 9"}"#,
        "{}",
    ];

    /// Payload texts that are not objects (no fields), then texts that are not JSON at all.
    const NOT_OBJECTS: [&str; 11] =
        ["null", "[1,2]", r#""text""#, "12", "{\"a\":", "{\"a\":1}x", "", r#"{"a":"\ud800"}"#, r#"{"n":1e400}"#, "{\"a\"}", "nul"];

    /// Every payload text of the tests, in an order that changes and adds fields.
    fn payload_texts() -> Vec<String> {
        let mut texts: Vec<String> = payloads().iter().map(Value::to_string).collect();
        texts.extend(IRREGULAR.iter().chain(&REGULAR).chain(&NOT_OBJECTS).map(|t| t.to_string()));
        texts
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

    /// The text is taken as it is only when serde_json would write it so; the other texts go
    /// through a `Value` (where the test above shows the state is the same).
    #[test]
    fn only_text_as_serde_json_writes_it_is_taken_as_it_is() {
        let mut members = Vec::new();
        for value in payloads() {
            let text = value.to_string();
            let expected = if value.is_object() { Shape::Object } else { Shape::Other };
            assert_eq!(object_members(&text, &mut members), expected, "{text}");
        }
        let shape = |text: &str| object_members(text, &mut Vec::new());
        for text in IRREGULAR {
            assert_eq!(shape(text), Shape::Irregular, "{text}");
        }
        for text in REGULAR {
            assert_eq!(shape(text), Shape::Object, "{text}");
        }
        assert_eq!(object_members(r#"{"a":{"x":[1,"]}"]},"b":"c"}"#, &mut members), Shape::Object);
        let member = |m: &Member| &r#"{"a":{"x":[1,"]}"]},"b":"c"}"#[m.key.start..m.end];
        assert_eq!(members.iter().map(member).collect::<Vec<_>>(), [r#""a":{"x":[1,"]}"]}"#, r#""b":"c""#]);
    }

    /// A fixed sequence of pseudo-random numbers below the bound asked (xorshift).
    fn random_numbers() -> impl FnMut(u64) -> u64 {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        }
    }

    /// A random JSON value: nulls, booleans, integers of every size, floats, strings with
    /// escapes and unicode, arrays and objects up to four levels deep.
    fn random_value(next: &mut dyn FnMut(u64) -> u64, depth: u32) -> Value {
        let strings = ["", "a", "é", "\"", "\\", "\n", "\u{1}", "\u{7f}", "😀", "key", "a b"];
        match next(if depth > 2 { 6 } else { 8 }) {
            0 => Value::Null,
            1 => Value::Bool(next(2) == 0),
            2 => json!(next(u64::MAX) as i64),
            3 => json!((next(2_000_001) as f64 - 1e6) / 8.0),
            4 => json!(next(u64::MAX)),
            5 => Value::String(strings[next(strings.len() as u64) as usize].repeat(next(3) as usize + 1)),
            6 => Value::Array((0..next(4)).map(|_| random_value(next, depth + 1)).collect()),
            _ => Value::Object(
                (0..next(5)).map(|i| (format!("{}{i}", strings[next(strings.len() as u64) as usize]), random_value(next, depth + 1))).collect(),
            ),
        }
    }

    /// What a projection's `decode` returned and the rows it made.
    type Decoded = (Result<(), String>, RecordBatch);

    /// The `events` row of a log message by `decode` (from the envelope's texts where they are
    /// as serde_json writes them) and by `decode_parsed` (the envelope parsed, its payload
    /// written again: the old way); and whether `decode` took the texts as they are.
    fn events_rows_both_ways(text: &[u8]) -> (Decoded, Decoded, bool) {
        let message = LogMessage { seq: 42, subject: String::new(), payload: Bytes::copy_from_slice(text) };
        let both = |decode: &dyn Fn(&mut EventsProjection, &mut RowBuilder) -> Result<(), String>| {
            let mut rows = RowBuilder::new(table::events().schema);
            let decoded = decode(&mut EventsProjection::default(), &mut rows);
            (decoded, rows.finish().expect("a batch"))
        };
        let as_text = EventsProjection::default().decode_text(&message, &mut RowBuilder::new(table::events().schema)).is_some();
        (both(&|p, rows| p.decode(&message, rows)), both(&|p, rows| p.decode_parsed(&message, rows)), as_text)
    }

    /// Envelopes as the platform writes them go into the `events` row from their texts, and
    /// that row is the one the parsed envelope gives: for every entity event type's payload,
    /// edge-case payloads and random ones. Envelopes written otherwise (whitespace, upper-case
    /// ids, keys out of serde_json's order, escapes it does not write, duplicate keys, deep
    /// nesting, unknown schema versions, invalid JSON) are parsed: the same row or error.
    #[test]
    fn events_rows_from_envelope_texts_equal_those_from_parsed_envelopes() {
        let entity = Uuid::from_u128(0xabc);
        let mut envelopes: Vec<EventEnvelope> = Vec::new();
        for (event_type, payload) in domain_payloads() {
            envelopes.push(envelope_of(entity, 1, &event_type, payload));
        }
        envelopes.extend(payloads().into_iter().map(|p| envelope_of(entity, 2, "DeviceUpdated", p)));
        let mut next = random_numbers();
        for i in 0..2_000u64 {
            let payload = random_value(&mut next, if i % 2 == 0 { 0 } else { 2 });
            let mut e = envelope_of(entity, i, "DeviceUpdated", payload);
            e.actor = if i % 3 == 0 { Actor::system() } else { Actor::device(Uuid::from_u128(u128::from(i))) };
            e.recorded_at = 1_700_000_000_000 + i as i64 * 86_400_000 * 7;
            envelopes.push(e);
        }
        for e in &envelopes {
            let text = serde_json::to_vec(e).expect("serializes");
            let ((decoded, rows), (parsed, parsed_rows), as_text) = events_rows_both_ways(&text);
            assert!(as_text, "taken as it is: {}", String::from_utf8_lossy(&text));
            assert_eq!((&decoded, &rows), (&parsed, &parsed_rows), "{}", String::from_utf8_lossy(&text));
            assert!(decoded.is_ok() && rows.num_rows() == 1);
        }

        // Envelopes written otherwise, and payload texts of every kind inside a canonical one.
        let e = envelope_of(entity, 3, "DeviceUpdated", json!({"name": "pump", "info": {"b": 1, "a": [2, {"y": 1, "x": 2}]}}));
        let canonical = serde_json::to_string(&e).expect("serializes");
        let with_payload = |payload: &str| {
            let at = canonical.find(r#","payload":"#).expect("a payload member");
            format!("{}\"payload\":{payload}}}", &canonical[..at + 1])
        };
        let deep = format!("{}1{}", "[".repeat(60), "]".repeat(60));
        let deeper = format!("{}1{}", "[".repeat(130), "]".repeat(130));
        let mut others = vec![
            serde_json::to_string_pretty(&e).expect("serializes"),
            format!("{canonical}\n"),
            canonical.replace(&e.entity_id.to_string(), &e.entity_id.to_string().to_uppercase()),
            canonical.replace(&e.tenant_id.to_string(), &e.tenant_id.simple().to_string()),
            canonical.replace(&e.event_id.to_string(), "not-a-uuid"),
            canonical.replace(r#""schema_version":1"#, r#""schema_version":2"#),
            canonical.replace(r#""payload":"#, r#""p\u0061yload":"#),
            canonical.replace(r#""payload":"#, r#""payload":1,"payload":"#),
            canonical.replace(r#","payload":"#, r#","extra":{"z":[1,2]},"payload":"#),
            canonical.replace(r#""kind":"user","#, r#""kind":"user","id":null,"#),
            canonical.replace(&format!(r#","payload":{}"#, e.payload), ""),
            with_payload(r#"{"info":{"a":[2,{"x":2,"y":1}],"b":1},"name":"pump"}"#),
            with_payload(r#"{"name":"pump","info":{"b":1,"a":[2,{"y":1,"x":2}]}}"#),
            with_payload(r#"{"info":{"a":[2,{"y":1,"x":2}],"b":1},"name":"pump"}"#),
            with_payload(r#"{"a":{"k":1,"k":2}}"#),
            with_payload(&deep),
            with_payload(&deeper),
            String::new(),
        ];
        others.extend(payload_texts().iter().map(|t| with_payload(t)));
        // Bytes that are not UTF-8 inside the payload's strings: refused either way.
        let mut invalid = with_payload(r#"{"name":"pump?"}"#).into_bytes();
        let at = invalid.iter().position(|&b| b == b'?').expect("the marker");
        invalid[at] = 0xff;
        let ((decoded, rows), (parsed, parsed_rows), _) = events_rows_both_ways(&invalid);
        assert!(decoded.is_err() && (&decoded, &rows) == (&parsed, &parsed_rows), "{decoded:?}");
        let mut as_text_count = 0;
        for text in &others {
            let ((decoded, rows), (parsed, parsed_rows), as_text) = events_rows_both_ways(text.as_bytes());
            assert_eq!((&decoded, &rows), (&parsed, &parsed_rows), "{text}");
            as_text_count += usize::from(as_text);
        }
        // Sorted keys, nested too, are taken as they are; keys out of order, duplicates and
        // nesting beyond the scan's depth are not.
        let taken = |text: &str| events_rows_both_ways(text.as_bytes()).2;
        assert!(taken(&with_payload(r#"{"info":{"a":[2,{"x":2,"y":1}],"b":1},"name":"pump"}"#)));
        assert!(taken(&with_payload(&deep)));
        assert!(!taken(&with_payload(r#"{"info":{"a":[2,{"y":1,"x":2}],"b":1},"name":"pump"}"#)));
        assert!(!taken(&with_payload(r#"{"a":{"k":1,"k":2}}"#)));
        assert!(!taken(&with_payload(&deeper)));
        assert!(as_text_count > 5 && as_text_count < others.len(), "{as_text_count} of {}", others.len());
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

    /// (event type, payload) of every entity event type as the platform writes it (the typed
    /// event encoded), with every optional field set and with none, nulls, unicode, escapes and
    /// nested values.
    fn domain_payloads() -> Vec<(String, Value)> {
        use thinglake_domain::asset::{AssetEvent, AssetFields};
        use thinglake_domain::contact::Contact;
        use thinglake_domain::customer::{CustomerEvent, CustomerFields};
        use thinglake_domain::dashboard::{DashboardEvent, DashboardFields};
        use thinglake_domain::device::{DeviceCredentials, DeviceEvent, DeviceFields};
        use thinglake_domain::profile::{AssetProfileEvent, AssetProfileFields, DeviceProfileEvent, DeviceProfileFields, ProfileEvent};
        use thinglake_domain::tenant::{TenantEvent, TenantFields};
        use thinglake_domain::user::{Authority, UserEvent, UserFields};
        use thinglake_domain::{AssetId, AssetProfileId, CustomerId, DashboardId, DeviceId, DeviceProfileId, TenantId, UserId};

        let id = Uuid::from_u128;
        let text = |s: &str| Some(s.to_string());
        let info = json!({"description": "Ünïcødé 😀 \"quoted\" \\ \n\u{1}", "nested": {"list": [1, 2.5, -0.0, null, true], "empty": {}}});
        let contact = Contact {
            country: text("Deutschland"),
            city: text("Köln"),
            zip: text("50667"),
            phone: text("+49 221"),
            email: text("a@b.de"),
            ..Contact::default()
        };
        let device = DeviceFields {
            name: "pump ü \"1\"".to_string(),
            label: text("Label"),
            device_profile_id: DeviceProfileId(id(5)),
            additional_info: info.clone(),
            device_data: json!({"configuration": {"type": "DEFAULT"}}),
            firmware_id: Some(id(6)),
            software_id: None,
        };
        let device_min = DeviceFields {
            name: "pump 2".to_string(),
            label: None,
            device_profile_id: DeviceProfileId(id(5)),
            additional_info: Value::Null,
            device_data: Value::Null,
            firmware_id: None,
            software_id: None,
        };
        let asset = AssetFields { name: "hall\t1".to_string(), label: text(""), asset_profile_id: AssetProfileId(id(7)), additional_info: info.clone() };
        let asset_min = AssetFields { name: "hall 2".to_string(), label: None, asset_profile_id: AssetProfileId(id(7)), additional_info: Value::Null };
        let customer = CustomerFields { title: "Kunde ß".to_string(), contact: contact.clone(), additional_info: info.clone() };
        let customer_min = CustomerFields { title: "c".to_string(), contact: Contact::default(), additional_info: Value::Null };
        let tenant = TenantFields { title: "Mandant".to_string(), region: text("EU"), contact, additional_info: info.clone() };
        let tenant_min = TenantFields { title: "t".to_string(), region: None, contact: Contact::default(), additional_info: Value::Null };
        let user = UserFields {
            email: "ann@example.com".to_string(),
            first_name: text("Änn"),
            last_name: text("O'Brien"),
            phone: None,
            additional_info: info.clone(),
        };
        let user_min = UserFields { email: "bob@example.com".to_string(), first_name: None, last_name: None, phone: None, additional_info: Value::Null };
        let dashboard = DashboardFields {
            title: "Übersicht".to_string(),
            image: text("data:image/png;base64,AAAA"),
            mobile_hide: true,
            mobile_order: Some(-3),
            configuration: json!({"widgets": {"w1": {"config": {"datasources": [{"type": "entity"}]}}}, "timewindow": {"realtime": {"timewindowMs": 60000}}}),
        };
        let dashboard_min =
            DashboardFields { title: "d".to_string(), image: None, mobile_hide: false, mobile_order: None, configuration: Value::Null };
        let device_profile = DeviceProfileFields {
            name: "Thermostat".to_string(),
            description: text("ünï"),
            image: None,
            profile_type: "DEFAULT".to_string(),
            transport_type: "MQTT".to_string(),
            provision_type: "DISABLED".to_string(),
            provision_device_key: None,
            profile_data: json!({"alarms": [{"id": "a", "createRules": {"CRITICAL": {"condition": {"spec": {"type": "SIMPLE"}}}}}]}),
            default_rule_chain_id: Some(id(8)),
            default_dashboard_id: None,
            default_queue_name: text("Main"),
        };
        let asset_profile = AssetProfileFields {
            name: "Building".to_string(),
            description: None,
            image: None,
            default_rule_chain_id: None,
            default_dashboard_id: Some(id(9)),
            default_queue_name: None,
        };
        let credentials = DeviceCredentials { id: id(10), access_token: "tok\"en".to_string(), created_time: 1_700_000_000_000 };
        let (tenant_id, customer_id, t) = (TenantId(id(1)), CustomerId(id(2)), 1_700_000_000_123);
        let mut events = vec![
            DeviceEvent::DeviceCreated {
                id: DeviceId(id(3)),
                tenant_id,
                customer_id,
                fields: device.clone(),
                credentials,
                created_time: t,
            }
            .encode(),
            DeviceEvent::DeviceUpdated { fields: device_min }.encode(),
            DeviceEvent::DeviceUpdated { fields: device }.encode(),
            DeviceEvent::DeviceAssignedToCustomer { customer_id }.encode(),
            DeviceEvent::DeviceUnassignedFromCustomer { customer_id }.encode(),
            DeviceEvent::DeviceCredentialsUpdated { access_token: "ünï\u{0}".to_string() }.encode(),
            DeviceEvent::DeviceDeleted {}.encode(),
            AssetEvent::AssetCreated { id: AssetId(id(4)), tenant_id, customer_id, fields: asset_min.clone(), created_time: t }.encode(),
            AssetEvent::AssetUpdated { fields: asset }.encode(),
            AssetEvent::AssetUpdated { fields: asset_min }.encode(),
            AssetEvent::AssetAssignedToCustomer { customer_id }.encode(),
            AssetEvent::AssetUnassignedFromCustomer { customer_id }.encode(),
            AssetEvent::AssetDeleted {}.encode(),
            CustomerEvent::CustomerCreated { id: customer_id, tenant_id, fields: customer_min.clone(), created_time: t }.encode(),
            CustomerEvent::CustomerUpdated { fields: customer }.encode(),
            CustomerEvent::CustomerUpdated { fields: customer_min }.encode(),
            CustomerEvent::CustomerDeleted {}.encode(),
            TenantEvent::TenantCreated { id: tenant_id, fields: tenant.clone(), created_time: t }.encode(),
            TenantEvent::TenantUpdated { fields: tenant_min }.encode(),
            TenantEvent::TenantUpdated { fields: tenant }.encode(),
            TenantEvent::TenantDeleted {}.encode(),
            UserEvent::UserCreated {
                id: UserId(id(11)),
                tenant_id,
                customer_id,
                authority: Authority::TenantAdmin,
                fields: user_min.clone(),
                password_hash: None,
                activation_token_hash: text("hash"),
                created_time: t,
            }
            .encode(),
            UserEvent::UserUpdated { fields: user }.encode(),
            UserEvent::UserUpdated { fields: user_min }.encode(),
            UserEvent::UserActivationTokenIssued { token_hash: "h1".to_string(), expires_time: None }.encode(),
            UserEvent::UserActivated { password_hash: "$argon2id$v=19$m=19456".to_string() }.encode(),
            UserEvent::UserPasswordChanged { password_hash: "p2".to_string() }.encode(),
            UserEvent::UserDeleted {}.encode(),
            DashboardEvent::DashboardCreated { id: DashboardId(id(12)), tenant_id, fields: dashboard.clone(), created_time: t }.encode(),
            DashboardEvent::DashboardUpdated { fields: dashboard_min }.encode(),
            DashboardEvent::DashboardUpdated { fields: dashboard }.encode(),
            DashboardEvent::DashboardAssignedToCustomer { customer_id }.encode(),
            DashboardEvent::DashboardUnassignedFromCustomer { customer_id }.encode(),
            DashboardEvent::DashboardDeleted {}.encode(),
        ];
        events.extend([
            DeviceProfileEvent::created(id(13), tenant_id, device_profile.clone(), true, t).encode(),
            DeviceProfileEvent::updated(device_profile).encode(),
            DeviceProfileEvent::made_default().encode(),
            DeviceProfileEvent::default_cleared().encode(),
            DeviceProfileEvent::deleted().encode(),
            AssetProfileEvent::created(id(14), tenant_id, asset_profile.clone(), false, t).encode(),
            AssetProfileEvent::updated(asset_profile).encode(),
            AssetProfileEvent::made_default().encode(),
            AssetProfileEvent::default_cleared().encode(),
            AssetProfileEvent::deleted().encode(),
        ]);
        events
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

#[cfg(test)]
mod telemetry_hourly_tests {
    use deltalake_core::arrow::array::{AsArray as _, RecordBatch};
    use deltalake_core::arrow::datatypes::{Float64Type, Int64Type};

    use super::*;
    use thinglake_lake::rollup::{HOUR_MS, merge};
    use thinglake_domain::telemetry::{KvEntry, TelemetryData, TelemetryMessage, TsBatch};
    use thinglake_domain::{Actor, EntityType};
    use uuid::Uuid;

    fn message(seq: u64, entity: Uuid, points: &[(i64, &str, KvValue)]) -> LogMessage {
        let batches = points
            .iter()
            .map(|(ts, key, value)| TsBatch { ts: *ts, values: vec![KvEntry { key: (*key).to_string(), value: value.clone() }] })
            .collect();
        let message = TelemetryMessage::new(
            Uuid::nil(),
            EntityType::Device,
            entity,
            0,
            Actor::system(),
            TelemetryData::Timeseries { batches },
        );
        LogMessage { seq, subject: "tel".to_string(), payload: serde_json::to_vec(&message).expect("json").into() }
    }

    fn decode(messages: &[LogMessage]) -> RecordBatch {
        let mut projection = TelemetryHourlyProjection;
        let mut rows = RowBuilder::new(table::telemetry_hourly().schema);
        for m in messages {
            projection.decode(m, &mut rows).expect("readable");
        }
        rows.finish().expect("batch")
    }

    fn longs(batch: &RecordBatch, name: &str) -> Vec<Option<i64>> {
        batch.column_by_name(name).expect("column").as_primitive::<Int64Type>().iter().collect()
    }

    fn doubles(batch: &RecordBatch, name: &str) -> Vec<Option<f64>> {
        batch.column_by_name(name).expect("column").as_primitive::<Float64Type>().iter().collect()
    }

    #[test]
    fn points_of_one_series_and_hour_merge_into_one_row_whatever_the_split() {
        let (a, b) = (Uuid::from_u128(2), Uuid::from_u128(1));
        let h = 1_700_000_000_000 / HOUR_MS * HOUR_MS;
        let messages = [
            message(1, a, &[(h + 1, "t", KvValue::Long(5)), (h + 2, "t", KvValue::Double(1.5))]),
            message(2, a, &[(h + 3, "t", KvValue::String("x".into())), (h + HOUR_MS, "t", KvValue::Long(7))]),
            message(3, b, &[(h + 10, "t", KvValue::Long(-3))]),
            message(4, a, &[(h + 20, "t", KvValue::Long(9)), (h + 30, "u", KvValue::Bool(true))]),
        ];
        let all = merge(&[decode(&messages)]).expect("merged");
        // Merging merged parts gives the same rows as merging every point at once.
        let parts = merge(&[decode(&messages[..2]), decode(&messages[2..])]).expect("merged");
        let twice = merge(&[merge(&[decode(&messages[..1])]).expect("m")[0].clone(), decode(&messages[1..])]).expect("m");
        assert_eq!(all, parts);
        assert_eq!(all, twice);
        let rows = &all[0];
        // Sorted by entity: b (…01) first, then a's t@h, t@h+1h, u@h.
        let ids: Vec<String> = rows.column_by_name("entity_id").expect("c").as_string::<i32>().iter().map(|s| s.unwrap_or_default().to_string()).collect();
        assert_eq!(ids, [b.to_string(), a.to_string(), a.to_string(), a.to_string()]);
        assert_eq!(longs(rows, "ts"), [Some(h), Some(h), Some(h + HOUR_MS), Some(h)]);
        assert_eq!(longs(rows, "count"), [Some(1), Some(4), Some(1), Some(1)]);
        assert_eq!(longs(rows, "long_count"), [Some(1), Some(2), Some(1), Some(0)]);
        assert_eq!(longs(rows, "double_count"), [Some(0), Some(1), Some(0), Some(0)]);
        assert_eq!(longs(rows, "long_sum"), [Some(-3), Some(14), Some(7), Some(0)]);
        assert_eq!(longs(rows, "long_min"), [Some(-3), Some(5), Some(7), None]);
        assert_eq!(longs(rows, "long_max"), [Some(-3), Some(9), Some(7), None]);
        assert_eq!(doubles(rows, "double_sum"), [Some(0.0), Some(1.5), Some(0.0), Some(0.0)]);
        assert_eq!(doubles(rows, "double_min"), [None, Some(1.5), None, None]);
        assert_eq!(longs(rows, "seq"), [Some(3), Some(4), Some(2), Some(4)]);
    }
}
