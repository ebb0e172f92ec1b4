//! Rebuilding a table from the log, beside live ingestion.
//!
//! The rebuild reads the table's committed position `W` (the live projection's `txn` version)
//! and the files of that table version, replays the log from its start up to `W` through a fresh
//! projection into new Parquet files, and commits one new table version that adds the new files
//! and removes the old ones. The live projection keeps appending meanwhile: its commits after
//! the snapshot add files the rebuild does not touch (rows after `W`), and Delta's conflict check
//! lets the two commits through in either order. Readers see either the old or the new files,
//! never both; the old files stay until vacuum.
//!
//! Tables derived from the entity events can always be rebuilt (that stream is never trimmed).
//! The telemetry stream is trimmed by age: once its first sequence is past 1 the older rows exist
//! only in the table, and the rebuild refuses rather than lose them.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use deltalake_core::arrow::array::RecordBatch;
use deltalake_core::kernel::Action;
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use futures::StreamExt;
use thinglake_infra::subjects::Subjects;
use tracing::info;

use crate::lake::error::{LakeError, Result};
use crate::lake::projection::{LogMessage, ProjectionKind, Source};
use crate::lake::store::LakeLocation;
use crate::lake::table::RowBuilder;
use crate::lake::writer::TableWriter;

/// Messages decoded together on a blocking thread.
const CHUNK: usize = 20_000;
/// Rows encoded into Parquet at once (bounds memory).
const FLUSH_ROWS: usize = 2_000_000;

/// Where a rebuild is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebuildProgress {
    /// Last log sequence replayed.
    pub seq: u64,
    /// The sequence the rebuild stops at (the table's committed position when it started).
    pub target: u64,
    pub messages: u64,
    pub rows: u64,
}

/// What a rebuild did.
#[derive(Debug, Clone, PartialEq)]
pub struct RebuildReport {
    pub table: &'static str,
    pub target: u64,
    pub messages: u64,
    pub rows: u64,
    pub files_added: usize,
    pub files_removed: usize,
    /// The table version that holds the rebuilt files (none if there was nothing to rebuild).
    pub version: Option<u64>,
    pub elapsed: Duration,
}

/// Rebuilds `kind`'s table from the log; `progress` is called after every chunk.
pub async fn rebuild(
    js: &jetstream::Context,
    subjects: &Subjects,
    location: &LakeLocation,
    kind: ProjectionKind,
    mut progress: impl FnMut(RebuildProgress) + Send,
) -> Result<RebuildReport> {
    let started = Instant::now();
    let mut projection = kind.projection();
    let name = projection.name();
    let spec = projection.spec();
    let mut writer = TableWriter::new(name, location.open_or_create(&spec).await?)?;
    writer.refresh().await?;
    let target = writer.committed_seq(name).await?;
    let old_files: Vec<Action> = writer.state().log_data().iter().map(|f| Action::Remove(f.remove_action(true))).collect();
    let mut report = RebuildReport {
        table: name,
        target,
        messages: 0,
        rows: 0,
        files_added: 0,
        files_removed: 0,
        version: None,
        elapsed: Duration::ZERO,
    };
    if target == 0 {
        report.elapsed = started.elapsed();
        return Ok(report);
    }
    let log_error = |e: String| LakeError::Log { projection: name.to_string(), reason: e };
    let stream_name = projection.source().stream(subjects);
    let stream = js.get_stream(&stream_name).await.map_err(|e| log_error(e.to_string()))?;
    let first = stream.cached_info().state.first_sequence;
    if projection.source() == Source::Telemetry && first > 1 {
        return Err(LakeError::Rebuild {
            table: name.to_string(),
            reason: format!("the log was trimmed (it starts at sequence {first}); older rows exist only in the table"),
        });
    }
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_policy: DeliverPolicy::All,
            filter_subject: projection.filter_subject(subjects).unwrap_or_default(),
            ..Default::default()
        })
        .await
        .map_err(|e| log_error(e.to_string()))?;
    let mut messages = consumer.messages().await.map_err(|e| log_error(e.to_string()))?;

    let mut adds = Vec::new();
    let mut batches: Vec<RecordBatch> = Vec::new();
    let mut buffered_rows = 0usize;
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut done = false;
    while !done {
        match messages.next().await {
            Some(Ok(message)) => {
                let info = message.info().map_err(|e| log_error(e.to_string()))?;
                let (seq, pending) = (info.stream_sequence, info.pending);
                if seq <= target {
                    chunk.push(LogMessage { seq, subject: message.subject.to_string(), payload: message.payload.clone() });
                }
                done = seq >= target || pending == 0;
            }
            Some(Err(e)) => return Err(log_error(e.to_string())),
            None => done = true,
        }
        if chunk.len() >= CHUNK || (done && !chunk.is_empty()) {
            let last_seq = chunk.last().map_or(0, |m: &LogMessage| m.seq);
            report.messages += chunk.len() as u64;
            let schema = spec.schema.clone();
            let taken = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
            let (back, batch) = tokio::task::spawn_blocking(move || {
                let mut rows = RowBuilder::new(schema);
                for message in &taken {
                    // Unreadable messages are in the dead-letter table already.
                    let _ = projection.decode(message, &mut rows);
                }
                (projection, rows.finish())
            })
            .await
            .map_err(|e| LakeError::Task { table: name.to_string(), reason: e.to_string() })?;
            projection = back;
            let batch = batch.map_err(LakeError::arrow(name))?;
            report.rows += batch.num_rows() as u64;
            buffered_rows += batch.num_rows();
            batches.push(batch);
            if buffered_rows >= FLUSH_ROWS {
                adds.extend(writer.write_files(std::mem::take(&mut batches)).await?);
                buffered_rows = 0;
            }
            progress(RebuildProgress { seq: last_seq, target, messages: report.messages, rows: report.rows });
        }
    }
    adds.extend(writer.write_files(batches).await?);
    report.files_added = adds.len();
    report.files_removed = old_files.len();
    let mut actions: Vec<Action> = adds.into_iter().map(Action::Add).collect();
    actions.extend(old_files);
    let partition_by = writer.state().metadata().partition_columns().to_vec();
    let operation = DeltaOperation::Write {
        mode: SaveMode::Overwrite,
        partition_by: (!partition_by.is_empty()).then_some(partition_by),
        predicate: Some(format!("rebuild from the log up to sequence {target}")),
    };
    report.version = Some(writer.commit(actions, operation, None).await?);
    report.elapsed = started.elapsed();
    info!(table = name, target, rows = report.rows, elapsed_ms = report.elapsed.as_millis() as u64, "lake table rebuilt");
    Ok(report)
}
