//! `thinglake simulate`, the real binary, against a platform started in process: it creates its
//! devices over REST (`--create-as`), publishes at the given rate over MQTT for a bounded time,
//! and what it reports as acknowledged is what the telemetry stream holds.

use std::time::Duration;

use serde_json::Value;
use thinglake_domain::telemetry::TelemetryData;

use crate::harness::{PASSWORD, TestApp, id_of};
use crate::mqtt::{mqtt_addr, telemetry_of};

const DEVICES: usize = 4;
const RATE: f64 = 10.0;
const POINTS: usize = 3;
const SECONDS: u64 = 3;

/// Runs `thinglake simulate` with `args`; returns its stdout (asserting success).
async fn simulate(args: &[String]) -> String {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_thinglake"))
        .arg("simulate")
        .args(args)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run).await.expect("simulate ends by itself").expect("simulate runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "simulate failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// The number before `word` on the summary line (`… 123 acknowledged …`).
fn figure(summary: &str, word: &str) -> u64 {
    let words: Vec<&str> = summary.split_whitespace().collect();
    let at = words.iter().position(|w| w.trim_matches(|c: char| !c.is_alphanumeric()) == word).unwrap_or_else(|| panic!("no '{word}' in {summary:?}"));
    words[at - 1].trim_start_matches('(').parse().unwrap_or_else(|_| panic!("no number before '{word}' in {summary:?}"))
}

#[tokio::test]
async fn simulated_devices_publish_at_the_given_rate_and_every_acknowledged_point_is_stored() {
    let t = TestApp::start().await;
    let (tenant, _) = t.tenant("Sim").await;
    let email = format!("admin-{tenant}@example.com");
    let args = |seconds: u64| -> Vec<String> {
        let mut args: Vec<String> = ["--devices", &DEVICES.to_string(), "--rate", &RATE.to_string(), "--points", &POINTS.to_string()]
            .map(String::from)
            .into();
        args.extend(["--duration-secs", &seconds.to_string(), "--broker", &mqtt_addr(&t).to_string(), "--token-prefix", "SIM_TOKEN_"].map(String::from));
        args.extend(["--http".to_string(), t.base.clone(), "--create-as".to_string(), format!("{email}:{PASSWORD}")]);
        args
    };
    let stdout = simulate(&args(SECONDS)).await;
    eprint!("{stdout}");
    let summary = stdout.lines().last().unwrap_or_default().to_string();
    let acked = figure(&summary, "acknowledged");

    // The rate is per device; the first publish goes out at once.
    let expected = DEVICES as f64 * RATE * SECONDS as f64;
    assert!(
        (acked as f64) >= expected * 0.6 && (acked as f64) <= expected * 1.2 + DEVICES as f64,
        "{acked} publishes acknowledged, about {expected} expected:\n{stdout}"
    );

    let admin = t.login(&email, PASSWORD).await;
    let mut stored = 0;
    for i in 0..DEVICES {
        let device = t.get(&format!("/api/tenant/devices?deviceName=sim-{i}"), &admin).await.ok();
        let mut published = 0;
        for message in telemetry_of(&t, &id_of(&device)).await {
            if let TelemetryData::Timeseries { batches } = message.data {
                assert_eq!(batches.iter().map(|b| b.values.len()).sum::<usize>(), POINTS);
                published += 1;
            }
        }
        assert!(published > 0, "device sim-{i} published nothing");
        stored += published;
    }
    // The simulator waits for its last acknowledgements before it disconnects.
    assert_eq!(stored, acked, "stored publishes vs acknowledged ones:\n{stdout}");

    // A second run keeps the devices (and their tokens) and adds to their telemetry.
    let again = simulate(&args(1)).await;
    let more = figure(again.lines().last().unwrap_or_default(), "acknowledged");
    assert!(more > 0, "{again}");
    let list: Value = t.get("/api/tenant/devices?pageSize=100&page=0", &admin).await.ok();
    assert_eq!(list["data"].as_array().map(Vec::len), Some(DEVICES), "no device created twice");
}
