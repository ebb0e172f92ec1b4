//! Suite `lake-s3`: the telemetry projection with the lake on S3-compatible storage (a local moto
//! server, `scripts/install-tools moto`) next to the same work on a local directory, in the same
//! run over the same log:
//!
//! - projection throughput: points/s from the log into the committed table;
//! - rebuild rate: points/s replayed from the log into a new table version;
//! - commit latency: a single message published until the projection has committed it (one
//!   commit each: Parquet file, log entry), p50 and p99.
//!
//! moto is a Python server: the figures bound what S3's round trips cost the projection from
//! above on this machine; a real S3 endpoint adds network latency and removes moto's CPU use.

use std::time::{Duration, Instant};

use bytes::Bytes;
use thinglake_infra::event_store::EventStore;
use thinglake_infra::subjects::Subjects;
use thinglake_projections::lake::projection::ProjectionKind;
use thinglake_projections::lake::{LakeOptions, ProjectionRunner, rebuild};
use thinglake_lake::{LakeLocation, S3Options};
use thinglake_test_support::s3::{ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY};
use thinglake_test_support::{NatsServer, S3Server};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::report::emit;

#[derive(Debug, clap::Args)]
pub(crate) struct Options {
    /// Telemetry messages published and projected.
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// Points per telemetry message.
    #[arg(long, default_value_t = 10)]
    points: usize,
    /// Single messages timed from publish to commit, per location.
    #[arg(long, default_value_t = 50)]
    commit_samples: usize,
}

/// A telemetry message of the `lake` suite's workload, serialized.
fn message(tenant: Uuid, i: usize, points: usize) -> (Uuid, Vec<u8>) {
    let (device, message) = crate::lake::telemetry(tenant, i, points);
    (device, serde_json::to_vec(&message).expect("serializes"))
}

fn options(location: LakeLocation, batch_interval: Duration) -> LakeOptions {
    let mut options = LakeOptions::new(location);
    options.batch_rows = 500_000;
    options.batch_interval = batch_interval;
    options.upkeep_interval = Duration::ZERO;
    options
}

/// A running telemetry projection into `location`.
struct Running {
    status: thinglake_projections::lake::RunnerStatus,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Running {
    async fn start(js: &async_nats::jetstream::Context, subjects: &Subjects, options: LakeOptions) -> anyhow::Result<Self> {
        let runner = ProjectionRunner::open(js.clone(), subjects.clone(), ProjectionKind::Telemetry.projection(), options).await?;
        let status = runner.status();
        let (tracker, shutdown) = (TaskTracker::new(), CancellationToken::new());
        tracker.spawn(runner.run(shutdown.clone()));
        Ok(Self { status, tracker, shutdown })
    }

    async fn until_committed(&self, seq: u64) -> anyhow::Result<()> {
        let start = Instant::now();
        while self.status.committed_seq() < seq {
            anyhow::ensure!(start.elapsed() < Duration::from_secs(600), "not committed within 10 minutes");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
}

pub(crate) async fn run(o: Options) -> anyhow::Result<()> {
    let s3 = S3Server::start();
    let nats = NatsServer::start().await;
    let subjects = Subjects::default();
    let store = EventStore::connect(nats.client().await, subjects.clone()).await?;
    let js = store.jetstream().clone();
    let scratch = std::env::temp_dir().join(format!("thinglake-bench-lake-s3-{}", Uuid::now_v7()));
    let local = LakeLocation::local(&scratch.join("lake"))?;
    let s3_options = S3Options {
        endpoint: Some(s3.endpoint()),
        region: Some(REGION.to_string()),
        access_key_id: Some(ACCESS_KEY_ID.to_string()),
        secret_access_key: Some(SECRET_ACCESS_KEY.to_string()),
        allow_http: Some(true),
    };
    let remote = LakeLocation::parse_with(&s3.url("lake"), &s3_options)?;
    remote.check().await?;

    let tenant = Uuid::now_v7();
    let mut acks = Vec::new();
    let mut last = 0;
    for i in 0..o.messages {
        let (device, body) = message(tenant, i, o.points);
        acks.push(js.publish(subjects.telemetry(tenant, device), Bytes::from(body)).await?);
        if acks.len() >= 256 {
            for ack in acks.drain(..) {
                last = ack.await?.sequence;
            }
        }
    }
    for ack in acks {
        last = ack.await?.sequence;
    }
    let points = (o.messages * o.points) as f64;

    let mut rates = Vec::new();
    for location in [&local, &remote] {
        let start = Instant::now();
        let running = Running::start(&js, &subjects, options(location.clone(), Duration::from_secs(1))).await?;
        running.until_committed(last).await?;
        rates.push(points / start.elapsed().as_secs_f64());
        running.stop().await;
    }
    emit("lake_s3_telemetry_projection_points_per_s", rates[1], "points/s", Some(rates[0]));

    let mut rebuilds = Vec::new();
    for location in [&local, &remote] {
        let report = rebuild::rebuild(&js, &subjects, location, ProjectionKind::Telemetry, |_| {}).await?;
        rebuilds.push(report.rows as f64 / report.elapsed.as_secs_f64());
    }
    emit("lake_s3_rebuild_points_per_s", rebuilds[1], "points/s", Some(rebuilds[0]));

    // One commit per message: the projection commits as soon as it has taken it.
    let mut latencies = Vec::new();
    for location in [&local, &remote] {
        let running = Running::start(&js, &subjects, options(location.clone(), Duration::ZERO)).await?;
        running.until_committed(last).await?;
        let mut samples = Vec::with_capacity(o.commit_samples);
        for i in 0..o.commit_samples {
            let (device, body) = message(tenant, o.messages + i, o.points);
            let start = Instant::now();
            last = js.publish(subjects.telemetry(tenant, device), Bytes::from(body)).await?.await?.sequence;
            running.until_committed(last).await?;
            samples.push(start.elapsed());
        }
        running.stop().await;
        samples.sort();
        latencies.push(samples);
    }
    // (The S3 run first commits, untimed, the local run's samples.)
    emit("lake_s3_commit_latency_p50_ms", percentile(&latencies[1], 0.5), "ms", Some(percentile(&latencies[0], 0.5)));
    emit("lake_s3_commit_latency_p99_ms", percentile(&latencies[1], 0.99), "ms", Some(percentile(&latencies[0], 0.99)));
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}
