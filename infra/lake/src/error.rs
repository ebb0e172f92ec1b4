//! Errors of the lake: of its storage, and of the projections and log work writing it. Each
//! says whether retrying can help.

use deltalake_core::DeltaTableError;
use deltalake_core::arrow::error::ArrowError;

pub type Result<T, E = LakeError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("lake location {location} is not usable: {reason}")]
    Location { location: String, reason: String },
    #[error("delta table {table}: {source}")]
    Delta {
        table: String,
        /// Boxed: a Delta error is large, and every result of the lake carries this type.
        #[source]
        source: Box<DeltaTableError>,
    },
    #[error("building a record batch of table {table}: {source}")]
    Arrow {
        table: String,
        #[source]
        source: ArrowError,
    },
    #[error("projection {projection} on the log: {reason}")]
    Log { projection: String, reason: String },
    #[error("background work on table {table} did not finish: {reason}")]
    Task { table: String, reason: String },
    /// The Delta writer panicked on the rows it was given (a value it cannot write).
    #[error("writing table {table} panicked: {reason}")]
    WritePanicked { table: String, reason: String },
    #[error("unknown projection {name} (known: {known})")]
    UnknownProjection { name: String, known: String },
    #[error("table {table} cannot be rebuilt: {reason}")]
    Rebuild { table: String, reason: String },
    #[error("stream {stream} cannot be trimmed: {reason}")]
    Trim { stream: String, reason: String },
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

impl LakeError {
    /// Wraps a Delta error of `table` (for `map_err`).
    pub fn delta(table: &str) -> impl FnOnce(DeltaTableError) -> LakeError + '_ {
        move |source| LakeError::Delta { table: table.to_string(), source: Box::new(source) }
    }

    /// Wraps an Arrow error building or reading rows of `table` (for `map_err`).
    pub fn arrow(table: &str) -> impl FnOnce(ArrowError) -> LakeError + '_ {
        move |source| LakeError::Arrow { table: table.to_string(), source }
    }

    /// Wraps a failure of `projection` on the log (for `map_err`).
    pub fn log(projection: &str) -> impl FnOnce(String) -> LakeError + '_ {
        move |reason| LakeError::Log { projection: projection.to_string(), reason }
    }

    /// Whether the same step may succeed later (storage or NATS unavailable) rather than being
    /// wrong by construction.
    pub fn is_retryable(&self) -> bool {
        matches!(self, LakeError::Delta { .. } | LakeError::Log { .. } | LakeError::Task { .. } | LakeError::Trim { .. })
    }
}
