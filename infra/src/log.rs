//! Reading the JetStream log: every way Thinglake reads a stream lives here, and each reader
//! yields the same [`LogMessage`] (directly, or inside a consumer's [`Delivery`]).
//!
//! - [`ordered`]: an ordered consumer from a sequence, optionally filtered by subject: loading an
//!   entity, following a stream live into a read model, priming a lake projection's state.
//! - [`pull`]: a pull consumer at an explicit position: the lake runner's durable consumer
//!   (acknowledged after each commit), a rebuild's ephemeral one, the latest-values follower's
//!   gap reader.
//! - [`direct_get`]: batched direct gets of a contiguous range (a rebuild's fast path; no
//!   consumer at all).
//! - [`get`]: single messages by sequence or subject (an append's retry check, an entity's
//!   position, the retention's search by time).
//! - [`message`]: [`LogMessage`] and [`Delivery`].
//!
//! What a message means (an event envelope, a telemetry message) is the business of its readers:
//! [`crate::event_store`], [`crate::telemetry_store`] and the lake projections.

pub mod direct_get;
pub mod get;
pub mod message;
pub mod ordered;
pub mod pull;

use std::time::Duration;

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::stream::Stream;
use tracing::debug;

pub use message::{Delivery, LogMessage};

/// Delivery from stream sequence `from_seq` on (inclusive; 0 or 1 mean from the start).
pub(crate) fn deliver_from(from_seq: u64) -> DeliverPolicy {
    if from_seq <= 1 { DeliverPolicy::All } else { DeliverPolicy::ByStartSequence { start_sequence: from_seq } }
}

/// How long closing a reader waits for the server to delete its consumer.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Deletes a closed reader's consumer rather than leaving it to expire, so frequent short reads
/// do not pile consumers up on the server. Best effort: one the server cannot delete in time
/// expires anyway.
pub(crate) async fn delete_consumer(stream: &Stream<()>, consumer: &str) {
    match tokio::time::timeout(CLOSE_TIMEOUT, stream.delete_consumer(consumer)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => debug!(%consumer, error = %e, "a reader's consumer was not deleted; it expires"),
        Err(_) => debug!(%consumer, "a reader's consumer was not deleted in time; it expires"),
    }
}
