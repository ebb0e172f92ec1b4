//! The latest values' follower of the telemetry stream. It keeps a watermark (the model's
//! `last_seq`) and advances it in sequence order:
//!
//! - over this node's own acknowledged messages from memory ([`LatestValues::apply_own`] keeps
//!   them): pushed to subscribers, not read from the stream;
//! - over a **gap** (a sequence on the stream that is not in memory: another writer's message,
//!   or an own publish whose acknowledgement was lost or is still on its way) by reading the
//!   stream from the gap on ([`TelemetryStore::read_from`]) until it reaches the stream's end
//!   or a run of messages it already holds, then deleting that consumer again.
//!
//! What is on the stream is known from the own acknowledgements (every sequence below the
//! highest one is stored) and from a poll of the stream's last sequence every
//! [`POLL_INTERVAL`] (another writer's message past the last own one). A sequence missing from
//! memory is read at once when no own publish is in flight; otherwise it may be an own publish
//! whose acknowledgement is about to be applied, and it is read once it has been missing for
//! [`ACK_GRACE`]. Reading an own message is harmless (applying is idempotent, ordered per key by
//! sequence), only slower. See docs/architecture.md, "Latest values".

use std::sync::Arc;
use std::time::Duration;

use thinglake_infra::log::Delivery;
use thinglake_infra::log::pull::PullReader;
use thinglake_infra::telemetry_store::{self, TelemetryStore};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use super::LatestValues;

/// How often the stream's last sequence is asked for: bounds how long another writer's message
/// past this node's last own one waits to be read.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// How long a sequence may be missing from memory while own publishes are in flight before it
/// is read from the stream: an own acknowledgement being applied takes far less.
const ACK_GRACE: Duration = Duration::from_millis(50);

/// A reader stops after this many messages in a row that were in memory already.
const OWN_RUN_TO_STOP_READING: usize = 64;

/// Messages a reader asks for at once: the gap's length, within these bounds.
const MIN_BATCH: u64 = 16;
const MAX_BATCH: u64 = 500;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Starts following the telemetry stream into `latest` and returns once it has caught up with
/// everything that was on the stream when it was called.
pub(super) async fn start(
    store: TelemetryStore,
    latest: LatestValues,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> thinglake_infra::Result<()> {
    let target = store.last_sequence().await?;
    latest.mark_followed();
    let (progress_tx, mut progress) = watch::channel(latest.last_seq());
    let follower = Follower {
        store,
        latest: latest.clone(),
        progress: progress_tx,
        shutdown: shutdown.clone(),
        known_end: target,
        missing_since: None,
        next_poll: Instant::now() + POLL_INTERVAL,
        backoff: FIRST_BACKOFF,
        run: Vec::new(),
    };
    tracker.spawn(follower.run());
    while *progress.borrow_and_update() < target {
        tokio::select! {
            changed = progress.changed() => if changed.is_err() { break },
            () = shutdown.cancelled() => break,
        }
    }
    info!(model = "latest values", seq = latest.last_seq(), target, "read model caught up");
    Ok(())
}

struct Follower {
    store: TelemetryStore,
    latest: LatestValues,
    progress: watch::Sender<u64>,
    shutdown: CancellationToken,
    /// Every sequence up to this one is on the stream.
    known_end: u64,
    /// The sequence above the watermark found missing from memory, and since when.
    missing_since: Option<(u64, Instant)>,
    next_poll: Instant,
    backoff: Duration,
    /// Reused buffer of an own run.
    run: Vec<(u64, Arc<thinglake_domain::telemetry::TelemetryMessage>)>,
}

impl Follower {
    async fn run(mut self) {
        while !self.shutdown.is_cancelled() {
            self.pass_own();
            let next = self.latest.last_seq() + 1;
            let (highest_own, _) = self.latest.own_gap(next, 0);
            self.known_end = self.known_end.max(highest_own);
            let wake_at = if next <= self.known_end {
                let since = match self.missing_since {
                    Some((seq, since)) if seq == next => since,
                    _ => self.missing_since.insert((next, Instant::now())).1,
                };
                if self.latest.in_flight() == 0 || since.elapsed() >= ACK_GRACE {
                    self.missing_since = None;
                    if !self.read_gap(next).await {
                        return;
                    }
                    continue;
                }
                since + ACK_GRACE
            } else if Instant::now() >= self.next_poll {
                if !self.poll().await {
                    return;
                }
                continue;
            } else {
                self.next_poll
            };
            // An acknowledgement applied since the run above left a permit: no wake is lost.
            tokio::select! {
                () = self.latest.inner.own_acked.notified() => {}
                () = tokio::time::sleep_until(wake_at) => {}
                () = self.shutdown.cancelled() => return,
            }
        }
    }

    /// Passes over the own messages that follow the watermark, from memory.
    fn pass_own(&mut self) {
        let from = self.latest.last_seq() + 1;
        self.latest.take_own_run(from, &mut self.run);
        let Some(&(last, _)) = self.run.last() else { return };
        for (seq, message) in self.run.drain(..) {
            self.latest.deliver_own(seq, &message);
        }
        self.progress.send_replace(last);
    }

    /// Asks for the stream's last sequence. Returns false on shutdown.
    async fn poll(&mut self) -> bool {
        let last = tokio::select! {
            last = self.store.last_sequence() => last,
            () = self.shutdown.cancelled() => return false,
        };
        match last {
            Ok(last) => {
                self.known_end = self.known_end.max(last);
                self.backoff = FIRST_BACKOFF;
                self.next_poll = Instant::now() + POLL_INTERVAL;
            }
            Err(e) => {
                warn!(error = %e, retry_in = ?self.backoff, "latest values: cannot read the telemetry stream's last sequence");
                self.next_poll = Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            }
        }
        true
    }

    /// Reads the stream from `from` (missing from memory) until it reaches the stream's end or a
    /// run of messages held in memory. Returns false on shutdown.
    async fn read_gap(&mut self, from: u64) -> bool {
        let (_, gap) = self.latest.own_gap(from, MAX_BATCH);
        let opened = tokio::select! {
            opened = self.store.read_from(from, gap.clamp(MIN_BATCH, MAX_BATCH) as usize) => opened,
            () = self.shutdown.cancelled() => return false,
        };
        let mut reader = match opened {
            Ok(reader) => reader,
            Err(e) => {
                warn!(error = %e, from, retry_in = ?self.backoff, "latest values: cannot read the telemetry stream");
                return self.back_off().await;
            }
        };
        self.latest.inner.stream_reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        debug!(from, gap, "latest values: reading a gap of the telemetry stream");
        let mut own_run = 0;
        loop {
            let item = tokio::select! {
                item = reader.next_in_order() => item,
                () = self.shutdown.cancelled() => return false,
            };
            match item {
                Some(Ok(stored)) => {
                    self.backoff = FIRST_BACKOFF;
                    if self.take(stored) {
                        own_run += 1;
                    } else {
                        own_run = 0;
                    }
                    let at_end = self.latest.last_seq() >= self.known_end;
                    if at_end || own_run >= OWN_RUN_TO_STOP_READING {
                        break;
                    }
                }
                Some(Err(e)) => {
                    warn!(error = %e, retry_in = ?self.backoff, "latest values: reading the telemetry stream failed");
                    return self.close_and_back_off(reader).await;
                }
                None => {
                    warn!(retry_in = ?self.backoff, "latest values: reading the telemetry stream ended");
                    return self.close_and_back_off(reader).await;
                }
            }
        }
        reader.close().await;
        true
    }

    /// Takes one stored message past the watermark: from memory when it is an own one (returns
    /// true), else decoded and applied.
    fn take(&mut self, stored: Delivery) -> bool {
        let watermark = self.latest.last_seq();
        if stored.seq <= watermark {
            return false;
        }
        // What the stream holds after this message when it was delivered.
        self.known_end = self.known_end.max(stored.seq + stored.pending);
        if stored.seq > watermark + 1 {
            // The sequences in between are not on the stream (trimmed): nothing to pass.
            debug!(from = watermark + 1, to = stored.seq - 1, "latest values: sequences not on the stream");
        }
        let own = match self.latest.take_own(stored.seq) {
            Some(message) => {
                self.latest.deliver_own(stored.seq, &message);
                true
            }
            None => {
                self.latest.inner.messages_read.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                match telemetry_store::decode(stored.seq, stored.payload()) {
                    Ok(message) => self.latest.deliver_read(stored.seq, &Arc::new(message)),
                    Err(e) => {
                        error!(model = "latest values", seq = stored.seq, error = %e, "corrupt message skipped");
                        self.latest.mark_seen(stored.seq);
                    }
                }
                false
            }
        };
        self.progress.send_replace(stored.seq);
        own
    }

    async fn close_and_back_off(&mut self, reader: PullReader) -> bool {
        reader.close().await;
        self.back_off().await
    }

    /// Waits before trying again; false on shutdown.
    async fn back_off(&mut self) -> bool {
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        tokio::select! {
            () = tokio::time::sleep(wait) => true,
            () = self.shutdown.cancelled() => false,
        }
    }
}
