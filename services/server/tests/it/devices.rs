//! Device endpoints: create, read, list, update with versions, credentials, assignment.

use serde_json::json;

use crate::harness::{TestApp, id_of};

#[tokio::test]
async fn a_created_device_reads_back_with_thingsboards_shape() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let device = t.device(&admin, "Thermometer 1").await;
    assert_eq!(device["id"]["entityType"], "DEVICE");
    assert_eq!(device["name"], "Thermometer 1");
    assert_eq!(device["type"], "default");
    assert_eq!(device["version"], 1);
    assert_eq!(device["customerId"]["id"], "13814000-1dd2-11b2-8080-808080808080");
    assert_eq!(device["deviceProfileId"]["entityType"], "DEVICE_PROFILE");
    let id = id_of(&device);
    let read = t.get(&format!("/api/device/{id}"), &admin).await.ok();
    assert_eq!(read, device);
    let creds = t.get(&format!("/api/device/{id}/credentials"), &admin).await.ok();
    assert_eq!(creds["credentialsType"], "ACCESS_TOKEN");
    assert_eq!(creds["credentialsId"].as_str().map(str::len), Some(20));
}

#[tokio::test]
async fn a_stale_version_is_refused_with_409_and_changes_nothing() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let mut device = t.device(&admin, "Pump").await;
    device["label"] = json!("first");
    let saved = t.post("/api/device", &admin, device.clone()).await.ok();
    assert_eq!(saved["version"], 2);
    device["label"] = json!("stale");
    let err = t.post("/api/device", &admin, device.clone()).await.expect(409);
    assert_eq!(err["errorCode"], 35);
    let read = t.get(&format!("/api/device/{}", id_of(&device)), &admin).await.ok();
    assert_eq!(read["label"], "first");
    // A save without a version overwrites.
    device.as_object_mut().expect("object").remove("version");
    device["label"] = json!("forced");
    assert_eq!(t.post("/api/device", &admin, device).await.ok()["version"], 3);
}

#[tokio::test]
async fn concurrent_creates_of_one_name_yield_exactly_one_device() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let attempts = (0..16).map(|_| t.post("/api/device", &admin, json!({"name": "Boiler"})));
    let results = futures::future::join_all(attempts).await;
    let ok = results.iter().filter(|r| r.status.is_success()).count();
    assert_eq!(ok, 1, "{results:?}");
    for r in results.iter().filter(|r| !r.status.is_success()) {
        assert_eq!(r.status.as_u16(), 400, "{r:?}");
    }
    let list = t.get("/api/tenant/devices?pageSize=100&page=0", &admin).await.ok();
    assert_eq!(list["totalElements"], 1);
}

#[tokio::test]
async fn devices_page_search_and_sort_like_thingsboard() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    for name in ["Pump 1", "Valve", "pump 2", "Boiler"] {
        t.device(&admin, name).await;
    }
    let page = t.get("/api/tenant/devices?pageSize=2&page=0&sortProperty=name&sortOrder=ASC", &admin).await.ok();
    assert_eq!(page["totalElements"], 4);
    assert_eq!(page["totalPages"], 2);
    assert_eq!(page["hasNext"], true);
    let names: Vec<&str> = page["data"].as_array().expect("data").iter().filter_map(|d| d["name"].as_str()).collect();
    assert_eq!(names, ["Boiler", "Pump 1"]);
    let found = t.get("/api/tenant/devices?pageSize=10&page=0&textSearch=PUMP", &admin).await.ok();
    assert_eq!(found["totalElements"], 2);
    let one = t.get("/api/tenant/devices?deviceName=Valve", &admin).await.ok();
    assert_eq!(one["name"], "Valve");
    t.get("/api/tenant/devices?deviceName=Nope", &admin).await.expect(404);
    assert_eq!(t.get("/api/tenant/device?deviceName=Boiler", &admin).await.ok()["name"], "Boiler");
    t.get("/api/tenant/devices?page=0", &admin).await.expect(400);
}

#[tokio::test]
async fn a_device_token_can_be_replaced_and_a_taken_one_is_refused() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let a = t.post("/api/device?accessToken=token-a", &admin, json!({"name": "A"})).await.ok();
    let b = t.post("/api/device?accessToken=token-b", &admin, json!({"name": "B"})).await.ok();
    let creds_b = t.get(&format!("/api/device/{}/credentials", id_of(&b)), &admin).await.ok();
    let mut taken = creds_b.clone();
    taken["credentialsId"] = json!("token-a");
    t.post("/api/device/credentials", &admin, taken).await.expect(400);
    let mut fresh = creds_b;
    fresh["credentialsId"] = json!("token-c");
    assert_eq!(t.post("/api/device/credentials", &admin, fresh).await.ok()["credentialsId"], "token-c");
    // token-b is free again.
    t.post("/api/device?accessToken=token-b", &admin, json!({"name": "C"})).await.ok();
    let _ = a;
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_stores_nothing() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let res = t
        .http
        .post(t.url("/api/device"))
        .header("X-Authorization", format!("Bearer {admin}"))
        .header("Content-Type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status().as_u16(), 400);
    let body: serde_json::Value = res.json().await.expect("json error");
    assert_eq!(body["status"], 400);
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    t.post("/api/device", &admin, json!({"name": 5})).await.expect(400);
    t.post("/api/device", &admin, json!({"label": "no name"})).await.expect(400);
    t.post("/api/device", &admin, json!({"name": "x".repeat(300)})).await.expect(400);
    t.post("/api/device?accessToken=has%20space", &admin, json!({"name": "Spacey"})).await.expect(400);
    let big = json!({"name": "Big", "additionalInfo": {"blob": "x".repeat(2 * 1024 * 1024)}});
    t.post("/api/device", &admin, big).await.expect(413);
    t.get("/api/device/not-a-uuid", &admin).await.expect(400);
    t.get(&format!("/api/device/{}", uuid::Uuid::now_v7()), &admin).await.expect(404);
    let list = t.get("/api/tenant/devices?pageSize=10&page=0", &admin).await.ok();
    assert_eq!(list["totalElements"], 0);
    // A name freed by a failed create can be used.
    t.device(&admin, "Spacey").await;
}

#[tokio::test]
async fn missing_or_forged_tokens_are_refused() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    t.call(reqwest::Method::GET, "/api/tenant/devices?pageSize=10", None, None).await.expect(401);
    // Same header and claims, another signature: flip a character in the middle of it.
    let mut forged: Vec<char> = admin.chars().collect();
    let mid = admin.rfind('.').expect("signature") + 20;
    forged[mid] = if forged[mid] == 'A' { 'B' } else { 'A' };
    let forged: String = forged.into_iter().collect();
    t.get("/api/tenant/devices?pageSize=10", &forged).await.expect(401);
    t.get("/api/tenant/devices?pageSize=10", "not.a.jwt").await.expect(401);
}

#[tokio::test]
async fn devices_are_rebuilt_from_the_log_after_a_restart() {
    let mut t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let device = t.device(&admin, "Persistent").await;
    t.restart().await;
    let read = t.get(&format!("/api/device/{}", id_of(&device)), &admin).await.ok();
    assert_eq!(read, device);
}

#[tokio::test]
async fn changing_the_owner_assigns_and_unassigns_like_thingsboard_4() {
    let t = TestApp::start().await;
    let (tenant, admin) = t.tenant("Acme").await;
    let customer = t.customer(&admin, "Customer A").await;
    let device = id_of(&t.device(&admin, "Owned").await);
    t.post(&format!("/api/owner/CUSTOMER/{customer}/DEVICE/{device}"), &admin, json!(null)).await.ok();
    assert_eq!(t.get(&format!("/api/device/{device}"), &admin).await.ok()["customerId"]["id"], customer.as_str());
    for _ in 0..2 {
        t.post(&format!("/api/owner/TENANT/{tenant}/DEVICE/{device}"), &admin, json!(null)).await.ok();
    }
    let read = t.get(&format!("/api/device/{device}"), &admin).await.ok();
    assert_eq!(read["customerId"]["id"], "13814000-1dd2-11b2-8080-808080808080");
    assert_eq!(read["version"], 3, "giving the tenant a device it owns changes nothing");
    let other = uuid::Uuid::now_v7();
    t.post(&format!("/api/owner/TENANT/{other}/DEVICE/{device}"), &admin, json!(null)).await.expect(403);
    t.post(&format!("/api/owner/CUSTOMER/{customer}/USER/{device}"), &admin, json!(null)).await.expect(400);
}
