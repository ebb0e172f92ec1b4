//! User use cases: sign-in, tokens, activation, passwords, and user management.
//!
//! Passwords and activation tokens never leave this module in clear except once: a new
//! activation token is returned inside its link, and only its sha256 is recorded.

use std::net::IpAddr;

use serde_json::Value;
use sha2::{Digest, Sha256};
use thinglake_domain::user::{Authority, User, UserCommand, UserFields, UserState, normalize_email};
use thinglake_domain::{CustomerId, DomainError, EntityType, TenantId, UserId};
use thinglake_infra::auth::{TokenError, TokenPair, TokenUser, random_token};
use thinglake_infra::claims::ClaimKey;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::execute::{DecideChecked, Outcome};
use crate::{Platform, Principal};

/// Characters in an activation token (ThingsBoard: 30).
const ACTIVATION_TOKEN_LENGTH: usize = 30;
/// The one message for every failed sign-in, so it does not reveal which part was wrong.
const BAD_CREDENTIALS: &str = "Invalid username or password";

/// A user as the API shows it: the entity and its version. Never carries secrets out: the
/// API renders only the fields it names.
#[derive(Debug, Clone)]
pub struct UserView {
    pub user: User,
    pub version: u64,
}

/// What a save of a user carries (ThingsBoard's user JSON, minus what the server owns).
#[derive(Debug, Clone)]
pub struct UserInput {
    /// Present to update an existing user.
    pub id: Option<UserId>,
    pub email: String,
    /// Required on create; ignored on update (a role never changes).
    pub authority: Option<Authority>,
    pub tenant_id: Option<TenantId>,
    pub customer_id: Option<CustomerId>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone: Option<String>,
    pub additional_info: Value,
    /// The version the caller read; a stale one is refused.
    pub version: Option<u64>,
}

/// The sha256 (hex) of an activation token, as recorded on the log.
fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn token_user(user: &User) -> TokenUser {
    TokenUser {
        user_id: user.id.0,
        email: user.fields.email.clone(),
        authority: user.authority,
        tenant_id: user.tenant_id.0,
        customer_id: user.customer_id.0,
        first_name: user.fields.first_name.clone(),
        last_name: user.fields.last_name.clone(),
        enabled: true,
        is_public: false,
        token_version: user.token_version,
    }
}

impl Platform {
    /// Signs a user in with email and password from `client` (`POST /api/auth/login`). Failed
    /// attempts are throttled per account and per client address ([`crate::login_throttle`]).
    pub async fn login(&self, email: &str, password: &str, client: IpAddr) -> Result<TokenPair> {
        let email = normalize_email(email);
        let user = {
            let entities = self.view().read();
            entities.user_by_email.get(&email).and_then(|id| entities.users.get(id)).and_then(|v| v.state.as_live()).cloned()
        };
        let hash = user.as_ref().and_then(|u| u.password_hash.clone());
        // An unknown email costs a hash too, so the answer's time does not tell it apart.
        let matches = self.check_password(&email, client, password, hash).await?;
        match user {
            Some(user) if matches && self.user_may_sign_in(user.id) => self.issue_tokens(&user, Uuid::now_v7()),
            Some(_) if matches => Err(Error::unauthorized(BAD_CREDENTIALS)),
            _ => Err(self.sign_in_failed(&email, client, Error::unauthorized(BAD_CREDENTIALS))),
        }
    }

    /// Signs a user in with email and password and answers who they are (the PostgreSQL wire
    /// protocol's password message); the same checks, throttle and argon2 verification as
    /// [`Self::login`].
    pub async fn sign_in(&self, email: &str, password: &str, client: IpAddr) -> Result<Principal> {
        let tokens = self.login(email, password, client).await?;
        self.principal_of(&tokens.token)
    }

    /// Whether `password` matches `hash` (`None`: no such user), unless the account or the
    /// address is throttled; a match clears the account's failures.
    async fn check_password(&self, email: &str, client: IpAddr, password: &str, hash: Option<String>) -> Result<bool> {
        if let Some(retry_after) = self.login_throttle().refused_for(email, client) {
            return Err(Error::SignInThrottled { retry_after });
        }
        let matches = self.password_hashing().verify(password.to_string(), hash).await?;
        if matches {
            self.login_throttle().succeeded(email);
        }
        Ok(matches)
    }

    /// Counts a failed password check: `refusal`, or [`Error::SignInThrottled`] when this failure
    /// reached a limit.
    fn sign_in_failed(&self, email: &str, client: IpAddr, refusal: Error) -> Error {
        match self.login_throttle().failed(email, client) {
            Some(retry_after) => Error::SignInThrottled { retry_after },
            None => refusal,
        }
    }

    /// The caller of a valid access token, if the user may still sign in.
    pub fn principal_of(&self, access_token: &str) -> Result<Principal> {
        let claims = self.jwt().verify_access(access_token).map_err(|e| match e {
            TokenError::Expired => Error::TokenExpired,
            TokenError::Invalid { .. } => Error::unauthorized("Invalid JWT token"),
        })?;
        let authority = claims.authority().ok_or_else(|| Error::unauthorized("Invalid JWT token"))?;
        self.session_user(UserId(claims.user_id), claims.token_version)?;
        Ok(Principal {
            user_id: UserId(claims.user_id),
            email: claims.sub,
            authority,
            tenant_id: TenantId(claims.tenant_id.unwrap_or(thinglake_domain::NULL_UUID)),
            customer_id: CustomerId(claims.customer_id.unwrap_or(thinglake_domain::NULL_UUID)),
            token_version: claims.token_version,
        })
    }

    /// Checks that a signed-in caller's session still holds: the user may sign in and its
    /// sessions were not revoked since. Long-lived sessions (PostgreSQL wire, WebSocket) call it
    /// per statement and per update; requests do through [`Self::principal_of`].
    pub fn check_session(&self, p: &Principal) -> Result<()> {
        self.session_user(p.user_id, p.token_version).map(|_| ())
    }

    /// The user of a session issued under `token_version`, if the session still holds.
    fn session_user(&self, id: UserId, token_version: u64) -> Result<User> {
        if !self.user_may_sign_in(id) {
            return Err(Error::unauthorized("User is not active"));
        }
        let user = self.live_user(id)?;
        if user.token_version != token_version {
            return Err(Error::unauthorized("Session has ended: sign in again"));
        }
        Ok(user)
    }

    /// Signs the caller out (`POST /api/auth/logout`): every session of the user ends, on every
    /// node, because the revocation is an event on the log.
    pub async fn logout(&self, p: &Principal) -> Result<()> {
        self.check_session(p)?;
        let user = self.live_user(p.user_id)?;
        self.execute(user.tenant_id.0, user.id.0, None, &p.actor(), users, |_| Ok(UserCommand::RevokeSessions)).await?;
        Ok(())
    }

    /// A new token pair from a refresh token (`POST /api/auth/token`), in the same session.
    pub fn refresh_tokens(&self, refresh_token: &str) -> Result<TokenPair> {
        let claims = self.jwt().verify_refresh(refresh_token).map_err(|e| match e {
            TokenError::Expired => Error::TokenExpired,
            TokenError::Invalid { .. } => Error::unauthorized("Invalid refresh token"),
        })?;
        let user = self.session_user(UserId(claims.user_id), claims.token_version)?;
        self.issue_tokens(&user, claims.session_id)
    }

    /// The signed-in user (`GET /api/auth/user`).
    pub fn current_user(&self, p: &Principal) -> Result<UserView> {
        self.user_view(p.user_id)
    }

    /// Changes the caller's password after checking the current one (throttled as a sign-in is,
    /// `client` being the caller's address); answers a new token pair.
    pub async fn change_password(&self, p: &Principal, current: &str, new: &str, client: IpAddr) -> Result<TokenPair> {
        let user = self.live_user(p.user_id)?;
        let email = user.fields.email.clone();
        if !self.check_password(&email, client, current, user.password_hash.clone()).await? {
            let refusal = Error::Rejected(DomainError::NotAllowed { reason: "current password doesn't match".into() });
            return Err(self.sign_in_failed(&email, client, refusal));
        }
        self.check_password_policy(new)?;
        let password_hash = self.password_hashing().hash(new.to_string()).await?;
        let outcome = self
            .execute(user.tenant_id.0, user.id.0, None, &p.actor(), users, |_| {
                Ok(UserCommand::ChangePassword { password_hash: password_hash.clone() })
            })
            .await?;
        let user = live(outcome.state, p.user_id)?;
        self.issue_tokens(&user, Uuid::now_v7())
    }

    /// Activates a user with the token from its activation link and sets its password
    /// (`POST /api/noauth/activate`); answers a token pair, as ThingsBoard does. An expired
    /// token is refused as ThingsBoard does ("Activation token expired").
    pub async fn activate_user(&self, activate_token: &str, password: &str) -> Result<TokenPair> {
        self.check_password_policy(password)?;
        self.activate_with_password(activate_token, password).await
    }

    /// Activates a user with a password the platform itself chose (demo mode's well-known
    /// ThingsBoard passwords), so the policy for users' passwords does not apply.
    pub async fn activate_user_with_platform_password(&self, activate_token: &str, password: &str) -> Result<TokenPair> {
        self.activate_with_password(activate_token, password).await
    }

    async fn activate_with_password(&self, activate_token: &str, password: &str) -> Result<TokenPair> {
        let hash = token_hash(activate_token);
        let invalid = || Error::Rejected(DomainError::NotAllowed { reason: "activation token is invalid or was already used".into() });
        let id = self.view().read().user_by_activation.get(&hash).copied().ok_or_else(invalid)?;
        let user = self.live_user(UserId(id)).map_err(|_| invalid())?;
        // Checked before hashing, so an expired link costs no argon2 work; decide checks again.
        let command = |password_hash: String| UserCommand::ActivateUser { token_hash: hash.clone(), password_hash, now: self.now_ms() };
        UserState::Live(user.clone()).decide_checked(&command(String::new()))?;
        let password_hash = self.password_hashing().hash(password.to_string()).await?;
        let actor = thinglake_domain::Actor::user(user.id.0, user.fields.email.clone());
        let outcome = self.execute(user.tenant_id.0, id, None, &actor, users, |_| Ok(command(password_hash.clone()))).await?;
        let user = live(outcome.state, user.id)?;
        if !self.user_may_sign_in(user.id) {
            return Err(Error::unauthorized("User is not active"));
        }
        self.issue_tokens(&user, Uuid::now_v7())
    }

    /// Creates a user (no id) or updates one (with id; an id that names no user the caller may
    /// change is 404 or 403, never a user created with that id) (`POST /api/user`). A new user
    /// gets a pending activation token; fetch its link with [`Platform::activation_link`].
    pub async fn save_user(&self, p: &Principal, input: UserInput) -> Result<UserView> {
        match input.id {
            Some(id) => self.update_user(p, id, input).await,
            None => self.create_user(p, input).await,
        }
    }

    async fn create_user(&self, p: &Principal, input: UserInput) -> Result<UserView> {
        let authority = input.authority.ok_or(Error::Rejected(DomainError::Required { field: "authority" }))?;
        let (tenant_id, customer_id) = self.placement_for_new_user(p, authority, input.tenant_id, input.customer_id)?;
        let id = UserId(Uuid::now_v7());
        let fields = fields_of(&input);
        let command = UserCommand::CreateUser {
            id,
            tenant_id,
            customer_id,
            authority,
            fields,
            password_hash: None,
            // Only its hash is recorded; the link endpoint issues the token the caller sees.
            activation_token_hash: Some(token_hash(&random_token(ACTIVATION_TOKEN_LENGTH))),
            now: self.now_ms(),
        };
        // Validate before claiming, so bad input reserves nothing.
        UserState::Absent.decide_checked(&command)?;
        let email = normalize_email(&input.email);
        let key = ClaimKey::user_email(&email);
        self.claim_key(&key, id.0, email_owner_state(&email), || DomainError::EmailTaken { email: email.clone() }).await?;
        match self.execute(tenant_id.0, id.0, None, &p.actor(), users, |_| Ok(command.clone())).await {
            Ok(outcome) => view_of_outcome(outcome, id),
            Err(e) => {
                self.release_key(&key, id.0).await;
                Err(e)
            }
        }
    }

    /// Where a new user of `authority` goes, checked against the caller's rights: a system
    /// administrator creates tenant administrators of any live tenant; a tenant administrator
    /// creates tenant administrators of its tenant and users of its customers.
    fn placement_for_new_user(
        &self,
        p: &Principal,
        authority: Authority,
        tenant: Option<TenantId>,
        customer: Option<CustomerId>,
    ) -> Result<(TenantId, CustomerId)> {
        let tenant = tenant.filter(|t| !t.is_null());
        let customer = customer.filter(|c| !c.is_null());
        match (p.authority, authority) {
            (Authority::SysAdmin, Authority::TenantAdmin) => {
                let tenant = tenant.ok_or(Error::Rejected(DomainError::Required { field: "tenantId" }))?;
                self.live_tenant(tenant)?;
                Ok((tenant, CustomerId::NULL))
            }
            (Authority::TenantAdmin, Authority::TenantAdmin) => {
                if tenant.is_some_and(|t| t != p.tenant_id) {
                    return Err(Error::Forbidden);
                }
                Ok((p.tenant_id, CustomerId::NULL))
            }
            (Authority::TenantAdmin, Authority::CustomerUser) => {
                if tenant.is_some_and(|t| t != p.tenant_id) {
                    return Err(Error::Forbidden);
                }
                let customer = customer.ok_or(Error::Rejected(DomainError::Required { field: "customerId" }))?;
                self.customer_in_tenant(p.tenant_id, customer)?;
                Ok((p.tenant_id, customer))
            }
            _ => Err(Error::Forbidden),
        }
    }

    async fn update_user(&self, p: &Principal, id: UserId, input: UserInput) -> Result<UserView> {
        let current = self.user_for_write(p, id)?;
        let fields = fields_of(&input);
        let old_email = current.fields.email.clone();
        let new_email = normalize_email(&fields.email);
        let renamed = new_email != old_email;
        let new_key = ClaimKey::user_email(&new_email);
        if renamed {
            UserState::Live(current.clone()).decide_checked(&UserCommand::UpdateUser { fields: fields.clone() })?;
            self.claim_key(&new_key, id.0, email_owner_state(&new_email), || DomainError::EmailTaken { email: new_email.clone() })
                .await?;
        }
        let result = self
            .execute(current.tenant_id.0, id.0, input.version, &p.actor(), users, |_| {
                Ok(UserCommand::UpdateUser { fields: fields.clone() })
            })
            .await;
        match result {
            Ok(outcome) => {
                if renamed {
                    self.release_key(&ClaimKey::user_email(&old_email), id.0).await;
                }
                view_of_outcome(outcome, id)
            }
            Err(e) => {
                if renamed {
                    self.release_key(&new_key, id.0).await;
                }
                Err(e)
            }
        }
    }

    /// A user the caller may read: itself, or a user it manages.
    pub fn user(&self, p: &Principal, id: UserId) -> Result<UserView> {
        let view = self.user_view(id)?;
        if view.user.id != p.user_id && !may_manage(p, &view.user) {
            return Err(Error::Forbidden);
        }
        Ok(view)
    }

    pub async fn delete_user(&self, p: &Principal, id: UserId) -> Result<()> {
        let user = self.user_for_write(p, id)?;
        if user.id == p.user_id {
            return Err(Error::Rejected(DomainError::NotAllowed { reason: "a user cannot delete itself".into() }));
        }
        self.execute(user.tenant_id.0, id.0, None, &p.actor(), users, |_| Ok(UserCommand::DeleteUser)).await?;
        self.release_key(&ClaimKey::user_email(&user.fields.email), id.0).await;
        Ok(())
    }

    /// A fresh activation link for a user not yet activated
    /// (`GET /api/user/{id}/activationLink`). Only the sha256 of a token is ever recorded, so an
    /// earlier token cannot be shown again: each call issues a new one, which replaces the
    /// previous (only the latest link works).
    pub async fn activation_link(&self, p: &Principal, id: UserId) -> Result<String> {
        let user = self.user_for_write(p, id)?;
        let token = random_token(ACTIVATION_TOKEN_LENGTH);
        let hash = token_hash(&token);
        let ttl_ms = i64::try_from(self.config().activation_token_ttl.as_millis()).unwrap_or(i64::MAX);
        let expires_time = self.now_ms().saturating_add(ttl_ms);
        self.execute(user.tenant_id.0, id.0, None, &p.actor(), users, |_| {
            Ok(UserCommand::IssueActivationToken { token_hash: hash.clone(), expires_time })
        })
        .await?;
        Ok(format!("{}/api/noauth/activate?activateToken={token}", self.config().public_url.trim_end_matches('/')))
    }

    /// The users of `tenant`, oldest first (system administrator only).
    pub fn tenant_users(&self, p: &Principal, tenant: TenantId) -> Result<Vec<UserView>> {
        p.require_sys_admin()?;
        self.live_tenant(tenant)?;
        Ok(self.users_where(|u| u.tenant_id == tenant))
    }

    /// The users of one of the caller's customers (tenant administrator).
    pub fn customer_users(&self, p: &Principal, customer: CustomerId) -> Result<Vec<UserView>> {
        let tenant = p.require_tenant_admin()?;
        self.customer_in_tenant(tenant, customer)?;
        Ok(self.users_where(|u| u.tenant_id == tenant && u.customer_id == customer))
    }

    /// The users the caller manages (`GET /api/users`): a tenant administrator's whole tenant,
    /// or the tenant administrators of every tenant for a system administrator.
    pub fn managed_users(&self, p: &Principal) -> Result<Vec<UserView>> {
        match p.authority {
            Authority::SysAdmin => Ok(self.users_where(|u| u.authority == Authority::TenantAdmin)),
            Authority::TenantAdmin => Ok(self.users_where(|u| u.tenant_id == p.tenant_id)),
            Authority::CustomerUser => Err(Error::Forbidden),
        }
    }

    fn users_where(&self, keep: impl Fn(&User) -> bool) -> Vec<UserView> {
        let entities = self.view().read();
        let mut out: Vec<UserView> = entities
            .users
            .values()
            .filter_map(|v| v.state.as_live().filter(|u| keep(u)).map(|u| UserView { user: u.clone(), version: v.position.version }))
            .collect();
        out.sort_by_key(|v| (v.user.created_time, v.user.id));
        out
    }

    fn user_view(&self, id: UserId) -> Result<UserView> {
        let entities = self.view().read();
        let v = entities.users.get(&id.0).ok_or_else(|| Error::not_found(EntityType::User, id.0))?;
        let user = v.state.as_live().ok_or_else(|| Error::not_found(EntityType::User, id.0))?;
        Ok(UserView { user: user.clone(), version: v.position.version })
    }

    fn live_user(&self, id: UserId) -> Result<User> {
        self.user_view(id).map(|v| v.user)
    }

    /// A live user the caller may change.
    fn user_for_write(&self, p: &Principal, id: UserId) -> Result<User> {
        let user = self.live_user(id)?;
        if user.id != p.user_id && !may_manage(p, &user) {
            return Err(Error::Forbidden);
        }
        Ok(user)
    }

    fn check_password_policy(&self, password: &str) -> Result<()> {
        crate::passwords::check_policy(password, self.config().passwords.min_length)
    }

    fn issue_tokens(&self, user: &User, session_id: Uuid) -> Result<TokenPair> {
        Ok(self.jwt().issue_pair(&token_user(user), session_id, self.clock().now())?)
    }
}

/// Whether `p` manages `user`: a system administrator manages tenant administrators, a tenant
/// administrator every user of its tenant.
fn may_manage(p: &Principal, user: &User) -> bool {
    match p.authority {
        Authority::SysAdmin => user.authority == Authority::TenantAdmin,
        Authority::TenantAdmin => user.authority != Authority::SysAdmin && user.tenant_id == p.tenant_id,
        Authority::CustomerUser => false,
    }
}

fn fields_of(input: &UserInput) -> UserFields {
    UserFields {
        email: input.email.clone(),
        first_name: input.first_name.clone(),
        last_name: input.last_name.clone(),
        phone: input.phone.clone(),
        additional_info: input.additional_info.clone(),
    }
}

fn live(state: UserState, id: UserId) -> Result<User> {
    state.as_live().cloned().ok_or_else(|| Error::not_found(EntityType::User, id.0))
}

fn view_of_outcome(outcome: Outcome<UserState>, id: UserId) -> Result<UserView> {
    Ok(UserView { user: live(outcome.state, id)?, version: outcome.position.version })
}

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
        let hash = self.password_hashing().hash(password.clone()).await?;
        let id = UserId(uuid::Uuid::now_v7());
        let command = UserCommand::CreateUser {
            id,
            tenant_id: TenantId::SYSTEM,
            customer_id: CustomerId::NULL,
            authority: Authority::SysAdmin,
            fields: UserFields { email: email.clone(), first_name: None, last_name: None, phone: None, additional_info: serde_json::Value::Null },
            password_hash: Some(hash),
            activation_token_hash: None,
            now: self.now_ms(),
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
    crate::uniqueness::owner_state(users, move |u: &thinglake_domain::user::User| u.fields.email == email)
}
