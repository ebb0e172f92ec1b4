//! The real `thinglake` binary in single-node mode: it supervises its own nats-server, keeps all
//! data across restarts, and recovers from a kill -9 under load without losing an acknowledged
//! write or applying one twice.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use thinglake_test_support::free_port;

use crate::harness::{Api, SYSADMIN_EMAIL, SYSADMIN_PASSWORD};

pub(crate) struct Platform {
    child: Child,
    pub(crate) api: Api,
    data_dir: PathBuf,
}

impl Drop for Platform {
    /// A platform still running when the test ends (or fails) is killed with its nats-server, so
    /// no process is left behind. One that already exited is left alone: its nats-server may now
    /// belong to the next start.
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(pid) = nats_pid(&self.data_dir)
            && alive(pid) {
                let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
            }
    }
}

fn spawn(data_dir: &Path, http_port: u16, nats_port: u16) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.join("thinglake-test.log"))
        .expect("log file");
    Command::new(env!("CARGO_BIN_EXE_thinglake"))
        .arg("run")
        .env("THINGLAKE_DATA_DIR", data_dir)
        .env("THINGLAKE_HTTP_HOST", "127.0.0.1")
        .env("THINGLAKE_HTTP_PORT", http_port.to_string())
        .env("THINGLAKE_NATS_PORT", nats_port.to_string())
        .env("THINGLAKE_MQTT_HOST", "127.0.0.1")
        .env("THINGLAKE_MQTT_PORT", "0")
        .env("THINGLAKE_ADMIN_EMAIL", SYSADMIN_EMAIL)
        .env("THINGLAKE_ADMIN_PASSWORD", SYSADMIN_PASSWORD)
        // The PostgreSQL listener's default port would clash between tests running at once.
        .env("THINGLAKE_PG_LISTEN", "127.0.0.1:0")
        .env_remove("THINGLAKE_NATS_URL")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .spawn()
        .expect("thinglake binary starts")
}

pub(crate) async fn start(data_dir: &Path, http_port: u16, nats_port: u16) -> Platform {
    let mut child = spawn(data_dir, http_port, nats_port);
    let api = Api::new(format!("http://127.0.0.1:{http_port}"));
    // Generous: a start beside the whole suite (Chromium included) on 2 cores can be slow.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Ok(res) = api.http.get(api.url("/health")).send().await
            && res.status().is_success()
        {
            break;
        }
        let exited = child.try_wait().ok().flatten();
        if exited.is_some() || Instant::now() >= deadline {
            // The temporary directory goes with the failed test: show the platform's log here.
            let log = std::fs::read_to_string(data_dir.join("thinglake-test.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect();
            let _ = child.kill();
            panic!("platform did not become healthy (exit: {exited:?}); its log ends:\n{}", tail.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Platform { child, api, data_dir: data_dir.to_path_buf() }
}

fn nats_pid(data_dir: &Path) -> Option<i32> {
    let pid_file: PathBuf = data_dir.join("nats").join("nats-server.pid");
    std::fs::read_to_string(pid_file).ok()?.trim().parse().ok()
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
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
