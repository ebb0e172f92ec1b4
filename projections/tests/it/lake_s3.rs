//! The lake projections on S3-compatible object storage (a real moto server) and a real
//! nats-server: two writers committing on the same table version both land once, and a put of a
//! log version that exists is refused by the store (a conditional write), overwriting nothing; a
//! projector killed mid-batch and a NATS restart under ingest lose and duplicate nothing; a rebuild
//! racing the live projection's commits keeps every row once; an independent reader (the Python
//! `deltalake` package) reads the same rows from the bucket.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;
use bytes::Bytes;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties, TransactionError};
use deltalake_core::kernel::{Action, Transaction};
use deltalake_core::logstore::CommitOrBytes;
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use thinglake_domain::telemetry::{KvEntry, KvValue, TelemetryData, TelemetryMessage, TsBatch};
use thinglake_domain::{Actor, EntityType};
use thinglake_infra::event_store::EventStore;
use thinglake_infra::subjects::Subjects;
use thinglake_projections::lake::projection::ProjectionKind;
use thinglake_projections::lake::{LakeOptions, ProjectionRunner, rebuild};
use thinglake_lake::{LakeLocation, S3Options, scan, table};

use crate::lake::{expected_digest, publish_retrying, telemetry_digest};
use thinglake_test_support::s3::{ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY};
use thinglake_test_support::{NatsServer, S3Server};
use tokio_util::sync::CancellationToken;
use tokio_util::task::{AbortOnDropHandle, TaskTracker};
use uuid::Uuid;

const DEADLINE: Duration = Duration::from_secs(60);

struct Fixture {
    s3: S3Server,
    nats: NatsServer,
    js: jetstream::Context,
    subjects: Subjects,
    tenant: Uuid,
}

impl Fixture {
    async fn start() -> anyhow::Result<Self> {
        let s3 = S3Server::start();
        let nats = NatsServer::start().await;
        let subjects = Subjects::default();
        let store = EventStore::connect(nats.client().await, subjects.clone()).await?;
        let js = store.jetstream().clone();
        Ok(Self { s3, nats, js, subjects, tenant: Uuid::now_v7() })
    }

    fn location(&self) -> LakeLocation {
        let options = S3Options {
            endpoint: Some(self.s3.endpoint()),
            region: Some(REGION.to_string()),
            access_key_id: Some(ACCESS_KEY_ID.to_string()),
            secret_access_key: Some(SECRET_ACCESS_KEY.to_string()),
            allow_http: Some(true),
        };
        LakeLocation::parse_with(&self.s3.url("lake"), &options).expect("an S3 lake location")
    }

    fn options(&self, batch_rows: usize, batch_interval: Duration) -> LakeOptions {
        let mut options = LakeOptions::new(self.location());
        options.batch_rows = batch_rows;
        options.batch_interval = batch_interval;
        options.upkeep_interval = Duration::ZERO;
        options
    }

    async fn runner(&self, options: LakeOptions) -> anyhow::Result<ProjectionRunner> {
        Ok(ProjectionRunner::open(self.js.clone(), self.subjects.clone(), ProjectionKind::Telemetry.projection(), options).await?)
    }

    /// Publishes messages `from..to` on a task of its own (retrying across a NATS restart with
    /// the same message id, which JetStream de-duplicates).
    fn publisher(&self, from: usize, to: usize, points: usize) -> AbortOnDropHandle<anyhow::Result<()>> {
        let (js, subjects, tenant) = (self.js.clone(), self.subjects.clone(), self.tenant);
        AbortOnDropHandle::new(TaskTracker::new().spawn(async move {
            for i in from..to {
                let device = Uuid::from_u128(i as u128 % 7 + 1);
                let values = (0..points).map(|k| KvEntry { key: format!("k{k}"), value: KvValue::Long((i * points + k) as i64) }).collect();
                let message = TelemetryMessage {
                    message_id: Uuid::from_u128(i as u128 + 1),
                    schema_version: TelemetryMessage::SCHEMA_VERSION,
                    tenant_id: tenant,
                    entity_type: EntityType::Device,
                    entity_id: device,
                    received_at: 0,
                    actor: Actor::device(device),
                    data: TelemetryData::Timeseries { batches: vec![TsBatch { ts: 1_700_000_000_000 + i as i64, values }] },
                };
                let body = Bytes::from(serde_json::to_vec(&message)?);
                let subject = subjects.telemetry(tenant, device);
                publish_retrying(&js, subject, body, message.message_id).await?;
                if i % 100 == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            Ok(())
        }))
    }

    async fn last_sequence(&self) -> anyhow::Result<u64> {
        Ok(self.js.get_stream(self.subjects.telemetry_stream()).await?.cached_info().state.last_sequence)
    }
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> anyhow::Result<bool>) -> anyhow::Result<()> {
    let start = Instant::now();
    while !check().await? {
        anyhow::ensure!(start.elapsed() < DEADLINE, "{what}: not within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Commits only a `txn` action `{app_id, version}` on `table`'s state (which may be stale).
async fn commit_txn(table: &deltalake_core::DeltaTable, app_id: &str, version: i64) -> anyhow::Result<u64> {
    let operation = DeltaOperation::Write { mode: SaveMode::Append, partition_by: None, predicate: None };
    let properties = CommitProperties::default().with_application_transaction(Transaction::new(app_id, version));
    let finalized = CommitBuilder::from(properties)
        .with_actions(Vec::<Action>::new())
        .build(Some(table.snapshot()?), table.log_store(), operation)
        .await?;
    Ok(finalized.version())
}

#[tokio::test]
async fn two_writers_committing_the_same_version_on_s3_both_land_once() -> anyhow::Result<()> {
    let f = Fixture::start().await?;
    let location = f.location();
    let first = location.open_or_create(&table::telemetry()).await?;
    let second = location.open("telemetry").await?.context("the table exists")?;
    let base = first.version().context("a version")?;
    assert_eq!(second.version(), Some(base));

    assert_eq!(commit_txn(&first, "writer-a", 7).await?, base + 1);
    // The second writer still sees `base`; deltalake-core commits it as the next version.
    assert_eq!(commit_txn(&second, "writer-b", 9).await?, base + 2);

    let table = location.open("telemetry").await?.context("the table")?;
    assert_eq!(table.version(), Some(base + 2));
    let snapshot = table.snapshot()?;
    assert_eq!(snapshot.transaction_version(table.log_store().as_ref(), "writer-a").await?, Some(7));
    assert_eq!(snapshot.transaction_version(table.log_store().as_ref(), "writer-b").await?, Some(9));

    // Writing a version that exists, as a writer racing between its look at the log and its put
    // would: the store refuses the conditional write, nothing is overwritten.
    let log_store = table.log_store();
    let before = log_store.read_commit_entry(base + 1).await?.context("version base + 1")?;
    let raced = log_store.write_commit_entry(base + 1, CommitOrBytes::LogBytes(Bytes::from_static(b"{}\n")), Uuid::new_v4()).await;
    assert!(matches!(raced, Err(TransactionError::VersionAlreadyExists(v)) if v == base + 1), "{raced:?}");
    assert_eq!(log_store.read_commit_entry(base + 1).await?, Some(before));
    let refused = format!("_delta_log/{:020}.json HTTP/1.1\" 412", base + 1);
    assert!(f.s3.log().contains(&refused), "the store refused the put of version {}: {}", base + 1, f.s3.log());
    Ok(())
}

#[tokio::test]
async fn on_s3_a_projector_killed_mid_batch_and_a_nats_restart_under_ingest_lose_and_duplicate_nothing() -> anyhow::Result<()> {
    let mut f = Fixture::start().await?;
    let (messages, points) = (1_500, 4);
    let options = f.options(500, Duration::from_millis(100));
    let publisher = f.publisher(0, messages, points);

    // Aborted (no flush, no commit) at arbitrary points: mid-batch, between writing Parquet to
    // the bucket and committing, or mid-commit.
    for kill_after in [Duration::from_millis(300), Duration::from_millis(700), Duration::from_millis(1100)] {
        let runner = f.runner(options.clone()).await?;
        let tracker = TaskTracker::new();
        let task = tracker.spawn(runner.run(CancellationToken::new()));
        tokio::time::sleep(kill_after).await;
        task.abort();
        let _ = task.await;
    }

    let runner = f.runner(options.clone()).await?;
    let status = runner.status();
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    tracker.spawn(runner.run(shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    f.nats.restart().await;
    publisher.await.context("publisher task")??;

    let last = f.last_sequence().await?;
    eventually("everything committed", async || Ok(status.committed_seq() >= last)).await?;
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;

    let (count, sum, distinct) = telemetry_digest(&scan::read_table(&f.location(), "telemetry").await?);
    assert_eq!(count, distinct, "no duplicate rows");
    assert_eq!((count, sum), (expected_digest(messages, points).0, expected_digest(messages, points).1), "every point of the log, once");
    assert_eq!(last as usize, messages, "the log holds each message once");
    Ok(())
}

#[tokio::test]
async fn on_s3_a_rebuild_racing_the_live_commits_keeps_every_row_once() -> anyhow::Result<()> {
    let f = Fixture::start().await?;
    let (messages, points) = (900, 3);
    let runner = f.runner(f.options(50, Duration::from_millis(10))).await?;
    let status = runner.status();
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    tracker.spawn(runner.run(shutdown.clone()));
    f.publisher(0, 300, points).await.context("publisher task")??;
    eventually("first part committed", async || Ok(status.committed_seq() >= 300)).await?;

    // The live projection keeps committing (every 10 ms) while the rebuild writes and commits.
    let publisher = f.publisher(300, messages, points);
    let rebuilt = rebuild::rebuild(&f.js, &f.subjects, &f.location(), ProjectionKind::Telemetry, |_| {}).await?;
    assert!(rebuilt.target >= 300 && rebuilt.files_added >= 1 && rebuilt.files_removed >= 1, "{rebuilt:?}");
    publisher.await.context("publisher task")??;
    let last = f.last_sequence().await?;
    eventually("everything committed", async || Ok(status.committed_seq() >= last)).await?;
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;

    assert_eq!(telemetry_digest(&scan::read_table(&f.location(), "telemetry").await?), expected_digest(messages, points));
    Ok(())
}

#[tokio::test]
async fn an_independent_reader_reads_the_same_rows_from_the_bucket() -> anyhow::Result<()> {
    let f = Fixture::start().await?;
    let (messages, points) = (400, 3);
    f.publisher(0, messages, points).await.context("publisher task")??;
    let runner = f.runner(f.options(500, Duration::from_millis(10))).await?;
    let status = runner.status();
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    tracker.spawn(runner.run(shutdown.clone()));
    eventually("all committed", async || Ok(status.committed_seq() >= messages as u64)).await?;
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;

    // The `deltalake` package: its own Delta log reader and S3 client, and its SQL engine.
    let script = r#"
import sys
from deltalake import DeltaTable, QueryBuilder
options = {"AWS_ENDPOINT_URL": sys.argv[2], "AWS_ALLOW_HTTP": "true", "AWS_REGION": sys.argv[3],
           "AWS_ACCESS_KEY_ID": sys.argv[4], "AWS_SECRET_ACCESS_KEY": sys.argv[5]}
dt = DeltaTable(sys.argv[1], storage_options=options)
batch = QueryBuilder().register("t", dt).execute(
    "select count(*), sum(long_v), count(distinct (entity_id, key, ts)), count(distinct tenant_id) from t").read_all()
print(dt.version(), *[batch.column(i)[0].as_py() for i in range(4)])
"#;
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("repository root")?;
    let python = repo.join(".tools/venv/bin/python");
    anyhow::ensure!(python.exists(), "{} missing: run scripts/install-tools", python.display());
    let table = f.location().table_url("telemetry")?;
    let output = tokio::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .args([table.as_str(), &f.s3.endpoint(), REGION, ACCESS_KEY_ID, SECRET_ACCESS_KEY])
        .output()
        .await?;
    anyhow::ensure!(output.status.success(), "python reader failed: {}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout)?;
    let fields: Vec<i64> = text.split_whitespace().map(str::parse).collect::<Result<_, _>>()?;
    let (count, sum, distinct) = expected_digest(messages, points);
    assert_eq!(&fields[1..], &[count as i64, sum, distinct as i64, 1], "reader said: {text}");
    Ok(())
}
