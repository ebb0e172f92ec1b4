//! Unique keys (device names within a tenant, access tokens, emails) reserved as claims before
//! the event that uses them is appended, and released when the entity lets go of them.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use thinglake_domain::{DomainError, Lifecycle};
use thinglake_infra::claims::{ClaimKey, ClaimOutcome};
use thinglake_projections::Entities;
use thinglake_projections::entities::Table;
use tracing::{info, warn};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::{Platform, now_ms};

/// A claim whose owner never appeared on the log for this long is taken to be left over from a
/// crash between claiming and appending, and may be taken over.
const ABANDONED_AFTER: Duration = Duration::from_secs(60);

/// Whether a claim's owner still holds the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerState {
    /// The owner exists and uses the key.
    Holds,
    /// The owner is deleted, or exists but no longer uses the key (crash before release).
    LetGo,
    /// The owner is not (yet) in the read model.
    Unknown,
}

impl Platform {
    /// Runs `save` holding `claim` (if any): the key is reserved first and released again when
    /// the save fails, so only one of concurrent saves of one name succeeds.
    pub(crate) async fn save_claimed<R, O>(
        &self,
        claim: Option<NameClaim<O>>,
        save: Pin<Box<dyn Future<Output = Result<R>> + Send + '_>>,
    ) -> Result<R>
    where
        R: Send,
        O: Fn(&Entities, Uuid) -> OwnerState + Send + Sync,
    {
        if let Some(c) = &claim {
            self.claim_key(&c.key, c.owner, &c.owner_state, || c.taken.clone()).await?;
        }
        let result = save.await;
        if let (Err(_), Some(c)) = (&result, &claim) {
            self.release_key(&c.key, c.owner).await;
        }
        result
    }

    /// Reserves `key` for `owner`. `owner_state` tells, from the read model, whether a current
    /// holder still uses the key; `taken` is the error when it does.
    pub async fn claim_key(
        &self,
        key: &ClaimKey,
        owner: Uuid,
        owner_state: impl Fn(&Entities, Uuid) -> OwnerState,
        taken: impl Fn() -> DomainError,
    ) -> Result<()> {
        match self.claims().claim(key, owner).await? {
            ClaimOutcome::Claimed | ClaimOutcome::AlreadyOurs => Ok(()),
            ClaimOutcome::TakenBy(holder) => {
                let state = owner_state(&self.view().read(), holder);
                let abandoned = match state {
                    OwnerState::Holds => false,
                    OwnerState::LetGo => true,
                    OwnerState::Unknown => created_before(holder, ABANDONED_AFTER),
                };
                if !abandoned {
                    return Err(Error::Rejected(taken()));
                }
                info!(key = key.as_str(), %holder, %owner, "taking over an abandoned claim");
                match self.claims().take_over(key, holder, owner).await? {
                    ClaimOutcome::Claimed | ClaimOutcome::AlreadyOurs => Ok(()),
                    ClaimOutcome::TakenBy(_) => Err(Error::Rejected(taken())),
                }
            }
        }
    }

    /// Releases `key` if `owner` holds it. A failure is logged, not returned: the claim is then
    /// abandoned and taken over by the next owner.
    pub async fn release_key(&self, key: &ClaimKey, owner: Uuid) {
        if let Err(e) = self.claims().release(key, owner).await {
            warn!(key = key.as_str(), error = %e, "claim not released");
        }
    }
}

/// Whether the holder of a claimed key, a live entity of `table`, still uses it (`uses`).
pub(crate) fn owner_state<T>(
    table: fn(&Entities) -> &Table<Lifecycle<T>>,
    uses: impl Fn(&T) -> bool,
) -> impl Fn(&Entities, Uuid) -> OwnerState {
    move |e, holder| match table(e).get(&holder).map(|v| &v.state) {
        Some(Lifecycle::Live(x)) if uses(x) => OwnerState::Holds,
        Some(_) => OwnerState::LetGo,
        None => OwnerState::Unknown,
    }
}

/// A unique key to reserve for `owner` before a save that starts using it.
pub(crate) struct NameClaim<O> {
    pub key: ClaimKey,
    pub owner: Uuid,
    pub owner_state: O,
    pub taken: DomainError,
}

/// Whether a UUID v7 was made more than `age` ago (ids of other versions count as old).
fn created_before(id: Uuid, age: Duration) -> bool {
    match id.get_timestamp() {
        Some(ts) => {
            let (secs, nanos) = ts.to_unix();
            let created_ms = secs as i64 * 1000 + i64::from(nanos / 1_000_000);
            now_ms() - created_ms > age.as_millis() as i64
        }
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_v7_id_is_not_abandoned() {
        assert!(!created_before(Uuid::now_v7(), ABANDONED_AFTER));
        assert!(created_before(Uuid::from_u128(5), ABANDONED_AFTER));
    }
}
