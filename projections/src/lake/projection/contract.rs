//! What a lake projection is: the log messages it reads, the [`Projection`] trait the runner
//! and the rebuild drive it through, an entity event as a row of the `events` table
//! ([`ArchivedEvent`]), and the reading of an event envelope out of a message.

use serde_json::Value;
use thinglake_domain::{Actor, EventEnvelope};
use thinglake_infra::subjects::Subjects;
use thinglake_lake::table::{RowBuilder, TableSpec};
use uuid::Uuid;

/// Highest envelope schema version the lake reads; newer events are dead-lettered until the
/// projection learns them.
pub const KNOWN_EVENT_SCHEMA_VERSION: u32 = 1;

/// One message of the log, as every reader of it yields it.
pub use thinglake_infra::log::LogMessage;

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
    /// of the events stream that are rebuilt from it ([`Archive::EventsTable`](super::Archive::EventsTable)).
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
            entity_type: self.entity_type.parse().map_err(|e: thinglake_domain::UnknownEntityType| e.to_string())?,
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

/// The envelope of an events-stream message, or why it is none this build reads.
pub(super) fn envelope(message: &LogMessage) -> Result<EventEnvelope, String> {
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

pub(crate) fn seq(message: &LogMessage) -> i64 {
    i64::try_from(message.seq).unwrap_or(i64::MAX)
}
