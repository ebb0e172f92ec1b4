//! Errors of the query layer: refused or invalid queries (the caller's to fix) kept apart from
//! failures of the lake or the engine.

use std::time::Duration;

use deltalake_core::DeltaTableError;
use deltalake_core::arrow::error::ArrowError;
use deltalake_core::datafusion::error::DataFusionError;

pub type Result<T, E = QueryError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// A time-series query with parameters ThingsBoard would refuse too.
    #[error("invalid time-series query: {reason}")]
    InvalidTimeseries { reason: String },
    /// A time-series query shape this version does not answer yet.
    #[error("{what} is not supported yet")]
    NotSupported { what: String },
    /// A SQL statement that is not a single read-only query.
    #[error("statement refused: {reason}")]
    Refused { reason: String },
    /// The SQL text does not parse, or names an unknown table, column or function.
    #[error("invalid query: {source}")]
    Invalid { source: Box<DataFusionError> },
    /// The query ran longer than the configured limit and was cancelled.
    #[error("query exceeded the time limit of {limit:?}")]
    Timeout { limit: Duration },
    /// The result has more rows than the configured limit.
    #[error("query result exceeds the limit of {limit} rows: add a LIMIT or aggregate")]
    TooManyRows { limit: usize },
    /// The result is larger than the configured limit (measured while it streams).
    #[error("query result exceeds the limit of {limit}: select fewer columns or rows, or aggregate")]
    ResultTooLarge { limit: String },
    /// As many queries as the limit of `scope` allows are running; the caller may retry later.
    #[error("too many queries running for {scope} (at most {limit} at once): retry when one has finished")]
    Busy { scope: &'static str, limit: usize },
    /// The query needed more memory than the configured limit.
    #[error("query exceeded the memory limit: {source}")]
    Memory { source: Box<DataFusionError> },
    /// Opening or refreshing a lake table failed.
    #[error("reading lake table {table}: {source}")]
    Lake { table: &'static str, source: Box<DeltaTableError> },
    /// The lake location could not be read.
    #[error("opening lake table {table}: {source}")]
    LakeOpen { table: &'static str, source: Box<thinglake_lake::LakeError> },
    /// Planning or running a query failed for a reason other than the query itself.
    #[error("running query: {source}")]
    Execution { source: Box<DataFusionError> },
    /// The query task stopped without an answer (engine shutting down).
    #[error("query task ended without a result: {source}")]
    Task {
        #[source]
        source: tokio::task::JoinError,
    },
    /// A query runtime's threads could not be started.
    #[error("starting the {name} runtime: {source}")]
    Runtime {
        name: String,
        #[source]
        source: std::io::Error,
    },
    /// The engine has no table of that name (a view asked for a table it was not given).
    #[error("no lake table {name}")]
    UnknownTable { name: String },
    /// A lake table needs Delta reader features Thinglake does not write (`features`).
    #[error("lake table {table} uses Delta reader features ({features}) Thinglake does not write")]
    UnsupportedTable { table: &'static str, features: String },
    /// Building, casting or rendering Arrow data failed (`what` was being done).
    #[error("{what}: {source}")]
    Arrow {
        what: String,
        #[source]
        source: ArrowError,
    },
    /// A result lacks a column its reader expects.
    #[error("column {name} missing from a result")]
    ColumnMissing { name: String },
    /// The answer could not be encoded in the asked format (JSON, Arrow IPC, Parquet).
    #[error("encoding the answer as {format}: {source}")]
    Encode {
        format: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl QueryError {
    /// Whether the caller can fix it by changing the query (an HTTP 4xx).
    pub fn is_caller_error(&self) -> bool {
        matches!(
            self,
            QueryError::InvalidTimeseries { .. }
                | QueryError::NotSupported { .. }
                | QueryError::Refused { .. }
                | QueryError::Invalid { .. }
                | QueryError::Timeout { .. }
                | QueryError::TooManyRows { .. }
                | QueryError::ResultTooLarge { .. }
                | QueryError::Busy { .. }
                | QueryError::Memory { .. }
        )
    }

    pub(crate) fn execution(source: DataFusionError) -> Self {
        QueryError::Execution { source: Box::new(source) }
    }

    pub(crate) fn lake(table: &'static str, source: DeltaTableError) -> Self {
        QueryError::Lake { table, source: Box::new(source) }
    }

    /// Wraps an Arrow error of `what` (for `map_err`).
    pub(crate) fn arrow(what: impl Into<String>) -> impl FnOnce(ArrowError) -> Self {
        move |source| QueryError::Arrow { what: what.into(), source }
    }

    pub(crate) fn invalid_timeseries(reason: impl Into<String>) -> Self {
        QueryError::InvalidTimeseries { reason: reason.into() }
    }

    pub(crate) fn refused(reason: impl Into<String>) -> Self {
        QueryError::Refused { reason: reason.into() }
    }

    /// Sorts an engine error: what the query got wrong versus what failed underneath.
    pub(crate) fn from_datafusion(e: DataFusionError) -> Self {
        let source = Box::new(e);
        match source.find_root() {
            DataFusionError::ResourcesExhausted(_) => QueryError::Memory { source },
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_) => QueryError::Invalid { source },
            _ => QueryError::Execution { source },
        }
    }
}
