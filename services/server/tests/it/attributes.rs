//! Server and shared attributes over REST: the three write paths, reads, keys and deletes.

use serde_json::{Value, json};

use crate::harness::{TestApp, id_of};
use crate::telemetry::device_with_token;

fn keys_of(list: &Value) -> Vec<String> {
    list.as_array().expect("list").iter().filter_map(|a| a["key"].as_str().map(str::to_string)).collect()
}

#[tokio::test]
async fn attributes_are_saved_through_all_three_write_paths() {
    let t = TestApp::start().await;
    let (admin, id, _) = device_with_token(&t, "three paths").await;
    let base = "/api/plugins/telemetry";
    t.post(&format!("{base}/DEVICE/{id}/attributes/SERVER_SCOPE"), &admin, json!({"v2": 1})).await.ok();
    t.post(&format!("{base}/DEVICE/{id}/SERVER_SCOPE"), &admin, json!({"v1": "x"})).await.ok();
    t.post(&format!("{base}/{id}/SHARED_SCOPE"), &admin, json!({"shortcut": true})).await.ok();
    let server = t.get(&format!("{base}/DEVICE/{id}/values/attributes/SERVER_SCOPE"), &admin).await.ok();
    assert_eq!(keys_of(&server), vec!["v1", "v2"]);
    let shared = t.get(&format!("{base}/DEVICE/{id}/values/attributes/SHARED_SCOPE?keys=shortcut"), &admin).await.ok();
    assert_eq!(shared[0]["value"], json!(true));
    assert!(shared[0]["lastUpdateTs"].as_i64().is_some_and(|ts| ts > 0));
    let all = t.get(&format!("{base}/DEVICE/{id}/keys/attributes"), &admin).await.ok();
    assert_eq!(all, json!(["shortcut", "v1", "v2"]));
    let server_keys = t.get(&format!("{base}/DEVICE/{id}/keys/attributes/SERVER_SCOPE"), &admin).await.ok();
    assert_eq!(server_keys, json!(["v1", "v2"]));
}

#[tokio::test]
async fn deleted_attributes_disappear_through_both_delete_paths() {
    let t = TestApp::start().await;
    let (admin, id, _) = device_with_token(&t, "deletes").await;
    let base = "/api/plugins/telemetry";
    t.post(&format!("{base}/DEVICE/{id}/SERVER_SCOPE"), &admin, json!({"a": 1, "b": 2, "c": 3})).await.ok();
    t.delete(&format!("{base}/DEVICE/{id}/SERVER_SCOPE?keys=a"), &admin).await.ok();
    t.delete(&format!("{base}/{id}/SERVER_SCOPE?keys=b"), &admin).await.ok();
    let left = t.get(&format!("{base}/DEVICE/{id}/values/attributes/SERVER_SCOPE"), &admin).await.ok();
    assert_eq!(keys_of(&left), vec!["c"]);
}

#[tokio::test]
async fn an_assets_attributes_are_saved_and_read() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("asset attrs").await;
    let asset = t.post("/api/asset", &admin, json!({"name": "pump", "type": "default"})).await.ok();
    let id = id_of(&asset);
    t.post(&format!("/api/plugins/telemetry/ASSET/{id}/SERVER_SCOPE"), &admin, json!({"capacity": 12.5})).await.ok();
    let attrs = t.get(&format!("/api/plugins/telemetry/ASSET/{id}/values/attributes"), &admin).await.ok();
    assert_eq!(attrs[0]["key"], "capacity");
    assert_eq!(attrs[0]["value"], json!(12.5));
}

#[tokio::test]
async fn client_attributes_cannot_be_written_over_rest() {
    let t = TestApp::start().await;
    let (admin, id, _) = device_with_token(&t, "client scope").await;
    t.post(&format!("/api/plugins/telemetry/DEVICE/{id}/CLIENT_SCOPE"), &admin, json!({"a": 1})).await.expect(400);
    t.post(&format!("/api/plugins/telemetry/DEVICE/{id}/NO_SCOPE"), &admin, json!({"a": 1})).await.expect(400);
}

#[tokio::test]
async fn attributes_of_a_missing_entity_answer_404() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("missing").await;
    let id = uuid::Uuid::now_v7();
    t.post(&format!("/api/plugins/telemetry/DEVICE/{id}/SERVER_SCOPE"), &admin, json!({"a": 1})).await.expect(404);
    t.get(&format!("/api/plugins/telemetry/DEVICE/{id}/values/attributes"), &admin).await.expect(404);
}
