//! The telemetry stream: publishing [`TelemetryMessage`]s and following them.
//!
//! One message per device publish (or REST save, or lifecycle change) goes to
//! `<prefix>.tel.<tenant>.<entity_id>` ([`Subjects::telemetry`]) with `Nats-Msg-Id` = the
//! message id, so a retried publish within the duplicate window is stored once. A publish returns
//! only after JetStream's acknowledgement (or fails after the publish timeout): an acknowledged
//! point is on the log, which is what lets the transports acknowledge the device.
//!
//! [`TelemetryStore::follow`] replays the stream from a sequence and then follows it live;
//! [`TelemetryStore::read_from`] reads a stretch of it undecoded (both through [`crate::log`]),
//! for the latest-values follower, which reads only what its node did not publish itself.
//! [`TelemetryLog`] is the trait the platform publishes through. See
//! `docs/decisions/0005-telemetry-stream.md` and `0012-latest-values-follower-reads-only-gaps.md`.

use std::time::Duration;

use async_nats::Subject;
use async_nats::jetstream::Context;
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use futures::Stream;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use thinglake_domain::telemetry::TelemetryMessage;

use crate::error::{BoxError, Corruption, Error, Result};
use crate::log::get;
use crate::log::ordered;
use crate::log::pull::{PullOptions, PullReader};
use crate::subjects::Subjects;

/// How long a publish waits for JetStream's acknowledgement by default.
pub const DEFAULT_PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// Encoded size of a message's fields besides its points, and of one point, roughly: the
/// encoding buffer's first size.
const ENCODED_HEAD_BYTES: usize = 384;
const ENCODED_POINT_BYTES: usize = 32;

/// The telemetry log as the platform uses it: publish (acknowledged), the stream's bounds, and
/// following it. [`TelemetryStore`] is the JetStream implementation;
/// `thinglake_test_support::MemoryTelemetryLog` keeps the same contract in memory, for tests
/// without a nats-server. The methods are those of [`TelemetryStore`], which documents them.
pub trait TelemetryLog: std::fmt::Debug + Send + Sync + 'static {
    fn publish<'a>(&'a self, message: &'a TelemetryMessage) -> BoxFuture<'a, Result<u64>>;

    fn last_sequence(&self) -> BoxFuture<'_, Result<u64>>;

    fn first_sequence(&self) -> BoxFuture<'_, Result<u64>>;

    fn follow(&self, from_seq: u64) -> BoxStream<'static, Result<(u64, TelemetryMessage)>>;
}

impl TelemetryLog for TelemetryStore {
    fn publish<'a>(&'a self, message: &'a TelemetryMessage) -> BoxFuture<'a, Result<u64>> {
        Box::pin(TelemetryStore::publish(self, message))
    }

    fn last_sequence(&self) -> BoxFuture<'_, Result<u64>> {
        Box::pin(TelemetryStore::last_sequence(self))
    }

    fn first_sequence(&self) -> BoxFuture<'_, Result<u64>> {
        Box::pin(TelemetryStore::first_sequence(self))
    }

    fn follow(&self, from_seq: u64) -> BoxStream<'static, Result<(u64, TelemetryMessage)>> {
        Box::pin(TelemetryStore::follow(self, from_seq))
    }
}

/// Publishes to and follows the telemetry stream. Cheap to clone; clones share the connection.
#[derive(Debug, Clone)]
pub struct TelemetryStore {
    js: Context,
    subjects: Subjects,
    stream: String,
    publish_timeout: Duration,
}

impl TelemetryStore {
    /// A store over an existing JetStream context; the stream itself is created by
    /// [`crate::event_store::EventStore::connect`].
    pub fn new(js: Context, subjects: Subjects, publish_timeout: Duration) -> Self {
        let stream = subjects.telemetry_stream();
        Self { js, subjects, stream, publish_timeout }
    }

    pub fn subjects(&self) -> &Subjects {
        &self.subjects
    }

    /// The subject a message belongs on.
    pub fn subject_of(&self, message: &TelemetryMessage) -> String {
        self.subjects.telemetry(message.tenant_id, message.entity_id)
    }

    /// Publishes one message and waits for JetStream's acknowledgement; returns its stream
    /// sequence. Fails with [`Error::Publish`] when NATS is unreachable or refuses it, and with
    /// [`Error::PublishTimeout`] when it does not acknowledge within the publish timeout (both
    /// retryable).
    pub async fn publish(&self, message: &TelemetryMessage) -> Result<u64> {
        let subject = self.subject_of(message);
        // Sized for the common message up front: growing the buffer by doubling costs a copy per step.
        let mut body = Vec::with_capacity(ENCODED_HEAD_BYTES + ENCODED_POINT_BYTES * message.point_count());
        serde_json::to_writer(&mut body, message).expect("a telemetry message of JSON values serializes");
        self.publish_raw(subject, message.message_id.to_string(), Bytes::from(body)).await
    }

    async fn publish_raw(&self, subject: String, message_id: String, body: Bytes) -> Result<u64> {
        // Shared, not copied, with the publish; kept for an error.
        let subject = Subject::from(subject);
        let publish = PublishMessage::build().payload(body).message_id(message_id).expected_stream(&self.stream);
        let acked = tokio::time::timeout(self.publish_timeout, async {
            self.js.send_publish(subject.clone(), publish).await.map_err(BoxError::from)?.await.map_err(BoxError::from)
        })
        .await
        .map_err(|_| Error::PublishTimeout { subject: subject.to_string(), after: self.publish_timeout })?
        .map_err(|source| Error::publish(subject.to_string(), source))?;
        Ok(acked.sequence)
    }

    /// The last sequence of the telemetry stream now (0 when empty).
    pub async fn last_sequence(&self) -> Result<u64> {
        Ok(get::stream_state(&self.js, &self.stream, self.subjects.all_telemetry()).await?.last_sequence)
    }

    /// The first sequence still on the telemetry stream (1 until it is trimmed; one past the
    /// last when everything was trimmed; 0 when nothing was ever published).
    pub async fn first_sequence(&self) -> Result<u64> {
        Ok(get::stream_state(&self.js, &self.stream, self.subjects.all_telemetry()).await?.first_sequence)
    }

    /// Every message from stream sequence `from_seq` on (inclusive; 0 or 1 mean from the start),
    /// then live, in order. A message that does not decode yields [`Error::CorruptEvent`] and the
    /// stream goes on; the stream ends after an error creating the consumer (resubscribe from the
    /// last processed sequence + 1).
    pub fn follow(&self, from_seq: u64) -> impl Stream<Item = Result<(u64, TelemetryMessage)>> + Send + 'static {
        let reading = self.subjects.all_telemetry();
        ordered::follow(self.js.clone(), self.stream.clone(), from_seq, "the telemetry stream", reading, |delivery| {
            decode(delivery.seq, delivery.payload())
        })
    }

    /// Reads the stored messages from stream sequence `from_seq` on (inclusive), undecoded, through
    /// a consumer of the reader's own that [`PullReader::close`] deletes; pulled `batch`
    /// messages at a time. Read it with [`PullReader::next_in_order`]. For a reader that holds
    /// most messages already and fetches only the rest (the latest-values follower's gaps).
    pub async fn read_from(&self, from_seq: u64, batch: usize) -> Result<PullReader> {
        let options = PullOptions {
            from_seq,
            // Deleted on close; this bounds how long one left behind (a close that could not
            // reach the server) lingers.
            inactive_threshold: READER_INACTIVE_THRESHOLD,
            memory: true,
            batch,
            ..PullOptions::default()
        };
        PullReader::open(&self.js, &self.stream, options, self.subjects.all_telemetry()).await
    }
}

/// How long a reader's consumer outlives a reader that could not delete it.
const READER_INACTIVE_THRESHOLD: Duration = Duration::from_secs(10);

/// Parses one telemetry message.
pub fn decode(seq: u64, payload: &[u8]) -> Result<TelemetryMessage> {
    serde_json::from_slice(payload)
        .map_err(|source| Error::CorruptEvent { seq, source: Corruption::Unparsable { what: "a telemetry message", source } })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_a_corrupt_message() {
        assert!(matches!(decode(4, b"{"), Err(Error::CorruptEvent { seq: 4, .. })));
    }
}
