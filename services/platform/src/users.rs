//! User use cases: sign-in, tokens, activation, passwords, and user management.

use thinglake_domain::UserId;

use crate::Platform;

impl Platform {
    /// Whether the user exists, is activated, and belongs to a live tenant (or is a system
    /// administrator). Checked on every request, so tokens of deleted users stop working.
    pub fn user_may_sign_in(&self, id: UserId) -> bool {
        let entities = self.view().read();
        let Some(user) = entities.users.get(&id.0).and_then(|v| v.state.as_live()) else {
            return false;
        };
        if !user.is_activated() {
            return false;
        }
        user.tenant_id.is_null() || entities.tenants.get(&user.tenant_id.0).is_some_and(|t| t.state.as_live().is_some())
    }
}

impl Platform {
    /// Creates the first system administrator unless a user with `email` exists. Returns the
    /// password when one was generated (to be printed once), `None` when nothing was created or
    /// the password was given.
    pub async fn bootstrap_sys_admin(&self, email: &str, password: Option<String>) -> crate::Result<Option<String>> {
        use thinglake_domain::user::{Authority, UserCommand, UserFields, normalize_email};
        use thinglake_domain::{Actor, CustomerId, DomainError, TenantId};
        use thinglake_infra::claims::ClaimKey;

        let email = normalize_email(email);
        if self.view().read().user_by_email.contains_key(&email) {
            return Ok(None);
        }
        let generated = password.is_none();
        let password = password.unwrap_or_else(|| thinglake_infra::auth::random_token(20));
        let hash = hash_password_blocking(password.clone()).await?;
        let id = UserId(uuid::Uuid::now_v7());
        let command = UserCommand::CreateUser {
            id,
            tenant_id: TenantId::SYSTEM,
            customer_id: CustomerId::NULL,
            authority: Authority::SysAdmin,
            fields: UserFields { email: email.clone(), first_name: None, last_name: None, phone: None, additional_info: serde_json::Value::Null },
            password_hash: Some(hash),
            activation_token_hash: None,
            now: crate::now_ms(),
        };
        let key = ClaimKey::user_email(&email);
        match self.claim_key(&key, id.0, email_owner_state(&email), || DomainError::EmailTaken { email: email.clone() }).await {
            Ok(()) => {}
            // Another node is creating it at the same moment.
            Err(crate::Error::Rejected(DomainError::EmailTaken { .. })) => return Ok(None),
            Err(e) => return Err(e),
        }
        if let Err(e) = self.execute(thinglake_domain::NULL_UUID, id.0, None, &Actor::system(), users, |_| Ok(command.clone())).await {
            self.release_key(&key, id.0).await;
            return Err(e);
        }
        Ok(generated.then_some(password))
    }
}

pub(crate) fn users(e: &thinglake_projections::Entities) -> &thinglake_projections::entities::Table<thinglake_domain::user::UserState> {
    &e.users
}

/// Whether a claimed email is still used by its holder.
pub(crate) fn email_owner_state(email: &str) -> impl Fn(&thinglake_projections::Entities, uuid::Uuid) -> crate::uniqueness::OwnerState + '_ {
    use crate::uniqueness::OwnerState;
    move |e, holder| match e.users.get(&holder).map(|v| &v.state) {
        Some(thinglake_domain::Lifecycle::Live(u)) if u.fields.email == email => OwnerState::Holds,
        Some(_) => OwnerState::LetGo,
        None => OwnerState::Unknown,
    }
}

/// Hashes a password off the I/O runtime (argon2 is deliberately slow).
pub(crate) async fn hash_password_blocking(password: String) -> crate::Result<String> {
    tokio::task::spawn_blocking(move || thinglake_infra::auth::hash_password(&password))
        .await
        .map_err(|e| thinglake_infra::Error::PasswordHash { reason: e.to_string() })?
        .map_err(crate::Error::from)
}

/// Verifies a password off the I/O runtime.
pub(crate) async fn verify_password_blocking(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || thinglake_infra::auth::verify_password(&password, &hash)).await.unwrap_or(false)
}
