//! Passwords: the length policy of new passwords, and argon2 hashing and verification on a
//! bounded number of blocking threads.
//!
//! An argon2 hash takes tens of milliseconds and about 19 MiB; without a bound, every sign-in
//! attempt would take a blocking thread of its own (Tokio grows that pool to 512). At most
//! [`PasswordConfig::hash_concurrency`] run at once; a request waits up to
//! [`PasswordConfig::hash_wait`] for its turn (fairly, first come first served) and is then
//! answered [`Error::PasswordHashingBusy`] (503 with `Retry-After`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::error::{Error, Result};

/// ThingsBoard's default `maximumLength` of its password policy.
pub const MAX_PASSWORD_LENGTH: usize = 72;

/// Password policy and hashing bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordConfig {
    /// Shortest password accepted on activation and password change.
    pub min_length: usize,
    /// argon2 hashes or verifications running at once.
    pub hash_concurrency: usize,
    /// How long a request waits for a free hashing slot before it is refused.
    pub hash_wait: Duration,
}

impl Default for PasswordConfig {
    fn default() -> Self {
        Self {
            min_length: 8,
            hash_concurrency: std::thread::available_parallelism().map(usize::from).unwrap_or(2),
            hash_wait: Duration::from_secs(2),
        }
    }
}

/// The bounded argon2 pool of one node.
#[derive(Debug)]
pub(crate) struct PasswordHashing {
    slots: Arc<Semaphore>,
    wait: Duration,
}

impl PasswordHashing {
    pub(crate) fn new(config: &PasswordConfig) -> Self {
        Self { slots: Arc::new(Semaphore::new(config.hash_concurrency.max(1))), wait: config.hash_wait }
    }

    /// Hashes a password off the I/O runtime, within the bound.
    pub(crate) async fn hash(&self, password: String) -> Result<String> {
        let slot = self.slot().await?;
        let hashed = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            thinglake_infra::auth::hash_password(&password)
        })
        .await
        .map_err(|e| thinglake_infra::Error::PasswordHash { source: e.into() })?;
        Ok(hashed?)
    }

    /// Whether `password` matches `hash` (`None`: a hash of a random password, so an unknown
    /// user costs as much as a known one), off the I/O runtime, within the bound.
    pub(crate) async fn verify(&self, password: String, hash: Option<String>) -> Result<bool> {
        let slot = self.slot().await?;
        let matches = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            match hash {
                Some(hash) => thinglake_infra::auth::verify_password(&password, &hash),
                None => {
                    let _ = thinglake_infra::auth::verify_password(&password, dummy_hash());
                    false
                }
            }
        })
        .await;
        Ok(matches.unwrap_or(false))
    }

    async fn slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit> {
        match tokio::time::timeout(self.wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(slot)) => Ok(slot),
            // Timed out, or (never: it is not closed) the semaphore was closed.
            _ => Err(Error::PasswordHashingBusy { retry_after: Duration::from_secs(1) }),
        }
    }
}

/// A hash to verify against when the user is unknown or has no password.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        thinglake_infra::auth::hash_password(&thinglake_infra::auth::random_token(16)).unwrap_or_default()
    })
}

/// Checks a new password against the policy: at least `min_length` and at most
/// [`MAX_PASSWORD_LENGTH`] characters; the message is ThingsBoard's (passay's).
pub fn check_policy(password: &str, min_length: usize) -> Result<()> {
    let len = password.chars().count();
    let reason = if len < min_length {
        format!("Password must be {min_length} or more characters in length.")
    } else if len > MAX_PASSWORD_LENGTH {
        format!("Password must be no more than {MAX_PASSWORD_LENGTH} characters in length.")
    } else {
        return Ok(());
    };
    Err(Error::PasswordViolation { reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_overlong_passwords_are_refused_with_thingsboards_messages() {
        let err = check_policy("1234567", 8).expect_err("too short");
        assert_eq!(err.to_string(), "Password must be 8 or more characters in length.");
        assert!(check_policy("12345678", 8).is_ok());
        assert!(check_policy(&"x".repeat(73), 8).is_err());
        assert!(check_policy("pässwört", 8).is_ok(), "characters, not bytes, are counted");
    }

    #[tokio::test]
    async fn past_the_bound_a_request_is_refused_after_its_wait() {
        let hashing = PasswordHashing::new(&PasswordConfig { min_length: 8, hash_concurrency: 1, hash_wait: Duration::from_millis(50) });
        let held = hashing.slot().await.expect("a free slot");
        let refused = hashing.verify("p".into(), None).await;
        assert!(matches!(refused, Err(Error::PasswordHashingBusy { .. })), "{refused:?}");
        drop(held);
        assert_eq!(hashing.verify("p".into(), None).await.ok(), Some(false));
    }
}
