//! Auth primitives: password hashes, ThingsBoard-shaped JWTs and the shared signing key.

use std::time::{Duration, SystemTime};

use anyhow::Result;
use thinglake_domain::NULL_UUID;
use thinglake_domain::user::Authority;
use thinglake_infra::auth::{
    JwtKeys, REFRESH_SCOPE, TokenError, TokenLifetimes, TokenUser, hash_password, load_or_create_signing_key,
    verify_password,
};
use thinglake_infra::subjects::Subjects;
use thinglake_test_support::NatsServer;
use uuid::Uuid;

fn tenant_admin() -> TokenUser {
    TokenUser {
        user_id: Uuid::now_v7(),
        email: "tenant@thingsboard.org".to_string(),
        authority: Authority::TenantAdmin,
        tenant_id: Uuid::now_v7(),
        customer_id: NULL_UUID,
        first_name: Some("Ten".to_string()),
        last_name: None,
        enabled: true,
        is_public: false,
        token_version: 0,
    }
}

#[test]
fn a_password_verifies_against_its_hash_and_nothing_else() -> Result<()> {
    let hash = hash_password("tenant")?;
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(verify_password("tenant", &hash));
    assert!(!verify_password("Tenant", &hash));
    assert!(!verify_password("tenant", "not a phc string"));
    assert_ne!(hash_password("tenant")?, hash, "salted");
    Ok(())
}

#[test]
fn tokens_round_trip_with_thingsboard_claims() -> Result<()> {
    let keys = JwtKeys::new(&[7u8; 64], TokenLifetimes::default());
    let user = tenant_admin();
    let session = Uuid::now_v7();
    let now = SystemTime::now();
    let pair = keys.issue_pair(&user, session, now)?;

    let access = keys.verify_access(&pair.token)?;
    assert_eq!(access.sub, user.email);
    assert_eq!(access.user_id, user.user_id);
    assert_eq!(access.scopes, ["TENANT_ADMIN"]);
    assert_eq!(access.authority(), Some(Authority::TenantAdmin));
    assert_eq!(access.tenant_id, Some(user.tenant_id));
    assert_eq!(access.customer_id, Some(NULL_UUID));
    assert_eq!(access.first_name.as_deref(), Some("Ten"));
    assert_eq!(access.enabled, Some(true));
    assert_eq!(access.session_id, session);
    assert_eq!(access.iss, "thinglake");
    assert_eq!(access.exp - access.iat, 9000);

    let json = serde_json::to_value(&access)?;
    for key in ["sub", "userId", "scopes", "tenantId", "customerId", "firstName", "enabled", "isPublic", "sessionId"] {
        assert!(json.get(key).is_some(), "claim {key} missing from {json}");
    }

    let refresh = keys.verify_refresh(&pair.refresh_token)?;
    assert_eq!(refresh.scopes, [REFRESH_SCOPE]);
    assert_eq!(refresh.session_id, session);
    assert_eq!(refresh.exp - refresh.iat, 604_800);

    assert!(matches!(keys.verify_access(&pair.refresh_token), Err(TokenError::Invalid { .. })));
    assert!(matches!(keys.verify_refresh(&pair.token), Err(TokenError::Invalid { .. })));
    Ok(())
}

#[test]
fn an_expired_token_is_told_apart_from_an_invalid_one() -> Result<()> {
    let keys = JwtKeys::new(b"a secret of our own", TokenLifetimes::default());
    let long_ago = SystemTime::now() - Duration::from_secs(9001);
    let expired = keys.issue_access(&tenant_admin(), Uuid::now_v7(), long_ago)?;
    assert_eq!(keys.verify(&expired), Err(TokenError::Expired));

    let other = JwtKeys::new(b"someone else's secret", TokenLifetimes::default());
    let forged = other.issue_access(&tenant_admin(), Uuid::now_v7(), SystemTime::now())?;
    assert!(matches!(keys.verify(&forged), Err(TokenError::Invalid { .. })));
    assert!(matches!(keys.verify("not.a.jwt"), Err(TokenError::Invalid { .. })));
    Ok(())
}

#[tokio::test]
async fn nodes_starting_together_agree_on_one_signing_key() -> Result<()> {
    let nats = NatsServer::start().await;
    let subjects = Subjects::default();
    let (a, b) = (nats.jetstream().await, nats.jetstream().await);

    let (key_a, key_b) =
        tokio::join!(load_or_create_signing_key(&a, &subjects, None), load_or_create_signing_key(&b, &subjects, None));
    let (key_a, key_b) = (key_a?, key_b?);
    assert_eq!(key_a.len(), 64);
    assert_eq!(key_a, key_b);
    assert_eq!(load_or_create_signing_key(&a, &subjects, None).await?, key_a, "stable across restarts");

    let configured = load_or_create_signing_key(&a, &subjects, Some("configured".to_string())).await?;
    assert_eq!(configured, b"configured");
    assert!(load_or_create_signing_key(&a, &subjects, Some(String::new())).await.is_err());
    Ok(())
}
