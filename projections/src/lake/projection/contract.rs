//! What a lake projection is: the log messages it reads, the [`Projection`] trait the runner
//! and the rebuild drive it through, an entity event as a row of the `events` table
//! ([`ArchivedEvent`]), and the reading of an event envelope out of a message.

use serde_json::Value;
use thinglake_domain::{Actor, EventEnvelope};
use thinglake_infra::subjects::Subjects;
use thinglake_lake::table::{RowBuilder, TableSpec};
use uuid::Uuid;

use crate::error::DecodeError;

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
    fn decode(&mut self, message: &LogMessage, rows: &mut RowBuilder) -> Result<(), DecodeError>;
    /// Whether the projection's state is kept per entity (the last token of the subject): then
    /// its messages can be decoded on several threads only when split by entity.
    fn state_per_entity(&self) -> bool {
        self.needs_priming()
    }
    /// Appends the rows of an entity event read back from the `events` table, for projections
    /// of the events stream that are rebuilt from it ([`Archive::EventsTable`](super::Archive::EventsTable)).
    fn decode_event(&mut self, _seq: u64, _event: &EventEnvelope, _rows: &mut RowBuilder) -> Result<(), DecodeError> {
        Ok(())
    }
    /// The columns of the `events` table that [`Self::decode_archived`] reads (`None`: all of
    /// them). A rebuild decodes only these from the Parquet files; the other fields of the
    /// [`ArchivedEvent`] it passes are empty.
    fn archived_columns(&self) -> Option<&'static [&'static str]> {
        None
    }
    /// Like [`Self::decode_event`], with the event as a row of the `events` table.
    fn decode_archived(&mut self, event: &ArchivedEvent<'_>, rows: &mut RowBuilder) -> Result<(), DecodeError> {
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
    pub fn envelope(&self) -> Result<EventEnvelope, DecodeError> {
        let uuid = |field: &'static str, text: &str| Uuid::parse_str(text).map_err(|source| DecodeError::Id { field, source });
        Ok(EventEnvelope {
            event_id: uuid("event_id", self.event_id)?,
            tenant_id: uuid("tenant_id", self.tenant_id)?,
            entity_type: self.entity_type.parse()?,
            entity_id: uuid("entity_id", self.entity_id)?,
            version: u64::try_from(self.version).map_err(|source| DecodeError::OutOfRange { field: "version", source })?,
            event_type: self.event_type.to_string(),
            schema_version: u32::try_from(self.schema_version)
                .map_err(|source| DecodeError::OutOfRange { field: "schema_version", source })?,
            occurred_at: self.occurred_at,
            recorded_at: self.recorded_at,
            actor: Actor {
                kind: serde_json::from_value(Value::String(self.actor_kind.to_string()))
                    .map_err(|source| DecodeError::Json { field: "actor_kind", source })?,
                id: self.actor_id.and_then(|id| Uuid::parse_str(id).ok()),
                name: self.actor_name.map(str::to_string),
            },
            payload: serde_json::from_str(self.payload).map_err(|source| DecodeError::Json { field: "payload", source })?,
        })
    }
}

/// The envelope of an events-stream message, or why it is none this build reads.
pub(super) fn envelope(message: &LogMessage) -> Result<EventEnvelope, DecodeError> {
    let parsed: EventEnvelope = serde_json::from_slice(&message.payload)
        .map_err(|source| DecodeError::NotA { what: "an event envelope", source })?;
    check_event_schema(parsed.schema_version, &parsed.event_type)?;
    Ok(parsed)
}

/// Refuses an event of a schema version newer than this build reads.
pub(super) fn check_event_schema(version: u32, event_type: &str) -> Result<(), DecodeError> {
    if version > KNOWN_EVENT_SCHEMA_VERSION {
        return Err(DecodeError::EventSchemaVersion {
            version,
            event_type: event_type.to_string(),
            known: KNOWN_EVENT_SCHEMA_VERSION,
        });
    }
    Ok(())
}

pub(crate) fn seq(message: &LogMessage) -> i64 {
    i64::try_from(message.seq).unwrap_or(i64::MAX)
}
