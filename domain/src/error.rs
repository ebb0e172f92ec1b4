//! Why a command was rejected, in the user's terms.

use uuid::Uuid;

use crate::id::{EntityType, UnknownEntityType};

pub type Result<T, E = DomainError> = std::result::Result<T, E>;

/// A rejected command or an unreadable event. Never an infrastructure failure: those live in
/// `thinglake-infra`'s error type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("{field} is required")]
    Required { field: &'static str },
    #[error("{field} is too long: {len} characters, at most {max}")]
    TooLong { field: &'static str, len: usize, max: usize },
    #[error("{field} is invalid: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error(transparent)]
    UnknownEntityType(#[from] UnknownEntityType),
    #[error("{entity_type} with id {id} already exists")]
    AlreadyExists { entity_type: EntityType, id: Uuid },
    #[error("{entity_type} with id {id} is not found")]
    NotFound { entity_type: EntityType, id: Uuid },
    #[error("{entity_type} with id {id} was deleted")]
    Deleted { entity_type: EntityType, id: Uuid },
    #[error("{entity_type} with name '{name}' already exists")]
    NameTaken { entity_type: EntityType, name: String },
    #[error("device with access token '{token}' already exists")]
    TokenTaken { token: String },
    #[error("user with email '{email}' already exists")]
    EmailTaken { email: String },
    #[error("{reason}")]
    NotAllowed { reason: String },
    /// A one-time token (an activation link) is past its lifetime.
    #[error("{what} expired")]
    Expired { what: &'static str },
    #[error("event {event_type} v{schema_version} cannot be read: {reason}")]
    UnreadableEvent { event_type: String, schema_version: u32, reason: String },
}

/// Checks a required, length-limited text field (ThingsBoard limits names to 255 characters).
pub fn check_text(field: &'static str, value: &str, max: usize) -> Result<()> {
    if value.trim().is_empty() {
        return Err(DomainError::Required { field });
    }
    check_len(field, value, max)
}

/// Checks an optional text field's length.
pub fn check_len(field: &'static str, value: &str, max: usize) -> Result<()> {
    let len = value.chars().count();
    if len > max {
        return Err(DomainError::TooLong { field, len, max });
    }
    Ok(())
}
