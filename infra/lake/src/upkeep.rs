//! Keeping the tables fast to read: compaction of small files and vacuum of unreferenced ones.
//! Checkpoints of the Delta log are written by the commits themselves (every
//! `delta.checkpointInterval` commits, 100 by default), and expired log files are cleaned up
//! with them.
//!
//! Compaction does what Delta's `OPTIMIZE` does without DataFusion: per partition it reads the
//! small files, writes their rows as one file (sorted by the table's sort order, like every file
//! the writer writes: a merge of the sorted inputs), and commits the new file together with the
//! removal of the old ones (`dataChange = false`) in one commit. Readers of older table versions
//! keep their files until vacuum deletes them after the retention period, and concurrent
//! appends do not conflict with it (it removes only files it read).
//!
//! Two small files in a partition are enough: under a high ingest rate the projection commits
//! large batches that span several day partitions, so a day gets one or two files per commit
//! and a threshold of four files was never reached — the day stayed split in files that each
//! hold every series.

use std::collections::BTreeMap;
use std::time::Duration;

use deltalake_core::kernel::Action;
use deltalake_core::kernel::LogicalFileView;
use deltalake_core::operations::vacuum::VacuumMode;
use deltalake_core::protocol::DeltaOperation;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::error::{LakeError, Result};
use crate::scan;
use crate::store::LakeLocation;
use crate::writer::TableWriter;

/// Files smaller than this are compacted.
pub const SMALL_FILE_BYTES: i64 = 32 * 1024 * 1024;
/// A partition is compacted once it has this many small files.
pub const MIN_FILES: usize = 2;
/// The most bytes of small files rewritten into one file.
const MAX_GROUP_BYTES: i64 = 256 * 1024 * 1024;
/// The most rows rewritten into one file: the rows are held decoded in memory (about 150 bytes a
/// telemetry row with its partition columns), so this bounds compaction's memory, not bytes on
/// disk (a telemetry point takes about 2 bytes there).
const MAX_GROUP_ROWS: i64 = 4_000_000;

/// What one round of upkeep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpkeepReport {
    pub files_compacted: usize,
    pub files_written: usize,
    pub files_vacuumed: usize,
}

/// Runs compaction and vacuum of `table` every `interval` until `shutdown`; vacuum deletes the
/// files replaced at least `vacuum_retention` ago.
pub async fn run(
    location: LakeLocation,
    table: &'static str,
    interval: Duration,
    vacuum_retention: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.tick().await;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match tidy(&location, table, vacuum_retention).await {
            Ok(report) => info!(table, ?report, "lake upkeep done"),
            Err(e) => warn!(table, error = %e, "lake upkeep failed; next round retries"),
        }
    }
}

/// Compacts, then vacuums one table.
pub async fn tidy(location: &LakeLocation, table: &'static str, retention: Duration) -> Result<UpkeepReport> {
    let (files_compacted, files_written) = compact(location, table, SMALL_FILE_BYTES, MIN_FILES).await?;
    let files_vacuumed = vacuum(location, table, retention).await?;
    Ok(UpkeepReport { files_compacted, files_written, files_vacuumed })
}

/// Rewrites the small files of each partition that has at least `min_files` of them into one
/// file. Returns (files removed, files written).
pub async fn compact(location: &LakeLocation, table: &'static str, small: i64, min_files: usize) -> Result<(usize, usize)> {
    let Some(delta) = location.open(table).await? else { return Ok((0, 0)) };
    let mut writer = TableWriter::new(table, delta.clone())?;
    let mut groups: BTreeMap<Vec<(String, Option<String>)>, Vec<LogicalFileView>> = BTreeMap::new();
    for file in writer.state().log_data().iter() {
        if file.size() < small {
            let mut key: Vec<_> = file.partition_values_map().into_iter().collect();
            key.sort();
            groups.entry(key).or_default().push(file);
        }
    }
    let merge = writer.merge();
    let (mut removed, mut written) = (0, 0);
    for (_partition, files) in groups {
        if files.len() < min_files {
            continue;
        }
        let mut group = Vec::new();
        let (mut bytes, mut rows) = (0, 0);
        for file in files {
            let file_rows = records(&file).unwrap_or(0);
            if group.len() >= min_files && (bytes + file.size() > MAX_GROUP_BYTES || rows + file_rows > MAX_GROUP_ROWS) {
                break;
            }
            bytes += file.size();
            rows += file_rows;
            group.push(file);
        }
        let mut batches = Vec::new();
        for file in &group {
            batches.extend(scan::read_file(&delta, table, file).await?);
        }
        if let Some(merge) = merge {
            // Partial aggregates of the same group in several files become one row.
            batches = tokio::task::spawn_blocking(move || merge(&batches))
                .await
                .map_err(LakeError::task(table))?
                .map_err(LakeError::arrow(table))?;
        }
        let adds = writer.write_files(batches).await?;
        written += adds.len();
        removed += group.len();
        let mut actions: Vec<Action> = adds
            .into_iter()
            .map(|mut add| {
                add.data_change = false;
                Action::Add(add)
            })
            .collect();
        actions.extend(group.iter().map(|f| Action::Remove(f.remove_action(false))));
        writer.commit(actions, DeltaOperation::Optimize { predicate: None, target_size: small }, None).await?;
    }
    if removed > 0 {
        info!(table, removed, written, "lake table compacted");
    }
    Ok((removed, written))
}

/// The file's row count from its Delta statistics (`numRecords`), when it has them.
fn records(file: &LogicalFileView) -> Option<i64> {
    let stats: serde_json::Value = serde_json::from_str(&file.stats()?).ok()?;
    stats.get("numRecords")?.as_i64()
}

/// Deletes data files no version within `retention` refers to (replaced by compaction or
/// rebuild, or written by a commit that never happened). Returns how many were deleted.
pub async fn vacuum(location: &LakeLocation, table: &str, retention: Duration) -> Result<usize> {
    let Some(delta) = location.open(table).await? else { return Ok(0) };
    let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::days(7));
    let (_, metrics) = delta
        .vacuum()
        .with_retention_period(retention)
        .with_enforce_retention_duration(false)
        .with_mode(VacuumMode::Full)
        .await
        .map_err(LakeError::delta(table))?;
    Ok(metrics.files_deleted.len())
}
