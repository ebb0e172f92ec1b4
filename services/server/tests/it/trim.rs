//! `thinglake trim`, the real binary, beside a running platform: it purges old telemetry from
//! the log only up to what every lake table has committed, and never touches the events stream;
//! after a restart the latest values and attributes of the trimmed messages come from the lake.

use std::time::Duration;

use serde_json::{Value, json};
use thinglake_infra::subjects::Subjects;

use crate::harness::TestApp;
use crate::telemetry::{device_with_token, latest, post_raw};

/// Runs `thinglake trim` with `args` against the test platform; returns (success, stdout + stderr).
async fn trim(t: &TestApp, args: &[&str]) -> (bool, String) {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_thinglake"))
        .arg("trim")
        .args(args)
        .arg("--nats-url")
        .arg(t.nats.url())
        .arg("--data-dir")
        .arg(t.data_dir.path())
        .env("THINGLAKE_LOG", "warn")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run).await.expect("trim ends").expect("trim runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

async fn telemetry_bounds(t: &TestApp) -> (u64, u64) {
    let js = async_nats::jetstream::new(t.nats.client().await);
    let mut stream = js.get_stream(Subjects::default().telemetry_stream()).await.expect("telemetry stream");
    let state = stream.info().await.expect("stream info").state.clone();
    (state.first_sequence, state.last_sequence)
}

#[tokio::test]
async fn trim_purges_only_what_the_lake_committed_and_never_the_events() {
    // Commits only at shutdown: until then the lake holds nothing.
    let mut t = TestApp::start_with(|s| s.lake_commit_interval = Duration::from_secs(3600)).await;
    let (_, _, token) = device_with_token(&t, "trimmed").await;
    for i in 0..5 {
        assert_eq!(post_raw(&t, &format!("/api/v1/{token}/telemetry"), format!(r#"{{"t": {i}}}"#)).await.0, 200);
    }
    let (first, last) = telemetry_bounds(&t).await;
    assert_eq!(first, 1);
    assert!(last >= 5);

    let (ok, out) = trim(&t, &["telemetry", "--before-seq", &last.to_string()]).await;
    assert!(!ok && out.contains("committed it only up to 0"), "{out}");
    let (ok, out) = trim(&t, &["events", "--before-seq", "2", "--clip"]).await;
    assert!(!ok && out.contains("only telemetry is trimmed"), "{out}");
    let (ok, out) = trim(&t, &["telemetry"]).await;
    assert!(!ok && out.contains("--before-seq"), "{out}");
    assert_eq!(telemetry_bounds(&t).await.0, 1, "nothing purged");

    // A restart commits what the projections took; then the trim goes through.
    t.restart().await;
    let (ok, out) = trim(&t, &["telemetry", "--before-seq", &last.to_string()]).await;
    assert!(ok, "{out}");
    assert!(out.contains(&format!("{} messages purged", last - 1)), "{out}");
    assert_eq!(telemetry_bounds(&t).await.0, last);
    // Asking for more than is committed, with --clip: trimmed as far as is safe, and said so.
    assert_eq!(post_raw(&t, &format!("/api/v1/{token}/telemetry"), r#"{"t": 9}"#).await.0, 200);
    let (ok, out) = trim(&t, &["telemetry", "--older-than", "0s", "--clip"]).await;
    assert!(ok && out.contains(&format!("clipped to {}", last + 1)), "{out}");
    assert_eq!(telemetry_bounds(&t).await.0, last + 1, "the uncommitted message stays");
}

/// A device's attributes of one scope narrowed to `keys`, as `{key: value}`.
async fn attributes(t: &TestApp, admin: &str, id: &str, scope: &str, keys: &str) -> serde_json::Map<String, Value> {
    let list = t.get(&format!("/api/plugins/telemetry/DEVICE/{id}/values/attributes/{scope}?keys={keys}"), admin).await.ok();
    list.as_array().expect("a list").iter().map(|a| (a["key"].as_str().expect("key").to_string(), a["value"].clone())).collect()
}

/// Commits the lake (a restart flushes the projections), trims every message published so far
/// from the telemetry stream, and starts again: their latest values then come from the lake only.
async fn commit_trim_all_and_restart(t: &mut TestApp) {
    // What the platform itself publishes after the restart (device lifecycle attributes) may not
    // be committed yet: trim only what was there before.
    let (_, last) = telemetry_bounds(t).await;
    t.restart().await;
    let (ok, out) = trim(t, &["telemetry", "--before-seq", &(last + 1).to_string()]).await;
    assert!(ok, "{out}");
    assert_eq!(telemetry_bounds(t).await.0, last + 1, "every message published before trimmed");
    t.restart().await;
}

#[tokio::test]
async fn latest_values_and_attributes_of_a_trimmed_stream_survive_a_restart() {
    let mut t = TestApp::start_with(|s| s.lake_commit_interval = Duration::from_secs(3600)).await;
    let (admin, id, token) = device_with_token(&t, "trimmed-latest").await;
    let ts_path = format!("/api/plugins/telemetry/DEVICE/{id}/timeseries/ANY");
    t.post(&ts_path, &admin, json!({"ts": 1000, "values": {"old": 1, "name": "a", "cfg": {"x": [1, 2]}, "on": true}})).await.ok();
    t.post(&ts_path, &admin, json!({"ts": 900, "values": {"old": 0.5}})).await.ok();
    let server = format!("/api/plugins/telemetry/DEVICE/{id}/attributes/SERVER_SCOPE");
    t.post(&server, &admin, json!({"s": 1, "gone": true, "kept": "x"})).await.ok();
    t.post(&server, &admin, json!({"s": 2})).await.ok();
    t.delete(&format!("/api/plugins/telemetry/DEVICE/{id}/SERVER_SCOPE?keys=gone"), &admin).await.ok();
    t.post(&format!("/api/plugins/telemetry/DEVICE/{id}/attributes/SHARED_SCOPE"), &admin, json!({"sh": 2.5})).await.ok();
    assert_eq!(post_raw(&t, &format!("/api/v1/{token}/attributes"), r#"{"c": 3}"#).await.0, 200);

    commit_trim_all_and_restart(&mut t).await;
    let values = latest(&t, &admin, &format!("DEVICE/{id}"), "old,name,cfg,on").await;
    assert_eq!(values["old"], json!([{"ts": 1000, "value": 1}]), "the latest point, not the one published last");
    assert_eq!(values["name"], json!([{"ts": 1000, "value": "a"}]));
    assert_eq!(values["cfg"], json!([{"ts": 1000, "value": {"x": [1, 2]}}]));
    assert_eq!(values["on"], json!([{"ts": 1000, "value": true}]));
    let server_attrs = attributes(&t, &admin, &id, "SERVER_SCOPE", "s,gone,kept").await;
    assert_eq!(server_attrs.get("s"), Some(&json!(2)), "the last change wins");
    assert_eq!(server_attrs.get("kept"), Some(&json!("x")));
    assert!(!server_attrs.contains_key("gone"), "a deleted attribute stays deleted: {server_attrs:?}");
    assert_eq!(attributes(&t, &admin, &id, "SHARED_SCOPE", "sh").await.get("sh"), Some(&json!(2.5)));
    assert_eq!(attributes(&t, &admin, &id, "CLIENT_SCOPE", "c").await.get("c"), Some(&json!(3)));

    // After the trim: a newer point wins, an older one does not, a deletion applies; and so
    // they stay after the next restart, with the stream still trimmed (lake + stream)...
    t.post(&ts_path, &admin, json!({"ts": 2000, "values": {"name": "b"}})).await.ok();
    t.post(&ts_path, &admin, json!({"ts": 500, "values": {"old": -1}})).await.ok();
    t.delete(&format!("/api/plugins/telemetry/DEVICE/{id}/SERVER_SCOPE?keys=kept"), &admin).await.ok();
    t.post(&server, &admin, json!({"gone": "back"})).await.ok();
    let check = async |t: &TestApp| {
        let values = latest(t, &admin, &format!("DEVICE/{id}"), "old,name").await;
        assert_eq!(values["name"], json!([{"ts": 2000, "value": "b"}]));
        assert_eq!(values["old"], json!([{"ts": 1000, "value": 1}]));
        let server_attrs = attributes(t, &admin, &id, "SERVER_SCOPE", "s,gone,kept").await;
        assert_eq!(server_attrs.get("s"), Some(&json!(2)));
        assert_eq!(server_attrs.get("gone"), Some(&json!("back")));
        assert!(!server_attrs.contains_key("kept"), "{server_attrs:?}");
    };
    check(&t).await;
    t.restart().await;
    check(&t).await;
    // ...and after everything was trimmed again (lake only).
    commit_trim_all_and_restart(&mut t).await;
    check(&t).await;
}
