//! The NATS ingress with a raw async-nats client: acknowledged publishes and error replies.

use serde_json::{Value, json};

use crate::harness::TestApp;
use crate::telemetry::{device_with_token, latest};

async fn request(t: &TestApp, subject: String, payload: &'static str) -> Value {
    let client = t.nats.client().await;
    let reply = client.request(subject, payload.into()).await.expect("ingress answers");
    serde_json::from_slice(&reply.payload).expect("json reply")
}

#[tokio::test]
async fn telemetry_over_nats_is_acknowledged_with_its_point_count_and_stored() {
    let t = TestApp::start().await;
    let (admin, id, token) = device_with_token(&t, "nats device").await;
    let reply = request(&t, format!("thinglake.ingress.{token}.telemetry"), r#"{"ts": 9, "values": {"t": 1, "h": 2}}"#).await;
    assert_eq!(reply, json!({"ok": true, "points": 2}));
    assert_eq!(latest(&t, &admin, &format!("DEVICE/{id}"), "t").await["t"], json!([{"ts": 9, "value": 1}]));
    let reply = request(&t, format!("thinglake.ingress.{token}.attributes"), r#"{"fw": "2"}"#).await;
    assert_eq!(reply, json!({"ok": true, "points": 1}));
}

#[tokio::test]
async fn ingress_errors_are_answered_with_a_status() {
    let t = TestApp::start().await;
    let (_, _, token) = device_with_token(&t, "nats errors").await;
    let unknown = request(&t, "thinglake.ingress.nope.telemetry".into(), r#"{"t": 1}"#).await;
    assert_eq!(unknown["status"], 401);
    let malformed = request(&t, format!("thinglake.ingress.{token}.telemetry"), r#"{"t": "#).await;
    assert_eq!(malformed["status"], 400);
    assert!(malformed["error"].as_str().is_some_and(|e| !e.is_empty()));
    let kind = request(&t, format!("thinglake.ingress.{token}.rpc"), r#"{}"#).await;
    assert_eq!(kind["status"], 400);
}

#[tokio::test]
async fn many_requests_at_once_are_each_answered_for_themselves() {
    let t = TestApp::start().await;
    let (admin, id, token) = device_with_token(&t, "nats many").await;
    let client = t.nats.client().await;
    // More requests than one batch takes, sent together: good ones, malformed ones and unknown
    // tokens interleaved, so batches mix them.
    let requests = (0..400).map(|i| {
        let (subject, payload, expected) = match i % 4 {
            0 => (format!("thinglake.ingress.{token}.telemetry"), r#"{"t": "#.to_string(), json!(400)),
            1 => (format!("thinglake.ingress.unknown-{i}.telemetry"), format!(r#"{{"k{i}": {i}}}"#), json!(401)),
            _ => (format!("thinglake.ingress.{token}.telemetry"), format!(r#"{{"ts": {i}, "values": {{"k{i}": {i}}}}}"#), json!(null)),
        };
        let client = client.clone();
        async move {
            let reply = client.request(subject, payload.into()).await.expect("ingress answers");
            let reply: Value = serde_json::from_slice(&reply.payload).expect("json reply");
            if expected.is_null() {
                assert_eq!(reply, json!({"ok": true, "points": 1}), "request {i}");
            } else {
                assert_eq!(reply["status"], expected, "request {i}: {reply}");
            }
        }
    });
    futures::future::join_all(requests).await;
    let keys = t.get(&format!("/api/plugins/telemetry/DEVICE/{id}/keys/timeseries"), &admin).await.ok();
    let mut keys: Vec<String> = serde_json::from_value(keys).expect("a list of keys");
    keys.sort();
    let mut stored: Vec<String> = (0..400).filter(|i| i % 4 >= 2).map(|i| format!("k{i}")).collect();
    stored.sort();
    assert_eq!(keys, stored);
    assert_eq!(latest(&t, &admin, &format!("DEVICE/{id}"), "k398").await["k398"], json!([{"ts": 398, "value": 398}]));
}
