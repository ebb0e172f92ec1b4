//! Authentication primitives: password hashes, ThingsBoard-compatible JWTs, the shared signing
//! key and random tokens.
//!
//! - Passwords are hashed with argon2id (argon2 0.5 default parameters) into PHC strings. Hashing
//!   and verifying take tens of milliseconds of CPU on purpose: call [`hash_password`] and
//!   [`verify_password`] inside `tokio::task::spawn_blocking`, never directly on the I/O runtime.
//! - [`JwtKeys`] issues and verifies HS512 tokens carrying ThingsBoard's claims (`sub`, `userId`,
//!   `scopes`, `tenantId`, `customerId`, …), so existing clients that read them keep working.
//! - [`load_or_create_signing_key`] gives every node of a deployment the same signing key.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use async_nats::jetstream::Context;
use async_nats::jetstream::kv::CreateErrorKind;
use bytes::Bytes;
use jsonwebtoken::errors::ErrorKind as JwtErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::distr::Alphanumeric;
use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};
use thinglake_domain::user::Authority;
use tracing::info;
use uuid::Uuid;

use crate::claims::ensure_bucket;
use crate::error::{BoxError, Error, Result};
use crate::subjects::Subjects;

/// The `iss` claim of every token Thinglake issues.
pub const ISSUER: &str = "thinglake";
/// The only scope of a refresh token.
pub const REFRESH_SCOPE: &str = "REFRESH_TOKEN";
/// The key of the JWT signing key in the secrets bucket.
pub const SIGNING_KEY: &str = "jwt_signing_key";
/// Random bytes in a generated signing key (HS512 wants at least 64).
const SIGNING_KEY_BYTES: usize = 64;

/// Hashes a password into an argon2id PHC string with a random salt. CPU-heavy: run it in
/// `spawn_blocking`.
pub fn hash_password(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| Error::PasswordHash { source: e.into() })?;
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| Error::PasswordHash { source: e.into() })?;
    Ok(hash.to_string())
}

/// Whether `password` matches the PHC string `hash`; `false` for a malformed hash too.
/// CPU-heavy: run it in `spawn_blocking`.
pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// A random alphanumeric string (`[A-Za-z0-9]`, about 5.95 bits a character) from the thread's
/// cryptographically secure generator: device access tokens (20 characters, as ThingsBoard),
/// activation and password-reset tokens.
pub fn random_token(len: usize) -> String {
    rand::rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}

/// How long tokens live. ThingsBoard's defaults: 9000 s (2.5 h) and 604800 s (a week).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenLifetimes {
    pub access: Duration,
    pub refresh: Duration,
}

impl Default for TokenLifetimes {
    fn default() -> Self {
        Self { access: Duration::from_secs(9000), refresh: Duration::from_secs(604_800) }
    }
}

/// The user a token is issued to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenUser {
    pub user_id: Uuid,
    pub email: String,
    pub authority: Authority,
    /// ThingsBoard's null id for the system administrator.
    pub tenant_id: Uuid,
    /// ThingsBoard's null id when the user belongs to no customer.
    pub customer_id: Uuid,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub enabled: bool,
    pub is_public: bool,
    /// The user's token version: a token of an older one is refused (revoked sessions).
    pub token_version: u64,
}

/// The claims of a ThingsBoard-shaped token. Refresh tokens carry only `sub`, `userId`,
/// `scopes` (`["REFRESH_TOKEN"]`), `isPublic`, `sessionId` and the registered claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenClaims {
    /// The user's email.
    pub sub: String,
    pub user_id: Uuid,
    /// `["TENANT_ADMIN"]` and the like, or `["REFRESH_TOKEN"]`.
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub is_public: bool,
    /// One login session: every token refreshed from one login shares it.
    pub session_id: Uuid,
    /// The user's token version when the token was issued (absent: 0); the platform refuses a
    /// token whose version is behind the user's, so sign-out and password changes revoke it.
    #[serde(default)]
    pub token_version: u64,
    pub iss: String,
    /// Issued at, seconds since the Unix epoch.
    pub iat: i64,
    /// Expires at, seconds since the Unix epoch.
    pub exp: i64,
}

impl TokenClaims {
    pub fn is_refresh(&self) -> bool {
        self.scopes.iter().any(|s| s == REFRESH_SCOPE)
    }

    /// The user's role, from an access token's scopes.
    pub fn authority(&self) -> Option<Authority> {
        [Authority::SysAdmin, Authority::TenantAdmin, Authority::CustomerUser]
            .into_iter()
            .find(|a| self.scopes.iter().any(|s| s == a.as_str()))
    }
}

/// An access token and its refresh token, as `POST /api/auth/login` answers them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenPair {
    pub token: String,
    pub refresh_token: String,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token is genuine but past its `exp` (ThingsBoard answers 401 with errorCode 11).
    #[error("token has expired")]
    Expired,
    /// Bad signature, malformed, wrong issuer or wrong kind of token (401, errorCode 10).
    #[error("invalid token: {source}")]
    Invalid {
        #[source]
        source: InvalidToken,
    },
}

/// What is wrong with a refused token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidToken {
    /// The signature, format, issuer or claims do not verify.
    #[error(transparent)]
    Jwt(#[from] jsonwebtoken::errors::Error),
    /// A refresh token presented to authorize a request.
    #[error("a refresh token cannot authorize a request")]
    RefreshAsAccess,
    /// An access token presented to refresh a session.
    #[error("not a refresh token")]
    NotRefresh,
}

/// HS512 signing and verification with one secret. Cheap to clone; never prints the secret.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    lifetimes: TokenLifetimes,
}

impl fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKeys").field("secret", &"<redacted>").field("lifetimes", &self.lifetimes).finish()
    }
}

impl JwtKeys {
    pub fn new(secret: &[u8], lifetimes: TokenLifetimes) -> Self {
        let mut validation = Validation::new(Algorithm::HS512);
        // ThingsBoard allows no clock skew; clients refresh ahead of `exp` themselves.
        validation.leeway = 0;
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            lifetimes,
        }
    }

    pub fn lifetimes(&self) -> TokenLifetimes {
        self.lifetimes
    }

    /// An access token for `user` in `session_id`, issued at `issued_at`.
    pub fn issue_access(&self, user: &TokenUser, session_id: Uuid, issued_at: SystemTime) -> Result<String> {
        let iat = unix_seconds(issued_at);
        let claims = TokenClaims {
            sub: user.email.clone(),
            user_id: user.user_id,
            scopes: vec![user.authority.as_str().to_string()],
            tenant_id: Some(user.tenant_id),
            customer_id: Some(user.customer_id),
            first_name: user.first_name.clone(),
            last_name: user.last_name.clone(),
            enabled: Some(user.enabled),
            is_public: user.is_public,
            session_id,
            token_version: user.token_version,
            iss: ISSUER.to_string(),
            iat,
            exp: iat.saturating_add(seconds(self.lifetimes.access)),
        };
        self.sign(&claims)
    }

    /// A refresh token for `user` in `session_id`, issued at `issued_at`.
    pub fn issue_refresh(&self, user: &TokenUser, session_id: Uuid, issued_at: SystemTime) -> Result<String> {
        let iat = unix_seconds(issued_at);
        let claims = TokenClaims {
            sub: user.email.clone(),
            user_id: user.user_id,
            scopes: vec![REFRESH_SCOPE.to_string()],
            tenant_id: None,
            customer_id: None,
            first_name: None,
            last_name: None,
            enabled: None,
            is_public: user.is_public,
            session_id,
            token_version: user.token_version,
            iss: ISSUER.to_string(),
            iat,
            exp: iat.saturating_add(seconds(self.lifetimes.refresh)),
        };
        self.sign(&claims)
    }

    /// An access and a refresh token of one session.
    pub fn issue_pair(&self, user: &TokenUser, session_id: Uuid, issued_at: SystemTime) -> Result<TokenPair> {
        Ok(TokenPair {
            token: self.issue_access(user, session_id, issued_at)?,
            refresh_token: self.issue_refresh(user, session_id, issued_at)?,
        })
    }

    fn sign(&self, claims: &TokenClaims) -> Result<String> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS512), claims, &self.encoding)
            .map_err(|source| Error::Token { source })
    }

    /// Checks signature, issuer and expiry of any token of ours, access or refresh.
    pub fn verify(&self, token: &str) -> Result<TokenClaims, TokenError> {
        match jsonwebtoken::decode::<TokenClaims>(token, &self.decoding, &self.validation) {
            Ok(data) => Ok(data.claims),
            Err(e) if matches!(e.kind(), JwtErrorKind::ExpiredSignature) => Err(TokenError::Expired),
            Err(e) => Err(TokenError::Invalid { source: e.into() }),
        }
    }

    /// Verifies an access token: a refresh token is refused.
    pub fn verify_access(&self, token: &str) -> Result<TokenClaims, TokenError> {
        let claims = self.verify(token)?;
        if claims.is_refresh() {
            return Err(TokenError::Invalid { source: InvalidToken::RefreshAsAccess });
        }
        Ok(claims)
    }

    /// Verifies a refresh token: an access token is refused.
    pub fn verify_refresh(&self, token: &str) -> Result<TokenClaims, TokenError> {
        let claims = self.verify(token)?;
        if !claims.is_refresh() {
            return Err(TokenError::Invalid { source: InvalidToken::NotRefresh });
        }
        Ok(claims)
    }
}

/// The JWT signing secret: the configured one if given (its UTF-8 bytes), else the one stored
/// in the secrets bucket under [`SIGNING_KEY`], generated (64 random bytes, stored as hex) on
/// first start with a create-only write, so nodes starting together agree on one key.
pub async fn load_or_create_signing_key(
    js: &Context,
    subjects: &Subjects,
    configured: Option<String>,
) -> Result<Vec<u8>> {
    if let Some(secret) = configured {
        if secret.is_empty() {
            return Err(Error::EmptySigningKey);
        }
        return Ok(secret.into_bytes());
    }
    let bucket = subjects.secrets_bucket();
    let kv = ensure_bucket(js, &bucket, "Thinglake platform secrets").await?;
    let secret_error = |source: BoxError| Error::setup(format!("{bucket}/{SIGNING_KEY}"), source);

    let mut generated = vec![0u8; SIGNING_KEY_BYTES];
    rand::rng().fill_bytes(&mut generated);
    match kv.create(SIGNING_KEY, Bytes::from(hex::encode(&generated))).await {
        Ok(_) => {
            info!(bucket = %bucket, "generated the JWT signing key");
            return Ok(generated);
        }
        Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {}
        Err(e) => return Err(secret_error(e.into())),
    }
    let stored = kv
        .get(SIGNING_KEY)
        .await
        .map_err(|e| secret_error(e.into()))?
        .ok_or_else(|| secret_error("the key exists but cannot be read".into()))?;
    hex::decode(&stored).map_err(|e| secret_error(format!("stored key is not hex: {e}").into()))
}

fn unix_seconds(at: SystemTime) -> i64 {
    let since_epoch = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX)
}

fn seconds(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_tokens_are_alphanumeric_and_distinct() {
        let a = random_token(20);
        assert_eq!(a.len(), 20);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, random_token(20));
    }

    #[test]
    fn scopes_give_the_authority() {
        let keys = JwtKeys::new(b"k", TokenLifetimes::default());
        let user = TokenUser {
            user_id: Uuid::now_v7(),
            email: "a@b.c".to_string(),
            authority: Authority::CustomerUser,
            tenant_id: Uuid::now_v7(),
            customer_id: Uuid::now_v7(),
            first_name: None,
            last_name: None,
            enabled: true,
            is_public: false,
            token_version: 0,
        };
        let token = keys.issue_access(&user, Uuid::now_v7(), SystemTime::now()).expect("signs");
        let claims = keys.verify(&token).expect("valid");
        assert_eq!(claims.authority(), Some(Authority::CustomerUser));
        assert!(!claims.is_refresh());
    }
}
