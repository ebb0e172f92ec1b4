//! What the in-process suites share: a platform (event store, claims, entity view) on a real
//! nats-server started for the run.

use thinglake_infra::auth::{JwtKeys, TokenLifetimes};
use thinglake_infra::claims::Claims;
use thinglake_infra::event_store::EventStore;
use thinglake_infra::subjects::Subjects;
use thinglake_platform::{Platform, PlatformConfig};
use thinglake_projections::EntityView;
use thinglake_test_support::NatsServer;

/// A platform on `nats` with default settings, and its event store.
pub(crate) async fn platform(nats: &NatsServer) -> anyhow::Result<(Platform, EventStore)> {
    let client = nats.client().await;
    let subjects = Subjects::default();
    let store = EventStore::connect(client, subjects.clone()).await?;
    let claims = Claims::open(store.jetstream(), &subjects).await?;
    let platform = Platform::new(
        store.clone(),
        claims,
        EntityView::new(),
        JwtKeys::new(b"benchmark-secret-benchmark-secret-benchmark-secret-benchmark-sec", TokenLifetimes::default()),
        PlatformConfig::default(),
    );
    Ok((platform, store))
}
