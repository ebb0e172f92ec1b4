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

use async_nats::jetstream::consumer::DeliverPolicy;

pub use message::{Delivery, LogMessage};

/// Delivery from stream sequence `from_seq` on (inclusive; 0 or 1 mean from the start).
pub(crate) fn deliver_from(from_seq: u64) -> DeliverPolicy {
    if from_seq <= 1 { DeliverPolicy::All } else { DeliverPolicy::ByStartSequence { start_sequence: from_seq } }
}
