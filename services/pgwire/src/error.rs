//! Platform and query errors as PostgreSQL `ErrorResponse`s: the SQLSTATE tells clients what
//! went wrong (`42501` a refused statement, `42P01` an unknown table, `57014` a cancelled or
//! timed-out query, …), the message is the platform's.

use pgwire::error::{ErrorInfo, PgWireError, SEVERITY_ERROR};
use thinglake_platform::Error as PlatformError;
use thinglake_queries::QueryError;
use thinglake_queries::datafusion::common::SchemaError;
use thinglake_queries::datafusion::error::DataFusionError;
use tracing::{debug, error};

/// SQLSTATE codes this server sends.
pub mod sqlstate {
    pub const INVALID_PASSWORD: &str = "28P01";
    pub const INVALID_AUTHORIZATION: &str = "28000";
    pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
    pub const UNDEFINED_TABLE: &str = "42P01";
    pub const UNDEFINED_COLUMN: &str = "42703";
    pub const UNDEFINED_FUNCTION: &str = "42883";
    pub const UNDEFINED_OBJECT: &str = "42704";
    pub const SYNTAX_ERROR: &str = "42601";
    pub const INVALID_QUERY: &str = "42000";
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    pub const QUERY_CANCELED: &str = "57014";
    pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
    pub const OUT_OF_MEMORY: &str = "53200";
    pub const INSUFFICIENT_RESOURCES: &str = "53000";
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    pub const CANNOT_CONNECT_NOW: &str = "57P03";
    pub const REJECTED_CONNECTION: &str = "08004";
    pub const INVALID_PARAMETER: &str = "22023";
    pub const INTERNAL_ERROR: &str = "XX000";
}

/// An `ERROR` with a SQLSTATE and message.
pub fn user_error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(SEVERITY_ERROR.to_owned(), code.to_owned(), message.into())))
}

/// A failed SQL use case as the client sees it.
pub fn from_platform(e: PlatformError) -> PgWireError {
    let (code, message) = match &e {
        PlatformError::Query(query) => return from_query(query),
        PlatformError::Forbidden => {
            (sqlstate::INSUFFICIENT_PRIVILEGE, "permission denied: SQL is for tenant administrators".to_string())
        }
        PlatformError::Unauthorized { .. } | PlatformError::TokenExpired => (sqlstate::INVALID_AUTHORIZATION, e.to_string()),
        PlatformError::QueryEngineUnavailable => (sqlstate::CANNOT_CONNECT_NOW, e.to_string()),
        PlatformError::SignInThrottled { .. } | PlatformError::PasswordHashingBusy { .. } => {
            (sqlstate::REJECTED_CONNECTION, e.to_string())
        }
        _ => {
            error!(error = %e, "SQL over the PostgreSQL protocol failed");
            (sqlstate::INTERNAL_ERROR, format!("internal error: {e}"))
        }
    };
    user_error(code, message)
}

/// A query error with the SQLSTATE PostgreSQL would send for it.
pub fn from_query(e: &QueryError) -> PgWireError {
    let code = match e {
        QueryError::Refused { .. } => sqlstate::INSUFFICIENT_PRIVILEGE,
        QueryError::Invalid { source } => invalid_code(source),
        QueryError::Timeout { .. } => sqlstate::QUERY_CANCELED,
        QueryError::TooManyRows { .. } | QueryError::ResultTooLarge { .. } => sqlstate::PROGRAM_LIMIT_EXCEEDED,
        QueryError::Busy { .. } => sqlstate::INSUFFICIENT_RESOURCES,
        QueryError::Memory { .. } => sqlstate::OUT_OF_MEMORY,
        QueryError::NotSupported { .. } => sqlstate::FEATURE_NOT_SUPPORTED,
        QueryError::InvalidTimeseries { .. } => sqlstate::INVALID_PARAMETER,
        QueryError::Execution { .. }
        | QueryError::Lake { .. }
        | QueryError::LakeOpen { .. }
        | QueryError::Task { .. }
        | QueryError::Runtime { .. }
        | QueryError::UnknownTable { .. }
        | QueryError::UnsupportedTable { .. }
        | QueryError::Arrow { .. }
        | QueryError::ColumnMissing { .. }
        | QueryError::Encode { .. } => {
            error!(error = %e, "SQL over the PostgreSQL protocol failed");
            sqlstate::INTERNAL_ERROR
        }
    };
    debug!(code, error = %e, "SQL statement answered with an error");
    user_error(code, e.to_string())
}

/// What a statement DataFusion refused to plan got wrong.
fn invalid_code(source: &DataFusionError) -> &'static str {
    match source.find_root() {
        DataFusionError::SQL(..) => sqlstate::SYNTAX_ERROR,
        DataFusionError::SchemaError(error, _) => match error.as_ref() {
            SchemaError::FieldNotFound { .. } => sqlstate::UNDEFINED_COLUMN,
            _ => sqlstate::INVALID_QUERY,
        },
        DataFusionError::NotImplemented(_) => sqlstate::FEATURE_NOT_SUPPORTED,
        // DataFusion says `table '…' not found`, `table function '…' not found` and `Invalid
        // function '…'` only in words.
        DataFusionError::Plan(message) if message.starts_with("table '") && message.contains("not found") => {
            sqlstate::UNDEFINED_TABLE
        }
        DataFusionError::Plan(message) if message.starts_with("Invalid function") || message.starts_with("table function '") => {
            sqlstate::UNDEFINED_FUNCTION
        }
        _ => sqlstate::INVALID_QUERY,
    }
}
