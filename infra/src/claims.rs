//! Claims: create-only reservations of unique keys in a JetStream key-value bucket.
//!
//! A rule that spans entities ("device names are unique within a tenant", "an access token
//! belongs to one device") is enforced by claiming the key before appending the event that
//! uses it: [`Claims::claim`] is a create-only write that exactly one of many concurrent writers
//! wins. The value of a claim is its owner's entity id. Releases and take-overs are
//! revision-checked, so they never remove or overwrite a claim that changed hands meanwhile.
//!
//! Keys are built by [`ClaimKey`]: the claimed value (a name, a token, an email) is hashed,
//! because KV keys allow only a few ASCII characters while names may hold any text.
//!
//! [`ClaimStore`] is the trait the platform claims through ([`Claims`] on JetStream, an
//! in-memory one in `thinglake-test-support`).

use std::fmt;
use std::time::Duration;

use async_nats::jetstream::Context;
use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};
use async_nats::jetstream::stream::StorageType;
use bytes::Bytes;
use futures::future::BoxFuture;
use sha2::{Digest, Sha256};
use tracing::debug;
use uuid::Uuid;

use crate::error::{BoxError, Error, Result};
use crate::subjects::Subjects;

/// How many times a claim operation re-reads a key that changes under it before giving up.
const RACE_ATTEMPTS: u32 = 8;
/// How often bucket setup is retried when another process creates the same bucket concurrently.
const SETUP_ATTEMPTS: u32 = 3;

/// What a key is unique for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClaimKind {
    /// A device's name, unique within its tenant.
    DeviceName,
    /// An asset's name, unique within its tenant.
    AssetName,
    /// A customer's title, unique within its tenant.
    CustomerTitle,
    /// A device profile's name, unique within its tenant.
    DeviceProfileName,
    /// An asset profile's name, unique within its tenant.
    AssetProfileName,
    /// A device access token, unique across the platform (devices authenticate with it alone).
    AccessToken,
    /// A user's email, unique across the platform and case-insensitive (users log in with it).
    UserEmail,
}

impl ClaimKind {
    /// The key segment naming the kind.
    pub fn token(self) -> &'static str {
        match self {
            ClaimKind::DeviceName => "device_name",
            ClaimKind::AssetName => "asset_name",
            ClaimKind::CustomerTitle => "customer_title",
            ClaimKind::DeviceProfileName => "device_profile_name",
            ClaimKind::AssetProfileName => "asset_profile_name",
            ClaimKind::AccessToken => "access_token",
            ClaimKind::UserEmail => "user_email",
        }
    }

    /// Whether the key is unique across the platform rather than within a tenant.
    pub fn is_global(self) -> bool {
        matches!(self, ClaimKind::AccessToken | ClaimKind::UserEmail)
    }
}

/// A valid KV key for one claimed value: `<kind>.<tenant>.<sha256 hex>`, or `<kind>.<sha256 hex>`
/// for global kinds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClaimKey {
    kind: ClaimKind,
    key: String,
}

impl ClaimKey {
    /// The key of `value` of `kind` in `tenant`. The tenant is ignored for global kinds; emails are
    /// lowercased. Other values are taken exactly as given (ThingsBoard names are case-sensitive).
    pub fn new(kind: ClaimKind, tenant: Uuid, value: &str) -> Self {
        let digest = match kind {
            ClaimKind::UserEmail => Sha256::digest(value.to_lowercase().as_bytes()),
            _ => Sha256::digest(value.as_bytes()),
        };
        let hash = hex::encode(digest);
        let key = if kind.is_global() {
            format!("{}.{hash}", kind.token())
        } else {
            format!("{}.{tenant}.{hash}", kind.token())
        };
        Self { kind, key }
    }

    pub fn device_name(tenant: Uuid, name: &str) -> Self {
        Self::new(ClaimKind::DeviceName, tenant, name)
    }

    pub fn asset_name(tenant: Uuid, name: &str) -> Self {
        Self::new(ClaimKind::AssetName, tenant, name)
    }

    pub fn customer_title(tenant: Uuid, title: &str) -> Self {
        Self::new(ClaimKind::CustomerTitle, tenant, title)
    }

    pub fn device_profile_name(tenant: Uuid, name: &str) -> Self {
        Self::new(ClaimKind::DeviceProfileName, tenant, name)
    }

    pub fn asset_profile_name(tenant: Uuid, name: &str) -> Self {
        Self::new(ClaimKind::AssetProfileName, tenant, name)
    }

    pub fn access_token(token: &str) -> Self {
        Self::new(ClaimKind::AccessToken, Uuid::nil(), token)
    }

    pub fn user_email(email: &str) -> Self {
        Self::new(ClaimKind::UserEmail, Uuid::nil(), email)
    }

    pub fn kind(&self) -> ClaimKind {
        self.kind
    }

    pub fn as_str(&self) -> &str {
        &self.key
    }
}

impl fmt::Display for ClaimKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key)
    }
}

/// The answer to a claim or a take-over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The key was free (or handed over) and now belongs to the caller's owner.
    Claimed,
    /// The key already belonged to the caller's owner (a retried command).
    AlreadyOurs,
    /// The key belongs to another owner.
    TakenBy(Uuid),
}

/// Create-only reservations of unique keys, as the platform uses them. [`Claims`] is the
/// JetStream key-value implementation; `thinglake_test_support::MemoryClaims` keeps the same
/// contract in memory, for tests without a nats-server. The methods are those of [`Claims`],
/// which documents them.
pub trait ClaimStore: fmt::Debug + Send + Sync + 'static {
    fn claim<'a>(&'a self, key: &'a ClaimKey, owner: Uuid) -> BoxFuture<'a, Result<ClaimOutcome>>;

    fn release<'a>(&'a self, key: &'a ClaimKey, owner: Uuid) -> BoxFuture<'a, Result<bool>>;

    fn owner<'a>(&'a self, key: &'a ClaimKey) -> BoxFuture<'a, Result<Option<Uuid>>>;

    fn take_over<'a>(&'a self, key: &'a ClaimKey, from: Uuid, to: Uuid) -> BoxFuture<'a, Result<ClaimOutcome>>;
}

impl ClaimStore for Claims {
    fn claim<'a>(&'a self, key: &'a ClaimKey, owner: Uuid) -> BoxFuture<'a, Result<ClaimOutcome>> {
        Box::pin(Claims::claim(self, key, owner))
    }

    fn release<'a>(&'a self, key: &'a ClaimKey, owner: Uuid) -> BoxFuture<'a, Result<bool>> {
        Box::pin(Claims::release(self, key, owner))
    }

    fn owner<'a>(&'a self, key: &'a ClaimKey) -> BoxFuture<'a, Result<Option<Uuid>>> {
        Box::pin(Claims::owner(self, key))
    }

    fn take_over<'a>(&'a self, key: &'a ClaimKey, from: Uuid, to: Uuid) -> BoxFuture<'a, Result<ClaimOutcome>> {
        Box::pin(Claims::take_over(self, key, from, to))
    }
}

/// The claims bucket. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Claims {
    kv: kv::Store,
    bucket: String,
}

impl Claims {
    /// Opens the claims bucket, creating it (file storage, one revision a key) if missing. Safe
    /// to call from several processes at once.
    pub async fn open(js: &Context, subjects: &Subjects) -> Result<Self> {
        let bucket = subjects.claims_bucket();
        let kv = ensure_bucket(js, &bucket, "Thinglake unique-key claims: names, access tokens, emails").await?;
        Ok(Self { kv, bucket })
    }

    /// Reserves `key` for `owner` with a create-only write.
    pub async fn claim(&self, key: &ClaimKey, owner: Uuid) -> Result<ClaimOutcome> {
        for _ in 0..RACE_ATTEMPTS {
            match self.kv.create(key.as_str(), owner_value(owner)).await {
                Ok(_) => return Ok(ClaimOutcome::Claimed),
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {}
                Err(e) => return Err(self.error(key, "create", e)),
            }
            match self.current(key).await? {
                Some((holder, _)) if holder == owner => return Ok(ClaimOutcome::AlreadyOurs),
                Some((holder, _)) => return Ok(ClaimOutcome::TakenBy(holder)),
                // Released between our create and our read: try again.
                None => debug!(key = %key, "claim released while claiming; retrying"),
            }
        }
        Err(self.contended(key))
    }

    /// Releases `key` if it still belongs to `owner`. Returns whether it did; `false` means the key
    /// was free or someone else's, and nothing changed.
    pub async fn release(&self, key: &ClaimKey, owner: Uuid) -> Result<bool> {
        for _ in 0..RACE_ATTEMPTS {
            let revision = match self.current(key).await? {
                Some((holder, revision)) if holder == owner => revision,
                _ => return Ok(false),
            };
            match self.kv.delete_expect_revision(key.as_str(), Some(revision)).await {
                Ok(()) => return Ok(true),
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => {
                    debug!(key = %key, "claim changed while releasing; retrying");
                }
                Err(e) => return Err(self.error(key, "delete", e)),
            }
        }
        Err(self.contended(key))
    }

    /// The current owner of `key`, if claimed.
    pub async fn owner(&self, key: &ClaimKey) -> Result<Option<Uuid>> {
        Ok(self.current(key).await?.map(|(owner, _)| owner))
    }

    /// Hands `key` from `from` to `to`, for a claim whose owner turned out to be deleted or never
    /// created (a crash between claim and append). Succeeds with [`ClaimOutcome::Claimed`] if the
    /// key belonged to `from` or was free, [`ClaimOutcome::AlreadyOurs`] if it already belongs to
    /// `to`, and answers [`ClaimOutcome::TakenBy`] if a third owner holds it.
    pub async fn take_over(&self, key: &ClaimKey, from: Uuid, to: Uuid) -> Result<ClaimOutcome> {
        for _ in 0..RACE_ATTEMPTS {
            let revision = match self.current(key).await? {
                Some((holder, _)) if holder == to => return Ok(ClaimOutcome::AlreadyOurs),
                Some((holder, revision)) if holder == from => revision,
                Some((holder, _)) => return Ok(ClaimOutcome::TakenBy(holder)),
                None => return self.claim(key, to).await,
            };
            match self.kv.update(key.as_str(), owner_value(to), revision).await {
                Ok(_) => return Ok(ClaimOutcome::Claimed),
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => {
                    debug!(key = %key, "claim changed while taking it over; retrying");
                }
                Err(e) => return Err(self.error(key, "update", e)),
            }
        }
        Err(self.contended(key))
    }

    /// The live owner and revision of `key`; `None` if never claimed or released.
    async fn current(&self, key: &ClaimKey) -> Result<Option<(Uuid, u64)>> {
        let entry = self.kv.entry(key.as_str()).await.map_err(|e| self.error(key, "read", e))?;
        match entry {
            Some(entry) if entry.operation == Operation::Put => {
                let owner =
                    std::str::from_utf8(&entry.value).ok().and_then(|s| Uuid::parse_str(s).ok()).ok_or_else(|| {
                        Error::ClaimCorrupt {
                            bucket: self.bucket.clone(),
                            key: key.to_string(),
                            revision: entry.revision,
                        }
                    })?;
                Ok(Some((owner, entry.revision)))
            }
            _ => Ok(None),
        }
    }

    fn error(&self, key: &ClaimKey, op: &'static str, source: impl Into<BoxError>) -> Error {
        Error::Claim { bucket: self.bucket.clone(), op, key: key.to_string(), source: source.into() }
    }

    fn contended(&self, key: &ClaimKey) -> Error {
        Error::ClaimContended { bucket: self.bucket.clone(), key: key.to_string(), attempts: RACE_ATTEMPTS }
    }
}

fn owner_value(owner: Uuid) -> Bytes {
    Bytes::from(owner.to_string())
}

/// Opens a key-value bucket holding one revision a key in file storage, creating it if missing.
/// Two processes starting at once may race to create it; the loser retries.
pub(crate) async fn ensure_bucket(js: &Context, bucket: &str, description: &str) -> Result<kv::Store> {
    let config = kv::Config {
        bucket: bucket.to_string(),
        description: description.to_string(),
        history: 1,
        storage: StorageType::File,
        ..Default::default()
    };
    let mut attempt = 1;
    loop {
        match js.create_or_update_key_value(config.clone()).await {
            Ok(store) => return Ok(store),
            Err(e) if attempt < SETUP_ATTEMPTS => {
                debug!(bucket, attempt, error = %e, "bucket setup failed; retrying");
                tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
                attempt += 1;
            }
            Err(e) => {
                // The last attempt may have lost a creation race to an identical bucket.
                return match js.get_key_value(bucket).await {
                    Ok(store) => Ok(store),
                    Err(_) => Err(Error::setup(bucket, e)),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_valid_kv_keys_for_any_text() {
        let tenant = Uuid::now_v7();
        for name in ["Thermostat 1", "ünïcödé.näme", "a.b.c", " ", "*>", ""] {
            let key = ClaimKey::device_name(tenant, name);
            assert!(key.as_str().chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')), "{key}");
            assert!(!key.as_str().starts_with('.') && !key.as_str().ends_with('.'));
        }
    }

    #[test]
    fn names_are_scoped_by_tenant_and_kind() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        assert_ne!(ClaimKey::device_name(a, "x"), ClaimKey::device_name(b, "x"));
        assert_ne!(ClaimKey::device_name(a, "x"), ClaimKey::asset_name(a, "x"));
        assert_ne!(ClaimKey::device_name(a, "x"), ClaimKey::device_name(a, "X"));
    }

    #[test]
    fn emails_are_global_and_case_insensitive() {
        assert_eq!(ClaimKey::user_email("Ann@Example.com"), ClaimKey::user_email("ann@example.com"));
        assert_eq!(ClaimKey::new(ClaimKind::UserEmail, Uuid::now_v7(), "a@b.c"), ClaimKey::user_email("a@b.c"));
        assert_eq!(ClaimKey::new(ClaimKind::AccessToken, Uuid::now_v7(), "t"), ClaimKey::access_token("t"));
    }
}
