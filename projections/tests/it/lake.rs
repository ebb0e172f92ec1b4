//! The lake projections against a real nats-server and a local lake directory: freshness through
//! the hot tail, exactly-once commits across crashes and NATS restarts, dead letters, rebuild,
//! compaction, and the tables read back by an independent reader.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use async_nats::jetstream;
use bytes::Bytes;
use deltalake_core::arrow::array::{Array, AsArray, RecordBatch};
use deltalake_core::arrow::datatypes::Int64Type;
use thinglake_domain::telemetry::{AttributeScope, KvEntry, KvValue, TelemetryData, TelemetryMessage, TsBatch};
use thinglake_domain::{Actor, EntityType};
use thinglake_infra::event_store::EventStore;
use thinglake_infra::subjects::Subjects;
use thinglake_projections::lake::projection::ProjectionKind;
use thinglake_projections::lake::{LakeOptions, ProjectionRunner, rebuild};
use thinglake_lake::{LakeLocation, scan, upkeep};
use thinglake_test_support::NatsServer;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

const DEADLINE: Duration = Duration::from_secs(30);

pub(crate) struct Fixture {
    pub(crate) nats: NatsServer,
    pub(crate) js: jetstream::Context,
    pub(crate) subjects: Subjects,
    pub(crate) lake_dir: tempfile::TempDir,
    pub(crate) tenant: Uuid,
}

impl Fixture {
    pub(crate) async fn start() -> anyhow::Result<Self> {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("THINGLAKE_LOG"))
            .with_test_writer()
            .try_init();
        let nats = NatsServer::start().await;
        let subjects = Subjects::default();
        let store = EventStore::connect(nats.client().await, subjects.clone()).await?;
        let js = store.jetstream().clone();
        Ok(Self { nats, js, subjects, lake_dir: tempfile::tempdir()?, tenant: Uuid::now_v7() })
    }

    pub(crate) fn location(&self) -> LakeLocation {
        LakeLocation::local(&self.lake_dir.path().join("lake")).expect("a local lake directory")
    }

    pub(crate) fn options(&self, batch_rows: usize, batch_interval: Duration) -> LakeOptions {
        let mut options = LakeOptions::new(self.location());
        options.batch_rows = batch_rows;
        options.batch_interval = batch_interval;
        options.upkeep_interval = Duration::ZERO;
        options
    }

    pub(crate) async fn runner(&self, kind: ProjectionKind, options: LakeOptions) -> anyhow::Result<ProjectionRunner> {
        Ok(ProjectionRunner::open(self.js.clone(), self.subjects.clone(), kind.projection(), options).await?)
    }

    /// Publishes `messages` telemetry messages of `points` points each; point values are
    /// `i * points + k`, timestamps `1_700_000_000_000 + i` (so each (entity, key, ts) is unique).
    pub(crate) async fn publish_points(&self, from: usize, messages: usize, points: usize) -> anyhow::Result<()> {
        let mut acks = Vec::new();
        for i in from..from + messages {
            let device = Uuid::from_u128(i as u128 % 7 + 1);
            let values = (0..points)
                .map(|k| KvEntry { key: format!("k{k}"), value: KvValue::Long((i * points + k) as i64) })
                .collect();
            let message = TelemetryMessage {
                message_id: Uuid::now_v7(),
                schema_version: TelemetryMessage::SCHEMA_VERSION,
                tenant_id: self.tenant,
                entity_type: EntityType::Device,
                entity_id: device,
                received_at: 1_700_000_000_000 + i as i64,
                actor: Actor::device(device),
                data: TelemetryData::Timeseries {
                    batches: vec![TsBatch { ts: 1_700_000_000_000 + i as i64, values }],
                },
            };
            acks.push(
                self.js.publish(self.subjects.telemetry(self.tenant, device), Bytes::from(serde_json::to_vec(&message)?)).await?,
            );
            if acks.len() >= 256 {
                for ack in acks.drain(..) {
                    ack.await?;
                }
            }
        }
        for ack in acks {
            ack.await?;
        }
        Ok(())
    }

    pub(crate) async fn publish_raw(&self, payload: &[u8]) -> anyhow::Result<u64> {
        let subject = self.subjects.telemetry(self.tenant, Uuid::nil());
        Ok(self.js.publish(subject, Bytes::copy_from_slice(payload)).await?.await?.sequence)
    }
}

/// Publishes until JetStream acknowledges, for up to [`DEADLINE`]: retried with the same message
/// id across a NATS restart (de-duplicated there).
pub(crate) async fn publish_retrying(js: &jetstream::Context, subject: String, body: Bytes, message_id: Uuid) -> anyhow::Result<()> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let publish = jetstream::message::PublishMessage::build().payload(body.clone()).message_id(message_id.to_string());
        let acked = match js.send_publish(subject.clone(), publish).await {
            Ok(ack) => ack.await.map(|_| ()).map_err(anyhow::Error::from),
            Err(e) => Err(e.into()),
        };
        match acked {
            Ok(()) => return Ok(()),
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => return Err(e),
        }
    }
}

/// Row count, sum of `long_v` and number of distinct (entity, key, ts) of telemetry batches.
pub(crate) fn telemetry_digest(batches: &[RecordBatch]) -> (usize, i64, usize) {
    let mut count = 0;
    let mut sum = 0i64;
    let mut distinct = HashSet::new();
    for batch in batches {
        let entity = batch.column_by_name("entity_id").expect("entity_id").as_string::<i32>();
        let key = batch.column_by_name("key").expect("key").as_string::<i32>();
        let ts = batch.column_by_name("ts").expect("ts").as_primitive::<Int64Type>();
        let long_v = batch.column_by_name("long_v").expect("long_v").as_primitive::<Int64Type>();
        for row in 0..batch.num_rows() {
            count += 1;
            if !long_v.is_null(row) {
                sum += long_v.value(row);
            }
            distinct.insert((entity.value(row).to_string(), key.value(row).to_string(), ts.value(row)));
        }
    }
    (count, sum, distinct.len())
}

/// What `publish_points(0, messages, points)` publishes.
pub(crate) fn expected_digest(messages: usize, points: usize) -> (usize, i64, usize) {
    let n = messages * points;
    (n, (0..n as i64).sum(), n)
}

pub(crate) async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> anyhow::Result<Option<T>>) -> anyhow::Result<T> {
    let start = Instant::now();
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if start.elapsed() > DEADLINE {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_point_is_in_the_hot_tail_at_once_and_in_the_table_after_the_commit() -> anyhow::Result<()> {
    let f = Fixture::start().await?;
    let runner = f.runner(ProjectionKind::Telemetry, f.options(1_000_000, Duration::from_secs(2))).await?;
    let tail = runner.hot_tail();
    let status = runner.status();
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    tracker.spawn(runner.run(shutdown.clone()));

    let published = Instant::now();
    f.publish_points(0, 1, 1).await?;
    eventually("the point in the hot tail", async || Ok((tail.rows() == 1).then_some(()))).await?;
    let visible = published.elapsed();
    assert!(visible < Duration::from_secs(1), "hot tail visibility took {visible:?}");
    assert!(scan::read_table(&f.location(), "telemetry").await?.is_empty(), "not committed yet");

    eventually("the commit", async || Ok((status.committed_seq() >= 1).then_some(()))).await?;
    assert_eq!(tail.rows(), 0, "the hot tail is trimmed after the commit");
    let rows = scan::read_table(&f.location(), "telemetry").await?;
    assert_eq!(telemetry_digest(&rows), expected_digest(1, 1));
    let tenant = rows[0].column_by_name("tenant_id").expect("tenant").as_string::<i32>().value(0).to_string();
    assert_eq!(tenant, f.tenant.to_string(), "partition columns come back from the path");

    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
    Ok(())
}

#[tokio::test]
async fn shutdown_commits_what_was_taken_and_a_restart_resumes_after_it() -> anyhow::Result<()> {
    let f = Fixture::start().await?;
    f.publish_points(0, 300, 4).await?;
    let options = f.options(1_000_000, Duration::from_secs(3600));
    let runner = f.runner(ProjectionKind::Telemetry, options.clone()).await?;
    let status = runner.status();
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    tracker.spawn(runner.run(shutdown.clone()));
    eventually("every message taken", async || Ok((status.seen_seq() >= 300).then_some(()))).await?;
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
    assert_eq!(status.committed_seq(), 300, "shutdown flushes and commits");

    // The next start reads the position back from the table and continues after it.
    f.publish_points(300, 100, 4).await?;
    let runner = f.runner(ProjectionKind::Telemetry, f.options(1, Duration::from_millis(50))).await?;
    assert_eq!(runner.committed_seq(), 300);
    let status = runner.status();
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    tracker.spawn(runner.run(shutdown.clone()));
    eventually("the rest committed", async || Ok((status.committed_seq() >= 400).then_some(()))).await?;
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
    assert_eq!(telemetry_digest(&scan::read_table(&f.location(), "telemetry").await?), expected_digest(400, 4));
    Ok(())
}

#[tokio::test]
async fn a_projector_killed_mid_batch_and_a_nats_restart_under_ingest_lose_and_duplicate_nothing() -> anyhow::Result<()> {
    let mut f = Fixture::start().await?;
    let (messages, points) = (3_000, 5);
    let options = f.options(2_000, Duration::from_millis(200));

    // Ingest runs throughout; the projector is aborted (no flush, no commit) several times at
    // arbitrary points: mid-batch, and possibly between the Parquet write and the commit.
    let publisher = {
        let js = f.js.clone();
        let subjects = f.subjects.clone();
        let tenant = f.tenant;
        let lake_dir = f.lake_dir.path().to_path_buf();
        let fixture = PublishOnly { js, subjects, tenant, lake_dir };
        tokio_util::task::AbortOnDropHandle::new(tokio::task::spawn_blocking(move || {
            tokio::runtime::Handle::current().block_on(fixture.publish(messages, points))
        }))
    };
    for kill_after in [Duration::from_millis(150), Duration::from_millis(400), Duration::from_millis(700)] {
        let runner = f.runner(ProjectionKind::Telemetry, options.clone()).await?;
        let tracker = TaskTracker::new();
        let task = tracker.spawn(runner.run(CancellationToken::new()));
        tokio::time::sleep(kill_after).await;
        task.abort();
        let _ = task.await;
    }

    // Restart nats-server while a projector runs and ingest goes on.
    let runner = f.runner(ProjectionKind::Telemetry, options.clone()).await?;
    let status = runner.status();
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    tracker.spawn(runner.run(shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    f.nats.restart().await;
    publisher.await.context("publisher task")??;

    let last = f.js.get_stream(f.subjects.telemetry_stream()).await?.cached_info().state.last_sequence;
    eventually("everything committed", async || Ok((status.committed_seq() >= last).then_some(()))).await?;
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;

    let rows = scan::read_table(&f.location(), "telemetry").await?;
    let (count, sum, distinct) = telemetry_digest(&rows);
    // The publisher may have retried a publish across the restart: the log is the reference.
    let log_points = (last as usize) * points;
    assert_eq!(count, distinct, "no duplicate rows");
    assert_eq!(count, log_points, "every point of the log, once");
    assert!(count >= messages * points && sum >= expected_digest(messages, points).1);
    Ok(())
}

/// A publisher detached from the fixture, so it can run on its own thread during the test.
struct PublishOnly {
    js: jetstream::Context,
    subjects: Subjects,
    tenant: Uuid,
    lake_dir: std::path::PathBuf,
}

impl PublishOnly {
    async fn publish(self, messages: usize, points: usize) -> anyhow::Result<()> {
        let _ = &self.lake_dir;
        for i in 0..messages {
            let device = Uuid::from_u128(i as u128 % 7 + 1);
            let values = (0..points)
                .map(|k| KvEntry { key: format!("k{k}"), value: KvValue::Long((i * points + k) as i64) })
                .collect();
            let message = TelemetryMessage {
                message_id: Uuid::from_u128(i as u128 + 1),
                schema_version: TelemetryMessage::SCHEMA_VERSION,
                tenant_id: self.tenant,
                entity_type: EntityType::Device,
                entity_id: device,
                received_at: 0,
                actor: Actor::device(device),
                data: TelemetryData::Timeseries {
                    batches: vec![TsBatch { ts: 1_700_000_000_000 + i as i64, values }],
                },
            };
            let body = Bytes::from(serde_json::to_vec(&message)?);
            let subject = self.subjects.telemetry(self.tenant, device);
            publish_retrying(&self.js, subject, body, message.message_id).await?;
            if i % 500 == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }
}

#[tokio::test]
async fn unreadable_messages_go_to_dead_letters_and_the_projection_goes_on() -> anyhow::Result<()> {
    let f = Fixture::start().await?;
    f.publish_points(0, 2, 1).await?;
    let corrupt = f.publish_raw(b"{not json").await?;
    let mut future = serde_json::to_value(TelemetryMessage {
        message_id: Uuid::now_v7(),
        schema_version: 1,
        tenant_id: f.tenant,
        entity_type: EntityType::Device,
        entity_id: Uuid::nil(),
        received_at: 0,
        actor: Actor::system(),
        data: TelemetryData::Attributes { scope: AttributeScope::ClientScope, ts: 0, values: vec![] },
    })?;
    future["schema_version"] = 99.into();
    let unknown = f.publish_raw(&serde_json::to_vec(&future)?).await?;
    f.publish_points(2, 2, 1).await?;

    let runner = f.runner(ProjectionKind::Telemetry, f.options(1, Duration::from_millis(10))).await?;
    let status = runner.status();
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    tracker.spawn(runner.run(shutdown.clone()));
    eventually("all committed", async || Ok((status.committed_seq() >= 6).then_some(()))).await?;
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;

    assert_eq!(telemetry_digest(&scan::read_table(&f.location(), "telemetry").await?), expected_digest(4, 1));
    let dead = scan::read_table(&f.location(), "dead_letters").await?;
    let mut seqs = Vec::new();
    for batch in &dead {
        let seq = batch.column_by_name("seq").expect("seq").as_primitive::<Int64Type>();
        let reason = batch.column_by_name("reason").expect("reason").as_string::<i32>();
        for row in 0..batch.num_rows() {
            seqs.push((seq.value(row) as u64, reason.value(row).to_string()));
        }
    }
    seqs.sort();
    assert_eq!(seqs.len(), 2, "{seqs:?}");
    assert_eq!(seqs[0].0, corrupt);
    assert!(seqs[0].1.contains("not a telemetry message"), "{seqs:?}");
    assert_eq!(seqs[1].0, unknown);
    assert!(seqs[1].1.contains("schema version 99"), "{seqs:?}");
    assert_eq!(status.dead_letters(), 2);
    Ok(())
}

// Multi-threaded: the rebuild's progress callback blocks on a live commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_replaces_the_table_with_the_same_rows_while_ingestion_goes_on() -> anyhow::Result<()> {
    let f = Fixture::start().await?;
    f.publish_points(0, 200, 3).await?;
    let runner = f.runner(ProjectionKind::Telemetry, f.options(60, Duration::from_millis(10))).await?;
    let status = runner.status();
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    tracker.spawn(runner.run(shutdown.clone()));
    eventually("first part committed", async || Ok((status.committed_seq() >= 200).then_some(()))).await?;

    // The live projection commits new points while the rebuild runs (between its snapshot and
    // its commit): both commits go through, neither loses or repeats a row.
    let mut updates = 0;
    let handle = tokio::runtime::Handle::current();
    let rebuilt = rebuild::rebuild(&f.js, &f.subjects, &f.location(), ProjectionKind::Telemetry, |_| {
        updates += 1;
        if updates == 1 {
            tokio::task::block_in_place(|| {
                handle.block_on(async {
                    f.publish_points(200, 25, 3).await.expect("published");
                    eventually("a live commit during the rebuild", async || Ok((status.committed_seq() >= 225).then_some(())))
                        .await
                        .expect("committed");
                })
            });
        }
    })
    .await?;
    assert!(rebuilt.target == 200 && rebuilt.rows == rebuilt.target * 3, "{rebuilt:?}");
    assert!(rebuilt.files_removed >= 1 && rebuilt.files_added >= 1 && updates > 0, "{rebuilt:?}");
    for part in 1..4 {
        f.publish_points(200 + part * 25, 25, 3).await?;
        let upto = 200 + (part as u64 + 1) * 25;
        eventually("the part committed", async || Ok((status.committed_seq() >= upto).then_some(()))).await?;
    }
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
    assert_eq!(telemetry_digest(&scan::read_table(&f.location(), "telemetry").await?), expected_digest(300, 3));

    // Compaction rewrites the small files without changing the rows, and vacuum deletes the
    // replaced ones.
    let (removed, written) = upkeep::compact(&f.location(), "telemetry", upkeep::SMALL_FILE_BYTES, 2).await?;
    assert!(removed >= 2 && written >= 1, "{removed} {written}");
    assert_eq!(telemetry_digest(&scan::read_table(&f.location(), "telemetry").await?), expected_digest(300, 3));
    let vacuumed = upkeep::vacuum(&f.location(), "telemetry", Duration::ZERO).await?;
    assert!(vacuumed >= removed, "{vacuumed}");
    assert_eq!(telemetry_digest(&scan::read_table(&f.location(), "telemetry").await?), expected_digest(300, 3));
    Ok(())
}

/// The project's Python venv, where `scripts/install-tools` puts the independent readers.
fn python() -> anyhow::Result<std::path::PathBuf> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("repository root")?;
    let python = repo.join(".tools/venv/bin/python");
    if !python.exists() {
        bail!("{} missing: run scripts/install-tools", python.display());
    }
    Ok(python)
}

#[tokio::test]
async fn an_independent_reader_sees_the_same_rows() -> anyhow::Result<()> {
    let f = Fixture::start().await?;
    f.publish_points(0, 500, 4).await?;
    let runner = f.runner(ProjectionKind::Telemetry, f.options(700, Duration::from_millis(10))).await?;
    let status = runner.status();
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    tracker.spawn(runner.run(shutdown.clone()));
    eventually("all committed", async || Ok((status.committed_seq() >= 500).then_some(()))).await?;
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;

    // The `deltalake` package (its own Delta protocol reader) lists the live files and their
    // partition values; DuckDB reads the Parquet.
    let table = f.location().local_dir("telemetry").context("local table")?;
    let script = r#"
import sys, duckdb
from deltalake import DeltaTable
dt = DeltaTable(sys.argv[1])
files = dt.file_uris()
row = duckdb.sql(
    "select count(*), sum(long_v), count(distinct (entity_id, key, ts)), count(distinct tenant_id) "
    "from read_parquet($files, hive_partitioning = true)",
    params={"files": files},
).fetchone()
print(dt.version(), *row)
"#;
    let output = tokio::process::Command::new(python()?).arg("-c").arg(script).arg(&table).output().await?;
    if !output.status.success() {
        bail!("python reader failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let text = String::from_utf8(output.stdout)?;
    let fields: Vec<i64> = text.split_whitespace().map(str::parse).collect::<Result<_, _>>()?;
    let (count, sum, distinct) = expected_digest(500, 4);
    assert_eq!(&fields[1..], &[count as i64, sum, distinct as i64, 1], "reader said: {text}");
    Ok(())
}

impl Fixture {
    /// Runs `kind`'s projection until it has taken `upto`, then stops it (which commits).
    async fn project_until(&self, kind: ProjectionKind, upto: u64) -> anyhow::Result<()> {
        self.project_until_every(kind, upto, Duration::from_millis(20)).await
    }

    /// [`Fixture::project_until`] committing every `interval` (and on shutdown): with an interval
    /// longer than the test, what was taken is committed once, at shutdown, however the
    /// messages were fetched.
    async fn project_until_every(&self, kind: ProjectionKind, upto: u64, interval: Duration) -> anyhow::Result<()> {
        let runner = self.runner(kind, self.options(1_000_000, interval)).await?;
        let status = runner.status();
        let tracker = TaskTracker::new();
        let shutdown = CancellationToken::new();
        tracker.spawn(runner.run(shutdown.clone()));
        eventually("the projection took the messages", async || Ok((status.seen_seq() >= upto).then_some(()))).await?;
        shutdown.cancel();
        tracker.close();
        tracker.wait().await;
        assert!(status.committed_seq() >= upto, "{} committed on shutdown", kind.name());
        Ok(())
    }

    /// Publishes `count` entity events over 20 devices (a creation, then updates), raw on the
    /// log as the event store writes them; returns the last sequence.
    async fn publish_events(&self, from: usize, count: usize) -> anyhow::Result<u64> {
        let mut last = 0;
        for i in from..from + count {
            let entity = Uuid::from_u128(i as u128 % 20 + 1);
            let version = (i / 20) as u64 + 1;
            let envelope = thinglake_domain::EventEnvelope {
                event_id: Uuid::now_v7(),
                tenant_id: self.tenant,
                entity_type: EntityType::Device,
                entity_id: entity,
                version,
                event_type: if version == 1 { "DeviceCreated" } else { "DeviceUpdated" }.to_string(),
                schema_version: 1,
                occurred_at: 1_700_000_000_000 + i as i64,
                recorded_at: 1_700_000_000_000 + i as i64,
                actor: Actor::system(),
                payload: serde_json::json!({ "name": format!("device-{}", i % 20), format!("field{}", i % 3): i }),
            };
            let subject = self.subjects.entity(self.tenant, EntityType::Device, entity);
            last = self.js.publish(subject, Bytes::from(serde_json::to_vec(&envelope)?)).await?.await?.sequence;
        }
        Ok(last)
    }
}

/// (seq, version, state) of every `entity_versions` row, sorted.
async fn entity_versions_rows(location: &LakeLocation) -> anyhow::Result<Vec<(i64, i64, String)>> {
    let mut rows = Vec::new();
    for batch in scan::read_table(location, "entity_versions").await? {
        let seq = batch.column_by_name("seq").context("seq")?.as_primitive::<Int64Type>();
        let version = batch.column_by_name("version").context("version")?.as_primitive::<Int64Type>();
        let state = batch.column_by_name("state").context("state")?.as_string::<i32>();
        for row in 0..batch.num_rows() {
            rows.push((seq.value(row), version.value(row), state.value(row).to_string()));
        }
    }
    rows.sort();
    Ok(rows)
}

#[tokio::test]
async fn the_telemetry_log_is_trimmed_only_up_to_what_every_lake_table_committed() -> anyhow::Result<()> {
    use thinglake_projections::ProjectionError;
    use thinglake_projections::lake::projection::Source;
    use thinglake_projections::lake::retention::{TrimPoint, check_stream_limits, committed_floor, trim};

    let f = Fixture::start().await?;
    // The stream itself has no limit that could drop what the lake has not committed.
    let mut stream = f.js.get_stream(f.subjects.telemetry_stream()).await?;
    let config = stream.info().await?.config.clone();
    check_stream_limits(&config)?;
    let limited = jetstream::stream::Config { max_age: Duration::from_secs(3600), ..config.clone() };
    assert!(matches!(check_stream_limits(&limited), Err(ProjectionError::UnsafeStreamLimits { .. })));
    let refusing_new = jetstream::stream::Config {
        max_bytes: 1 << 30,
        discard: jetstream::stream::DiscardPolicy::New,
        ..config.clone()
    };
    check_stream_limits(&refusing_new)?;

    f.publish_points(0, 150, 2).await?;
    // Nothing is committed yet: no trim at all.
    let refused = trim(&f.js, &f.subjects, &f.location(), Source::Telemetry, TrimPoint::Sequence(100), false).await;
    assert!(matches!(refused, Err(ProjectionError::TrimBeyondLake { floor: 0, .. })), "{refused:?}");

    f.project_until(ProjectionKind::Telemetry, 150).await?;
    f.project_until(ProjectionKind::TelemetryHourly, 150).await?;
    f.project_until(ProjectionKind::AttributeVersions, 150).await?;
    let before_more = chrono_now_ms();
    tokio::time::sleep(Duration::from_millis(20)).await;
    f.publish_points(150, 150, 2).await?;
    f.project_until(ProjectionKind::Telemetry, 300).await?;
    f.project_until(ProjectionKind::TelemetryHourly, 300).await?;
    let floor = committed_floor(&f.location(), Source::Telemetry).await?;
    assert_eq!(floor.seq, 150);
    assert_eq!(floor.slowest(), Some("attribute_versions"));

    // Beyond the floor: refused, naming the projection that holds it back; the log is intact.
    let refused = trim(&f.js, &f.subjects, &f.location(), Source::Telemetry, TrimPoint::Sequence(250), false).await;
    match refused {
        Err(e @ ProjectionError::TrimBeyondLake { .. }) => {
            let text = e.to_string();
            assert!(text.contains("150") && text.contains("attribute_versions"), "{text}");
        }
        other => bail!("expected a refusal, got {other:?}"),
    }
    assert_eq!(stream.info().await?.state.first_sequence, 1);
    // By time: everything published before `before_more` is older, yet only what is committed goes.
    let clipped =
        trim(&f.js, &f.subjects, &f.location(), Source::Telemetry, TrimPoint::Time(chrono_now_ms()), true).await?;
    assert!(clipped.clipped && clipped.requested == 301, "{clipped:?}");
    assert_eq!((clipped.keep_from, clipped.purged, clipped.first_seq), (151, 150, 151));
    // The time search finds the first message stored after a given time.
    f.project_until(ProjectionKind::AttributeVersions, 300).await?;
    let by_time = trim(&f.js, &f.subjects, &f.location(), Source::Telemetry, TrimPoint::Time(before_more), false).await?;
    assert_eq!((by_time.requested, by_time.purged, by_time.first_seq), (151, 0, 151), "{by_time:?}");
    // The events stream is never trimmed.
    let events = trim(&f.js, &f.subjects, &f.location(), Source::Events, TrimPoint::Sequence(2), true).await;
    assert!(matches!(events, Err(ProjectionError::TrimRefused { .. })), "{events:?}");

    // A rebuild after the trim keeps the trimmed points (only the table holds them) and
    // replays the rest from the log.
    assert_eq!(telemetry_digest(&scan::read_table(&f.location(), "telemetry").await?), expected_digest(300, 2));
    let rebuilt = rebuild::rebuild(&f.js, &f.subjects, &f.location(), ProjectionKind::Telemetry, |_| {}).await?;
    assert_eq!((rebuilt.rows_kept, rebuilt.messages, rebuilt.rows), (300, 150, 300), "{rebuilt:?}");
    assert_eq!(telemetry_digest(&scan::read_table(&f.location(), "telemetry").await?), expected_digest(300, 2));
    // And again, from the rebuilt table's files.
    let again = rebuild::rebuild(&f.js, &f.subjects, &f.location(), ProjectionKind::Telemetry, |_| {}).await?;
    assert_eq!((again.rows_kept, again.messages), (300, 150), "{again:?}");
    assert_eq!(telemetry_digest(&scan::read_table(&f.location(), "telemetry").await?), expected_digest(300, 2));
    Ok(())
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[tokio::test]
async fn entity_versions_are_rebuilt_from_the_events_table_and_the_log_after_it() -> anyhow::Result<()> {
    let f = Fixture::start().await?;
    let archived = f.publish_events(0, 400).await?;
    f.project_until(ProjectionKind::Events, archived).await?;
    let last = f.publish_events(400, 100).await?;
    f.project_until(ProjectionKind::EntityVersions, last).await?;
    let before = entity_versions_rows(&f.location()).await?;
    assert_eq!(before.len(), 500);

    // The events table covers the first 400 events, the log the last 100.
    let rebuilt = rebuild::rebuild(&f.js, &f.subjects, &f.location(), ProjectionKind::EntityVersions, |_| {}).await?;
    assert_eq!((rebuilt.archived_events, rebuilt.messages, rebuilt.rows), (400, 100, 500), "{rebuilt:?}");
    assert_eq!(entity_versions_rows(&f.location()).await?, before, "the same versions and states");

    // With the log trimmed below what the events table holds, the rebuild still has every event.
    let stream = f.js.get_stream(f.subjects.events_stream()).await?;
    stream.purge().sequence(300).await?;
    let rebuilt = rebuild::rebuild(&f.js, &f.subjects, &f.location(), ProjectionKind::EntityVersions, |_| {}).await?;
    assert_eq!((rebuilt.archived_events, rebuilt.messages), (400, 100), "{rebuilt:?}");
    assert_eq!(entity_versions_rows(&f.location()).await?, before);

    // Trimmed beyond the events table: refused rather than rebuilt with a gap.
    stream.purge().sequence(450).await?;
    let refused = rebuild::rebuild(&f.js, &f.subjects, &f.location(), ProjectionKind::EntityVersions, |_| {}).await;
    assert!(refused.is_err_and(|e| e.to_string().contains("events table holds events only up to 400")));
    Ok(())
}

/// Every row of the `events` table, each column's value as text, sorted by `seq`.
async fn events_rows(location: &LakeLocation) -> anyhow::Result<Vec<(i64, Vec<String>)>> {
    table_rows(location, "events").await
}

/// Every row of a table with a `seq` column, each column's value as text, sorted by `seq`.
async fn table_rows(location: &LakeLocation, table: &str) -> anyhow::Result<Vec<(i64, Vec<String>)>> {
    use deltalake_core::arrow::util::display::array_value_to_string;
    let mut rows = Vec::new();
    for batch in scan::read_table(location, table).await? {
        let seq = batch.column_by_name("seq").context("seq")?.as_primitive::<Int64Type>();
        for row in 0..batch.num_rows() {
            let mut values = Vec::new();
            for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
                values.push(format!("{}={}", field.name(), array_value_to_string(column, row)?));
            }
            values.sort();
            rows.push((seq.value(row), values));
        }
    }
    rows.sort();
    Ok(rows)
}

#[tokio::test]
async fn the_events_table_is_rebuilt_from_the_log_row_for_row_and_a_lost_sequence_fails_the_rebuild() -> anyhow::Result<()> {
    let f = Fixture::start().await?;
    f.publish_events(0, 200).await?;
    // Envelopes written otherwise than by the platform (pretty-printed, payload keys out of
    // order) give the same rows.
    let subject = f.subjects.entity(f.tenant, EntityType::Device, Uuid::from_u128(1));
    let envelope = |i: i64, payload: serde_json::Value| thinglake_domain::EventEnvelope {
        event_id: Uuid::now_v7(),
        tenant_id: f.tenant,
        entity_type: EntityType::Device,
        entity_id: Uuid::from_u128(1),
        version: 100 + i as u64,
        event_type: "DeviceUpdated".to_string(),
        schema_version: 1,
        occurred_at: 1_700_000_000_000 + i,
        recorded_at: 1_700_000_000_000 + i,
        actor: Actor::system(),
        payload,
    };
    let pretty = serde_json::to_vec_pretty(&envelope(1, serde_json::json!({"b": [1, {"y": 2, "x": 1}], "a": "é"})))?;
    let unsorted = serde_json::to_string(&envelope(2, serde_json::json!({})))?.replace(r#""payload":{}"#, r#""payload":{"z":1,"a":{"d":2,"c":3}}"#);
    for body in [pretty, unsorted.into_bytes()] {
        f.js.publish(subject.clone(), Bytes::from(body)).await?.await?;
    }
    // Events of 700 kB: nats-server cuts the rebuild's first direct get at its byte limit
    // (16 MiB, about 23 of them) and the reader asks again from where it stopped.
    for i in 0..30 {
        let body = serde_json::to_vec(&envelope(10 + i, serde_json::json!({"blob": "x".repeat(700_000)})))?;
        f.js.publish(subject.clone(), Bytes::from(body)).await?.await?;
    }
    let last = f.publish_events(200, 100).await?;
    f.project_until(ProjectionKind::Events, last).await?;
    let projected = events_rows(&f.location()).await?;
    assert_eq!(projected.len() as u64, last);
    // Events after the committed position are left to the live projection.
    f.publish_events(300, 20).await?;

    let rebuilt = rebuild::rebuild(&f.js, &f.subjects, &f.location(), ProjectionKind::Events, |_| {}).await?;
    assert_eq!((rebuilt.target, rebuilt.messages, rebuilt.rows), (last, last, last), "{rebuilt:?}");
    assert_eq!(events_rows(&f.location()).await?, projected, "the same rows");

    // A message deleted from the middle of the log: the rebuild fails instead of leaving a gap.
    let stream = f.js.get_stream(f.subjects.events_stream()).await?;
    assert!(stream.delete_message(150).await?);
    let refused = rebuild::rebuild(&f.js, &f.subjects, &f.location(), ProjectionKind::Events, |_| {}).await;
    assert!(
        refused.as_ref().is_err_and(|e| e.to_string().contains("the log lost sequences between 1 and ")),
        "{refused:?}"
    );
    assert_eq!(events_rows(&f.location()).await?, projected, "the table is left as it was");
    Ok(())
}

#[tokio::test]
async fn relation_versions_are_rebuilt_from_their_subjects_alone_up_to_the_committed_position() -> anyhow::Result<()> {
    use thinglake_domain::relation::{RelationEvent, RelationKey, RelationTypeGroup};
    use thinglake_domain::{DomainEvent as _, EntityId};

    let f = Fixture::start().await?;
    let key = |i: u128| RelationKey {
        from: EntityId { entity_type: EntityType::Asset, id: Uuid::from_u128(1_000 + i % 5) },
        to: EntityId { entity_type: EntityType::Device, id: Uuid::from_u128(i + 1) },
        relation_type: "Contains".to_string(),
        type_group: RelationTypeGroup::Common,
    };
    // 40 relations created and 20 of them updated, between device events: the projection reads
    // only the relations' subjects, through a filtered consumer.
    let publish_relation = async |i: u128| -> anyhow::Result<u64> {
        let (event, relation, version) = if i < 40 {
            (RelationEvent::RelationCreated { key: key(i), additional_info: serde_json::json!({"i": i}), created_time: 1_700_000_000_000 }, key(i), 1)
        } else {
            (RelationEvent::RelationUpdated { additional_info: serde_json::json!({"i": i}) }, key(i - 40), 2)
        };
        let (event_type, payload) = event.encode();
        let id = relation.relation_id();
        let envelope = thinglake_domain::EventEnvelope {
            event_id: Uuid::now_v7(),
            tenant_id: f.tenant,
            entity_type: EntityType::Relation,
            entity_id: id,
            version,
            event_type,
            schema_version: 1,
            occurred_at: 1_700_000_000_000 + i as i64,
            recorded_at: 1_700_000_000_000 + i as i64,
            actor: Actor::system(),
            payload,
        };
        let subject = f.subjects.entity(f.tenant, EntityType::Relation, id);
        Ok(f.js.publish(subject, Bytes::from(serde_json::to_vec(&envelope)?)).await?.await?.sequence)
    };
    let mut last = 0;
    for i in 0..60 {
        f.publish_events(i as usize, 2).await?;
        last = publish_relation(i).await?;
    }
    f.project_until(ProjectionKind::RelationVersions, last).await?;
    let projected = table_rows(&f.location(), "relation_versions").await?;
    assert_eq!(projected.len(), 60);
    // Events after the committed position are left to the live projection.
    f.publish_events(200, 5).await?;
    publish_relation(59).await?;

    let rebuilt = rebuild::rebuild(&f.js, &f.subjects, &f.location(), ProjectionKind::RelationVersions, |_| {}).await?;
    assert_eq!((rebuilt.target, rebuilt.archived_events, rebuilt.messages, rebuilt.rows), (last, 0, 60, 60), "{rebuilt:?}");
    assert_eq!(table_rows(&f.location(), "relation_versions").await?, projected, "the same rows");
    Ok(())
}

/// Per live file of the telemetry table: (rows, row groups, largest row group) after checking
/// that its rows are sorted by (entity_id, key, ts), that every row group has min/max statistics
/// of those columns and that the page index is written.
async fn telemetry_file_layouts(f: &Fixture) -> anyhow::Result<Vec<(usize, usize, usize)>> {
    use deltalake_core::parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
    use deltalake_core::parquet::file::metadata::PageIndexPolicy;

    let table = f.location().open("telemetry").await?.context("the telemetry table exists")?;
    let dir = f.location().local_dir("telemetry").context("a local table")?;
    let mut layouts = Vec::new();
    for file in table.snapshot()?.log_data().iter() {
        let bytes = Bytes::from(std::fs::read(dir.join(file.path().as_ref()))?);
        let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(bytes, ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required))?;
        let metadata = builder.metadata().clone();
        let columns = metadata.file_metadata().schema_descr();
        let index_of = |name: &str| (0..columns.num_columns()).find(|&i| columns.column(i).name() == name).context("column in file");
        let sort_columns = [index_of("entity_id")?, index_of("key")?, index_of("ts")?];
        let mut largest = 0;
        for group in metadata.row_groups() {
            largest = largest.max(group.num_rows() as usize);
            for &c in &sort_columns {
                let stats = group.column(c).statistics().context("row group statistics")?;
                assert!(stats.min_bytes_opt().is_some() && stats.max_bytes_opt().is_some(), "min/max of column {c}");
            }
        }
        let (column_index, offset_index) = (metadata.column_index(), metadata.offset_index());
        assert!(column_index.is_some() && offset_index.is_some(), "page index written in {}", file.path());
        let pages = offset_index.expect("checked")[0][sort_columns[0]].page_locations().len();
        let first_group = metadata.row_group(0).num_rows() as usize;
        assert!(
            pages >= first_group.div_ceil(thinglake_lake::PAGE_ROWS),
            "entity_id pages of {first_group} rows bounded by rows: {pages}"
        );
        let mut rows = 0;
        let mut previous: Option<(String, String, i64)> = None;
        for batch in builder.build()? {
            let batch = batch?;
            let entity = batch.column_by_name("entity_id").context("entity_id")?.as_string::<i32>();
            let key = batch.column_by_name("key").context("key")?.as_string::<i32>();
            let ts = batch.column_by_name("ts").context("ts")?.as_primitive::<Int64Type>();
            for row in 0..batch.num_rows() {
                let current = (entity.value(row).to_string(), key.value(row).to_string(), ts.value(row));
                if let Some(previous) = &previous {
                    assert!(previous <= &current, "{} not sorted: {previous:?} before {current:?}", file.path());
                }
                previous = Some(current);
            }
            rows += batch.num_rows();
        }
        layouts.push((rows, metadata.num_row_groups(), largest));
    }
    Ok(layouts)
}

#[tokio::test]
async fn telemetry_files_are_sorted_in_bounded_row_groups_as_written_and_as_compacted_beside_appends() -> anyhow::Result<()> {
    use thinglake_lake::ROW_GROUP_ROWS;

    let f = Fixture::start().await?;
    // 1,000 messages of 100 keys from 7 devices in arrival order (devices interleaved): one
    // commit of 100,000 rows, all in one day partition.
    f.publish_points(0, 1_000, 100).await?;
    f.project_until(ProjectionKind::Telemetry, 1_000).await?;
    let written = telemetry_file_layouts(&f).await?;
    assert_eq!(written.iter().map(|l| l.0).sum::<usize>(), 100_000, "{written:?}");
    let biggest = written.iter().max().context("a file")?;
    assert!(biggest.1 >= 2 && biggest.2 <= ROW_GROUP_ROWS, "several bounded row groups: {written:?}");

    // Small commits while compaction runs over and over: both go through, nothing lost or doubled.
    let runner = f.runner(ProjectionKind::Telemetry, f.options(5_000, Duration::from_millis(10))).await?;
    let status = runner.status();
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    tracker.spawn(runner.run(shutdown.clone()));
    let publish = async {
        for part in 0..10 {
            f.publish_points(1_000 + part * 50, 50, 100).await?;
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        anyhow::Ok(())
    };
    let deadline = Instant::now() + DEADLINE;
    let compact = async {
        let mut compacted = 0;
        while status.committed_seq() < 1_500 {
            compacted += upkeep::compact(&f.location(), "telemetry", upkeep::SMALL_FILE_BYTES, upkeep::MIN_FILES).await?.0;
            anyhow::ensure!(Instant::now() < deadline, "the projection did not catch up");
        }
        anyhow::Ok(compacted)
    };
    let (published, compacted) = tokio::join!(publish, compact);
    published?;
    assert!(compacted? >= 2, "compaction ran beside the appends");
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
    assert_eq!(telemetry_digest(&scan::read_table(&f.location(), "telemetry").await?), expected_digest(1_500, 100));

    // The last round leaves one sorted file for the day.
    upkeep::compact(&f.location(), "telemetry", upkeep::SMALL_FILE_BYTES, upkeep::MIN_FILES).await?;
    let compacted = telemetry_file_layouts(&f).await?;
    assert_eq!(compacted.len(), 1, "{compacted:?}");
    let (rows, groups, largest) = compacted[0];
    assert_eq!(rows, 150_000);
    assert!(groups >= 150_000 / ROW_GROUP_ROWS && largest <= ROW_GROUP_ROWS, "{compacted:?}");
    assert_eq!(telemetry_digest(&scan::read_table(&f.location(), "telemetry").await?), expected_digest(1_500, 100));
    Ok(())
}

/// The rollup is read a month of one series at a time (a chart: ~744 rows): its pages hold at
/// most `ROLLUP_PAGE_ROWS` rows, and its sums and extremes, which hardly ever repeat, are written
/// without the dictionary page every read of the column chunk would decompress first; ids and
/// keys keep theirs.
#[tokio::test]
async fn rollup_files_have_small_pages_and_no_dictionaries_for_sums_and_extremes() -> anyhow::Result<()> {
    use deltalake_core::parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
    use deltalake_core::parquet::file::metadata::PageIndexPolicy;
    use thinglake_lake::table::{ROLLUP_PAGE_ROWS, telemetry_hourly};

    let f = Fixture::start().await?;
    // 7 devices × 300 keys within one hour: 2,100 rollup rows, in one commit (each commit
    // writes its own partial rows of an hour; under load a 20 ms interval split the 700
    // messages into two commits and 4,200 rows).
    f.publish_points(0, 700, 300).await?;
    f.project_until_every(ProjectionKind::TelemetryHourly, 700, Duration::from_secs(3600)).await?;
    let plain = telemetry_hourly().plain_columns;
    assert!(plain.contains(&"double_sum") && plain.contains(&"long_max"), "{plain:?}");
    let table = f.location().open("telemetry_hourly").await?.context("the rollup table exists")?;
    let dir = f.location().local_dir("telemetry_hourly").context("a local table")?;
    let (mut rows, mut pages_seen) = (0, 0);
    for file in table.snapshot()?.log_data().iter() {
        let bytes = Bytes::from(std::fs::read(dir.join(file.path().as_ref()))?);
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
        let metadata = ParquetRecordBatchReaderBuilder::try_new_with_options(bytes, options)?.metadata().clone();
        let offsets = metadata.offset_index().context("page index written")?;
        for (g, group) in metadata.row_groups().iter().enumerate() {
            rows += group.num_rows();
            for (c, column) in group.columns().iter().enumerate() {
                let name = column.column_descr().name();
                let has_dictionary = column.dictionary_page_offset().is_some();
                if plain.contains(&name) {
                    assert!(!has_dictionary, "{name} written with a dictionary");
                } else if ["entity_id", "key"].contains(&name) {
                    assert!(has_dictionary, "{name} written without a dictionary");
                }
                let starts: Vec<i64> = offsets[g][c].page_locations().iter().map(|p| p.first_row_index).collect();
                let ends = starts.iter().skip(1).copied().chain([group.num_rows()]);
                for (start, end) in starts.iter().zip(ends) {
                    assert!(end - start <= ROLLUP_PAGE_ROWS as i64, "{name}: a page of {} rows", end - start);
                }
                pages_seen = pages_seen.max(starts.len());
            }
        }
    }
    assert_eq!(rows, 2_100);
    assert!(pages_seen >= 3, "2,100 rows in pages of at most {ROLLUP_PAGE_ROWS}: {pages_seen} pages");
    Ok(())
}
