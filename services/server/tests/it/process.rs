//! The real `thinglake` binary in single-node mode: it supervises its own nats-server, keeps all
//! data across restarts, and recovers from a kill -9 under load without losing an acknowledged
//! write or applying one twice.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use thinglake_test_support::free_port;

use crate::harness::{Api, Platform, Ports, alive, nats_pid};

/// The binary on `data_dir` with these ports (MQTT on a free one).
pub(crate) async fn start(data_dir: &Path, http_port: u16, nats_port: u16) -> Platform {
    Platform::start(data_dir, &Ports { http: http_port, nats: nats_port, mqtt: 0 }).await
}

#[tokio::test]
async fn a_kill_9_under_load_loses_no_acknowledged_write_and_duplicates_none() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (http_port, nats_port) = (free_port(), free_port());
    let mut platform = start(dir.path(), http_port, nats_port).await;
    let (_, admin) = platform.api.tenant("Acme").await;

    // Writers create devices until the platform dies; every 200 answer is remembered.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let api = Arc::new(Api::new(platform.api.base.clone()));
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..6 {
        let (api, acked, admin) = (api.clone(), acked.clone(), admin.clone());
        writers.spawn(async move {
            for i in 0.. {
                let name = format!("w{w}-{i}");
                let res = api
                    .http
                    .post(api.url("/api/device"))
                    .header("X-Authorization", format!("Bearer {admin}"))
                    .json(&json!({"name": name}))
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status().is_success() => acked.lock().expect("lock").push(name),
                    _ => break,
                }
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().expect("lock").len() < 150 {
        assert!(Instant::now() < deadline, "writers made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let orphan = nats_pid(dir.path()).expect("supervised nats-server pid");
    platform.child.kill().expect("kill -9");
    platform.child.wait().expect("reaped");
    while writers.join_next().await.is_some() {}
    assert!(alive(orphan), "the killed platform's nats-server is left running, as after a real kill -9");

    // The next start takes over the same data directory, stopping the orphaned server.
    let mut platform = start(dir.path(), http_port, nats_port).await;
    assert!(!alive(orphan), "the orphaned nats-server was stopped");
    // The signing key lives in NATS: a token issued before the crash is still valid.
    let list = platform.api.get("/api/tenant/devices?pageSize=10000&page=0", &admin).await.ok();
    let devices = list["data"].as_array().expect("data");
    let names: Vec<&str> = devices.iter().filter_map(|d| d["name"].as_str()).collect();
    let unique: HashSet<&str> = names.iter().copied().collect();
    assert_eq!(unique.len(), names.len(), "no device twice");
    let acked = acked.lock().expect("lock").clone();
    for name in &acked {
        assert!(unique.contains(name.as_str()), "acknowledged device {name} survived");
    }
    assert!(devices.iter().all(|d| d["version"] == 1), "each device created exactly once");
    // At most one in-flight create per writer may have landed without its answer.
    assert!(names.len() <= acked.len() + 6, "{} devices for {} acknowledged creates", names.len(), acked.len());

    // A clean stop also stops the supervised nats-server.
    let server = nats_pid(dir.path()).expect("pid");
    Command::new("kill").arg("-TERM").arg(platform.child.id().to_string()).status().expect("kill -TERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    while platform.child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "platform did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!alive(server), "nats-server stopped with the platform");
}

#[tokio::test]
async fn data_survives_a_clean_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (http_port, nats_port) = (free_port(), free_port());
    let mut platform = start(dir.path(), http_port, nats_port).await;
    let (_, admin) = platform.api.tenant("Acme").await;
    let device = platform.api.device(&admin, "Kept").await;
    Command::new("kill").arg("-TERM").arg(platform.child.id().to_string()).status().expect("kill -TERM");
    platform.child.wait().expect("stopped");
    let platform = start(dir.path(), http_port, nats_port).await;
    let read = platform.api.get(&format!("/api/device/{}", device["id"]["id"].as_str().expect("id")), &admin).await.ok();
    assert_eq!(read, device);
    drop(platform);
}

#[tokio::test]
async fn a_first_start_on_an_empty_data_directory_logs_no_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut platform = start(dir.path(), free_port(), free_port()).await;
    // Every lake table created (its first commit written), then a clean stop.
    let lake = dir.path().join("lake");
    let tables = thinglake_lake::table::all();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !tables.iter().all(|t| lake.join(t.name).join("_delta_log").join("00000000000000000000.json").exists()) {
        assert!(Instant::now() < deadline, "the lake tables were not created");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Command::new("kill").arg("-TERM").arg(platform.child.id().to_string()).status().expect("kill -TERM");
    platform.child.wait().expect("stopped");
    let log = std::fs::read_to_string(dir.path().join("thinglake-test.log")).expect("log");
    let errors: Vec<&str> = log.lines().filter(|l| l.contains(" ERROR ") || l.contains("[ERR]")).collect();
    assert!(errors.is_empty(), "a clean first start logged errors:\n{}", errors.join("\n"));
    assert!(log.contains("lake projection opened"), "the log is the platform's:\n{log}");
}
