//! Follows the entity event log into the [`EntityView`]: replays everything at start, then
//! applies each new event as it is appended, resuming after the last applied sequence whenever
//! the subscription breaks.

use std::time::Duration;

use futures::StreamExt;
use thinglake_infra::event_store::EventStore;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::entities::EntityView;

/// Starts following the log and returns once the view has caught up with everything that was
/// on the log when it was called.
pub async fn start(
    store: EventStore,
    view: EntityView,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> thinglake_infra::Result<()> {
    let target = store.last_sequence().await?;
    let (progress_tx, mut progress) = watch::channel(view.last_seq());
    tracker.spawn(follow(store, view.clone(), progress_tx, shutdown.clone()));
    while *progress.borrow_and_update() < target {
        tokio::select! {
            changed = progress.changed() => if changed.is_err() { break },
            () = shutdown.cancelled() => break,
        }
    }
    info!(seq = view.last_seq(), target, "entity read model caught up");
    Ok(())
}

async fn follow(store: EventStore, view: EntityView, progress: watch::Sender<u64>, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let from = view.last_seq() + 1;
        let stream = store.follow(from);
        futures::pin_mut!(stream);
        loop {
            let item = tokio::select! {
                item = stream.next() => item,
                () = shutdown.cancelled() => return,
            };
            match item {
                Some(Ok((seq, envelope))) => {
                    backoff = Duration::from_millis(100);
                    if let Err(e) = view.apply(seq, &envelope) {
                        error!(seq, error = %e, "event skipped by the entity read model");
                    }
                    view.mark_seen(seq);
                    progress.send_replace(seq);
                }
                Some(Err(thinglake_infra::Error::CorruptEvent { seq, reason })) => {
                    error!(seq, %reason, "corrupt event skipped by the entity read model");
                    view.mark_seen(seq);
                    progress.send_replace(seq);
                }
                Some(Err(e)) => {
                    warn!(error = %e, "entity log subscription failed; resubscribing");
                    break;
                }
                None => {
                    warn!("entity log subscription ended; resubscribing");
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
