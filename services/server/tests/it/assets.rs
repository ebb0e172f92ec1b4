//! Asset endpoints: create, read, list, update with versions, unique names, assignment, types.

use serde_json::{Value, json};

use crate::harness::{TestApp, id_of};

async fn asset(t: &TestApp, token: &str, body: Value) -> Value {
    t.post("/api/asset", token, body).await.ok()
}

#[tokio::test]
async fn a_created_asset_reads_back_with_thingsboards_shape() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let created = asset(&t, &admin, json!({"name": "Building A", "type": "building", "label": "HQ"})).await;
    assert_eq!(created["id"]["entityType"], "ASSET");
    assert_eq!(created["type"], "building");
    assert_eq!(created["label"], "HQ");
    assert_eq!(created["version"], 1);
    assert_eq!(created["assetProfileId"]["entityType"], "ASSET_PROFILE");
    assert_eq!(created["customerId"]["id"], "13814000-1dd2-11b2-8080-808080808080");
    let id = id_of(&created);
    assert_eq!(t.get(&format!("/api/asset/{id}"), &admin).await.ok(), created);
    let info = t.get(&format!("/api/asset/info/{id}"), &admin).await.ok();
    assert_eq!(info["assetProfileName"], "building");
    assert_eq!(info["customerTitle"], Value::Null);
    let profile = t.get(&format!("/api/assetProfile/{}", created["assetProfileId"]["id"].as_str().expect("id")), &admin).await.ok();
    assert_eq!(profile["name"], "building");
}

#[tokio::test]
async fn an_asset_without_type_gets_the_default_profile() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let created = asset(&t, &admin, json!({"name": "Field"})).await;
    assert_eq!(created["type"], "default");
}

#[tokio::test]
async fn a_stale_asset_version_is_refused_with_409_and_changes_nothing() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let mut a = asset(&t, &admin, json!({"name": "Tank"})).await;
    a["label"] = json!("first");
    assert_eq!(t.post("/api/asset", &admin, a.clone()).await.ok()["version"], 2);
    a["label"] = json!("stale");
    assert_eq!(t.post("/api/asset", &admin, a.clone()).await.expect(409)["errorCode"], 35);
    assert_eq!(t.get(&format!("/api/asset/{}", id_of(&a)), &admin).await.ok()["label"], "first");
}

#[tokio::test]
async fn concurrent_creates_of_one_asset_name_yield_exactly_one_asset() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let attempts = (0..16).map(|_| t.post("/api/asset", &admin, json!({"name": "Silo"})));
    let results = futures::future::join_all(attempts).await;
    assert_eq!(results.iter().filter(|r| r.status.is_success()).count(), 1, "{results:?}");
    for r in results.iter().filter(|r| !r.status.is_success()) {
        assert_eq!(r.status.as_u16(), 400, "{r:?}");
    }
    let list = t.get("/api/tenant/assets?pageSize=100&page=0", &admin).await.ok();
    assert_eq!(list["totalElements"], 1);
}

#[tokio::test]
async fn renaming_an_asset_to_a_taken_name_is_refused() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    asset(&t, &admin, json!({"name": "One"})).await;
    let mut two = asset(&t, &admin, json!({"name": "Two"})).await;
    two["name"] = json!("One");
    t.post("/api/asset", &admin, two.clone()).await.expect(400);
    two["name"] = json!("Three");
    t.post("/api/asset", &admin, two).await.ok();
    asset(&t, &admin, json!({"name": "Two"})).await;
}

#[tokio::test]
async fn assets_page_filter_by_type_and_find_by_name() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    for (name, ty) in [("Pump house", "building"), ("Truck", "vehicle"), ("pump station", "building"), ("Barn", "building")] {
        asset(&t, &admin, json!({"name": name, "type": ty})).await;
    }
    let page = t.get("/api/tenant/assets?pageSize=2&page=1&sortProperty=name&sortOrder=ASC", &admin).await.ok();
    assert_eq!(page["totalElements"], 4);
    assert_eq!(page["data"][0]["name"], "pump station");
    let found = t.get("/api/tenant/assets?pageSize=10&page=0&textSearch=PUMP", &admin).await.ok();
    assert_eq!(found["totalElements"], 2);
    let buildings = t.get("/api/tenant/assetInfos?pageSize=10&page=0&type=building", &admin).await.ok();
    assert_eq!(buildings["totalElements"], 3);
    assert_eq!(buildings["data"][0]["assetProfileName"], "building");
    assert_eq!(t.get("/api/tenant/assets?assetName=Truck", &admin).await.ok()["type"], "vehicle");
    assert_eq!(t.get("/api/tenant/asset?assetName=Barn", &admin).await.ok()["name"], "Barn");
    t.get("/api/tenant/asset?assetName=Nothing", &admin).await.expect(404);
    let types = t.get("/api/asset/types", &admin).await.ok();
    let types: Vec<&str> = types.as_array().expect("array").iter().filter_map(|t| t["type"].as_str()).collect();
    assert_eq!(types, ["building", "vehicle"]);
}

#[tokio::test]
async fn an_asset_is_assigned_and_unassigned() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let cid = t.customer(&admin, "Globex").await;
    let id = id_of(&asset(&t, &admin, json!({"name": "Plant"})).await);
    let assigned = t.post(&format!("/api/customer/{cid}/asset/{id}"), &admin, json!({})).await.ok();
    assert_eq!(assigned["customerId"]["id"], cid.as_str());
    let listed = t.get(&format!("/api/customer/{cid}/assets?pageSize=10&page=0"), &admin).await.ok();
    assert_eq!(listed["totalElements"], 1);
    let unassigned = t.delete(&format!("/api/customer/asset/{id}"), &admin).await.ok();
    assert_eq!(unassigned["customerId"]["id"], "13814000-1dd2-11b2-8080-808080808080");
    t.delete(&format!("/api/customer/asset/{id}"), &admin).await.expect(400);
}

#[tokio::test]
async fn a_deleted_asset_is_gone_with_its_relations_and_its_name_is_free() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let building = asset(&t, &admin, json!({"name": "Building"})).await;
    let device = t.device(&admin, "Sensor").await;
    let relation = json!({"from": building["id"], "to": device["id"], "type": "Contains", "typeGroup": "COMMON"});
    t.post("/api/relation", &admin, relation).await.ok();
    let id = id_of(&building);
    t.delete(&format!("/api/asset/{id}"), &admin).await.ok();
    t.get(&format!("/api/asset/{id}"), &admin).await.expect(404);
    let to_device =
        t.get(&format!("/api/relations?toId={}&toType=DEVICE", id_of(&device)), &admin).await.ok();
    assert_eq!(to_device, json!([]));
    asset(&t, &admin, json!({"name": "Building"})).await;
}
