//! `thinglake trim`, the real binary, beside a running platform: it purges old telemetry from
//! the log only up to what every lake table has committed, and never touches the events stream.

use std::time::Duration;

use thinglake_infra::subjects::Subjects;

use crate::harness::TestApp;
use crate::telemetry::{device_with_token, post_raw};

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
