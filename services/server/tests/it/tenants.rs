//! Tenant endpoints: create, read, update with versions, list, delete; who may do what.

use reqwest::Method;
use serde_json::json;

use crate::harness::{PASSWORD, TestApp, id_of};

/// A tenant and an activated administrator with an email unique per tenant; answers (tenant
/// id, admin email, admin token).
pub(crate) async fn tenant_with_admin(t: &TestApp, title: &str) -> (String, String, String) {
    let sys = t.sysadmin().await;
    let tenant_id = id_of(&t.post("/api/tenant", &sys, json!({"title": title})).await.ok());
    let email = format!("admin-{tenant_id}@example.com");
    let token = t
        .user(&sys, json!({"email": email, "authority": "TENANT_ADMIN", "tenantId": {"entityType": "TENANT", "id": tenant_id}}))
        .await;
    (tenant_id, email, token)
}

#[tokio::test]
async fn a_created_tenant_reads_back_with_thingsboards_shape() {
    let t = TestApp::start().await;
    let sys = t.sysadmin().await;
    let tenant = t.post("/api/tenant", &sys, json!({"title": "Acme", "city": "Lyon", "email": "ops@acme.io"})).await.ok();
    assert_eq!(tenant["id"]["entityType"], "TENANT");
    assert_eq!(tenant["title"], "Acme");
    assert_eq!(tenant["name"], "Acme");
    assert_eq!(tenant["city"], "Lyon");
    assert_eq!(tenant["email"], "ops@acme.io");
    assert_eq!(tenant["version"], 1);
    assert_eq!(tenant["tenantProfileId"]["entityType"], "TENANT_PROFILE");
    let id = id_of(&tenant);
    assert_eq!(t.get(&format!("/api/tenant/{id}"), &sys).await.ok(), tenant);
    let info = t.get(&format!("/api/tenant/info/{id}"), &sys).await.ok();
    assert_eq!(info["tenantProfileName"], "Default");
    assert_eq!(info["title"], "Acme");
}

#[tokio::test]
async fn a_new_tenant_has_its_default_profiles() {
    let t = TestApp::start().await;
    let (_, _, admin) = tenant_with_admin(&t, "Acme").await;
    let profile = t.get("/api/deviceProfileInfo/default", &admin).await.ok();
    assert_eq!(profile["name"], "default");
}

#[tokio::test]
async fn a_stale_tenant_version_is_refused_with_409() {
    let t = TestApp::start().await;
    let sys = t.sysadmin().await;
    let mut tenant = t.post("/api/tenant", &sys, json!({"title": "Acme"})).await.ok();
    tenant["city"] = json!("Lyon");
    assert_eq!(t.post("/api/tenant", &sys, tenant.clone()).await.ok()["version"], 2);
    tenant["city"] = json!("Paris");
    assert_eq!(t.post("/api/tenant", &sys, tenant.clone()).await.expect(409)["errorCode"], 35);
    assert_eq!(t.get(&format!("/api/tenant/{}", id_of(&tenant)), &sys).await.ok()["city"], "Lyon");
}

#[tokio::test]
async fn a_tenant_admin_cannot_create_tenants() {
    let t = TestApp::start().await;
    let (_, _, admin) = tenant_with_admin(&t, "Acme").await;
    assert_eq!(t.post("/api/tenant", &admin, json!({"title": "Mine"})).await.expect(403)["errorCode"], 20);
}

#[tokio::test]
async fn a_tenant_admin_reads_its_own_tenant_but_not_another() {
    let t = TestApp::start().await;
    let (acme, _, admin) = tenant_with_admin(&t, "Acme").await;
    let sys = t.sysadmin().await;
    let other = id_of(&t.post("/api/tenant", &sys, json!({"title": "Globex"})).await.ok());
    assert_eq!(t.get(&format!("/api/tenant/{acme}"), &admin).await.ok()["title"], "Acme");
    t.get(&format!("/api/tenant/{other}"), &admin).await.expect(403);
    t.get("/api/tenants?pageSize=10&page=0", &admin).await.expect(403);
}

#[tokio::test]
async fn a_sysadmin_cannot_list_devices() {
    let t = TestApp::start().await;
    let sys = t.sysadmin().await;
    assert_eq!(t.get("/api/tenant/devices?pageSize=10&page=0", &sys).await.expect(403)["errorCode"], 20);
}

#[tokio::test]
async fn a_deleted_tenants_admin_token_stops_working_and_login_fails() {
    let t = TestApp::start().await;
    let (tenant_id, email, admin) = tenant_with_admin(&t, "Acme").await;
    t.get("/api/auth/user", &admin).await.ok();
    let sys = t.sysadmin().await;
    t.delete(&format!("/api/tenant/{tenant_id}"), &sys).await.ok();
    t.get("/api/auth/user", &admin).await.expect(401);
    let err = t
        .call(Method::POST, "/api/auth/login", None, Some(json!({"username": email, "password": PASSWORD})))
        .await
        .expect(401);
    assert_eq!(err["errorCode"], 10);
    t.get(&format!("/api/tenant/{tenant_id}"), &sys).await.expect(404);
}

#[tokio::test]
async fn tenants_are_paged_and_searchable() {
    let t = TestApp::start().await;
    let sys = t.sysadmin().await;
    for title in ["Alpha", "Bravo", "Charlie", "Delta", "Echo"] {
        t.post("/api/tenant", &sys, json!({"title": title})).await.ok();
    }
    let first = t.get("/api/tenants?pageSize=2&page=0&sortProperty=title&sortOrder=ASC", &sys).await.ok();
    assert_eq!(first["totalElements"], 5);
    assert_eq!(first["totalPages"], 3);
    assert_eq!(first["hasNext"], true);
    assert_eq!(first["data"][0]["title"], "Alpha");
    let last = t.get("/api/tenants?pageSize=2&page=2&sortProperty=title&sortOrder=ASC", &sys).await.ok();
    assert_eq!(last["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(last["hasNext"], false);
    let found = t.get("/api/tenants?pageSize=10&page=0&textSearch=har", &sys).await.ok();
    assert_eq!(found["totalElements"], 1);
    assert_eq!(found["data"][0]["title"], "Charlie");
}
