//! What the in-process suites share: a platform (event store, claims, entity view) on a real
//! nats-server started for the run.

use thinglake_infra::auth::{JwtKeys, TokenLifetimes};
use thinglake_infra::claims::Claims;
use thinglake_infra::event_store::EventStore;
use thinglake_infra::subjects::Subjects;
use thinglake_domain::tenant::TenantFields;
use thinglake_domain::user::Authority;
use thinglake_domain::{CustomerId, TenantId, UserId};
use thinglake_platform::tenants::TenantInput;
use thinglake_platform::{Platform, PlatformConfig, Principal};
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

/// A tenant created on `platform` (as devices of a tenant that does not exist are refused their
/// tokens) and a tenant administrator's principal for it.
pub(crate) async fn tenant_admin(platform: &Platform) -> anyhow::Result<Principal> {
    let sysadmin = Principal {
        user_id: UserId(uuid::Uuid::now_v7()),
        email: "sysadmin@thinglake.local".into(),
        authority: Authority::SysAdmin,
        tenant_id: TenantId::SYSTEM,
        customer_id: CustomerId::NULL,
        token_version: 0,
    };
    let fields: TenantFields = serde_json::from_value(serde_json::json!({"title": format!("bench {}", uuid::Uuid::now_v7())}))?;
    let tenant = platform.save_tenant(&sysadmin, TenantInput { id: None, fields, version: None }).await?;
    Ok(Principal {
        user_id: UserId(uuid::Uuid::now_v7()),
        email: "bench@thinglake.local".into(),
        authority: Authority::TenantAdmin,
        tenant_id: tenant.tenant.id,
        customer_id: CustomerId::NULL,
        token_version: 0,
    })
}
