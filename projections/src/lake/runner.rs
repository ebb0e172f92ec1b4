//! The projection runner: a durable JetStream pull consumer ([`thinglake_infra::log::pull`])
//! feeding one Delta table, exactly once.
//!
//! - Messages are taken in order; a message whose stream sequence is at or below the last one
//!   taken is a redelivery and is skipped. Consumer sequences must follow each other: a hole
//!   means a delivery was lost in transit (a NATS restart, a broken connection), and the runner
//!   then commits what it has and recreates the consumer right after it.
//! - Chunks of messages are decoded into Arrow batches on a blocking thread and shown in the
//!   hot tail at once. A batch is committed when it holds `batch_rows` rows or is
//!   `batch_interval` old: Parquet files plus a `txn` action (app id = projection name,
//!   version = last stream sequence covered) in one Delta commit. Then the last message is
//!   acked (the consumer acks all below it too) and the hot tail is trimmed.
//! - At start the runner reads the `txn` version back, rebuilds the projection's state from the
//!   log up to it if the projection keeps any, and recreates the durable consumer right after
//!   it. A crash anywhere loses nothing (uncommitted messages are delivered again) and writes
//!   nothing twice (committed ones are skipped).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use deltalake_core::arrow::array::RecordBatch;
use deltalake_core::arrow::compute::concat_batches;
use deltalake_core::kernel::Add;
use thinglake_infra::log::Delivery;
use thinglake_infra::log::ordered::OrderedReader;
use thinglake_infra::log::pull::{PullOptions, PullReader};
use thinglake_infra::subjects::Subjects;
use thinglake_lake::table::{self, RowBuilder, TableSpec};
use thinglake_lake::unwritable::{Unwritable, write_setting_aside};
use thinglake_lake::writer::TableWriter;
use thinglake_lake::HotTail;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, instrument, warn};

use crate::error::{ProjectionError, Result};
use crate::lake::options::LakeOptions;
use crate::lake::projection::{LogMessage, Projection, Source};

/// Messages decoded together on a blocking thread.
const CHUNK_MAX: usize = 2_000;
/// How long a partial chunk waits for more messages before it is decoded (hot-tail latency).
const CHUNK_WAIT: Duration = Duration::from_millis(20);
/// A batch with no rows (only messages other projections care about) still records the
/// position this often, so that a restart does not re-read them.
const IDLE_COMMIT: Duration = Duration::from_secs(60);
/// Longer than any commit: a message not acked by then is delivered again (and skipped).
const ACK_WAIT: Duration = Duration::from_secs(300);
/// The most rows held in memory while commits fail, as a multiple of `batch_rows`.
const BACKLOG_FACTOR: usize = 4;
/// The longest dead-letter payload kept, in bytes.
const DEAD_LETTER_PAYLOAD_MAX: usize = 64 * 1024;

/// Progress of one runner, readable from other tasks.
#[derive(Debug, Clone, Default)]
pub struct RunnerStatus {
    inner: Arc<StatusInner>,
}

#[derive(Debug, Default)]
struct StatusInner {
    committed_seq: AtomicU64,
    seen_seq: AtomicU64,
    commits: AtomicU64,
    rows_committed: AtomicU64,
    dead_letters: AtomicU64,
    resubscribes: AtomicU64,
}

impl RunnerStatus {
    /// The last stream sequence committed to the table.
    pub fn committed_seq(&self) -> u64 {
        self.inner.committed_seq.load(Ordering::Acquire)
    }
    /// The last stream sequence decoded into the hot tail.
    pub fn seen_seq(&self) -> u64 {
        self.inner.seen_seq.load(Ordering::Acquire)
    }
    pub fn commits(&self) -> u64 {
        self.inner.commits.load(Ordering::Relaxed)
    }
    pub fn rows_committed(&self) -> u64 {
        self.inner.rows_committed.load(Ordering::Relaxed)
    }
    pub fn dead_letters(&self) -> u64 {
        self.inner.dead_letters.load(Ordering::Relaxed)
    }
    /// How often the consumer was recreated after a lost delivery or a broken subscription.
    pub fn resubscribes(&self) -> u64 {
        self.inner.resubscribes.load(Ordering::Relaxed)
    }
}

/// One projection writing one table.
pub struct ProjectionRunner {
    name: &'static str,
    spec: TableSpec,
    projection: Option<Box<dyn Projection>>,
    js: jetstream::Context,
    subjects: Subjects,
    options: LakeOptions,
    stream_name: String,
    table: TableWriter,
    dead: TableWriter,
    dead_committed: u64,
    tail: HotTail,
    status: RunnerStatus,
    /// Last sequence committed to the table.
    committed: u64,
    /// Last sequence decoded into `pending`.
    processed: u64,
    /// Last sequence taken off the consumer (in `chunk` or earlier).
    accepted: u64,
    last_consumer_seq: Option<u64>,
    chunk: Vec<LogMessage>,
    chunk_started: Option<Instant>,
    chunk_message: Option<Delivery>,
    processed_message: Option<Delivery>,
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    /// Files of `pending` written by a commit attempt that failed, reused by the retry.
    staged: Option<(u64, Vec<Add>)>,
    pending_dead: Vec<RecordBatch>,
    pending_dead_rows: usize,
    batch_started: Option<Instant>,
    last_commit: Instant,
}

impl std::fmt::Debug for ProjectionRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectionRunner").field("name", &self.name).field("committed", &self.committed).finish()
    }
}

impl ProjectionRunner {
    /// Opens (or creates) the projection's table and the dead-letter table, reads the committed
    /// position and rebuilds the projection's state up to it.
    pub async fn open(
        js: jetstream::Context,
        subjects: Subjects,
        mut projection: Box<dyn Projection>,
        options: LakeOptions,
    ) -> Result<Self> {
        let name = projection.name();
        let spec = projection.spec();
        let table = TableWriter::new(name, options.location.open_or_create(&spec).await?)?;
        let committed = table.committed_seq(name).await?;
        let dead_spec = table::dead_letters();
        let dead = TableWriter::new(dead_spec.name, options.location.open_or_create(&dead_spec).await?)?;
        let dead_committed = dead.committed_seq(name).await?;
        let stream_name = projection.source().stream(&subjects);
        if projection.needs_priming() && committed > 0 {
            prime(&js, &subjects, &stream_name, projection.as_mut(), committed).await?;
        }
        info!(projection = name, committed, "lake projection opened");
        let status = RunnerStatus::default();
        status.inner.committed_seq.store(committed, Ordering::Release);
        status.inner.seen_seq.store(committed, Ordering::Release);
        Ok(Self {
            name,
            tail: HotTail::new(spec.schema.clone()),
            spec,
            projection: Some(projection),
            js,
            subjects,
            options,
            stream_name,
            table,
            dead,
            dead_committed,
            status,
            committed,
            processed: committed,
            accepted: committed,
            last_consumer_seq: None,
            chunk: Vec::new(),
            chunk_started: None,
            chunk_message: None,
            processed_message: None,
            pending: Vec::new(),
            pending_rows: 0,
            staged: None,
            pending_dead: Vec::new(),
            pending_dead_rows: 0,
            batch_started: None,
            last_commit: Instant::now(),
        })
    }

    pub fn hot_tail(&self) -> HotTail {
        self.tail.clone()
    }

    pub fn status(&self) -> RunnerStatus {
        self.status.clone()
    }

    pub fn committed_seq(&self) -> u64 {
        self.committed
    }

    /// Runs until `shutdown`, then decodes and commits what it holds and returns.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.subscribe().await {
                Ok(messages) => {
                    backoff = Duration::from_millis(100);
                    if self.consume(messages, &shutdown).await.is_break() {
                        break;
                    }
                }
                Err(e) => warn!(projection = self.name, error = %e, "lake projection cannot subscribe; retrying"),
            }
            // Whatever was taken in order is good: commit it before resubscribing after it.
            if !self.commit_until_done(&shutdown).await {
                break;
            }
            self.status.inner.resubscribes.fetch_add(1, Ordering::Relaxed);
            tokio::select! {
                () = tokio::time::sleep(backoff) => {},
                () = shutdown.cancelled() => break,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        self.finish().await;
    }

    /// Consumes until the subscription breaks (continue: resubscribe) or shutdown (break).
    async fn consume(&mut self, mut messages: PullReader, shutdown: &CancellationToken) -> std::ops::ControlFlow<()> {
        use std::ops::ControlFlow::{Break, Continue};
        self.last_consumer_seq = None;
        let mut tick = tokio::time::interval(CHUNK_WAIT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return Break(()),
                item = messages.next() => match item {
                    Some(Ok(message)) => {
                        if !self.take(message) {
                            return Continue(());
                        }
                        if self.chunk.len() >= CHUNK_MAX && self.process_chunk().await.is_err() {
                            return Break(());
                        }
                    }
                    Some(Err(e)) => {
                        warn!(projection = self.name, error = %e, "lake projection subscription failed");
                        return Continue(());
                    }
                    None => {
                        warn!(projection = self.name, "lake projection subscription ended");
                        return Continue(());
                    }
                },
                _ = tick.tick() => {
                    if self.chunk_started.is_some_and(|t| t.elapsed() >= CHUNK_WAIT) && self.process_chunk().await.is_err() {
                        return Break(());
                    }
                }
            }
            if self.commit_due()
                && let Err(e) = self.commit().await
            {
                warn!(projection = self.name, error = %e, "lake commit failed; will retry");
                if self.pending_rows > BACKLOG_FACTOR * self.options.batch_rows.max(1) {
                    return Continue(());
                }
            }
        }
    }

    /// Takes a message in order. `false`: a delivery was lost; resubscribe.
    fn take(&mut self, message: Delivery) -> bool {
        let (seq, consumer_seq) = (message.seq, message.consumer_seq);
        if let Some(last) = self.last_consumer_seq
            && consumer_seq != last + 1
        {
            warn!(projection = self.name, last, consumer_seq, "lost a delivery; resubscribing after the last message taken");
            return false;
        }
        self.last_consumer_seq = Some(consumer_seq);
        if seq <= self.accepted {
            debug!(projection = self.name, seq, "skipping a message already taken");
            return true;
        }
        self.chunk.push(message.message());
        self.chunk_started.get_or_insert_with(Instant::now);
        self.chunk_message = Some(message);
        self.accepted = seq;
        true
    }

    /// Decodes the chunk on a blocking thread into the pending batch and the hot tail.
    async fn process_chunk(&mut self) -> Result<()> {
        self.chunk_started = None;
        if self.chunk.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::take(&mut self.chunk);
        let last_seq = chunk.last().map_or(self.processed, |m| m.seq);
        let Some(mut projection) = self.projection.take() else {
            return Err(ProjectionError::ProjectionLost { table: self.name.to_string() });
        };
        let schema = self.spec.schema.clone();
        let merge = self.spec.merge;
        let dead_after = self.dead_committed;
        let decoded = tokio::task::spawn_blocking(move || {
            let mut rows = RowBuilder::new(schema);
            let mut dead = RowBuilder::new(table::dead_letters().schema);
            let name = projection.name();
            let now = now_ms();
            for message in &chunk {
                if let Err(reason) = projection.decode(message, &mut rows)
                    && message.seq > dead_after
                {
                    let payload = String::from_utf8_lossy(&message.payload[..message.payload.len().min(DEAD_LETTER_PAYLOAD_MAX)]);
                    let seq = i64::try_from(message.seq).unwrap_or(i64::MAX);
                    push_dead_letter(&mut dead, name, seq, &message.subject, &reason.to_string(), &payload, now);
                }
            }
            // A table of partial aggregates keeps one row per group of the chunk.
            let rows = rows.finish().and_then(|rows| match merge {
                Some(merge) => concat_batches(&rows.schema(), &merge(&[rows])?),
                None => Ok(rows),
            });
            (projection, rows, dead.finish())
        })
        .await;
        let (projection, rows, dead) = match decoded {
            Ok(decoded) => decoded,
            Err(e) => {
                error!(projection = self.name, error = %e, "decoding a chunk panicked; the projection stops");
                return Err(ProjectionError::task(self.name)(e));
            }
        };
        self.projection = Some(projection);
        let rows = rows.map_err(ProjectionError::arrow(self.name))?;
        let dead = dead.map_err(ProjectionError::arrow(table::dead_letters().name))?;
        if dead.num_rows() > 0 {
            warn!(projection = self.name, rows = dead.num_rows(), last_seq, "unreadable log messages sent to dead letters");
            self.pending_dead_rows += dead.num_rows();
            self.pending_dead.push(dead);
        }
        if rows.num_rows() > 0 {
            self.tail.push(last_seq, rows.clone());
            self.pending_rows += rows.num_rows();
            self.pending.push(rows);
        }
        self.batch_started.get_or_insert_with(Instant::now);
        self.processed = last_seq;
        self.processed_message = self.chunk_message.take();
        self.status.inner.seen_seq.store(last_seq, Ordering::Release);
        Ok(())
    }

    fn commit_due(&self) -> bool {
        if self.processed <= self.committed {
            return false;
        }
        let has_rows = self.pending_rows + self.pending_dead_rows > 0;
        let age = self.batch_started.map_or(Duration::ZERO, |t| t.elapsed());
        self.pending_rows >= self.options.batch_rows
            || (has_rows && age >= self.options.batch_interval)
            || (!has_rows && self.last_commit.elapsed() >= IDLE_COMMIT)
    }

    /// Commits the pending rows (dead letters first) with the last processed sequence, acks the
    /// messages and trims the hot tail.
    #[instrument(skip(self), fields(projection = self.name, upto = self.processed))]
    async fn commit(&mut self) -> Result<()> {
        let upto = self.processed;
        if upto <= self.committed {
            return Ok(());
        }
        let started = Instant::now();
        let adds = match self.staged.take() {
            Some((staged_upto, adds)) if staged_upto == upto => {
                // A retry after a failed commit: if another writer of this projection (a
                // second node) committed these sequences meanwhile, they must not be added twice.
                if self.table.committed_seq(self.name).await? >= upto {
                    warn!(projection = self.name, upto, "sequences committed by another writer; dropping the batch");
                    self.committed = upto;
                    self.pending.clear();
                    self.pending_rows = 0;
                    self.batch_started = None;
                    self.tail.trim(upto);
                    self.status.inner.committed_seq.store(upto, Ordering::Release);
                    return Ok(());
                }
                adds
            }
            _ => {
                let batches = match self.spec.merge {
                    // Chunks of one batch hold partial rows of the same groups: one row each.
                    Some(merge) if self.pending.len() > 1 => {
                        let pending = self.pending.clone();
                        tokio::task::spawn_blocking(move || merge(&pending))
                            .await
                            .map_err(ProjectionError::task(self.name))?
                            .map_err(ProjectionError::arrow(self.name))?
                    }
                    _ => self.pending.clone(),
                };
                let (adds, unwritable) = write_setting_aside(&self.table, batches).await?;
                self.set_aside(&unwritable)?;
                adds
            }
        };
        // Dead letters first: a crash between the two commits leaves them committed, and the
        // redelivered messages are not dead-lettered twice.
        if !self.pending_dead.is_empty() && upto > self.dead_committed {
            if let Err(e) = self.dead.append(self.pending_dead.clone(), self.name, upto).await {
                self.staged = Some((upto, adds));
                return Err(e.into());
            }
            self.dead_committed = upto;
            self.status.inner.dead_letters.fetch_add(self.pending_dead_rows as u64, Ordering::Relaxed);
            self.pending_dead.clear();
            self.pending_dead_rows = 0;
        }
        let version = match self.table.commit_append(adds.clone(), self.name, upto).await {
            Ok(version) => version,
            Err(e) => {
                self.staged = Some((upto, adds));
                return Err(e.into());
            }
        };
        let rows = self.pending_rows;
        self.committed = upto;
        self.pending.clear();
        self.pending_rows = 0;
        self.batch_started = None;
        self.last_commit = Instant::now();
        self.tail.trim(upto);
        self.status.inner.committed_seq.store(upto, Ordering::Release);
        self.status.inner.commits.fetch_add(1, Ordering::Relaxed);
        self.status.inner.rows_committed.fetch_add(rows as u64, Ordering::Relaxed);
        debug!(version, rows, elapsed_ms = started.elapsed().as_millis() as u64, "lake batch committed");
        if let Some(message) = self.processed_message.take()
            && let Err(e) = message.ack().await
        {
            // Harmless: the next start skips what is committed, whatever the consumer says.
            debug!(error = %e, "ack after commit failed");
        }
        Ok(())
    }

    /// Adds rows the table could not take to the pending dead letters (unless an earlier run
    /// already committed the dead letters of their sequence).
    fn set_aside(&mut self, unwritable: &[Unwritable]) -> Result<()> {
        let fresh: Vec<&Unwritable> =
            unwritable.iter().filter(|u| u64::try_from(u.seq).map_or(true, |seq| seq > self.dead_committed)).collect();
        if fresh.is_empty() {
            return Ok(());
        }
        let mut dead = RowBuilder::new(table::dead_letters().schema);
        let now = now_ms();
        for u in &fresh {
            let row = &u.row[..floor_char_boundary(&u.row, DEAD_LETTER_PAYLOAD_MAX)];
            push_dead_letter(&mut dead, self.name, u.seq, "", &format!("row not writable: {}", u.reason), row, now);
        }
        let dead = dead.finish().map_err(ProjectionError::arrow(table::dead_letters().name))?;
        error!(projection = self.name, rows = dead.num_rows(), "rows the table cannot take sent to dead letters");
        self.pending_dead_rows += dead.num_rows();
        self.pending_dead.push(dead);
        Ok(())
    }

    /// Decodes and commits everything taken, retrying until it succeeds or shutdown comes.
    async fn commit_until_done(&mut self, shutdown: &CancellationToken) -> bool {
        let mut backoff = Duration::from_millis(100);
        loop {
            let done = match self.process_chunk().await {
                Ok(()) => self.commit().await,
                Err(e) => Err(e),
            };
            match done {
                Ok(()) => return true,
                Err(e) => warn!(projection = self.name, error = %e, "lake commit failed; retrying"),
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {},
                () = shutdown.cancelled() => return false,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// On shutdown: decode and commit what was taken (a few attempts; what is left is
    /// delivered again at the next start).
    async fn finish(mut self) {
        for _ in 0..3 {
            let done = match self.process_chunk().await {
                Ok(()) => self.commit().await,
                Err(e) => Err(e),
            };
            match done {
                Ok(()) => {
                    info!(projection = self.name, committed = self.committed, "lake projection stopped");
                    return;
                }
                Err(e) => warn!(projection = self.name, error = %e, "final lake commit failed"),
            }
        }
        warn!(projection = self.name, committed = self.committed, "lake projection stopped with uncommitted rows");
    }

    /// Recreates the durable consumer right after the last message taken.
    async fn subscribe(&mut self) -> Result<PullReader> {
        let stream = self.js.get_stream(&self.stream_name).await.map_err(ProjectionError::nats(self.name))?;
        let first_seq = stream.cached_info().state.first_sequence;
        if let Err(e) = crate::lake::retention::check_stream_limits(&stream.cached_info().config) {
            error!(projection = self.name, error = %e, "the log may delete messages before the lake commits them");
        }
        let start = self.accepted + 1;
        if first_seq > start && stream.cached_info().state.messages > 0 {
            error!(
                projection = self.name,
                from = start,
                to = first_seq - 1,
                "the log was trimmed before these sequences reached the lake"
            );
        }
        // The consumer's own position may be behind or ahead of the table's: the table decides.
        let options = PullOptions {
            durable: Some(self.subjects.lake_consumer(self.name)),
            description: Some(format!("lake projection {}", self.name)),
            from_seq: start,
            filter_subject: self.projection.as_ref().and_then(|p| p.filter_subject(&self.subjects)),
            ack_wait: ACK_WAIT,
            batch: CHUNK_MAX,
            expires: Some(Duration::from_secs(30)),
            ..PullOptions::default()
        };
        let messages = PullReader::open(&self.js, &self.stream_name, options, self.stream_name.clone())
            .await
            .map_err(ProjectionError::log(self.name))?;
        info!(projection = self.name, start, "lake projection consuming");
        Ok(messages)
    }
}

/// Replays the log up to `upto` into the projection's state (no rows).
async fn prime(
    js: &jetstream::Context,
    subjects: &Subjects,
    stream_name: &str,
    projection: &mut dyn Projection,
    upto: u64,
) -> Result<()> {
    let name = projection.name();
    let stream = js.get_stream(stream_name).await.map_err(ProjectionError::nats(name))?;
    let last = stream.cached_info().state.last_sequence.min(upto);
    if last == 0 {
        return Ok(());
    }
    let mut reader = OrderedReader::open(js, stream_name, 1, projection.filter_subject(subjects), stream_name.to_string())
        .await
        .map_err(ProjectionError::log(name))?;
    let started = Instant::now();
    let mut count = 0u64;
    while let Some(message) = reader.next().await {
        let message = message.map_err(ProjectionError::log(name))?;
        if message.seq > upto {
            break;
        }
        projection.prime(&message.message());
        count += 1;
        if message.seq >= last || message.pending == 0 {
            break;
        }
    }
    reader.close().await;
    info!(projection = name, messages = count, elapsed_ms = started.elapsed().as_millis() as u64, "lake projection state rebuilt from the log");
    Ok(())
}

/// One row of the `dead_letters` table.
fn push_dead_letter(dead: &mut RowBuilder, projection: &str, seq: i64, subject: &str, reason: &str, payload: &str, now: i64) {
    dead.str(Some(projection)).i64(Some(seq)).str(Some(subject)).str(Some(reason)).str(Some(payload)).i64(Some(now));
    dead.end_row();
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn floor_char_boundary(text: &str, max: usize) -> usize {
    (0..=max.min(text.len())).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0)
}

/// The time source used for dead-letter rows.
fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The source stream of a projection, for callers outside the runner.
pub fn source_stream(subjects: &Subjects, source: Source) -> String {
    source.stream(subjects)
}
