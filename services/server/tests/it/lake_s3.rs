//! The lake on S3-compatible object storage (a real moto server): the platform ingests, commits
//! to the bucket, answers SQL from it, resumes exactly once after restarts, seeds the latest
//! values after a trim, compacts, vacuums and rebuilds there; a lake it cannot use fails the start
//! with a clear error.

use std::time::Duration;

use serde_json::{Value, json};
use thinglake_lake::{LakeLocation, S3Options, scan, upkeep};
use thinglake_queries::arrow::array::{Array as _, Int64Array};
use thinglake_server::{RunningApp, Settings};
use thinglake_test_support::s3::{ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY};
use thinglake_test_support::{NatsServer, S3Server};

use crate::harness::{Api, SYSADMIN_PASSWORD, test_settings};
use crate::telemetry::{device_with_token, eventually, latest, post_raw};

const PREFIX: &str = "thinglake";
/// 2024-01-01T00:00:00Z: every point of these tests falls in one day partition.
const T0: i64 = 1_704_067_200_000;

fn s3_options(s3: &S3Server) -> S3Options {
    S3Options {
        endpoint: Some(s3.endpoint()),
        region: Some(REGION.to_string()),
        access_key_id: Some(ACCESS_KEY_ID.to_string()),
        secret_access_key: Some(SECRET_ACCESS_KEY.to_string()),
        allow_http: Some(true),
    }
}

fn settings(nats: &NatsServer, s3: &S3Server, data_dir: &std::path::Path) -> Settings {
    let mut settings = test_settings(nats, data_dir);
    settings.lake_url = Some(s3.url(PREFIX));
    settings.lake_s3 = s3_options(s3);
    settings.lake_commit_interval = Duration::from_millis(200);
    settings
}

/// A platform whose lake is in a moto bucket, restartable on the same NATS and bucket.
struct S3App {
    s3: S3Server,
    nats: NatsServer,
    data_dir: tempfile::TempDir,
    app: Option<RunningApp>,
    api: Api,
}

impl S3App {
    async fn start() -> Self {
        let s3 = S3Server::start();
        let nats = NatsServer::start().await;
        let data_dir = tempfile::tempdir().expect("temp dir");
        let app = Box::pin(RunningApp::start(settings(&nats, &s3, data_dir.path()))).await.expect("platform starts on S3");
        let api = Api::new(format!("http://{}", app.http_addr));
        Self { s3, nats, data_dir, app: Some(app), api }
    }

    /// Stops the platform (its projections commit) and starts it again.
    async fn restart(&mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown().await;
        }
        let app = Box::pin(RunningApp::start(settings(&self.nats, &self.s3, self.data_dir.path()))).await.expect("platform restarts");
        self.api.base = format!("http://{}", app.http_addr);
        self.app = Some(app);
    }

    fn location(&self) -> LakeLocation {
        LakeLocation::parse_with(&self.s3.url(PREFIX), &s3_options(&self.s3)).expect("the S3 lake location")
    }

    /// The `t` points committed to the lake's telemetry table: (count, distinct seqs, sum).
    async fn committed(&self) -> (usize, usize, i64) {
        let batches = scan::read_table(&self.location(), "telemetry").await.expect("the telemetry table reads from S3");
        let mut seqs = std::collections::BTreeSet::new();
        let (mut count, mut sum) = (0, 0);
        for batch in &batches {
            let column = |name: &str| batch.column_by_name(name).unwrap_or_else(|| panic!("column {name}")).clone();
            let keys = column("key");
            let keys = thinglake_queries::arrow::compute::cast(&keys, &thinglake_queries::arrow::datatypes::DataType::Utf8).expect("keys as text");
            let keys = keys.as_any().downcast_ref::<thinglake_queries::arrow::array::StringArray>().expect("string keys");
            let seq = column("seq");
            let seq = seq.as_any().downcast_ref::<Int64Array>().expect("seq");
            let value = column("long_v");
            let value = value.as_any().downcast_ref::<Int64Array>().expect("long_v");
            for row in 0..batch.num_rows() {
                if keys.value(row) == "t" {
                    count += 1;
                    seqs.insert(seq.value(row));
                    sum += value.value(row);
                }
            }
        }
        (count, seqs.len(), sum)
    }

    /// Runs `thinglake <command>` against this platform's NATS and S3 lake, with the S3 settings
    /// in the environment as an operator would give them; (success, stdout + stderr).
    async fn cli(&self, args: &[&str]) -> (bool, String) {
        let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_thinglake"))
            .args(args)
            .arg("--nats-url")
            .arg(self.nats.url())
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .env("THINGLAKE_LAKE_URL", self.s3.url(PREFIX))
            .env("THINGLAKE_LAKE_S3_ENDPOINT", self.s3.endpoint())
            .env("THINGLAKE_LAKE_S3_ALLOW_HTTP", "true")
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
            .env("AWS_REGION", REGION)
            .env("THINGLAKE_LOG", "warn")
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(120), run).await.expect("the command ends").expect("the command runs");
        (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

async fn post_points(api: &Api, token: &str, range: std::ops::Range<i64>) {
    for i in range {
        let body = json!({"ts": T0 + i * 1000, "values": {"t": i}}).to_string();
        let (status, _, text) = post_raw(api, &format!("/api/v1/{token}/telemetry"), body).await;
        assert_eq!(status, 200, "{text}");
    }
}

async fn sql(api: &Api, token: &str, query: &str) -> Value {
    api.post("/api/sql", token, json!({"query": query})).await.ok()["rows"].clone()
}

const COUNT_T: &str = "SELECT count(*) AS n, count(DISTINCT seq) AS seqs, sum(long_v) AS total FROM telemetry WHERE key = 't'";

/// Sum of 0..n.
fn total(n: i64) -> i64 {
    n * (n - 1) / 2
}

#[tokio::test]
async fn the_lake_on_s3_holds_every_point_once_across_restarts_trims_and_rebuilds() {
    let mut t = S3App::start().await;
    let (admin, device, token) = device_with_token(&t.api, "s3 device").await;
    post_points(&t.api, &token, 0..20).await;

    // Committed to the bucket (not only in the hot tail), then answered by SQL.
    eventually(Duration::from_secs(20), || async { (t.committed().await == (20, 20, total(20))).then_some(()) }).await;
    let keys = t.s3.keys(&format!("{PREFIX}/telemetry/"));
    assert!(keys.iter().any(|k| k.ends_with(".parquet")), "{keys:?}");
    assert!(keys.iter().any(|k| k.starts_with(&format!("{PREFIX}/telemetry/_delta_log/")) && k.ends_with(".json")), "{keys:?}");
    assert!(!t.data_dir.path().join("lake").exists(), "nothing of the lake is on the local disk");
    assert_eq!(sql(&t.api, &admin, COUNT_T).await, json!([[20, 20, total(20)]]));

    // Restarts resume right after the committed sequence: nothing lost, nothing twice.
    t.restart().await;
    post_points(&t.api, &token, 20..30).await;
    let js = async_nats::jetstream::new(t.nats.client().await);
    let telemetry = thinglake_infra::subjects::Subjects::default().telemetry_stream();
    let last = js.get_stream(&telemetry).await.expect("telemetry stream").info().await.expect("info").state.last_sequence;
    t.restart().await;
    assert_eq!(t.committed().await, (30, 30, total(30)));
    assert_eq!(sql(&t.api, &admin, COUNT_T).await, json!([[30, 30, total(30)]]));

    // `thinglake trim` reads the committed floor from the bucket (the shutdown committed every
    // message up to `last`); the restart after it seeds the latest value from the lake.
    let (ok, out) = t.cli(&["trim", "telemetry", "--before-seq", &(last + 1).to_string()]).await;
    assert!(ok, "{out}");
    t.restart().await;
    let first = js.get_stream(&telemetry).await.expect("telemetry stream").info().await.expect("info").state.first_sequence;
    assert!(first > last, "every committed point was trimmed (first sequence {first}, last {last})");
    assert_eq!(latest(&t.api, &admin, &format!("DEVICE/{device}"), "t").await["t"][0]["value"], json!(29));

    // `thinglake rebuild` rewrites the table in the bucket and keeps the trimmed points.
    let (ok, out) = t.cli(&["rebuild", "telemetry"]).await;
    assert!(ok, "{out}");
    let kept: usize = out
        .split(" rows of trimmed messages kept")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no rebuild report in: {out}"));
    assert!(out.contains("rebuilt telemetry up to sequence") && kept >= 30, "{out}");
    assert_eq!(t.committed().await, (30, 30, total(30)));
    assert_eq!(sql(&t.api, &admin, COUNT_T).await, json!([[30, 30, total(30)]]));
    post_points(&t.api, &token, 30..31).await;
    eventually(Duration::from_secs(20), || async { (t.committed().await == (31, 31, total(31))).then_some(()) }).await;
}

#[tokio::test]
async fn compaction_and_vacuum_rewrite_and_delete_files_in_the_bucket() {
    let t = S3App::start().await;
    let (admin, _, token) = device_with_token(&t.api, "s3 compacted").await;
    // One commit per point: five small files in one partition.
    for i in 0..5 {
        post_points(&t.api, &token, i..i + 1).await;
        eventually(Duration::from_secs(20), || async { (t.committed().await.0 == i as usize + 1).then_some(()) }).await;
    }
    let parquet = |s3: &S3Server| s3.keys(&format!("{PREFIX}/telemetry/")).into_iter().filter(|k| k.ends_with(".parquet")).count();
    let before = parquet(&t.s3);
    assert!(before >= 5, "{before} files");

    let (removed, written) = upkeep::compact(&t.location(), "telemetry", upkeep::SMALL_FILE_BYTES, 4).await.expect("compaction on S3");
    assert!(removed >= 5 && written >= 1, "removed {removed}, written {written}");
    assert_eq!(parquet(&t.s3), before + written, "compaction deletes nothing itself");
    let vacuumed = upkeep::vacuum(&t.location(), "telemetry", Duration::ZERO).await.expect("vacuum on S3");
    assert!(vacuumed >= removed, "vacuumed {vacuumed}, compacted {removed}");
    assert_eq!(parquet(&t.s3), before + written - vacuumed);
    assert_eq!(t.committed().await, (5, 5, total(5)));
    assert_eq!(sql(&t.api, &admin, COUNT_T).await, json!([[5, 5, total(5)]]));
}

/// Runs `thinglake run` until it exits (it must, within the timeout); (success, output).
async fn run_fails(nats: &NatsServer, data_dir: &std::path::Path, env: &[(&str, &str)]) -> (bool, String) {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_thinglake"))
        .arg("run")
        .env("THINGLAKE_DATA_DIR", data_dir)
        .env("THINGLAKE_NATS_URL", nats.url())
        .env("THINGLAKE_HTTP_HOST", "127.0.0.1")
        .env("THINGLAKE_HTTP_PORT", "0")
        .env("THINGLAKE_MQTT_HOST", "127.0.0.1")
        .env("THINGLAKE_MQTT_PORT", "0")
        .env("THINGLAKE_PG_LISTEN", "off")
        .env("THINGLAKE_ADMIN_PASSWORD", SYSADMIN_PASSWORD)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
        .env("THINGLAKE_LOG", "warn")
        .envs(env.iter().copied())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run).await.expect("thinglake run exits").expect("thinglake runs");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test]
async fn a_lake_that_cannot_be_used_fails_the_start_with_a_clear_error() {
    let s3 = S3Server::start();
    let nats = NatsServer::start().await;
    let data_dir = tempfile::tempdir().expect("temp dir");
    let endpoint = s3.endpoint();
    let closed = format!("http://127.0.0.1:{}", thinglake_test_support::free_port());
    let missing_bucket = "s3://no-such-bucket/lake";
    let cases: [(&[(&str, &str)], &str); 6] = [
        (&[("THINGLAKE_LAKE_URL", "gs://bucket/lake")], "unsupported scheme gs"),
        (&[("THINGLAKE_LAKE_URL", "s3:///lake")], "no bucket"),
        (
            &[("THINGLAKE_LAKE_URL", "s3://lake/x"), ("THINGLAKE_LAKE_S3_ENDPOINT", &closed), ("THINGLAKE_LAKE_S3_ALLOW_HTTP", "true")],
            "cannot write to bucket lake",
        ),
        (
            &[("THINGLAKE_LAKE_URL", missing_bucket), ("THINGLAKE_LAKE_S3_ENDPOINT", &endpoint), ("THINGLAKE_LAKE_S3_ALLOW_HTTP", "true")],
            "bucket no-such-bucket does not exist",
        ),
        (&[("THINGLAKE_LAKE_URL", "s3://lake/x"), ("THINGLAKE_LAKE_S3_ENDPOINT", &endpoint)], "is plain HTTP: allow it"),
        (&[("THINGLAKE_LAKE_S3_ENDPOINT", &endpoint)], "need an s3:// lake_url"),
    ];
    for (env, expected) in cases {
        let started = std::time::Instant::now();
        let (ok, out) = run_fails(&nats, data_dir.path(), env).await;
        assert!(!ok, "started with {env:?}: {out}");
        assert!(out.contains(expected), "with {env:?} expected {expected:?} in: {out}");
        assert!(started.elapsed() < Duration::from_secs(30), "took {:?} with {env:?}", started.elapsed());
    }
    // The logged settings never show the secret.
    let secret = [("THINGLAKE_LAKE_URL", "gs://x"), ("THINGLAKE_LAKE_S3_SECRET_ACCESS_KEY", "hunter2"), ("THINGLAKE_LOG", "info")];
    let (_, out) = run_fails(&nats, data_dir.path(), &secret).await;
    assert!(out.contains("lake_s3") && !out.contains("hunter2"), "{out}");

    // A bucket that works passes the check, which leaves nothing behind.
    let location = LakeLocation::parse_with(&s3.url("lake"), &s3_options(&s3)).expect("an S3 location");
    location.check().await.expect("a usable bucket");
    let root = LakeLocation::parse_with(&format!("s3://{}", s3.bucket()), &s3_options(&s3)).expect("the bucket's root");
    root.check().await.expect("a lake at the bucket's root");
    assert!(s3.keys("").is_empty(), "{:?}", s3.keys(""));
    assert!(!format!("{location:?}").contains(SECRET_ACCESS_KEY), "{location:?}");
}
