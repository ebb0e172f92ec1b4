//! Following a log into an in-memory read model: replay everything at start, then apply each
//! new item as it is appended, resuming after the last applied sequence whenever the
//! subscription breaks. The entity view ([`EntityView`]) follows the entity events this way; the
//! latest values follow the telemetry stream with a follower of their own that reads only what
//! this node did not publish itself (`crate::latest`).

use std::future::Future;
use std::time::Duration;

use futures::{Stream, StreamExt};
use thinglake_domain::EventEnvelope;
use thinglake_infra::event_store::EventStore;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::entities::EntityView;

/// A log that can be followed from a stream sequence.
pub trait Log: Clone + Send + Sync + 'static {
    type Item: Send + 'static;

    /// The stream's last sequence now.
    fn last_sequence(&self) -> impl Future<Output = thinglake_infra::Result<u64>> + Send;

    /// Every item from `from_seq` on, live.
    fn follow(&self, from_seq: u64) -> impl Stream<Item = thinglake_infra::Result<(u64, Self::Item)>> + Send + 'static;
}

/// A read model fed by one log.
pub trait ReadModel<T>: Clone + Send + Sync + 'static {
    /// What the model is, for the logs.
    const NAME: &'static str;

    /// The highest sequence the model has processed.
    fn last_seq(&self) -> u64;

    /// Takes the item at `seq` and records `seq` as processed.
    fn take(&self, seq: u64, item: T);

    /// Records `seq` as processed without an item (a corrupt message, skipped).
    fn skip(&self, seq: u64);
}

impl Log for EventStore {
    type Item = EventEnvelope;

    fn last_sequence(&self) -> impl Future<Output = thinglake_infra::Result<u64>> + Send {
        EventStore::last_sequence(self)
    }

    fn follow(&self, from_seq: u64) -> impl Stream<Item = thinglake_infra::Result<(u64, EventEnvelope)>> + Send + 'static {
        EventStore::follow(self, from_seq)
    }
}

impl ReadModel<EventEnvelope> for EntityView {
    const NAME: &'static str = "entity read model";

    fn last_seq(&self) -> u64 {
        EntityView::last_seq(self)
    }

    fn take(&self, seq: u64, envelope: EventEnvelope) {
        if let Err(e) = self.apply(seq, &envelope) {
            error!(seq, error = %e, "event skipped by the entity read model");
        }
        self.mark_seen(seq);
    }

    fn skip(&self, seq: u64) {
        self.mark_seen(seq);
    }
}

/// Starts following `log` into `model` and returns once the model has caught up with
/// everything that was on the log when it was called.
pub async fn start<L: Log, M: ReadModel<L::Item>>(
    log: L,
    model: M,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> thinglake_infra::Result<()> {
    let target = log.last_sequence().await?;
    let (progress_tx, mut progress) = watch::channel(model.last_seq());
    tracker.spawn(follow(log, model.clone(), progress_tx, shutdown.clone()));
    while *progress.borrow_and_update() < target {
        tokio::select! {
            changed = progress.changed() => if changed.is_err() { break },
            () = shutdown.cancelled() => break,
        }
    }
    info!(model = M::NAME, seq = model.last_seq(), target, "read model caught up");
    Ok(())
}

async fn follow<L: Log, M: ReadModel<L::Item>>(log: L, model: M, progress: watch::Sender<u64>, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let stream = log.follow(model.last_seq() + 1);
        futures::pin_mut!(stream);
        loop {
            let item = tokio::select! {
                item = stream.next() => item,
                () = shutdown.cancelled() => return,
            };
            match item {
                Some(Ok((seq, item))) => {
                    backoff = Duration::from_millis(100);
                    model.take(seq, item);
                    progress.send_replace(seq);
                }
                Some(Err(thinglake_infra::Error::CorruptEvent { seq, source })) => {
                    error!(model = M::NAME, seq, reason = %source, "corrupt message skipped");
                    model.skip(seq);
                    progress.send_replace(seq);
                }
                Some(Err(e)) => {
                    warn!(model = M::NAME, error = %e, "log subscription failed; resubscribing");
                    break;
                }
                None => {
                    warn!(model = M::NAME, "log subscription ended; resubscribing");
                    break;
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {},
            () = shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
