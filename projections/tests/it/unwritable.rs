//! One row cannot stop a projection: a point beyond the calendar already on the log, and a row
//! the Delta writer panics on, go to `dead_letters` with their sequence and reason while the rest
//! of their batch commits.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use deltalake_core::arrow::array::{Array, AsArray, RecordBatch};
use deltalake_core::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use thinglake_domain::telemetry::{KvEntry, KvValue, TelemetryData, TelemetryMessage, TsBatch};
use thinglake_domain::{Actor, EntityType};
use thinglake_projections::lake::projection::{LogMessage, ProjectionKind, Source};
use thinglake_lake::table::{RowBuilder, TableSpec};
use thinglake_projections::DecodeError;
use thinglake_projections::lake::{Projection, ProjectionRunner, RunnerStatus};
use thinglake_lake::{PAGE_ROWS, scan};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::lake::{Fixture, eventually};

/// (seq, reason) of every dead letter of `projection`, sorted.
async fn dead_letters(f: &Fixture, projection: &str) -> anyhow::Result<Vec<(u64, String)>> {
    let mut out = Vec::new();
    for batch in scan::read_table(&f.location(), "dead_letters").await? {
        let name = batch.column_by_name("projection").expect("projection").as_string::<i32>();
        let seq = batch.column_by_name("seq").expect("seq").as_primitive::<Int64Type>();
        let reason = batch.column_by_name("reason").expect("reason").as_string::<i32>();
        for row in (0..batch.num_rows()).filter(|&row| name.value(row) == projection) {
            out.push((seq.value(row) as u64, reason.value(row).to_string()));
        }
    }
    out.sort();
    Ok(out)
}

/// Runs the runners until each has committed up to `upto`, then stops them.
async fn run_until(runners: Vec<ProjectionRunner>, upto: u64) -> anyhow::Result<Vec<RunnerStatus>> {
    let statuses: Vec<RunnerStatus> = runners.iter().map(ProjectionRunner::status).collect();
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    for runner in runners {
        tracker.spawn(runner.run(shutdown.clone()));
    }
    let committed = eventually("every runner committed", async || {
        Ok(statuses.iter().all(|s| s.committed_seq() >= upto).then_some(()))
    })
    .await;
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
    committed?;
    Ok(statuses)
}

/// Telemetry of one point for `tenant`, as the platform writes it, with any `ts`.
fn point(tenant: Uuid, device: Uuid, ts: i64, value: i64) -> TelemetryMessage {
    TelemetryMessage {
        message_id: Uuid::now_v7(),
        schema_version: TelemetryMessage::SCHEMA_VERSION,
        tenant_id: tenant,
        entity_type: EntityType::Device,
        entity_id: device,
        received_at: 1_700_000_000_000,
        actor: Actor::device(device),
        data: TelemetryData::Timeseries {
            batches: vec![TsBatch { ts, values: vec![KvEntry { key: "t".into(), value: KvValue::Long(value) }] }],
        },
    }
}

#[tokio::test]
async fn a_point_beyond_the_calendar_on_the_log_is_a_dead_letter_and_other_tenants_points_commit() -> anyhow::Result<()> {
    let f = Fixture::start().await?;
    let (attacker, victim) = (Uuid::now_v7(), Uuid::now_v7());
    let device = Uuid::now_v7();
    let mut bad = Vec::new();
    let mut last = 0;
    // Published raw, past the parsers: what a build before the timestamp check wrote.
    for (tenant, ts, value) in [
        (victim, 1_700_000_000_000, 1),
        (attacker, 8_400_000_000_000_000, 2),
        (victim, 1_700_000_000_001, 3),
        (attacker, -8_400_000_000_000_000, 4),
        (victim, 1_700_000_000_002, 5),
    ] {
        let message = point(tenant, device, ts, value);
        let subject = f.subjects.telemetry(tenant, device);
        last = f.js.publish(subject, Bytes::from(serde_json::to_vec(&message)?)).await?.await?.sequence;
        if tenant == attacker {
            bad.push(last);
        }
    }
    // One batch holds every message: the good rows commit beside the bad ones.
    let options = f.options(1_000, Duration::from_millis(200));
    let runners = vec![
        f.runner(ProjectionKind::Telemetry, options.clone()).await?,
        f.runner(ProjectionKind::TelemetryHourly, options).await?,
    ];
    let statuses = run_until(runners, last).await?;

    let mut values = Vec::new();
    for batch in scan::read_table(&f.location(), "telemetry").await? {
        let tenant = batch.column_by_name("tenant_id").expect("tenant_id").as_string::<i32>();
        let long_v = batch.column_by_name("long_v").expect("long_v").as_primitive::<Int64Type>();
        for row in 0..batch.num_rows() {
            values.push((tenant.value(row).to_string(), long_v.value(row)));
        }
    }
    values.sort();
    assert_eq!(values, vec![(victim.to_string(), 1), (victim.to_string(), 3), (victim.to_string(), 5)]);
    let hourly_rows: usize = scan::read_table(&f.location(), "telemetry_hourly").await?.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(hourly_rows, 1, "the victim's three points in one hour");
    for projection in ["telemetry", "telemetry_hourly"] {
        let dead = dead_letters(&f, projection).await?;
        assert_eq!(dead.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(), bad, "{projection}: {dead:?}");
        assert!(dead.iter().all(|(_, reason)| reason.contains("outside the supported range")), "{dead:?}");
    }
    assert!(statuses.iter().all(|s| s.dead_letters() == 2));
    Ok(())
}

/// A table partitioned by the day a message names, taken as it is: a day beyond the calendar
/// makes the Delta writer panic while it names the partition. Stands for any row the writer
/// cannot take that decoding let through.
struct RawDays;

impl Projection for RawDays {
    fn name(&self) -> &'static str {
        "raw_days"
    }
    fn spec(&self) -> TableSpec {
        let fields = vec![
            Field::new("day", DataType::Date32, false),
            Field::new("value", DataType::Int64, false),
            Field::new("seq", DataType::Int64, false),
        ];
        TableSpec {
            name: "raw_days",
            comment: "test table partitioned by a day taken from the message",
            schema: Arc::new(Schema::new(fields)),
            partition_columns: &["day"],
            merge: None,
            sort_by: &[],
            page_rows: PAGE_ROWS,
            plain_columns: &[],
        }
    }
    fn source(&self) -> Source {
        Source::Telemetry
    }
    fn decode(&mut self, message: &LogMessage, rows: &mut RowBuilder) -> Result<(), DecodeError> {
        let (day, value): (i32, i64) =
            serde_json::from_slice(&message.payload).map_err(|source| DecodeError::NotA { what: "a day and a value", source })?;
        rows.date32(Some(day)).i64(Some(value)).i64(Some(message.seq as i64));
        rows.end_row();
        Ok(())
    }
}

#[tokio::test]
async fn a_row_the_writer_panics_on_is_a_dead_letter_and_the_rest_of_the_batch_commits() -> anyhow::Result<()> {
    let f = Fixture::start().await?;
    let mut seqs = Vec::new();
    for (day, value) in [(1, 1), (i32::MAX, 2), (2, 3), (3, 4), (i32::MIN, 5), (1, 6)] {
        seqs.push(f.publish_raw(&serde_json::to_vec(&(day, value))?).await?);
    }
    let last = *seqs.last().expect("published");
    let runner = ProjectionRunner::open(f.js.clone(), f.subjects.clone(), Box::new(RawDays), f.options(1_000, Duration::from_millis(200)))
        .await?;
    let statuses = run_until(vec![runner], last).await?;

    let mut values = Vec::new();
    for batch in scan::read_table(&f.location(), "raw_days").await? {
        let value = batch.column_by_name("value").expect("value").as_primitive::<Int64Type>();
        values.extend((0..batch.num_rows()).filter(|&row| value.is_valid(row)).map(|row| value.value(row)));
    }
    values.sort();
    assert_eq!(values, vec![1, 3, 4, 6]);
    let dead = dead_letters(&f, "raw_days").await?;
    assert_eq!(dead.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(), vec![seqs[1], seqs[4]], "{dead:?}");
    assert!(dead.iter().all(|(_, reason)| reason.contains("row not writable") && reason.contains("panicked")), "{dead:?}");
    assert_eq!(statuses[0].dead_letters(), 2);

    // A restart reads the committed position back: nothing is written or dead-lettered twice.
    f.publish_raw(&serde_json::to_vec(&(4, 7))?).await?;
    let runner = ProjectionRunner::open(f.js.clone(), f.subjects.clone(), Box::new(RawDays), f.options(1_000, Duration::from_millis(200)))
        .await?;
    run_until(vec![runner], last + 1).await?;
    assert_eq!(dead_letters(&f, "raw_days").await?.len(), 2);
    let rows: usize = scan::read_table(&f.location(), "raw_days").await?.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, 5);
    Ok(())
}
