//! ThingsBoard's error JSON, and the one place where errors become HTTP statuses.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use thinglake_domain::DomainError;
use thinglake_platform::Error as PlatformError;
use tracing::{debug, error};

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// ThingsBoard's error codes (`errorCode` in the error JSON).
pub mod code {
    pub const GENERAL: u16 = 2;
    pub const AUTHENTICATION: u16 = 10;
    pub const JWT_TOKEN_EXPIRED: u16 = 11;
    pub const PERMISSION_DENIED: u16 = 20;
    pub const INVALID_ARGUMENTS: u16 = 30;
    pub const BAD_REQUEST_PARAMS: u16 = 31;
    pub const ITEM_NOT_FOUND: u16 = 32;
    pub const TOO_MANY_REQUESTS: u16 = 33;
    pub const VERSION_CONFLICT: u16 = 35;
    pub const PASSWORD_VIOLATION: u16 = 45;
    pub const ENTITIES_LIMIT_EXCEEDED: u16 = 41;
    pub const DATABASE: u16 = 46;
}

/// An error answered as `{"status", "message", "errorCode", "timestamp"}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error_code: u16,
    pub message: String,
    /// Seconds after which a retry may succeed (503, 429).
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, error_code: u16, message: impl Into<String>) -> Self {
        Self { status, error_code, message: message.into(), retry_after: None }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code::BAD_REQUEST_PARAMS, message)
    }

    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code::INVALID_ARGUMENTS, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code::AUTHENTICATION, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code::ITEM_NOT_FOUND, message)
    }

    pub fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN, code::PERMISSION_DENIED, "You don't have permission to perform this operation!")
    }
}

impl From<PlatformError> for ApiError {
    fn from(e: PlatformError) -> Self {
        let e = match e {
            PlatformError::Query(query) => return ApiError::from(query),
            other => other,
        };
        match &e {
            PlatformError::Rejected(domain) => match domain {
                DomainError::NotFound { .. } | DomainError::Deleted { .. } => {
                    ApiError::not_found("Requested item wasn't found!")
                }
                DomainError::Expired { .. } => ApiError::bad_request(capitalize(&domain.to_string())),
                DomainError::UnreadableEvent { .. } => {
                    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, code::GENERAL, e.to_string())
                }
                _ => ApiError::invalid_argument(capitalize(&domain.to_string())),
            },
            PlatformError::NotFound { .. } => ApiError::not_found("Requested item wasn't found!"),
            PlatformError::BadPayload { reason } => ApiError::bad_request(reason.clone()),
            PlatformError::PayloadTooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, code::BAD_REQUEST_PARAMS, capitalize(&e.to_string()))
            }
            PlatformError::UnsupportedEntityType { .. } | PlatformError::ScopeNotWritable { .. } => {
                ApiError::invalid_argument(capitalize(&e.to_string()))
            }
            // ThingsBoard answers both with their own codes: 429 with 33, 403 with 41.
            PlatformError::RateLimited { retry_after, .. } => ApiError {
                retry_after: Some(u32::try_from(retry_after.as_millis().div_ceil(1000)).unwrap_or(u32::MAX).max(1)),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, code::TOO_MANY_REQUESTS, capitalize(&e.to_string()))
            },
            PlatformError::EntityLimit { .. } => {
                ApiError::new(StatusCode::FORBIDDEN, code::ENTITIES_LIMIT_EXCEEDED, capitalize(&e.to_string()))
            }
            PlatformError::Forbidden => ApiError::forbidden(),
            PlatformError::Unauthorized { reason } => ApiError::unauthorized(reason.clone()),
            PlatformError::SignInThrottled { retry_after } => ApiError {
                retry_after: Some(whole_seconds(*retry_after)),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, code::TOO_MANY_REQUESTS, capitalize(&e.to_string()))
            },
            PlatformError::PasswordHashingBusy { retry_after } => ApiError {
                retry_after: Some(whole_seconds(*retry_after)),
                ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code::TOO_MANY_REQUESTS, capitalize(&e.to_string()))
            },
            PlatformError::PasswordViolation { reason } => {
                ApiError::new(StatusCode::BAD_REQUEST, code::PASSWORD_VIOLATION, reason.clone())
            }
            PlatformError::TokenExpired => {
                ApiError::new(StatusCode::UNAUTHORIZED, code::JWT_TOKEN_EXPIRED, "Token has expired")
            }
            PlatformError::VersionConflict { entity_type, .. } => ApiError::new(
                StatusCode::CONFLICT,
                code::VERSION_CONFLICT,
                format!("{} was already changed by someone else", capitalize(&entity_type.token().replace('_', " "))),
            ),
            PlatformError::QueryEngineUnavailable => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code::GENERAL, capitalize(&e.to_string()))
            }
            // Taken out above.
            PlatformError::Query(query) => ApiError::from_query(query),
            PlatformError::Infra(infra) if infra.is_retryable() => ApiError {
                retry_after: Some(1),
                ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code::GENERAL, format!("service unavailable: {infra}"))
            },
            PlatformError::Infra(infra) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, code::DATABASE, format!("internal error: {infra}"))
            }
        }
    }
}

impl ApiError {
    /// A refused or invalid query is the caller's (400), too many at once 429 with `Retry-After`;
    /// a failing lake or engine is ours (500).
    fn from_query(e: &thinglake_queries::QueryError) -> Self {
        if let thinglake_queries::QueryError::Busy { .. } = e {
            return ApiError {
                retry_after: Some(1),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, code::TOO_MANY_REQUESTS, capitalize(&e.to_string()))
            };
        }
        if e.is_caller_error() {
            ApiError::bad_request(capitalize(&e.to_string()))
        } else {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, code::DATABASE, format!("internal error: {e}"))
        }
    }
}

impl From<thinglake_queries::QueryError> for ApiError {
    fn from(e: thinglake_queries::QueryError) -> Self {
        ApiError::from_query(&e)
    }
}

impl From<thinglake_queries::PageError> for ApiError {
    fn from(e: thinglake_queries::PageError) -> Self {
        ApiError::bad_request(capitalize(&e.to_string()))
    }
}

impl From<thinglake_domain::UnknownEntityType> for ApiError {
    fn from(e: thinglake_domain::UnknownEntityType) -> Self {
        DomainError::from(e).into()
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        ApiError::from(PlatformError::Rejected(e))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            error!(status = self.status.as_u16(), message = %self.message, "request failed");
        } else {
            debug!(status = self.status.as_u16(), message = %self.message, "request refused");
        }
        let body = json!({
            "status": self.status.as_u16(),
            "message": self.message,
            "errorCode": self.error_code,
            "timestamp": thinglake_platform::now_ms(),
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        response
    }
}

/// A `Retry-After` in whole seconds, rounded up (at least 1).
fn whole_seconds(d: std::time::Duration) -> u32 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    u32::try_from(secs.max(1)).unwrap_or(u32::MAX)
}

/// ThingsBoard's messages start with a capital letter.
pub fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
