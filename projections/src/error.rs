//! Errors of the projections: [`ProjectionError`] for the work on the log and the lake (the
//! runner, rebuild, trim and seeding), wrapping the lake's storage errors ([`LakeError`]) and the
//! log's ([`thinglake_infra::Error`]) as their source; [`DecodeError`] for a message a projection
//! cannot read, which sends it to the dead letters rather than failing the projection.

use std::num::TryFromIntError;

use thinglake_domain::telemetry::TelemetryError;
use thinglake_domain::{DomainError, UnknownEntityType};
use thinglake_lake::LakeError;
use uuid::Uuid;

pub type Result<T, E = ProjectionError> = std::result::Result<T, E>;

/// A failure of a library call carried as a source (the NATS client's errors have one type per
/// call).
pub use thinglake_infra::error::BoxError;

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The lake's storage failed (a Delta commit, a Parquet file, the location).
    #[error(transparent)]
    Lake(#[from] LakeError),
    /// Reading the log for `projection` failed.
    #[error("projection {projection} on the log: {source}")]
    Log {
        projection: String,
        #[source]
        source: thinglake_infra::Error,
    },
    /// A JetStream call of `projection` (stream info, consumer, acknowledgement) failed.
    #[error("projection {projection} on the log: {source}")]
    Nats {
        projection: String,
        #[source]
        source: BoxError,
    },
    /// A task decoding or encoding rows of `table` panicked or was cancelled.
    #[error("background work on table {table} did not finish: {source}")]
    Task {
        table: String,
        #[source]
        source: tokio::task::JoinError,
    },
    /// The runner's projection did not come back from a decoding task that failed before.
    #[error("background work on table {table} did not finish: projection lost")]
    ProjectionLost { table: String },
    /// The table was deleted while it was being rebuilt.
    #[error("table {table} cannot be rebuilt: the table vanished during the rebuild")]
    RebuildTableVanished { table: String },
    /// The log lost sequences while the rebuild read them: run it again.
    #[error(
        "table {table} cannot be rebuilt: the log lost sequences between {from} and {to} during the rebuild \
         (trimmed or deleted meanwhile?); run it again"
    )]
    RebuildLogGap { table: String, from: u64, to: u64 },
    /// The log skipped sequences while the rebuild read them: run it again.
    #[error(
        "table {table} cannot be rebuilt: the log skipped from sequence {after} to {seq} during the rebuild \
         (trimmed meanwhile?); run it again"
    )]
    RebuildLogSkipped { table: String, after: u64, seq: u64 },
    /// The table the rebuild starts from (`held`: what it holds) stops before the log begins.
    #[error("table {table} cannot be rebuilt: the log starts at sequence {first} and the {held} only up to {archived}")]
    RebuildArchiveShort { table: String, first: u64, held: &'static str, archived: u64 },
    /// A batch of the `events` table lacks a column the projection reads.
    #[error("events table without {column}")]
    EventsColumnMissing { column: String },
    /// A column of the `events` table has another Arrow type than the projection reads.
    #[error("events table column {column} is not {expected}")]
    EventsColumnType { column: String, expected: &'static str },
    /// A batch of `table` read at start lacks a column.
    #[error("reading table {table}: no column {column}")]
    ColumnMissing { table: String, column: &'static str },
    /// A value of `table` read at start does not parse as its column's type.
    #[error("reading table {table}: {column} {value:?}: {source}")]
    BadValue {
        table: String,
        column: &'static str,
        value: String,
        #[source]
        source: BoxError,
    },
    /// Reading or purging the stream to trim it failed.
    #[error("stream {stream} cannot be trimmed: {source}")]
    Trim {
        stream: String,
        #[source]
        source: BoxError,
    },
    /// A trim the stream does not allow (the events stream is never trimmed); `reason` says why.
    #[error("stream {stream} is not trimmed: {reason}")]
    TrimRefused { stream: String, reason: String },
    #[error(
        "stream {stream} cannot be trimmed before sequence {requested}: the lake has committed it only up to {floor} \
         (projection {projection}); trim before {floor}+1 at most, or clip"
    )]
    TrimBeyondLake { stream: String, requested: u64, floor: u64, projection: String },
    #[error("stream {stream} lets JetStream delete messages the lake may not have committed ({limits})")]
    UnsafeStreamLimits { stream: String, limits: String },
}

impl ProjectionError {
    /// Wraps a failure of `projection` reading the log (for `map_err`).
    pub fn log(projection: &str) -> impl FnOnce(thinglake_infra::Error) -> ProjectionError + '_ {
        move |source| ProjectionError::Log { projection: projection.to_string(), source }
    }

    /// Wraps a failed JetStream call of `projection` (for `map_err`).
    pub fn nats<E: Into<BoxError>>(projection: &str) -> impl FnOnce(E) -> ProjectionError + '_ {
        move |source| ProjectionError::Nats { projection: projection.to_string(), source: source.into() }
    }

    /// Wraps a failed decoding or encoding task of `table` (for `map_err`).
    pub fn task(table: &str) -> impl FnOnce(tokio::task::JoinError) -> ProjectionError + '_ {
        move |source| ProjectionError::Task { table: table.to_string(), source }
    }

    /// Wraps an Arrow error building or reading rows of `table` (for `map_err`).
    pub fn arrow(table: &str) -> impl FnOnce(deltalake_core::arrow::error::ArrowError) -> ProjectionError + '_ {
        move |source| ProjectionError::Lake(LakeError::arrow(table)(source))
    }

    /// Whether the same step may succeed later (storage or NATS unavailable) rather than being
    /// wrong by construction.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProjectionError::Lake(e) => e.is_retryable(),
            ProjectionError::Log { .. }
            | ProjectionError::Nats { .. }
            | ProjectionError::Task { .. }
            | ProjectionError::Trim { .. } => true,
            _ => false,
        }
    }
}

/// Why a projection cannot read a message (or a row of the `events` table): the message goes to
/// the dead letters with this as its reason.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The payload is not JSON of the expected type (`what`: an event envelope, a telemetry
    /// message).
    #[error("not {what}: {source}")]
    NotA {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// An event of a newer schema version than this build reads.
    #[error("unknown event schema version {version} of {event_type} (this build reads up to v{known})")]
    EventSchemaVersion { version: u32, event_type: String, known: u32 },
    /// A telemetry message of a schema version this build does not read.
    #[error("unknown telemetry schema version {version} (this build reads v{known})")]
    TelemetrySchemaVersion { version: u32, known: u32 },
    /// A time-series point the lake cannot partition by day.
    #[error("point not writable: {source}")]
    PointNotWritable {
        #[source]
        source: TelemetryError,
    },
    /// A field (or column) that is not the JSON it should hold.
    #[error("{field}: {source}")]
    Json {
        field: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// An id field that is not a UUID.
    #[error("{field}: {source}")]
    Id {
        field: &'static str,
        #[source]
        source: uuid::Error,
    },
    /// A number out of its field's range.
    #[error("{field}: {source}")]
    OutOfRange {
        field: &'static str,
        #[source]
        source: TryFromIntError,
    },
    #[error(transparent)]
    EntityType(#[from] UnknownEntityType),
    /// An event the domain does not read (unknown type or payload).
    #[error(transparent)]
    Event(#[from] DomainError),
    /// An update or deletion of a relation whose creation the projection has not seen.
    #[error("relation {relation} has no creation event")]
    NoCreation { relation: Uuid },
}
