//! Claims against a real nats-server: one winner among concurrent claimers, releases only by the
//! owner, take-overs checked against the previous owner.

use anyhow::Result;
use thinglake_infra::claims::{ClaimKey, ClaimOutcome, Claims};
use thinglake_infra::subjects::Subjects;
use thinglake_test_support::NatsServer;
use uuid::Uuid;

async fn claims(nats: &NatsServer) -> Result<Claims> {
    Ok(Claims::open(&nats.jetstream().await, &Subjects::default()).await?)
}

#[tokio::test]
async fn of_twenty_concurrent_claims_exactly_one_wins() -> Result<()> {
    let nats = NatsServer::start().await;
    let claims = claims(&nats).await?;
    let key = ClaimKey::device_name(Uuid::now_v7(), "Thermostat A.1 ünïcödé");
    let owners: Vec<Uuid> = (0..20).map(|_| Uuid::now_v7()).collect();

    let outcomes = futures::future::join_all(owners.iter().map(|owner| claims.claim(&key, *owner))).await;
    let outcomes: Vec<ClaimOutcome> = outcomes.into_iter().collect::<Result<_, _>>()?;
    let winners: Vec<Uuid> =
        owners.iter().zip(&outcomes).filter(|(_, o)| **o == ClaimOutcome::Claimed).map(|(owner, _)| *owner).collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    let winner = winners[0];
    for (owner, outcome) in owners.iter().zip(&outcomes) {
        if *owner != winner {
            assert_eq!(*outcome, ClaimOutcome::TakenBy(winner));
        }
    }
    assert_eq!(claims.owner(&key).await?, Some(winner));
    assert_eq!(claims.claim(&key, winner).await?, ClaimOutcome::AlreadyOurs);
    Ok(())
}

#[tokio::test]
async fn only_the_owner_releases_a_claim() -> Result<()> {
    let nats = NatsServer::start().await;
    let claims = claims(&nats).await?;
    let key = ClaimKey::user_email("Ann@Example.com");
    let (ann, bob) = (Uuid::now_v7(), Uuid::now_v7());

    assert_eq!(claims.owner(&key).await?, None);
    assert!(!claims.release(&key, ann).await?, "nothing to release");
    assert_eq!(claims.claim(&key, ann).await?, ClaimOutcome::Claimed);
    assert_eq!(claims.claim(&ClaimKey::user_email("ann@example.com"), bob).await?, ClaimOutcome::TakenBy(ann));

    assert!(!claims.release(&key, bob).await?);
    assert_eq!(claims.owner(&key).await?, Some(ann));
    assert!(claims.release(&key, ann).await?);
    assert_eq!(claims.owner(&key).await?, None);

    // A released key can be claimed again.
    assert_eq!(claims.claim(&key, bob).await?, ClaimOutcome::Claimed);
    assert_eq!(claims.owner(&key).await?, Some(bob));
    Ok(())
}

#[tokio::test]
async fn a_take_over_succeeds_only_from_the_named_owner() -> Result<()> {
    let nats = NatsServer::start().await;
    let claims = claims(&nats).await?;
    let key = ClaimKey::access_token("A1_TEST_TOKEN");
    let (ghost, heir, other) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());

    assert_eq!(claims.claim(&key, ghost).await?, ClaimOutcome::Claimed);
    assert_eq!(claims.take_over(&key, other, heir).await?, ClaimOutcome::TakenBy(ghost));
    assert_eq!(claims.take_over(&key, ghost, heir).await?, ClaimOutcome::Claimed);
    assert_eq!(claims.owner(&key).await?, Some(heir));
    assert_eq!(claims.take_over(&key, ghost, heir).await?, ClaimOutcome::AlreadyOurs);
    assert_eq!(claims.take_over(&key, ghost, other).await?, ClaimOutcome::TakenBy(heir));

    // Concurrent take-overs of one claim: one heir gets it.
    let heirs: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
    let outcomes = futures::future::join_all(heirs.iter().map(|h| claims.take_over(&key, heir, *h))).await;
    let claimed = outcomes.iter().filter(|o| matches!(o, Ok(ClaimOutcome::Claimed))).count();
    assert_eq!(claimed, 1, "{outcomes:?}");
    Ok(())
}

#[tokio::test]
async fn opening_the_bucket_concurrently_is_safe() -> Result<()> {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    let subjects = Subjects::new("it-claims");
    let opened = futures::future::join_all((0..4).map(|_| Claims::open(&js, &subjects))).await;
    let opened: Vec<Claims> = opened.into_iter().collect::<Result<_, _>>()?;
    let key = ClaimKey::customer_title(Uuid::now_v7(), "Acme");
    let owner = Uuid::now_v7();
    assert_eq!(opened[0].claim(&key, owner).await?, ClaimOutcome::Claimed);
    assert_eq!(opened[3].owner(&key).await?, Some(owner));
    Ok(())
}
