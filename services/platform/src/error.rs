//! Errors of the application layer: rejected commands, access, conflicts and infrastructure,
//! kept apart so each maps to its own status in one place per transport.

use std::fmt;

use thinglake_domain::{DomainError, EntityType};
use uuid::Uuid;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command was rejected by the domain rules (bad input, name taken, ...).
    #[error(transparent)]
    Rejected(#[from] DomainError),
    /// The entity does not exist (or is deleted) as far as the caller may know.
    #[error("requested item wasn't found: {entity_type} {id}")]
    NotFound { entity_type: EntityType, id: Uuid },
    /// The caller's role or tenant does not allow this.
    #[error("you don't have permission to perform this operation")]
    Forbidden,
    /// Bad or missing credentials.
    #[error("{reason}")]
    Unauthorized { reason: String },
    /// Too many failed sign-ins of this account or from this address: refused without checking
    /// the password until `retry_after` has passed.
    #[error("too many failed sign-in attempts, try again later")]
    SignInThrottled { retry_after: std::time::Duration },
    /// Every password-hashing slot stayed busy for the whole wait; nothing was checked.
    #[error("too many sign-ins at once, try again later")]
    PasswordHashingBusy { retry_after: std::time::Duration },
    /// A new password does not satisfy the password policy (ThingsBoard's message).
    #[error("{reason}")]
    PasswordViolation { reason: String },
    /// The caller's token has expired.
    #[error("token has expired")]
    TokenExpired,
    /// The entity changed since the caller read it (a stale `version`).
    #[error("{entity_type} {id} was already changed by someone else")]
    VersionConflict { entity_type: EntityType, id: Uuid },
    /// A device or REST payload is not valid telemetry or attributes JSON; nothing was stored.
    #[error("{reason}")]
    BadPayload { reason: String },
    /// A payload is larger than the configured limit; nothing was stored.
    #[error("payload of {size} bytes exceeds the limit of {limit} bytes")]
    PayloadTooLarge { size: usize, limit: usize },
    /// A device or its tenant sends faster than its rate limit; nothing was stored.
    #[error("{scope} message rate limit exceeded; retry in {} ms", .retry_after.as_millis())]
    RateLimited { scope: LimitScope, retry_after: std::time::Duration },
    /// The tenant holds as many entities of this type as its quota allows.
    #[error("{} limit exceeded: the tenant may have at most {limit}", capitalized(.entity.plural()))]
    EntityLimit { entity: LimitedEntity, limit: usize },
    /// Attributes or telemetry of this entity type are not supported.
    #[error("telemetry of entity type {entity_type} is not supported")]
    UnsupportedEntityType { entity_type: EntityType },
    /// This attribute scope cannot be written through this path (client attributes come from the
    /// device).
    #[error("invalid attribute scope: {scope}")]
    ScopeNotWritable { scope: String },
    /// A time-series or SQL query was refused or failed.
    #[error(transparent)]
    Query(#[from] thinglake_queries::QueryError),
    /// Time-series history and SQL are not available on this node (no query engine attached).
    #[error("time-series queries are not available on this node")]
    QueryEngineUnavailable,
    /// The log, claim store or another dependency failed.
    #[error(transparent)]
    Infra(#[from] thinglake_infra::Error),
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

impl Error {
    pub fn not_found(entity_type: EntityType, id: Uuid) -> Self {
        Error::NotFound { entity_type, id }
    }

    pub fn bad_payload(reason: impl Into<String>) -> Self {
        Error::BadPayload { reason: reason.into() }
    }

    pub fn unauthorized(reason: impl Into<String>) -> Self {
        Error::Unauthorized { reason: reason.into() }
    }
}

/// Whose rate a refused message exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitScope {
    Device,
    Tenant,
}

impl fmt::Display for LimitScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LimitScope::Device => "device",
            LimitScope::Tenant => "tenant",
        })
    }
}

/// Entity types with a per-tenant cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitedEntity {
    Device,
    Asset,
    Customer,
    Dashboard,
    Profile,
}

impl LimitedEntity {
    /// The plural in messages (`Devices limit exceeded`).
    pub fn plural(self) -> &'static str {
        match self {
            LimitedEntity::Device => "devices",
            LimitedEntity::Asset => "assets",
            LimitedEntity::Customer => "customers",
            LimitedEntity::Dashboard => "dashboards",
            LimitedEntity::Profile => "profiles",
        }
    }
}
