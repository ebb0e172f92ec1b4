//! Errors of the lake's storage: its location, the Delta tables, the Parquet files and the
//! work writing them. Each keeps its cause as its `source` and says whether retrying can help.
//! The failures of the projections writing the lake (the log, rebuilds, trims) are the
//! projections crate's `ProjectionError`, which wraps this one.

use deltalake_core::DeltaTableError;
use deltalake_core::arrow::error::ArrowError;

pub type Result<T, E = LakeError> = std::result::Result<T, E>;

/// The cause of a failed read of a data file (the object store's or Parquet's error).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    /// A location refused as configured (an unsupported scheme, S3 settings for a local
    /// directory, a store without conditional writes); `reason` says what to change.
    #[error("lake location {location} is not usable: {reason}")]
    Location { location: String, reason: String },
    /// The local directory of the lake or a table cannot be created or resolved.
    #[error("lake location {location} is not usable: {source}")]
    LocationIo {
        location: String,
        #[source]
        source: std::io::Error,
    },
    /// A table's URL cannot be made from the lake's.
    #[error("lake location {location} is not usable: {source}")]
    LocationUrl {
        location: String,
        #[source]
        source: url::ParseError,
    },
    /// The S3 bucket refused or failed the start-up check (`what` was being checked).
    #[error("lake location {location} is not usable: {what}: {source}")]
    Store {
        location: String,
        what: String,
        #[source]
        source: object_store::Error,
    },
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
    /// Reading a data file of `table` from the store or decoding its Parquet failed.
    #[error("table {table}: reading {path}: {source}")]
    ReadFile {
        table: String,
        path: String,
        #[source]
        source: BoxError,
    },
    /// A data file lacks a column of the table's schema.
    #[error("table {table}: column {column} missing from a data file")]
    ColumnMissing { table: String, column: String },
    /// A task writing or merging rows of `table` was cancelled (or panicked outside the writer).
    #[error("background work on table {table} did not finish: {source}")]
    Task {
        table: String,
        #[source]
        source: tokio::task::JoinError,
    },
    /// The Delta writer panicked on the rows it was given (a value it cannot write).
    #[error("writing table {table} panicked: {source}")]
    WritePanicked {
        table: String,
        #[source]
        source: tokio::task::JoinError,
    },
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

    /// Wraps a failed task on rows of `table` (for `map_err`).
    pub fn task(table: &str) -> impl FnOnce(tokio::task::JoinError) -> LakeError + '_ {
        move |source| LakeError::Task { table: table.to_string(), source }
    }

    /// Whether the same step may succeed later (storage unavailable) rather than being wrong
    /// by construction.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            LakeError::Delta { .. } | LakeError::Task { .. } | LakeError::ReadFile { .. } | LakeError::Store { .. }
        )
    }
}
