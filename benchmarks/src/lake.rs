//! Suite `lake`: the lake projections on a real nats-server and a local lake directory.
//!
//! - projection throughput: telemetry points/s and entity events/s from the log into committed
//!   Delta tables, next to the rate the same messages were published to JetStream (baseline);
//! - rebuild rate: events/s and points/s replayed from the log into a new table version, and
//!   `entity_versions` rebuilt from the `events` table (Parquet) instead of the log; next to the
//!   rate nats-server delivers the same messages to a reader that does nothing (a pull consumer,
//!   and batched direct gets as the rebuild reads);
//! - freshness: publish-to-hot-tail latency (p50/p99) of single points under steady load;
//! - bytes per point: the telemetry table's Parquet bytes per point, next to PostgreSQL's
//!   `ts_kv` (ThingsBoard's table, with its primary key) holding the same points, measured with
//!   `pg_total_relation_size`, when a PostgreSQL server binary is installed.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;
use bytes::Bytes;
use thinglake_domain::telemetry::{KvEntry, KvValue, TelemetryData, TelemetryMessage, TsBatch};
use thinglake_domain::{Actor, EntityType, EventEnvelope};
use thinglake_infra::event_store::EventStore;
use thinglake_infra::log::pull::{PullOptions, PullReader};
use thinglake_infra::subjects::Subjects;
use thinglake_projections::lake::projection::ProjectionKind;
use thinglake_projections::lake::{LakeOptions, ProjectionRunner, rebuild};
use thinglake_lake::{LakeLocation, upkeep};
use thinglake_test_support::NatsServer;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::postgres::PgCluster;
use crate::report::emit;

#[derive(Debug, clap::Args)]
pub(crate) struct Options {
    /// Telemetry messages published and projected.
    #[arg(long, default_value_t = 50_000)]
    messages: usize,
    /// Points per telemetry message.
    #[arg(long, default_value_t = 10)]
    points: usize,
    /// Entity events published and projected.
    #[arg(long, default_value_t = 100_000)]
    events: usize,
    /// Single-point publishes timed for freshness.
    #[arg(long, default_value_t = 300)]
    freshness_samples: usize,
    /// Background telemetry messages per second during the freshness samples.
    #[arg(long, default_value_t = 2_000)]
    background_rate: usize,
}

const DEVICES: u128 = 100;
const BASE_TS: i64 = 1_700_000_000_000;

pub(crate) fn telemetry(tenant: Uuid, i: usize, points: usize) -> (Uuid, TelemetryMessage) {
    let device = Uuid::from_u128(i as u128 % DEVICES + 1);
    let values = (0..points)
        .map(|k| KvEntry {
            key: format!("key{k}"),
            value: if k % 2 == 0 { KvValue::Double(20.0 + (i % 100) as f64 / 10.0) } else { KvValue::Long((i % 1000) as i64) },
        })
        .collect();
    let message = TelemetryMessage::new(
        Uuid::now_v7(),
        tenant,
        EntityType::Device,
        device,
        BASE_TS + i as i64 * 1000,
        Actor::device(device),
        TelemetryData::Timeseries { batches: vec![TsBatch { ts: BASE_TS + (i as i64 / DEVICES as i64) * 1000, values }] },
    );
    (device, message)
}

/// Publishes with up to 256 acks in flight; returns the last sequence.
async fn publish_all(
    js: &jetstream::Context,
    messages: impl Iterator<Item = (String, Vec<u8>)>,
) -> anyhow::Result<u64> {
    let mut acks = Vec::new();
    let mut last = 0;
    for (subject, body) in messages {
        acks.push(js.publish(subject, Bytes::from(body)).await?);
        if acks.len() >= 256 {
            for ack in acks.drain(..) {
                last = ack.await?.sequence;
            }
        }
    }
    for ack in acks {
        last = ack.await?.sequence;
    }
    Ok(last)
}

async fn project(
    js: &jetstream::Context,
    subjects: &Subjects,
    kind: ProjectionKind,
    options: &LakeOptions,
    upto: u64,
) -> anyhow::Result<Duration> {
    let runner = ProjectionRunner::open(js.clone(), subjects.clone(), kind.projection(), options.clone()).await?;
    let status = runner.status();
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    let start = Instant::now();
    tracker.spawn(runner.run(shutdown.clone()));
    while status.committed_seq() < upto {
        if start.elapsed() > Duration::from_secs(600) {
            anyhow::bail!("{} did not catch up within 10 minutes", kind.name());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = start.elapsed();
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
    Ok(elapsed)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

pub(crate) async fn run(o: Options) -> anyhow::Result<()> {
    let nats = NatsServer::start().await;
    let subjects = Subjects::default();
    let store = EventStore::connect(nats.client().await, subjects.clone()).await?;
    let js = store.jetstream().clone();
    let scratch = std::env::temp_dir().join(format!("thinglake-bench-lake-{}", Uuid::now_v7()));
    let location = LakeLocation::local(&scratch.join("lake"))?;
    let mut options = LakeOptions::new(location.clone());
    options.batch_rows = 500_000;
    options.batch_interval = Duration::from_secs(1);
    options.upkeep_interval = Duration::ZERO;
    let tenant = Uuid::now_v7();
    let points = o.messages * o.points;

    // Telemetry: publish (baseline), then project.
    let start = Instant::now();
    let last = publish_all(
        &js,
        (0..o.messages).map(|i| {
            let (device, m) = telemetry(tenant, i, o.points);
            (subjects.telemetry(tenant, device), serde_json::to_vec(&m).expect("serializes"))
        }),
    )
    .await?;
    let published = start.elapsed().as_secs_f64();
    let projected = project(&js, &subjects, ProjectionKind::Telemetry, &options, last).await?.as_secs_f64();
    let points_rate = points as f64 / projected;
    emit("lake_telemetry_projection_points_per_s", points_rate, "points/s", Some(points as f64 / published));
    emit("lake_telemetry_projection_messages_per_s", o.messages as f64 / projected, "messages/s", Some(o.messages as f64 / published));

    // Entity events: publish (baseline), then project into `events`.
    let events_tenant = Uuid::now_v7();
    let start = Instant::now();
    let last_event = publish_all(
        &js,
        (0..o.events).map(|i| {
            let entity = Uuid::from_u128(i as u128 % 1000 + 1);
            let envelope = EventEnvelope {
                event_id: Uuid::now_v7(),
                tenant_id: events_tenant,
                entity_type: EntityType::Device,
                entity_id: entity,
                version: (i / 1000) as u64 + 1,
                event_type: "DeviceUpdated".to_string(),
                schema_version: 1,
                occurred_at: BASE_TS + i as i64,
                recorded_at: BASE_TS + i as i64,
                actor: Actor::system(),
                payload: serde_json::json!({"name": format!("device-{}", i % 1000), "label": "bench", "type": "default"}),
            };
            (
                subjects.entity(events_tenant, EntityType::Device, entity),
                serde_json::to_vec(&envelope).expect("serializes"),
            )
        }),
    )
    .await?;
    let published = start.elapsed().as_secs_f64();
    let projected = project(&js, &subjects, ProjectionKind::Events, &options, last_event).await?.as_secs_f64();
    let events_rate = o.events as f64 / projected;
    emit("lake_events_projection_events_per_s", events_rate, "events/s", Some(o.events as f64 / published));

    let projected = project(&js, &subjects, ProjectionKind::EntityVersions, &options, last_event).await?.as_secs_f64();
    emit("lake_entity_versions_projection_events_per_s", o.events as f64 / projected, "events/s", None);

    // The limit of any rebuild from the log: reading the messages from nats-server as the
    // rebuild does (ephemeral pull consumer without acks, same batches), doing nothing with them.
    let read_events = read_log(&nats, &subjects.events_stream(), last_event, 1, rebuild::PULL_BATCH).await?;
    emit("lake_log_read_events_per_s", read_events, "events/s", None);
    let read_telemetry = read_log(&nats, &subjects.telemetry_stream(), last, 1, rebuild::PULL_BATCH).await?;
    emit("lake_log_read_telemetry_messages_per_s", read_telemetry, "messages/s", None);
    // The rebuild reads these streams by batched direct gets (no subject or reply subject per
    // message); baseline: the pull consumer above.
    let direct_events = read_direct(&nats, &subjects.events_stream(), last_event).await?;
    emit("lake_log_read_events_direct_per_s", direct_events, "events/s", Some(read_events));
    let direct_telemetry = read_direct(&nats, &subjects.telemetry_stream(), last).await?;
    emit("lake_log_read_telemetry_direct_messages_per_s", direct_telemetry, "messages/s", Some(read_telemetry));
    // Whether nats-server delivers faster to two consumers on disjoint halves of the stream
    // (each on its own connection), or in 5x larger pulls; baseline: the single reader above.
    // Neither did on 2 cores (docs/benchmarks.md), so the rebuild keeps one consumer.
    let split = read_log(&nats, &subjects.events_stream(), last_event, 2, rebuild::PULL_BATCH).await?;
    emit("lake_log_read_events_two_consumers_per_s", split, "events/s", Some(read_events));
    let larger = read_log(&nats, &subjects.events_stream(), last_event, 1, 5 * rebuild::PULL_BATCH).await?;
    emit("lake_log_read_events_larger_pulls_per_s", larger, "events/s", Some(read_events));

    // Rebuild rates, baseline: the projection rate of the same table.
    let report = rebuild::rebuild(&js, &subjects, &location, ProjectionKind::Events, |_| {}).await?;
    phases(&report);
    emit("lake_rebuild_events_per_s", report.messages as f64 / report.elapsed.as_secs_f64(), "events/s", Some(events_rate));
    emit(
        "lake_rebuild_events_vs_log_read",
        report.messages as f64 / report.elapsed.as_secs_f64(),
        "events/s",
        Some(direct_events),
    );
    let report = rebuild::rebuild(&js, &subjects, &location, ProjectionKind::Telemetry, |_| {}).await?;
    phases(&report);
    emit("lake_rebuild_points_per_s", report.rows as f64 / report.elapsed.as_secs_f64(), "points/s", Some(points_rate));
    emit(
        "lake_rebuild_telemetry_messages_per_s",
        report.messages as f64 / report.elapsed.as_secs_f64(),
        "messages/s",
        Some(direct_telemetry),
    );
    // entity_versions from the events table (Parquet), not the log.
    let report = rebuild::rebuild(&js, &subjects, &location, ProjectionKind::EntityVersions, |_| {}).await?;
    phases(&report);
    anyhow::ensure!(report.archived_events == o.events as u64, "rebuilt from the events table: {report:?}");
    emit(
        "lake_rebuild_entity_versions_from_events_table_events_per_s",
        report.archived_events as f64 / report.elapsed.as_secs_f64(),
        "events/s",
        Some(o.events as f64 / projected),
    );

    // Bytes per point, after compaction (what the table settles to).
    upkeep::compact(&location, "telemetry", upkeep::SMALL_FILE_BYTES, 2).await?;
    let parquet_bytes = live_bytes(&location, "telemetry").await?;
    let per_point = parquet_bytes as f64 / points as f64;
    let pg = postgres_ts_kv_bytes(&scratch, tenant, o.messages, o.points).await;
    match &pg {
        Ok(pg_bytes) => emit("lake_bytes_per_point", per_point, "bytes", Some(*pg_bytes as f64 / points as f64)),
        Err(e) => {
            eprintln!("PostgreSQL baseline skipped: {e:#}");
            emit("lake_bytes_per_point", per_point, "bytes", None);
        }
    }

    // Freshness: single points under steady background load, publish to hot tail.
    let runner = ProjectionRunner::open(js.clone(), subjects.clone(), ProjectionKind::Telemetry.projection(), options.clone()).await?;
    let status = runner.status();
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    tracker.spawn(runner.run(shutdown.clone()));
    let background = {
        let js = js.clone();
        let subjects = subjects.clone();
        let stop = shutdown.clone();
        let (rate, points) = (o.background_rate, o.points);
        tracker.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let per_tick = (rate / 100).max(1);
            let mut i = 10_000_000;
            while !stop.is_cancelled() {
                tick.tick().await;
                let batch: Vec<_> = (0..per_tick)
                    .map(|_| {
                        i += 1;
                        let (device, m) = telemetry(tenant, i, points);
                        (subjects.telemetry(tenant, device), serde_json::to_vec(&m).expect("serializes"))
                    })
                    .collect();
                if publish_all(&js, batch.into_iter()).await.is_err() {
                    break;
                }
            }
        })
    };
    let mut latencies = Vec::with_capacity(o.freshness_samples);
    for i in 0..o.freshness_samples {
        let (device, m) = telemetry(tenant, 20_000_000 + i, 1);
        let start = Instant::now();
        let seq = js.publish(subjects.telemetry(tenant, device), Bytes::from(serde_json::to_vec(&m)?)).await?.await?.sequence;
        while status.seen_seq() < seq {
            if start.elapsed() > Duration::from_secs(30) {
                anyhow::bail!("a point did not reach the hot tail within 30 s");
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        latencies.push(start.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    shutdown.cancel();
    let _ = background.await;
    tracker.close();
    tracker.wait().await;
    latencies.sort();
    emit("lake_freshness_p50_ms", percentile(&latencies, 0.5).as_secs_f64() * 1000.0, "ms", None);
    emit("lake_freshness_p99_ms", percentile(&latencies, 0.99).as_secs_f64() * 1000.0, "ms", None);

    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

/// Prints where a rebuild's time went (stderr: the JSON lines stay on stdout).
fn phases(report: &rebuild::RebuildReport) {
    eprintln!(
        "rebuild {}: {} messages, {} archived events, {} rows in {:.3} s; {:.3}, commit {:.3}",
        report.table,
        report.messages,
        report.archived_events,
        report.rows,
        report.elapsed.as_secs_f64(),
        report.phases,
        report.phases.commit.as_secs_f64()
    );
}

/// Messages per second read from the stream's sequences 1..=`upto` the way a rebuild reads it
/// (ephemeral pull consumers without acks), without decoding them: by `consumers` consumers on
/// disjoint ranges of it, each on its own connection, asking `batch` messages per pull.
async fn read_log(nats: &NatsServer, stream: &str, upto: u64, consumers: u64, batch: usize) -> anyhow::Result<f64> {
    let mut parts = Vec::new();
    for part in 0..consumers {
        let (from, to) = (1 + part * upto / consumers, (part + 1) * upto / consumers);
        parts.push((nats.jetstream().await, from, to));
    }
    let start = Instant::now();
    let counts = futures::future::try_join_all(parts.into_iter().map(|(js, from, to)| async move {
        let options = PullOptions {
            from_seq: from,
            inactive_threshold: Duration::from_secs(60),
            batch,
            max_bytes: rebuild::PULL_BYTES / rebuild::PULL_BATCH * batch,
            ..PullOptions::default()
        };
        let mut messages = PullReader::open(&js, stream, options, stream.to_string()).await?;
        let mut count = 0u64;
        while let Some(message) = messages.next().await {
            let message = message?;
            count += 1;
            if message.seq >= to || message.pending == 0 {
                break;
            }
        }
        anyhow::Ok(count)
    }))
    .await?;
    Ok(counts.iter().sum::<u64>() as f64 / start.elapsed().as_secs_f64())
}

/// Messages per second read from the stream's sequences 1..=`upto` by batched direct gets, as
/// a rebuild reads them, on a connection of its own, without decoding them.
async fn read_direct(nats: &NatsServer, stream: &str, upto: u64) -> anyhow::Result<f64> {
    let js = nats.jetstream().await;
    let start = Instant::now();
    let read = rebuild::read_direct(&js, stream, 1, upto).await?;
    anyhow::ensure!(read == upto, "read {read} of {upto} messages");
    Ok(read as f64 / start.elapsed().as_secs_f64())
}

/// Bytes of the table's live data files.
async fn live_bytes(location: &LakeLocation, table: &str) -> anyhow::Result<u64> {
    let delta = location.open(table).await?.context("table exists")?;
    let state = delta.snapshot()?;
    Ok(state.log_data().iter().map(|f| f.size().max(0) as u64).sum())
}

/// Loads the same points into ThingsBoard's `ts_kv` on a throw-away PostgreSQL and returns
/// `pg_total_relation_size('ts_kv')`.
async fn postgres_ts_kv_bytes(scratch: &Path, tenant: Uuid, messages: usize, points: usize) -> anyhow::Result<u64> {
    let pg = PgCluster::start(&scratch.join("pg"), &[])?;
    pg.psql(
        "CREATE TABLE ts_kv (entity_id uuid NOT NULL, key int NOT NULL, ts bigint NOT NULL, bool_v boolean, \
         str_v varchar(10000000), long_v bigint, dbl_v double precision, json_v json, \
         CONSTRAINT ts_kv_pkey PRIMARY KEY (entity_id, key, ts));",
    )?;
    pg.copy_in("ts_kv (entity_id, key, ts, long_v, dbl_v)", |out| {
        for i in 0..messages {
            let (device, m) = telemetry(tenant, i, points);
            if let TelemetryData::Timeseries { batches } = m.data {
                for (k, kv) in batches[0].values.iter().enumerate() {
                    let (l, d) = match kv.value {
                        KvValue::Long(l) => (l.to_string(), "\\N".to_string()),
                        KvValue::Double(d) => ("\\N".to_string(), d.to_string()),
                        _ => ("\\N".to_string(), "\\N".to_string()),
                    };
                    writeln!(out, "{device}\t{k}\t{}\t{l}\t{d}", batches[0].ts)?;
                }
            }
        }
        Ok(())
    })?;
    pg.psql("VACUUM ANALYZE ts_kv;")?;
    let size = pg.psql("select pg_total_relation_size('ts_kv')")?;
    Ok(size.trim().parse()?)
}
