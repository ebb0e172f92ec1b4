//! ThingsBoard's device HTTP API (`/api/v1/{token}/…`) with a plain HTTP client.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::TestApp;
use crate::telemetry::{device_with_token, latest, post_raw, start_with};

#[tokio::test]
async fn telemetry_in_every_payload_shape_is_stored_typed() {
    let t = TestApp::start().await;
    let (admin, id, token) = device_with_token(&t, "shapes").await;
    let path = format!("/api/v1/{token}/telemetry");
    let before = thinglake_platform::now_ms();
    assert_eq!(post_raw(&t, &path, r#"{"flat": 1, "b": true, "s": "on", "j": {"x": [1]}, "d": 2.5}"#).await.0, 200);
    assert_eq!(post_raw(&t, &path, r#"{"ts": 1000, "values": {"stamped": 2}}"#).await.0, 200);
    assert_eq!(post_raw(&t, &path, r#"[{"ts": 2000, "values": {"arr": 3}}, {"arr2": 4}]"#).await.0, 200);
    let values = latest(&t, &admin, &format!("DEVICE/{id}"), "flat,b,s,j,d,stamped,arr,arr2").await;
    assert_eq!(values["flat"][0]["value"], json!(1));
    assert_eq!(values["b"][0]["value"], json!(true));
    assert_eq!(values["s"][0]["value"], json!("on"));
    assert_eq!(values["j"][0]["value"], json!({"x": [1]}));
    assert_eq!(values["d"][0]["value"], json!(2.5));
    assert_eq!(values["stamped"], json!([{"ts": 1000, "value": 2}]));
    assert_eq!(values["arr"], json!([{"ts": 2000, "value": 3}]));
    assert!(values["arr2"][0]["ts"].as_i64().is_some_and(|ts| ts >= before), "server timestamp where none given");
    assert!(values["flat"][0]["ts"].as_i64().is_some_and(|ts| ts >= before));
}

#[tokio::test]
async fn an_unknown_token_answers_401_with_an_empty_body() {
    let t = TestApp::start().await;
    let (status, _, body) = post_raw(&t, "/api/v1/no-such-token/telemetry", r#"{"t": 1}"#).await;
    assert_eq!((status, body.as_str()), (401, ""));
    let res = t.http.get(t.url("/api/v1/no-such-token/attributes")).send().await.expect("sent");
    assert_eq!(res.status().as_u16(), 401);
}

#[tokio::test]
async fn malformed_json_answers_400_with_the_parsers_message_and_stores_nothing() {
    let t = TestApp::start().await;
    let (admin, id, token) = device_with_token(&t, "malformed").await;
    let (status, _, body) = post_raw(&t, &format!("/api/v1/{token}/telemetry"), r#"{"t": 1,"#).await;
    assert_eq!(status, 400);
    let message = serde_json::from_str::<Value>(&body).expect("error json")["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains("EOF"), "parser message in {body}");
    let keys = t.get(&format!("/api/plugins/telemetry/DEVICE/{id}/keys/timeseries"), &admin).await.ok();
    assert_eq!(keys, json!([]));
}

#[tokio::test]
async fn wrong_types_answer_400_and_store_nothing_partial() {
    let t = TestApp::start().await;
    let (admin, id, token) = device_with_token(&t, "wrong types").await;
    let path = format!("/api/v1/{token}/telemetry");
    // The first batch is valid, the second is not: nothing of the payload is stored.
    assert_eq!(post_raw(&t, &path, r#"[{"ok": 1}, {"ts": "yesterday", "values": {"bad": 1}}]"#).await.0, 400);
    assert_eq!(post_raw(&t, &path, "42").await.0, 400);
    assert_eq!(post_raw(&t, &format!("/api/v1/{token}/attributes"), r#"[{"a": 1}]"#).await.0, 400);
    let keys = t.get(&format!("/api/plugins/telemetry/DEVICE/{id}/keys/timeseries"), &admin).await.ok();
    assert_eq!(keys, json!([]));
    let attrs = t.get(&format!("/api/plugins/telemetry/DEVICE/{id}/keys/attributes/CLIENT_SCOPE"), &admin).await.ok();
    assert_eq!(attrs, json!([]));
}

#[tokio::test]
async fn an_oversized_payload_answers_413() {
    let t = start_with(|s| s.telemetry.max_payload_bytes = 1024).await;
    let (admin, id, token) = device_with_token(&t, "oversized").await;
    let big = format!(r#"{{"blob": "{}"}}"#, "x".repeat(2048));
    assert_eq!(post_raw(&t, &format!("/api/v1/{token}/telemetry"), big).await.0, 413);
    let keys = t.get(&format!("/api/plugins/telemetry/DEVICE/{id}/keys/timeseries"), &admin).await.ok();
    assert_eq!(keys, json!([]));
}

#[tokio::test]
async fn client_attributes_are_stored_typed() {
    let t = TestApp::start().await;
    let (admin, id, token) = device_with_token(&t, "client attrs").await;
    let body = r#"{"fw": "1.2", "count": 3, "ratio": 0.5, "on": false, "cfg": {"a": 1}}"#;
    assert_eq!(post_raw(&t, &format!("/api/v1/{token}/attributes"), body).await.0, 200);
    let attrs = t.get(&format!("/api/plugins/telemetry/DEVICE/{id}/values/attributes/CLIENT_SCOPE"), &admin).await.ok();
    let value = |key: &str| attrs.as_array().expect("list").iter().find(|a| a["key"] == key).map(|a| a["value"].clone());
    assert_eq!(value("fw"), Some(json!("1.2")));
    assert_eq!(value("count"), Some(json!(3)));
    assert_eq!(value("ratio"), Some(json!(0.5)));
    assert_eq!(value("on"), Some(json!(false)));
    assert_eq!(value("cfg"), Some(json!({"a": 1})));
    assert!(attrs[0]["lastUpdateTs"].as_i64().is_some_and(|ts| ts > 0));
}

#[tokio::test]
async fn an_attribute_request_follows_thingsboards_semantics() {
    let t = TestApp::start().await;
    let (admin, id, token) = device_with_token(&t, "requests").await;
    assert_eq!(post_raw(&t, &format!("/api/v1/{token}/attributes"), r#"{"a": 1, "b": 2}"#).await.0, 200);
    t.post(&format!("/api/plugins/telemetry/DEVICE/{id}/SHARED_SCOPE"), &admin, json!({"c": 3, "d": 4})).await.ok();
    let get = |query: &'static str| {
        let url = t.url(&format!("/api/v1/{token}/attributes{query}"));
        let http = t.http.clone();
        async move { http.get(url).send().await.expect("sent").json::<Value>().await.expect("json") }
    };
    assert_eq!(get("").await, json!({"client": {"a": 1, "b": 2}, "shared": {"c": 3, "d": 4}}));
    assert_eq!(get("?clientKeys=a").await, json!({"client": {"a": 1}}));
    assert_eq!(get("?sharedKeys=d,zz").await, json!({"shared": {"d": 4}}));
    assert_eq!(get("?clientKeys=b&sharedKeys=c").await, json!({"client": {"b": 2}, "shared": {"c": 3}}));
}

#[tokio::test]
async fn a_long_poll_receives_a_shared_attribute_saved_over_rest() {
    let t = TestApp::start().await;
    let (admin, id, token) = device_with_token(&t, "long poll").await;
    let poll = t.http.get(t.url(&format!("/api/v1/{token}/attributes/updates?timeout=20000"))).send();
    tokio::pin!(poll);
    // The poll subscribes when its request arrives: save until it answers.
    let save = format!("/api/plugins/telemetry/DEVICE/{id}/SHARED_SCOPE");
    let mut n = 0;
    let answer = loop {
        n += 1;
        assert!(n < 100, "long poll never answered");
        tokio::select! {
            answer = &mut poll => break answer.expect("answered"),
            () = async {
                t.post(&save, &admin, json!({"setpoint": n})).await.ok();
                tokio::time::sleep(Duration::from_millis(100)).await;
            } => {}
        }
    };
    assert_eq!(answer.status().as_u16(), 200);
    let body: Value = answer.json().await.expect("json");
    assert!(body["setpoint"].as_i64().is_some_and(|v| v >= 1), "update pushed: {body}");
}

#[tokio::test]
async fn a_long_poll_times_out_with_408() {
    let t = TestApp::start().await;
    let (_, _, token) = device_with_token(&t, "quiet").await;
    let res = t.http.get(t.url(&format!("/api/v1/{token}/attributes/updates?timeout=300"))).send().await.expect("sent");
    assert_eq!(res.status().as_u16(), 408);
}

#[tokio::test]
async fn jetstream_unreachable_answers_503_with_retry_after() {
    let mut t = start_with(|s| s.telemetry.publish_timeout = Duration::from_millis(1500)).await;
    let (_, _, token) = device_with_token(&t, "unreachable").await;
    t.nats.kill().await;
    let (status, retry_after, _) = post_raw(&t, &format!("/api/v1/{token}/telemetry"), r#"{"t": 1}"#).await;
    assert_eq!(status, 503);
    assert_eq!(retry_after.as_deref(), Some("1"));
}
