//! A user: a system administrator, a tenant administrator or a customer's user.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::envelope::{Aggregate, DomainEvent, Lifecycle};
use crate::error::{DomainError, Result, check_len, check_text};
use crate::id::{CustomerId, EntityType, TenantId, UserId};

/// A user's role, as ThingsBoard names it (`authority`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Authority {
    SysAdmin,
    TenantAdmin,
    CustomerUser,
}

impl Authority {
    pub fn as_str(self) -> &'static str {
        match self {
            Authority::SysAdmin => "SYS_ADMIN",
            Authority::TenantAdmin => "TENANT_ADMIN",
            Authority::CustomerUser => "CUSTOMER_USER",
        }
    }
}

/// What a save of a user carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserFields {
    pub email: String,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub additional_info: Value,
}

/// Normalises an email for comparison and uniqueness: trimmed and lowercased.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

impl UserFields {
    fn validate(&self) -> Result<()> {
        check_text("email", &self.email, 255)?;
        let email = self.email.trim();
        let valid = match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty() && !domain.is_empty() && !domain.contains('@') && !email.contains(char::is_whitespace)
            }
            None => false,
        };
        if !valid {
            return Err(DomainError::Invalid { field: "email", reason: format!("'{email}' is not an email address") });
        }
        for (field, value) in [("firstName", &self.first_name), ("lastName", &self.last_name), ("phone", &self.phone)] {
            if let Some(v) = value {
                check_len(field, v, 255)?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: UserId,
    pub tenant_id: TenantId,
    pub customer_id: CustomerId,
    pub authority: Authority,
    pub fields: UserFields,
    /// argon2 PHC string; none until the user is activated.
    pub password_hash: Option<String>,
    /// sha256 (hex) of the pending activation token, if any.
    pub activation_token_hash: Option<String>,
    /// When the pending activation token expires (ms since the epoch); `None`: it cannot be
    /// used (the token made with the user, which nobody is shown, or one issued before tokens
    /// had a lifetime).
    pub activation_token_expires: Option<i64>,
    pub created_time: i64,
    /// Bumped whenever the user's sessions are revoked (sign-out, password change): tokens carry
    /// the version they were issued under and an older one is refused, on every node.
    pub token_version: u64,
}

impl User {
    pub fn is_activated(&self) -> bool {
        self.password_hash.is_some()
    }
}

pub type UserState = Lifecycle<User>;

#[derive(Debug, Clone)]
pub enum UserCommand {
    CreateUser {
        id: UserId,
        tenant_id: TenantId,
        customer_id: CustomerId,
        authority: Authority,
        fields: UserFields,
        /// Set for a user created with a password (the first system administrator).
        password_hash: Option<String>,
        activation_token_hash: Option<String>,
        now: i64,
    },
    UpdateUser { fields: UserFields },
    /// A new activation token, usable until `expires_time` (ms since the epoch).
    IssueActivationToken { token_hash: String, expires_time: i64 },
    /// Activation at `now`: the token must match the pending one and not have expired.
    ActivateUser { token_hash: String, password_hash: String, now: i64 },
    /// Sets a new password and revokes every session signed in with the old one.
    ChangePassword { password_hash: String },
    /// Ends every session of the user (sign-out): its tokens stop working.
    RevokeSessions,
    DeleteUser,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "eventType", content = "payload")]
pub enum UserEvent {
    UserCreated {
        id: UserId,
        tenant_id: TenantId,
        customer_id: CustomerId,
        authority: Authority,
        #[serde(flatten)]
        fields: UserFields,
        #[serde(default)]
        password_hash: Option<String>,
        #[serde(default)]
        activation_token_hash: Option<String>,
        created_time: i64,
    },
    UserUpdated {
        #[serde(flatten)]
        fields: UserFields,
    },
    UserActivationTokenIssued {
        token_hash: String,
        /// Absent in events written before activation tokens had a lifetime: such a token
        /// counts as expired.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_time: Option<i64>,
    },
    UserActivated {
        password_hash: String,
    },
    UserPasswordChanged {
        password_hash: String,
    },
    /// The user's tokens issued so far are void.
    UserSessionsRevoked {},
    UserDeleted {},
}

impl DomainEvent for UserEvent {}

impl Aggregate for UserState {
    const ENTITY_TYPE: EntityType = EntityType::User;
    type Command = UserCommand;
    type Event = UserEvent;

    fn decide(&self, command: UserCommand) -> Result<Vec<UserEvent>> {
        let id = self.any().map(|u| u.id.0).unwrap_or_default();
        match command {
            UserCommand::CreateUser {
                id,
                tenant_id,
                customer_id,
                authority,
                fields,
                password_hash,
                activation_token_hash,
                now,
            } => {
                if !matches!(self, Lifecycle::Absent) {
                    return Err(DomainError::AlreadyExists { entity_type: EntityType::User, id: id.0 });
                }
                fields.validate()?;
                match authority {
                    Authority::SysAdmin if !tenant_id.is_null() => {
                        return Err(DomainError::Invalid { field: "tenantId", reason: "a system administrator has no tenant".into() });
                    }
                    Authority::TenantAdmin | Authority::CustomerUser if tenant_id.is_null() => {
                        return Err(DomainError::Required { field: "tenantId" });
                    }
                    Authority::CustomerUser if customer_id.is_null() => {
                        return Err(DomainError::Required { field: "customerId" });
                    }
                    _ => {}
                }
                let fields = UserFields { email: normalize_email(&fields.email), ..fields };
                Ok(vec![UserEvent::UserCreated {
                    id,
                    tenant_id,
                    customer_id,
                    authority,
                    fields,
                    password_hash,
                    activation_token_hash,
                    created_time: now,
                }])
            }
            UserCommand::UpdateUser { fields } => {
                let user = self.live(EntityType::User, id)?;
                fields.validate()?;
                let fields = UserFields { email: normalize_email(&fields.email), ..fields };
                if user.fields == fields {
                    return Ok(vec![]);
                }
                Ok(vec![UserEvent::UserUpdated { fields }])
            }
            UserCommand::IssueActivationToken { token_hash, expires_time } => {
                let user = self.live(EntityType::User, id)?;
                if user.is_activated() {
                    return Err(DomainError::NotAllowed { reason: "user is already activated".into() });
                }
                Ok(vec![UserEvent::UserActivationTokenIssued { token_hash, expires_time: Some(expires_time) }])
            }
            UserCommand::ActivateUser { token_hash, password_hash, now } => {
                let user = self.live(EntityType::User, id)?;
                if user.activation_token_hash.as_deref() != Some(token_hash.as_str()) {
                    return Err(DomainError::NotAllowed { reason: "activation token is invalid or was already used".into() });
                }
                if user.activation_token_expires.is_none_or(|expires| now >= expires) {
                    return Err(DomainError::Expired { what: "activation token" });
                }
                Ok(vec![UserEvent::UserActivated { password_hash }])
            }
            UserCommand::ChangePassword { password_hash } => {
                self.live(EntityType::User, id)?;
                Ok(vec![UserEvent::UserPasswordChanged { password_hash }, UserEvent::UserSessionsRevoked {}])
            }
            UserCommand::RevokeSessions => {
                self.live(EntityType::User, id)?;
                Ok(vec![UserEvent::UserSessionsRevoked {}])
            }
            UserCommand::DeleteUser => {
                self.live(EntityType::User, id)?;
                Ok(vec![UserEvent::UserDeleted {}])
            }
        }
    }

    fn evolve(self, event: &UserEvent) -> Self {
        match event {
            UserEvent::UserCreated {
                id,
                tenant_id,
                customer_id,
                authority,
                fields,
                password_hash,
                activation_token_hash,
                created_time,
            } => Lifecycle::Live(User {
                id: *id,
                tenant_id: *tenant_id,
                customer_id: *customer_id,
                authority: *authority,
                fields: fields.clone(),
                password_hash: password_hash.clone(),
                activation_token_hash: activation_token_hash.clone(),
                activation_token_expires: None,
                created_time: *created_time,
                token_version: 0,
            }),
            UserEvent::UserUpdated { fields } => self.map_live(|u| User { fields: fields.clone(), ..u }),
            UserEvent::UserActivationTokenIssued { token_hash, expires_time } => self.map_live(|u| User {
                activation_token_hash: Some(token_hash.clone()),
                activation_token_expires: *expires_time,
                ..u
            }),
            UserEvent::UserActivated { password_hash } => self.map_live(|u| User {
                password_hash: Some(password_hash.clone()),
                activation_token_hash: None,
                activation_token_expires: None,
                ..u
            }),
            UserEvent::UserPasswordChanged { password_hash } => {
                self.map_live(|u| User { password_hash: Some(password_hash.clone()), ..u })
            }
            UserEvent::UserSessionsRevoked {} => self.map_live(|u| User { token_version: u.token_version + 1, ..u }),
            UserEvent::UserDeleted {} => self.into_deleted(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn create(email: &str, authority: Authority, tenant: Uuid) -> UserCommand {
        UserCommand::CreateUser {
            id: UserId(Uuid::from_u128(11)),
            tenant_id: TenantId(tenant),
            customer_id: CustomerId::NULL,
            authority,
            fields: UserFields { email: email.into(), first_name: None, last_name: None, phone: None, additional_info: Value::Null },
            password_hash: None,
            activation_token_hash: Some("h1".into()),
            now: 1,
        }
    }

    fn tenant_admin() -> UserState {
        UserState::replay(&UserState::Absent.decide(create("Admin@Acme.io", Authority::TenantAdmin, Uuid::from_u128(1))).expect("valid"))
    }

    #[test]
    fn emails_are_stored_lowercase() {
        assert_eq!(tenant_admin().as_live().map(|u| u.fields.email.as_str()), Some("admin@acme.io"));
    }

    #[test]
    fn a_malformed_email_is_rejected() {
        let err = UserState::Absent.decide(create("not-an-email", Authority::TenantAdmin, Uuid::from_u128(1))).unwrap_err();
        assert!(matches!(err, DomainError::Invalid { field: "email", .. }));
    }

    #[test]
    fn a_tenant_admin_needs_a_tenant() {
        let err = UserState::Absent.decide(create("a@b.c", Authority::TenantAdmin, crate::NULL_UUID)).unwrap_err();
        assert_eq!(err, DomainError::Required { field: "tenantId" });
    }

    #[test]
    fn activation_needs_the_pending_token_and_works_once() {
        let state = tenant_admin();
        let issued = state.decide(UserCommand::IssueActivationToken { token_hash: "h2".into(), expires_time: 100 }).expect("live");
        let state = state.evolve(&issued[0]);
        let activate = |hash: &str, now| UserCommand::ActivateUser { token_hash: hash.into(), password_hash: "p".into(), now };
        assert!(state.decide(activate("wrong", 50)).is_err());
        assert!(state.decide(activate("h1", 50)).is_err(), "only the latest token works");
        let events = state.decide(activate("h2", 50)).expect("right token");
        let state = state.evolve(&events[0]);
        assert!(state.as_live().is_some_and(User::is_activated));
        assert!(state.decide(activate("h2", 60)).is_err());
        assert!(state.decide(UserCommand::IssueActivationToken { token_hash: "h3".into(), expires_time: 200 }).is_err());
    }

    #[test]
    fn an_expired_activation_token_is_refused_as_expired() {
        let state = tenant_admin();
        let activate = |now| UserCommand::ActivateUser { token_hash: "h1".into(), password_hash: "p".into(), now };
        assert_eq!(state.decide(activate(2)), Err(DomainError::Expired { what: "activation token" }), "the token made at creation has no lifetime");
        let issued = state.decide(UserCommand::IssueActivationToken { token_hash: "h1".into(), expires_time: 100 }).expect("live");
        let state = state.evolve(&issued[0]);
        assert!(state.decide(activate(99)).is_ok());
        assert_eq!(state.decide(activate(100)), Err(DomainError::Expired { what: "activation token" }));
    }

    #[test]
    fn a_token_issued_before_tokens_had_a_lifetime_reads_as_expired() {
        let old: UserEvent = serde_json::from_value(serde_json::json!({"eventType": "UserActivationTokenIssued", "payload": {"token_hash": "h"}}))
            .expect("old event");
        assert_eq!(old, UserEvent::UserActivationTokenIssued { token_hash: "h".into(), expires_time: None });
    }

    #[test]
    fn changing_the_password_revokes_the_sessions() {
        let state = tenant_admin();
        let events = state.decide(UserCommand::ChangePassword { password_hash: "p2".into() }).expect("live user");
        assert_eq!(events, vec![UserEvent::UserPasswordChanged { password_hash: "p2".into() }, UserEvent::UserSessionsRevoked {}]);
        let state = events.iter().fold(state, |s, e| s.evolve(e));
        assert_eq!(state.as_live().map(|u| u.token_version), Some(1));
    }

    #[test]
    fn signing_out_bumps_the_token_version() {
        let state = tenant_admin();
        let events = state.decide(UserCommand::RevokeSessions).expect("live user");
        let state = events.iter().fold(state, |s, e| s.evolve(e));
        assert_eq!(state.as_live().map(|u| u.token_version), Some(1));
        let deleted = state.evolve(&UserEvent::UserDeleted {});
        assert!(deleted.decide(UserCommand::RevokeSessions).is_err());
    }
}
