//! Rebuilding a table from the log, beside live ingestion.
//!
//! The rebuild reads the table's committed position `W` (the live projection's `txn` version)
//! and the files of that table version, replays the log up to `W` through fresh projections
//! into new Parquet files, and commits one new table version that adds the new files and
//! removes the old ones. The live projection keeps appending meanwhile: its commits after the
//! snapshot add files the rebuild does not touch (rows after `W`), and Delta's conflict check
//! lets the two commits through in either order. Readers see either the old or the new files,
//! never both; the old files stay until vacuum.
//!
//! What the log no longer holds comes from an archive ([`Archive`]):
//! - tables of the telemetry stream (and `events` itself) keep their own rows below the log's
//!   first sequence: files entirely below it stay, files across it are rewritten with those
//!   rows only;
//! - `entity_versions` and `relation_versions` replay the `events` table up to its committed
//!   position (always, not only after a trim: reading Parquet is far faster than the log), then
//!   the log after it.
//!
//! Messages are decoded on every core: stateless projections split a chunk in equal parts,
//! projections with per-entity state split it by entity.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use deltalake_core::arrow::array::{Array, AsArray, BooleanArray, PrimitiveArray, RecordBatch, StringArray};
use deltalake_core::arrow::compute::filter_record_batch;
use deltalake_core::arrow::datatypes::{ArrowPrimitiveType, Int32Type, Int64Type};
use deltalake_core::kernel::{Action, Add, LogicalFileView};
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use thinglake_infra::log::direct_get::{BatchedDirectGet, has_batched_direct_get};
use thinglake_infra::log::pull::{PullOptions, PullReader};
use thinglake_infra::subjects::Subjects;
use thinglake_lake::table::{LAKE_EVENTS, LAKE_TELEMETRY, RowBuilder};
use thinglake_lake::writer::TableWriter;
use thinglake_lake::{LakeError, LakeLocation, rollup, scan};
use tokio_util::task::AbortOnDropHandle;
use tracing::info;

use crate::error::{ProjectionError, Result};
use crate::lake::projection::{Archive, ArchivedEvent, LogMessage, Projection, ProjectionKind};

/// Messages decoded together (split over the cores).
const CHUNK: usize = 50_000;
/// Rows of the `events` table replayed at a time (at least; whole files).
const RUN_ROWS: u64 = 200_000;
/// Rows per decoded batch, about the live projection's (2,000 messages): arrays of this size
/// are recycled by the allocator rather than being fresh memory for every chunk.
const BATCH_ROWS: usize = 16_384;
/// Rows encoded into Parquet at once, in the background while the next ones are decoded
/// (bounds memory to about twice this many rows).
const FLUSH_ROWS: usize = 500_000;
/// Messages asked for in one pull request, and their bytes at most.
pub const PULL_BATCH: usize = 10_000;
pub const PULL_BYTES: usize = 32 * 1024 * 1024;
/// How long the log reader waits for nats-server's next message before it gives up.
const LOG_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a rebuild is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebuildProgress {
    /// Last log sequence replayed.
    pub seq: u64,
    /// The sequence the rebuild stops at (the table's committed position when it started).
    pub target: u64,
    pub messages: u64,
    pub rows: u64,
    /// Time spent per phase so far.
    pub phases: RebuildPhases,
}

/// Where a rebuild's time went. The log is read, decoded and encoded in a pipeline (reading the
/// next messages while the previous ones are decoded, encoding Parquet while the next ones are
/// decoded), so the phases overlap: their sum exceeds the elapsed time. The `*_wait` phases say
/// which stage held the pipeline up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RebuildPhases {
    /// Reading the table's kept rows (files across the log's first sequence) or the `events`
    /// table, and decoding the latter.
    pub archive: Duration,
    /// The log reader pulling messages (excluding the time it waited for the decoder).
    pub read: Duration,
    /// The decoder waiting for the log reader (the log is the bottleneck while this grows).
    pub read_wait: Duration,
    /// Decoding messages into Arrow rows (wall time, on every core).
    pub decode: Duration,
    /// Encoding Parquet files and writing them (wall time of each encoding round, on every core).
    pub encode: Duration,
    /// The decoder waiting for the previous encoding round (encoding is the bottleneck while
    /// this grows).
    pub encode_wait: Duration,
    /// The final commit.
    pub commit: Duration,
}

/// The pipeline's phases in seconds, with the formatter's precision (3 decimals by default):
/// `archive …, log read … (decoder waited …), decode …, encode … (decoder waited …)`. The commit
/// is left out (it is zero until the end).
impl std::fmt::Display for RebuildPhases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = f.precision().unwrap_or(3);
        let s = |d: Duration| d.as_secs_f64();
        write!(
            f,
            "archive {:.p$}, log read {:.p$} (decoder waited {:.p$}), decode {:.p$}, encode {:.p$} (decoder waited {:.p$})",
            s(self.archive),
            s(self.read),
            s(self.read_wait),
            s(self.decode),
            s(self.encode),
            s(self.encode_wait),
        )
    }
}

/// What a rebuild did.
#[derive(Debug, Clone, PartialEq)]
pub struct RebuildReport {
    pub table: &'static str,
    pub target: u64,
    /// Log messages replayed.
    pub messages: u64,
    /// Events replayed from the `events` table.
    pub archived_events: u64,
    /// Rows written (from the log and the `events` table).
    pub rows: u64,
    /// Rows of trimmed log messages kept from the table itself.
    pub rows_kept: u64,
    pub files_added: usize,
    pub files_removed: usize,
    /// The table version that holds the rebuilt files (none if there was nothing to rebuild).
    pub version: Option<u64>,
    pub elapsed: Duration,
    pub phases: RebuildPhases,
}

/// Rebuilds `kind`'s table from the log and its archive; `progress` is called after every chunk.
pub async fn rebuild(
    js: &jetstream::Context,
    subjects: &Subjects,
    location: &LakeLocation,
    kind: ProjectionKind,
    mut progress: impl FnMut(RebuildProgress) + Send,
) -> Result<RebuildReport> {
    let started = Instant::now();
    let mut decoder = Decoder::new(kind);
    let name = kind.name();
    let spec = kind.projection().spec();
    let table = location.open_or_create(&spec).await?;
    let mut writer = TableWriter::new(name, table.clone())?;
    writer.refresh().await?;
    let target = writer.committed_seq(name).await?;
    let mut report = RebuildReport {
        table: name,
        target,
        messages: 0,
        archived_events: 0,
        rows: 0,
        rows_kept: 0,
        files_added: 0,
        files_removed: 0,
        version: None,
        elapsed: Duration::ZERO,
        phases: RebuildPhases::default(),
    };
    if target == 0 {
        report.elapsed = started.elapsed();
        return Ok(report);
    }
    let projection = kind.projection();
    let stream_name = projection.source().stream(subjects);
    let mut stream = js.get_stream(&stream_name).await.map_err(ProjectionError::nats(name))?;
    let state = stream.info().await.map_err(ProjectionError::nats(name))?.state.clone();
    let first = if state.messages == 0 { state.last_sequence + 1 } else { state.first_sequence };

    let mut out = Output::new(name, table)?;
    let mut removed: Vec<Action> = Vec::new();
    let archive_started = Instant::now();
    let log_from = match kind.archive() {
        Archive::OwnTable => {
            let kept_below = first.min(target + 1);
            let below = i64::try_from(kept_below).unwrap_or(i64::MAX);
            let mut delta = None;
            for file in writer.state().log_data().iter() {
                let (min, max) = seq_range(&file);
                if max.is_some_and(|max| max < below) {
                    report.rows_kept += file.num_records().unwrap_or(0) as u64;
                    continue;
                }
                if min.is_none_or(|min| min < below) {
                    if delta.is_none() {
                        delta = Some(location.open(name).await?.ok_or_else(|| ProjectionError::RebuildTableVanished {
                            table: name.to_string(),
                        })?);
                    }
                    let table = delta.as_ref().expect("opened just above");
                    for batch in scan::read_file(table, name, &file).await? {
                        let below = rows_below(&batch, kept_below).map_err(ProjectionError::arrow(name))?;
                        report.rows_kept += below.num_rows() as u64;
                        out.push(below);
                    }
                }
                removed.push(Action::Remove(file.remove_action(true)));
            }
            kept_below
        }
        archive @ (Archive::EventsTable | Archive::TelemetryTable) => {
            removed.extend(writer.state().log_data().iter().map(|f| Action::Remove(f.remove_action(true))));
            let (archived, held) = if archive == Archive::EventsTable {
                (replay_events_table(location, target, &mut decoder, &mut out, &mut report).await?, "events table holds events")
            } else {
                (replay_telemetry_table(location, target, &mut out, &mut report).await?, "telemetry table holds points")
            };
            if first > archived + 1 {
                return Err(ProjectionError::RebuildArchiveShort { table: name.to_string(), first, held, archived });
            }
            archived + 1
        }
    };
    report.phases.archive = archive_started.elapsed();
    if out.rows >= FLUSH_ROWS {
        out.flush(&mut report.phases).await?;
    }

    if log_from <= target {
        replay_log(js, subjects, &stream, kind, log_from, target, &mut decoder, &mut out, &mut report, &mut progress).await?;
    }
    out.flush(&mut report.phases).await?;
    out.wait(&mut report.phases).await?;
    report.files_added = out.adds.len();
    report.files_removed = removed.len();
    let mut actions: Vec<Action> = std::mem::take(&mut out.adds).into_iter().map(Action::Add).collect();
    actions.extend(removed);
    let partition_by = writer.state().metadata().partition_columns().to_vec();
    let operation = DeltaOperation::Write {
        mode: SaveMode::Overwrite,
        partition_by: (!partition_by.is_empty()).then_some(partition_by),
        // No predicate: Delta's conflict check parses it as SQL over the table when a live
        // append commits meanwhile (a description here failed such rebuilds), and without one
        // the live projection's blind appends never conflict with the rebuild.
        predicate: None,
    };
    let commit_started = Instant::now();
    report.version = Some(writer.commit(actions, operation, None).await?);
    report.phases.commit = commit_started.elapsed();
    report.elapsed = started.elapsed();
    let ms = |d: Duration| d.as_millis() as u64;
    info!(
        table = name,
        target,
        messages = report.messages,
        archived_events = report.archived_events,
        rows = report.rows,
        rows_kept = report.rows_kept,
        elapsed_ms = ms(report.elapsed),
        archive_ms = ms(report.phases.archive),
        read_ms = ms(report.phases.read),
        read_wait_ms = ms(report.phases.read_wait),
        decode_ms = ms(report.phases.decode),
        encode_ms = ms(report.phases.encode),
        encode_wait_ms = ms(report.phases.encode_wait),
        commit_ms = ms(report.phases.commit),
        "lake table rebuilt"
    );
    Ok(report)
}

/// Rows decoded and not yet written, the encoding round under way (in the background, one
/// at a time: memory stays bounded by two rounds of rows) and the files written so far.
struct Output {
    name: &'static str,
    /// Writes the files (through the live projection's file writer, so that rebuilt files are
    /// laid out as projected ones).
    files: Arc<TableWriter>,
    batches: Vec<RecordBatch>,
    rows: usize,
    adds: Vec<Add>,
    encoding: Option<AbortOnDropHandle<Result<Encoded>>>,
}

impl Output {
    fn new(name: &'static str, table: deltalake_core::DeltaTable) -> Result<Self> {
        let files = Arc::new(TableWriter::new(name, table)?);
        Ok(Self { name, files, batches: Vec::new(), rows: 0, adds: Vec::new(), encoding: None })
    }

    fn push(&mut self, batch: RecordBatch) {
        if batch.num_rows() > 0 {
            self.rows += batch.num_rows();
            self.batches.push(batch);
        }
    }

    /// Starts encoding the rows held so far, after the previous round is done.
    async fn flush(&mut self, phases: &mut RebuildPhases) -> Result<()> {
        self.wait(phases).await?;
        let batches = std::mem::take(&mut self.batches);
        self.rows = 0;
        if batches.is_empty() {
            return Ok(());
        }
        let files = self.files.clone();
        self.encoding = Some(AbortOnDropHandle::new(tokio::runtime::Handle::current().spawn(async move {
            let started = Instant::now();
            let mut batches = batches;
            // A table of partial aggregates gets one row per group of what is written at once.
            if let Some(merge) = files.merge() {
                batches = tokio::task::spawn_blocking(move || merge(&batches))
                    .await
                    .map_err(ProjectionError::task(files.name()))?
                    .map_err(ProjectionError::arrow(files.name()))?;
            }
            let adds = files.write_files_parallel(batches).await?;
            Ok((adds, started.elapsed()))
        })));
        Ok(())
    }

    /// Waits for the encoding round under way.
    async fn wait(&mut self, phases: &mut RebuildPhases) -> Result<()> {
        let Some(encoding) = self.encoding.take() else { return Ok(()) };
        let started = Instant::now();
        let (adds, took) =
            encoding.await.map_err(ProjectionError::task(self.name))??;
        phases.encode_wait += started.elapsed();
        phases.encode += took;
        self.adds.extend(adds);
        Ok(())
    }
}

/// The files of an encoding round, and how long it took.
type Encoded = (Vec<Add>, Duration);

/// A chunk of log messages from the reader, or why reading failed.
type Chunk = Result<Vec<LogMessage>>;

/// Replays the log from `from` to `target` (both included) through the decoder: a task reads
/// the log into chunks while the previous chunk is decoded, and encoding runs in the background.
///
/// The log is read ([`thinglake_infra::log`]) by batched direct gets ([`read_log_direct`]) when
/// the projection reads every message of the stream and splits them in equal parts (the
/// subjects are not needed), the stream allows direct gets and the server has them (2.11+);
/// otherwise through an ephemeral pull consumer ([`read_log`]). Direct gets cost nats-server about the same per message and the
/// client about half (no subject, reply subject or JetStream context per message).
#[allow(clippy::too_many_arguments)]
async fn replay_log(
    js: &jetstream::Context,
    subjects: &Subjects,
    stream: &jetstream::stream::Stream,
    kind: ProjectionKind,
    from: u64,
    target: u64,
    decoder: &mut Decoder,
    out: &mut Output,
    report: &mut RebuildReport,
    progress: &mut (impl FnMut(RebuildProgress) + Send),
) -> Result<()> {
    let name = kind.name();
    let filter_subject = kind.projection().filter_subject(subjects).unwrap_or_default();
    let contiguous = filter_subject.is_empty();
    // Two chunks in flight at most: one being decoded, one being read.
    let (chunks, mut received) = tokio::sync::mpsc::channel::<Chunk>(1);
    let client = js.client();
    let handle = tokio::runtime::Handle::current();
    let reader = if contiguous && !decoder.per_entity && stream.cached_info().config.allow_direct && has_batched_direct_get(&client) {
        let stream_name = stream.cached_info().config.name.clone();
        AbortOnDropHandle::new(handle.spawn(read_log_direct(client, stream_name, name, from, target, chunks)))
    } else {
        let messages = pull_messages(js, stream, name, from, filter_subject).await?;
        AbortOnDropHandle::new(handle.spawn(read_log(messages, name, from, target, contiguous, chunks)))
    };
    loop {
        let waited = Instant::now();
        let Some(chunk) = received.recv().await else { break };
        report.phases.read_wait += waited.elapsed();
        let chunk = chunk?;
        let last_seq = chunk.last().map_or(0, |m: &LogMessage| m.seq);
        report.messages += chunk.len() as u64;
        let decoding = Instant::now();
        for batch in decoder.decode_messages(chunk).await? {
            report.rows += batch.num_rows() as u64;
            out.push(batch);
        }
        report.phases.decode += decoding.elapsed();
        if out.rows >= FLUSH_ROWS {
            out.flush(&mut report.phases).await?;
        }
        progress(RebuildProgress {
            seq: last_seq,
            target,
            messages: report.messages,
            rows: report.rows,
            phases: report.phases,
        });
    }
    report.phases.read += reader.await.map_err(ProjectionError::task(name))?;
    Ok(())
}

/// The messages of an ephemeral pull consumer without acks from `from` on, asked for in large
/// batches.
async fn pull_messages(
    js: &jetstream::Context,
    stream: &jetstream::stream::Stream,
    name: &'static str,
    from: u64,
    filter_subject: String,
) -> Result<PullReader> {
    let stream_name = stream.cached_info().config.name.clone();
    let options = PullOptions {
        description: Some(format!("rebuild of {name}")),
        from_seq: from,
        filter_subject: Some(filter_subject).filter(|f| !f.is_empty()),
        inactive_threshold: Duration::from_secs(60),
        batch: PULL_BATCH,
        max_bytes: PULL_BYTES,
        expires: Some(LOG_TIMEOUT),
        ..PullOptions::default()
    };
    PullReader::open(js, &stream_name, options, stream_name.clone()).await.map_err(log_read_error(name))
}

/// The rebuild's error for a failed read of the log: a hole in the sequences asks for the
/// rebuild to be run again.
fn log_read_error(name: &'static str) -> impl Fn(thinglake_infra::Error) -> ProjectionError {
    move |e| match e {
        thinglake_infra::Error::LogGap { from, to, .. } => ProjectionError::RebuildLogGap { table: name.to_string(), from, to },
        e => ProjectionError::log(name)(e),
    }
}

/// Reads sequences `from..=target` of `stream` by batched direct gets as a rebuild does, doing
/// nothing with the messages but counting them: the ceiling of a rebuild from the log (a
/// baseline of the `lake` benchmark). Fails on a hole, as a rebuild does.
pub async fn read_direct(js: &jetstream::Context, stream: &str, from: u64, target: u64) -> Result<u64> {
    let (chunks, mut received) = tokio::sync::mpsc::channel::<Chunk>(1);
    let reader = AbortOnDropHandle::new(tokio::runtime::Handle::current().spawn(read_log_direct(
        js.client(),
        stream.to_string(),
        "log read",
        from,
        target,
        chunks,
    )));
    let mut messages = 0;
    while let Some(chunk) = received.recv().await {
        messages += chunk?.len() as u64;
    }
    reader.await.map_err(ProjectionError::task("log read"))?;
    Ok(messages)
}

/// Reads the stream's sequences `from..=target` into chunks of at least [`CHUNK`] messages by
/// batched direct gets ([`BatchedDirectGet`]); returns the time it spent reading (not waiting
/// for the decoder). A hole in the sequences fails the rebuild.
async fn read_log_direct(
    client: async_nats::Client,
    stream: String,
    name: &'static str,
    from: u64,
    target: u64,
    chunks: tokio::sync::mpsc::Sender<Chunk>,
) -> Duration {
    let started = Instant::now();
    let mut blocked = Duration::ZERO;
    let mut reader = match BatchedDirectGet::open(client, &stream, from, target, CHUNK).await {
        Ok(reader) => reader,
        Err(e) => {
            let _ = chunks.send(Err(log_read_error(name)(e))).await;
            return started.elapsed();
        }
    };
    while let Some(chunk) = reader.next_chunk().await {
        let failed = chunk.is_err();
        let sending = Instant::now();
        if chunks.send(chunk.map_err(log_read_error(name))).await.is_err() || failed {
            break;
        }
        blocked += sending.elapsed();
    }
    started.elapsed().saturating_sub(blocked)
}

/// Reads the log from `from` to `target` into chunks of [`CHUNK`] messages; returns the time it
/// spent reading (not waiting for the decoder). A hole in the sequences fails the rebuild.
async fn read_log(
    mut messages: PullReader,
    name: &'static str,
    from: u64,
    target: u64,
    contiguous: bool,
    chunks: tokio::sync::mpsc::Sender<Chunk>,
) -> Duration {
    let started = Instant::now();
    let mut blocked = Duration::ZERO;
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut expected_seq = from;
    let mut last_consumer_seq = 0;
    let mut done = false;
    while !done {
        let next: Result<Option<LogMessage>> = match messages.next().await {
            Some(Ok(message)) => {
                let (seq, consumer_seq, pending) = (message.seq, message.consumer_seq, message.pending);
                if consumer_seq != last_consumer_seq + 1 || (contiguous && seq != expected_seq) {
                    Err(ProjectionError::RebuildLogSkipped { table: name.to_string(), after: expected_seq.saturating_sub(1), seq })
                } else {
                    last_consumer_seq = consumer_seq;
                    expected_seq = seq + 1;
                    done = seq >= target || pending == 0;
                    Ok((seq <= target).then(|| message.message()))
                }
            }
            Some(Err(e)) => Err(log_read_error(name)(e)),
            None => {
                done = true;
                Ok(None)
            }
        };
        match next {
            Ok(Some(message)) => chunk.push(message),
            Ok(None) => {}
            Err(e) => {
                let _ = chunks.send(Err(e)).await;
                break;
            }
        }
        if chunk.len() >= CHUNK || (done && !chunk.is_empty()) {
            let taken = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
            let sending = Instant::now();
            if chunks.send(Ok(taken)).await.is_err() {
                break;
            }
            blocked += sending.elapsed();
        }
    }
    started.elapsed().saturating_sub(blocked)
}

/// Replays the `events` table's rows up to `target` (and its own committed position) through
/// the decoder, tenant by tenant in sequence order. Returns the last sequence it covers.
async fn replay_events_table(
    location: &LakeLocation,
    target: u64,
    decoder: &mut Decoder,
    out: &mut Output,
    report: &mut RebuildReport,
) -> Result<u64> {
    let Some(events) = location.open(LAKE_EVENTS).await? else { return Ok(0) };
    let writer = TableWriter::new(LAKE_EVENTS, events.clone())?;
    let upto = writer.committed_seq(LAKE_EVENTS).await?.min(target);
    if upto == 0 {
        return Ok(0);
    }
    // Files grouped by tenant: an entity's events are all in its tenant's partition.
    let mut tenants: std::collections::BTreeMap<Option<String>, Vec<LogicalFileView>> = Default::default();
    for file in writer.state().log_data().iter() {
        if seq_range(&file).0.is_some_and(|min| u64::try_from(min).is_ok_and(|min| min > upto)) {
            continue;
        }
        tenants.entry(file.partition_values_map().remove("tenant_id").flatten()).or_default().push(file);
    }
    // In sequence order per tenant, a run of files at a time: memory holds two runs (the one
    // being decoded and the next one, read meanwhile), not the tenant's whole history.
    let mut runs = tenants.into_values().flat_map(|files| seq_runs(files, RUN_ROWS));
    let columns = decoder.archived_columns();
    let read_run = |run: Vec<LogicalFileView>| {
        let events = events.clone();
        AbortOnDropHandle::new(tokio::runtime::Handle::current().spawn(async move {
            // Read together: each file's Parquet is decoded on a blocking thread.
            let read = futures::future::try_join_all(
                run.iter().map(|file| scan::read_file_columns(&events, LAKE_EVENTS, file, columns)),
            )
            .await?;
            Ok::<_, LakeError>(read.into_iter().flatten().collect::<Vec<RecordBatch>>())
        }))
    };
    let mut next = runs.next().map(read_run);
    while let Some(reading) = next.take() {
        let batches = reading.await.map_err(ProjectionError::task(LAKE_EVENTS))??;
        next = runs.next().map(read_run);
        let decoded = decoder.decode_events_table(batches, upto).await?;
        report.archived_events += decoded.events;
        for batch in decoded.batches {
            report.rows += batch.num_rows() as u64;
            out.push(batch);
        }
        // Each run's rows are encoded while the next run is read and decoded (rather than
        // every row at the end, after the last run: the rebuild's tail).
        out.flush(&mut report.phases).await?;
    }
    Ok(upto)
}

/// Splits files into runs in sequence order, each of at least `min_rows` rows (but the last),
/// such that no file of a run holds a sequence of another run's range: the runs can be
/// replayed one after the other. Files without `seq` statistics make one run of all.
fn seq_runs(files: Vec<LogicalFileView>, min_rows: u64) -> Vec<Vec<LogicalFileView>> {
    let items = files
        .into_iter()
        .map(|file| {
            let (min, max) = seq_range(&file);
            (min.zip(max), file.num_records().unwrap_or(0) as u64, file)
        })
        .collect();
    runs_in_order(items, min_rows)
}

/// A file's `seq` range (if known), its rows, and the file.
type Ranged<T> = (Option<(i64, i64)>, u64, T);

/// [`seq_runs`] over ranged items.
fn runs_in_order<T>(items: Vec<Ranged<T>>, min_rows: u64) -> Vec<Vec<T>> {
    if items.iter().any(|(range, _, _)| range.is_none()) {
        return vec![items.into_iter().map(|(_, _, item)| item).collect()];
    }
    let mut ordered: Vec<(i64, i64, u64, T)> =
        items.into_iter().filter_map(|(range, rows, item)| range.map(|(min, max)| (min, max, rows, item))).collect();
    ordered.sort_by_key(|(min, max, _, _)| (*min, *max));
    let mut runs = Vec::new();
    let mut current = Vec::new();
    let (mut current_max, mut rows) = (i64::MIN, 0u64);
    for (min, max, file_rows, item) in ordered {
        if !current.is_empty() && min > current_max && rows >= min_rows {
            runs.push(std::mem::take(&mut current));
            rows = 0;
        }
        rows += file_rows;
        current_max = current_max.max(max);
        current.push(item);
    }
    if !current.is_empty() {
        runs.push(current);
    }
    runs
}

/// Aggregates the `telemetry` table's points up to `target` (and its own committed position)
/// into rollup rows, file by file. Returns the last sequence it covers.
async fn replay_telemetry_table(location: &LakeLocation, target: u64, out: &mut Output, report: &mut RebuildReport) -> Result<u64> {
    let Some(telemetry) = location.open(LAKE_TELEMETRY).await? else { return Ok(0) };
    let writer = TableWriter::new(LAKE_TELEMETRY, telemetry.clone())?;
    let upto = writer.committed_seq(LAKE_TELEMETRY).await?.min(target);
    if upto == 0 {
        return Ok(0);
    }
    for file in writer.state().log_data().iter() {
        if seq_range(&file).0.is_some_and(|min| u64::try_from(min).is_ok_and(|min| min > upto)) {
            continue;
        }
        let mut points = Vec::new();
        for batch in scan::read_file(&telemetry, LAKE_TELEMETRY, &file).await? {
            points.push(rows_below(&batch, upto + 1).map_err(ProjectionError::arrow(LAKE_TELEMETRY))?);
        }
        report.archived_events += points.iter().map(|b| b.num_rows() as u64).sum::<u64>();
        let rows = tokio::task::spawn_blocking(move || rollup::from_telemetry(&points))
            .await
            .map_err(ProjectionError::task(LAKE_TELEMETRY))?
            .map_err(ProjectionError::arrow(LAKE_TELEMETRY))?;
        for batch in rows {
            report.rows += batch.num_rows() as u64;
            out.push(batch);
        }
    }
    Ok(upto)
}

/// The projection instances of a rebuild, one per core, and how messages are split among them.
struct Decoder {
    kind: ProjectionKind,
    shards: Vec<Box<dyn Projection>>,
    per_entity: bool,
}

struct DecodedEvents {
    events: u64,
    batches: Vec<RecordBatch>,
}

impl Decoder {
    fn new(kind: ProjectionKind) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let shards: Vec<Box<dyn Projection>> = (0..cores).map(|_| kind.projection()).collect();
        let per_entity = shards[0].state_per_entity();
        Self { kind, shards, per_entity }
    }

    /// The columns of the `events` table the projection reads.
    fn archived_columns(&self) -> Option<&'static [&'static str]> {
        self.shards[0].archived_columns()
    }


    /// Splits the messages: by entity (the subject's last token) when state is kept per entity,
    /// else in equal consecutive parts.
    fn split(&self, messages: Vec<LogMessage>) -> Vec<Vec<LogMessage>> {
        let n = self.shards.len();
        if n == 1 {
            return vec![messages];
        }
        if self.per_entity {
            let mut parts: Vec<Vec<LogMessage>> = (0..n).map(|_| Vec::with_capacity(messages.len() / n + 1)).collect();
            for message in messages {
                let entity = message.subject.rsplit('.').next().unwrap_or_default();
                parts[shard_of(entity, n)].push(message);
            }
            parts
        } else {
            let size = messages.len().div_ceil(n).max(1);
            let mut parts = Vec::with_capacity(n);
            let mut rest = messages;
            while rest.len() > size {
                let tail = rest.split_off(size);
                parts.push(rest);
                rest = tail;
            }
            parts.push(rest);
            parts
        }
    }

    /// Decodes log messages on every core. Unreadable ones are skipped: they are in the
    /// dead-letter table already.
    async fn decode_messages(&mut self, messages: Vec<LogMessage>) -> Result<Vec<RecordBatch>> {
        let mut parts = self.split(messages);
        parts.resize_with(self.shards.len(), Vec::new);
        let tasks: Vec<_> = std::mem::take(&mut self.shards)
            .into_iter()
            .zip(parts)
            .map(|(mut projection, part)| {
                tokio::task::spawn_blocking(move || {
                    let mut rows = RowBuilder::new(projection.spec().schema);
                    let mut batches = Vec::new();
                    for message in &part {
                        let _ = projection.decode(message, &mut rows);
                        if rows.rows() >= BATCH_ROWS {
                            batches.push(rows.finish().map_err(ProjectionError::arrow(projection.name())));
                        }
                    }
                    batches.push(rows.finish().map_err(ProjectionError::arrow(projection.name())));
                    (projection, batches)
                })
            })
            .collect();
        self.join(tasks).await
    }

    /// Waits for every shard's decoding task, puts the shards back in their order and returns
    /// the batches they made.
    async fn join(
        &mut self,
        tasks: Vec<tokio::task::JoinHandle<ShardOutput>>,
    ) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        let mut failed = None;
        for task in tasks {
            match task.await {
                Ok((projection, batches)) => {
                    self.shards.push(projection);
                    for batch in batches {
                        match batch {
                            Ok(batch) if batch.num_rows() > 0 => out.push(batch),
                            Ok(_) => {}
                            Err(e) => failed = Some(e),
                        }
                    }
                }
                Err(e) => failed = Some(ProjectionError::task(self.kind.name())(e)),
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Decodes rows of the `events` table with sequence up to `upto`, in sequence order, on
    /// every core (split by entity). The rows are put in order through an index, not copied.
    async fn decode_events_table(&mut self, batches: Vec<RecordBatch>, upto: u64) -> Result<DecodedEvents> {
        let order = tokio::task::spawn_blocking(move || event_order(batches, upto))
            .await
            .map_err(ProjectionError::task(self.kind.name()))??;
        let order = Arc::new(order);
        let events = order.order.len() as u64;
        let n = self.shards.len();
        let tasks: Vec<_> = std::mem::take(&mut self.shards)
            .into_iter()
            .enumerate()
            .map(|(shard, mut projection)| {
                let order = order.clone();
                tokio::task::spawn_blocking(move || {
                    let batches = decode_event_rows(projection.as_mut(), &order, shard, n);
                    (projection, batches)
                })
            })
            .collect();
        let batches = self.join(tasks).await?;
        Ok(DecodedEvents { events, batches })
    }
}

/// A shard's projection back from its decoding task, and the batches it made.
type ShardOutput = (Box<dyn Projection>, Vec<Result<RecordBatch>>);

/// The shard of `n` an entity's events are decoded on, from its id's text (the last token of
/// its subject, the `entity_id` column of the `events` table): the same in every chunk of the
/// log and in the `events` table. FNV-1a, a fixed hash of a few cycles a byte (each shard
/// hashes every row of a run), mixed by MurmurHash3's finalizer and reduced with its high bits.
fn shard_of(entity: &str, n: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in entity.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^= hash >> 33;
    ((u128::from(hash) * n as u128) >> 64) as usize
}

/// The columns of a batch of the `events` table (those a projection does not read are absent).
struct EventColumns<'a> {
    seq: &'a PrimitiveArray<Int64Type>,
    event_id: Option<&'a StringArray>,
    tenant: &'a StringArray,
    entity_type: &'a StringArray,
    entity_id: &'a StringArray,
    version: &'a PrimitiveArray<Int64Type>,
    event_type: &'a StringArray,
    schema_version: Option<&'a PrimitiveArray<Int32Type>>,
    occurred_at: Option<&'a PrimitiveArray<Int64Type>>,
    recorded_at: &'a PrimitiveArray<Int64Type>,
    actor_kind: Option<&'a StringArray>,
    actor_id: Option<&'a StringArray>,
    actor_name: Option<&'a StringArray>,
    payload: &'a StringArray,
}

impl<'a> EventColumns<'a> {
    fn of(batch: &'a RecordBatch) -> Result<Self> {
        let missing = |name: &str| ProjectionError::EventsColumnMissing { column: name.to_string() };
        let text_opt = |name: &str| {
            batch
                .column_by_name(name)
                .map(|c| {
                    c.as_string_opt::<i32>()
                        .ok_or_else(|| ProjectionError::EventsColumnType { column: name.to_string(), expected: "a string" })
                })
                .transpose()
        };
        let text = |name: &str| text_opt(name)?.ok_or_else(|| missing(name));
        let long_opt = |name: &str| primitive_opt::<Int64Type>(batch, name, "a long");
        let long = |name: &str| long_opt(name)?.ok_or_else(|| missing(name));
        Ok(Self {
            seq: long("seq")?,
            event_id: text_opt("event_id")?,
            tenant: text("tenant_id")?,
            entity_type: text("entity_type")?,
            entity_id: text("entity_id")?,
            version: long("version")?,
            event_type: text("event_type")?,
            schema_version: primitive_opt::<Int32Type>(batch, "schema_version", "an int")?,
            occurred_at: long_opt("occurred_at")?,
            recorded_at: long("recorded_at")?,
            actor_kind: text_opt("actor_kind")?,
            actor_id: text_opt("actor_id")?,
            actor_name: text_opt("actor_name")?,
            payload: text("payload")?,
        })
    }

    fn event(&self, row: usize) -> ArchivedEvent<'a> {
        let optional = |column: Option<&'a StringArray>| column.filter(|c| !c.is_null(row)).map(|c| c.value(row));
        ArchivedEvent {
            seq: u64::try_from(self.seq.value(row)).unwrap_or(0),
            event_id: self.event_id.map_or("", |c| c.value(row)),
            tenant_id: self.tenant.value(row),
            entity_type: self.entity_type.value(row),
            entity_id: self.entity_id.value(row),
            version: self.version.value(row),
            event_type: self.event_type.value(row),
            schema_version: self.schema_version.map_or(0, |c| c.value(row)),
            occurred_at: self.occurred_at.map_or(0, |c| c.value(row)),
            recorded_at: self.recorded_at.value(row),
            actor_kind: self.actor_kind.map_or("", |c| c.value(row)),
            actor_id: optional(self.actor_id),
            actor_name: optional(self.actor_name),
            payload: self.payload.value(row),
        }
    }
}

/// The batch's column `name` of Arrow type `T` (`what` names it for the error), if the batch has it.
fn primitive_opt<'a, T: ArrowPrimitiveType>(
    batch: &'a RecordBatch,
    name: &str,
    what: &'static str,
) -> Result<Option<&'a PrimitiveArray<T>>> {
    batch
        .column_by_name(name)
        .map(|c| {
            c.as_primitive_opt::<T>()
                .ok_or_else(|| ProjectionError::EventsColumnType { column: name.to_string(), expected: what })
        })
        .transpose()
}

/// Batches of the `events` table and the order of their rows with `seq <= upto`, by `seq`.
struct EventOrder {
    batches: Vec<RecordBatch>,
    /// (seq, batch, row).
    order: Vec<(i64, u32, u32)>,
}

fn event_order(batches: Vec<RecordBatch>, upto: u64) -> Result<EventOrder> {
    let upto = i64::try_from(upto).unwrap_or(i64::MAX);
    let mut order = Vec::with_capacity(batches.iter().map(RecordBatch::num_rows).sum());
    for (b, batch) in batches.iter().enumerate() {
        let seq = EventColumns::of(batch)?.seq;
        for (row, seq) in seq.values().iter().enumerate() {
            if *seq <= upto {
                order.push((*seq, b as u32, row as u32));
            }
        }
    }
    order.sort_unstable();
    Ok(EventOrder { batches, order })
}

/// Decodes the rows of `order` whose entity falls on `shard` of `n`.
fn decode_event_rows(
    projection: &mut dyn Projection,
    order: &EventOrder,
    shard: usize,
    n: usize,
) -> Vec<Result<RecordBatch>> {
    let columns: Result<Vec<EventColumns<'_>>> = order.batches.iter().map(EventColumns::of).collect();
    let columns = match columns {
        Ok(columns) => columns,
        Err(e) => return vec![Err(e)],
    };
    let mut rows = RowBuilder::new(projection.spec().schema);
    let mut batches = Vec::new();
    for &(_, b, row) in &order.order {
        let columns = &columns[b as usize];
        let row = row as usize;
        if n > 1 && shard_of(columns.entity_id.value(row), n) != shard {
            continue;
        }
        // A row that makes no event is skipped, as the log message it came from would be.
        let _ = projection.decode_archived(&columns.event(row), &mut rows);
        if rows.rows() >= BATCH_ROWS {
            batches.push(rows.finish().map_err(ProjectionError::arrow(projection.name())));
        }
    }
    batches.push(rows.finish().map_err(ProjectionError::arrow(projection.name())));
    batches
}

/// The rows of a batch with `seq` below `below`.
fn rows_below(batch: &RecordBatch, below: u64) -> std::result::Result<RecordBatch, deltalake_core::arrow::error::ArrowError> {
    let Some(seq) = batch.column_by_name("seq") else { return Ok(batch.clone()) };
    let seq = seq.as_primitive::<Int64Type>();
    let below = i64::try_from(below).unwrap_or(i64::MAX);
    let keep: BooleanArray = seq.iter().map(|s| Some(s.is_some_and(|s| s < below))).collect();
    filter_record_batch(batch, &keep)
}

/// The smallest and largest `seq` of a data file, from its Delta statistics.
fn seq_range(file: &LogicalFileView) -> (Option<i64>, Option<i64>) {
    let Some(stats) = file.stats() else { return (None, None) };
    let Ok(stats) = serde_json::from_str::<serde_json::Value>(&stats) else { return (None, None) };
    let value = |side: &str| stats.get(side).and_then(|v| v.get("seq")).and_then(serde_json::Value::as_i64);
    (value("minValues"), value("maxValues"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use uuid::Uuid;

    use super::{RebuildPhases, runs_in_order, shard_of};

    /// Entity ids that differ only in their last digits (as the benchmark's and many real ones
    /// do) spread evenly over the shards.
    #[test]
    fn entities_spread_evenly_over_the_shards() {
        for n in [1, 2, 3, 4] {
            let mut counts = vec![0usize; n];
            for i in 0..12_000u128 {
                counts[shard_of(&Uuid::from_u128(i + 1).to_string(), n)] += 1;
            }
            assert!(counts.iter().all(|&c| c > 12_000 / n * 9 / 10), "{n} shards: {counts:?}");
        }
        let id = Uuid::now_v7().to_string();
        assert_eq!(shard_of(&id, 2), shard_of(&id.clone(), 2), "the same shard for the same id");
    }

    #[test]
    fn phases_print_in_seconds_with_the_precision_asked() {
        let ms = Duration::from_millis;
        let phases = RebuildPhases {
            archive: ms(1_500),
            read: ms(250),
            read_wait: ms(125),
            decode: ms(2_000),
            encode: ms(1),
            encode_wait: Duration::ZERO,
            commit: ms(40),
        };
        assert_eq!(
            format!("{phases:.2}"),
            "archive 1.50, log read 0.25 (decoder waited 0.12), decode 2.00, encode 0.00 (decoder waited 0.00)"
        );
        assert_eq!(
            phases.to_string(),
            "archive 1.500, log read 0.250 (decoder waited 0.125), decode 2.000, encode 0.001 (decoder waited 0.000)"
        );
    }

    #[test]
    fn runs_follow_the_sequence_and_keep_overlapping_files_together() {
        // (range, rows, name), out of order; b overlaps a, d overlaps c.
        let files = vec![
            (Some((301, 400)), 100, "d"),
            (Some((1, 100)), 100, "a"),
            (Some((250, 320)), 100, "c"),
            (Some((50, 150)), 100, "b"),
            (Some((401, 500)), 100, "e"),
        ];
        assert_eq!(runs_in_order(files.clone(), 100), vec![vec!["a", "b"], vec!["c", "d"], vec!["e"]]);
        assert_eq!(runs_in_order(files.clone(), 250), vec![vec!["a", "b", "c", "d"], vec!["e"]]);
        assert_eq!(runs_in_order(files, 1_000), vec![vec!["a", "b", "c", "d", "e"]]);
        // A file without statistics: one run of everything.
        let unknown = vec![(Some((1, 10)), 10, "a"), (None, 10, "b"), (Some((11, 20)), 10, "c")];
        assert_eq!(runs_in_order(unknown, 1), vec![vec!["a", "b", "c"]]);
    }
}
