//! Device and asset profile endpoints: create, read, list, infos, default, delete rules.

use serde_json::{Value, json};

use crate::harness::{TestApp, id_of};

#[tokio::test]
async fn a_tenant_starts_with_default_device_and_asset_profiles() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let device = t.get("/api/deviceProfileInfo/default", &admin).await.ok();
    assert_eq!(device["name"], "default");
    assert_eq!(device["id"]["entityType"], "DEVICE_PROFILE");
    assert_eq!(device["type"], "DEFAULT");
    assert_eq!(device["transportType"], "DEFAULT");
    let asset = t.get("/api/assetProfileInfo/default", &admin).await.ok();
    assert_eq!(asset["name"], "default");
    assert_eq!(asset["id"]["entityType"], "ASSET_PROFILE");
}

#[tokio::test]
async fn a_created_device_profile_reads_back_with_thingsboards_shape() {
    let t = TestApp::start().await;
    let (tenant_id, admin) = t.tenant("Acme").await;
    let rule_chain = "0b7a8e30-0000-4000-8000-000000000001";
    let body = json!({
        "name": "Thermostat", "description": "Room thermostats", "transportType": "MQTT",
        "defaultRuleChainId": {"entityType": "RULE_CHAIN", "id": rule_chain}, "defaultQueueName": "Main",
    });
    let created = t.post("/api/deviceProfile", &admin, body).await.ok();
    assert_eq!(created["name"], "Thermostat");
    assert_eq!(created["type"], "DEFAULT");
    assert_eq!(created["transportType"], "MQTT");
    assert_eq!(created["provisionType"], "DISABLED");
    assert_eq!(created["defaultRuleChainId"], json!({"entityType": "RULE_CHAIN", "id": rule_chain}));
    assert_eq!(created["defaultDashboardId"], Value::Null);
    assert_eq!(created["default"], false);
    assert_eq!(created["version"], 1);
    assert_eq!(created["tenantId"]["id"], tenant_id.as_str());
    assert!(created["profileData"].is_object());
    let id = id_of(&created);
    assert_eq!(t.get(&format!("/api/deviceProfile/{id}"), &admin).await.ok(), created);
    let info = t.get(&format!("/api/deviceProfileInfo/{id}"), &admin).await.ok();
    assert_eq!(info["transportType"], "MQTT");
    assert_eq!(info["name"], "Thermostat");
}

#[tokio::test]
async fn an_unknown_transport_type_is_refused_with_400() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    t.post("/api/deviceProfile", &admin, json!({"name": "X", "transportType": "PIGEON"})).await.expect(400);
}

#[tokio::test]
async fn a_duplicate_profile_name_is_refused_with_400() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    t.post("/api/assetProfile", &admin, json!({"name": "building"})).await.ok();
    t.post("/api/assetProfile", &admin, json!({"name": "building"})).await.expect(400);
}

#[tokio::test]
async fn a_stale_profile_version_is_refused_with_409() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let mut profile = t.post("/api/assetProfile", &admin, json!({"name": "building"})).await.ok();
    profile["description"] = json!("first");
    assert_eq!(t.post("/api/assetProfile", &admin, profile.clone()).await.ok()["version"], 2);
    profile["description"] = json!("stale");
    assert_eq!(t.post("/api/assetProfile", &admin, profile).await.expect(409)["errorCode"], 35);
}

#[tokio::test]
async fn profiles_page_and_infos_list() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    for name in ["Meter", "camera", "Lock"] {
        t.post("/api/deviceProfile", &admin, json!({"name": name})).await.ok();
    }
    let page = t.get("/api/deviceProfiles?pageSize=2&page=0&sortProperty=name&sortOrder=ASC", &admin).await.ok();
    assert_eq!(page["totalElements"], 4);
    assert_eq!(page["hasNext"], true);
    let names: Vec<&str> = page["data"].as_array().expect("data").iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, ["camera", "default"]);
    let infos = t.get("/api/deviceProfileInfos?pageSize=10&page=0&textSearch=met", &admin).await.ok();
    assert_eq!(infos["totalElements"], 1);
    assert_eq!(infos["data"][0]["name"], "Meter");
    assert!(infos["data"][0].get("profileData").is_none());
    let assets = t.get("/api/assetProfiles?pageSize=10&page=0", &admin).await.ok();
    assert_eq!(assets["totalElements"], 1);
    t.get("/api/assetProfileInfos?pageSize=10&page=0", &admin).await.ok();
}

#[tokio::test]
async fn making_a_profile_default_clears_the_previous_default() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let old = id_of(&t.get("/api/deviceProfileInfo/default", &admin).await.ok());
    let new = id_of(&t.post("/api/deviceProfile", &admin, json!({"name": "Meter"})).await.ok());
    let made = t.post(&format!("/api/deviceProfile/{new}/default"), &admin, json!({})).await.ok();
    assert_eq!(made["default"], true);
    assert_eq!(id_of(&t.get("/api/deviceProfileInfo/default", &admin).await.ok()), new);
    assert_eq!(t.get(&format!("/api/deviceProfile/{old}"), &admin).await.ok()["default"], false);
}

#[tokio::test]
async fn deleting_the_default_profile_is_refused_with_400() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let id = id_of(&t.get("/api/assetProfileInfo/default", &admin).await.ok());
    let err = t.delete(&format!("/api/assetProfile/{id}"), &admin).await.expect(400);
    assert!(err["message"].as_str().expect("message").contains("default"), "{err}");
    t.get(&format!("/api/assetProfile/{id}"), &admin).await.ok();
}

#[tokio::test]
async fn deleting_a_profile_in_use_is_refused_with_400() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let device = t.post("/api/device", &admin, json!({"name": "Meter 1", "type": "meter"})).await.ok();
    let profile = device["deviceProfileId"]["id"].as_str().expect("profile id").to_string();
    let err = t.delete(&format!("/api/deviceProfile/{profile}"), &admin).await.expect(400);
    assert!(err["message"].as_str().expect("message").contains("referenced"), "{err}");
    t.delete(&format!("/api/device/{}", id_of(&device)), &admin).await.ok();
    t.delete(&format!("/api/deviceProfile/{profile}"), &admin).await.ok();
    t.get(&format!("/api/deviceProfile/{profile}"), &admin).await.expect(404);
}
