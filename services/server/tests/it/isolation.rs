//! Tenant isolation: another tenant's administrator can neither read, change nor delete an
//! entity by id, and never sees it in a list; the entity is unchanged afterwards.

use serde_json::{Value, json};

use crate::harness::{TestApp, id_of};

/// One kind of entity: where it is saved, read by id, and listed.
struct Kind {
    save: &'static str,
    by_id: &'static str,
    list: &'static str,
}

/// Tenant A creates an entity of `kind` from `body`; tenant B tries everything on it.
async fn another_tenant_cannot_touch(kind: Kind, body: Value) {
    let t = TestApp::start().await;
    let (a, b) = two_tenants(&t).await;
    let created = t.post(kind.save, &a, body).await.ok();
    let id = id_of(&created);
    let url = format!("{}/{id}", kind.by_id);

    assert_denied(t.get(&url, &b).await.status.as_u16(), "read");
    let mut hijack = created.clone();
    hijack["name"] = json!("hijacked");
    hijack["title"] = json!("hijacked");
    assert_denied(t.post(kind.save, &b, hijack).await.status.as_u16(), "update");
    assert_denied(t.delete(&url, &b).await.status.as_u16(), "delete");
    let list = t.get(&format!("{}?pageSize=100&page=0", kind.list), &b).await.ok();
    let ids: Vec<&str> = list["data"].as_array().expect("data").iter().filter_map(|e| e["id"]["id"].as_str()).collect();
    assert!(!ids.contains(&id.as_str()), "tenant B lists tenant A's entity: {list}");

    assert_eq!(t.get(&url, &a).await.ok(), created, "the entity changed");
}

/// Two tenants' administrators. (The harness derives admin emails from the first 8 characters of
/// a v7 tenant id, which two tenants made in the same millisecond share.)
async fn two_tenants(t: &TestApp) -> (String, String) {
    let sys = t.sysadmin().await;
    let mut tokens = Vec::new();
    for title in ["Tenant A", "Tenant B"] {
        let tenant = id_of(&t.post("/api/tenant", &sys, json!({"title": title})).await.ok());
        let admin = json!({
            "email": format!("admin-{tenant}@example.com"),
            "authority": "TENANT_ADMIN",
            "tenantId": {"entityType": "TENANT", "id": tenant},
        });
        tokens.push(t.user(&sys, admin).await);
    }
    let b = tokens.pop().expect("two tokens");
    let a = tokens.pop().expect("two tokens");
    (a, b)
}

#[track_caller]
fn assert_denied(status: u16, what: &str) {
    assert!(status == 403 || status == 404, "{what} by another tenant answered {status}");
}

#[tokio::test]
async fn another_tenant_cannot_touch_a_customer() {
    let kind = Kind { save: "/api/customer", by_id: "/api/customer", list: "/api/customers" };
    another_tenant_cannot_touch(kind, json!({"title": "Globex"})).await;
}

#[tokio::test]
async fn another_tenant_cannot_touch_a_device() {
    let kind = Kind { save: "/api/device", by_id: "/api/device", list: "/api/tenant/devices" };
    another_tenant_cannot_touch(kind, json!({"name": "Pump"})).await;
}

#[tokio::test]
async fn another_tenant_cannot_touch_an_asset() {
    let kind = Kind { save: "/api/asset", by_id: "/api/asset", list: "/api/tenant/assets" };
    another_tenant_cannot_touch(kind, json!({"name": "Plant"})).await;
}

#[tokio::test]
async fn another_tenant_cannot_touch_a_device_profile() {
    let kind = Kind { save: "/api/deviceProfile", by_id: "/api/deviceProfile", list: "/api/deviceProfiles" };
    another_tenant_cannot_touch(kind, json!({"name": "Meter"})).await;
}

#[tokio::test]
async fn another_tenant_cannot_touch_an_asset_profile() {
    let kind = Kind { save: "/api/assetProfile", by_id: "/api/assetProfile", list: "/api/assetProfiles" };
    another_tenant_cannot_touch(kind, json!({"name": "building"})).await;
}

#[tokio::test]
async fn another_tenant_cannot_touch_a_relation() {
    let t = TestApp::start().await;
    let (a, b) = two_tenants(&t).await;
    let asset = t.post("/api/asset", &a, json!({"name": "Plant"})).await.ok();
    let device = t.device(&a, "Pump").await;
    let relation = json!({"from": asset["id"], "to": device["id"], "type": "Contains", "typeGroup": "COMMON"});
    t.post("/api/relation", &a, relation.clone()).await.ok();
    let (asset_id, device_id) = (id_of(&asset), id_of(&device));
    let one = format!("/api/relation?fromId={asset_id}&fromType=ASSET&relationType=Contains&toId={device_id}&toType=DEVICE");
    let from = format!("/api/relations?fromId={asset_id}&fromType=ASSET");

    assert_denied(t.get(&one, &b).await.status.as_u16(), "read");
    let listed = t.get(&from, &b).await;
    assert!(listed.status.as_u16() == 403 || listed.body == json!([]), "tenant B lists tenant A's relation: {listed:?}");
    assert_denied(t.post("/api/relation", &b, relation).await.status.as_u16(), "save");
    assert_denied(t.delete(&one, &b).await.status.as_u16(), "delete");

    let still = t.get(&from, &a).await.ok();
    assert_eq!(still.as_array().map(Vec::len), Some(1), "{still}");
}
