//! The telemetry stream: publishing [`TelemetryMessage`]s and following them.
//!
//! One message per device publish (or REST save, or lifecycle change) goes to
//! `<prefix>.tel.<tenant>.<entity_id>` ([`Subjects::telemetry`]) with `Nats-Msg-Id` = the
//! message id, so a retried publish within the duplicate window is stored once. A publish returns
//! only after JetStream's acknowledgement (or fails after the publish timeout): an acknowledged
//! point is on the log, which is what lets the transports acknowledge the device.
//!
//! [`TelemetryStore::follow`] replays the stream from a sequence and then follows it live;
//! [`TelemetryStore::read_from`] reads a stretch of it undecoded, for the latest-values follower,
//! which reads only what its node did not publish itself. See
//! `docs/decisions/0005-telemetry-stream.md` and `0012-latest-values-follower-reads-only-gaps.md`.

use std::time::Duration;

use async_nats::Subject;
use async_nats::jetstream::Context;
use async_nats::jetstream::consumer::pull::{self, Ordered, OrderedConfig};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy};
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use thinglake_domain::telemetry::TelemetryMessage;
use tracing::{debug, info, warn};

use crate::error::{Error, Result};
use crate::subjects::Subjects;

/// How long a publish waits for JetStream's acknowledgement by default.
pub const DEFAULT_PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// Encoded size of a message's fields besides its points, and of one point, roughly: the
/// encoding buffer's first size.
const ENCODED_HEAD_BYTES: usize = 384;
const ENCODED_POINT_BYTES: usize = 32;

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
    /// sequence. Fails with [`Error::Publish`] (retryable) when NATS is unreachable or does not
    /// acknowledge within the publish timeout.
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
            self.js.send_publish(subject.clone(), publish).await.map_err(|e| e.to_string())?.await.map_err(|e| e.to_string())
        })
        .await
        .map_err(|_| format!("no acknowledgement within {:?}", self.publish_timeout))
        .and_then(|acked| acked)
        .map_err(|reason| Error::Publish { subject: subject.to_string(), reason })?;
        Ok(acked.sequence)
    }

    /// The last sequence of the telemetry stream now (0 when empty).
    pub async fn last_sequence(&self) -> Result<u64> {
        let read_error = |reason: String| Error::Read { subject: self.subjects.all_telemetry(), reason };
        let stream = self.js.get_stream_no_info(&self.stream).await.map_err(|e| read_error(e.to_string()))?;
        let info = stream.get_info().await.map_err(|e| read_error(e.to_string()))?;
        Ok(info.state.last_sequence)
    }

    /// The first sequence still on the telemetry stream (1 until it is trimmed; one past the
    /// last when everything was trimmed; 0 when nothing was ever published).
    pub async fn first_sequence(&self) -> Result<u64> {
        let read_error = |reason: String| Error::Read { subject: self.subjects.all_telemetry(), reason };
        let stream = self.js.get_stream_no_info(&self.stream).await.map_err(|e| read_error(e.to_string()))?;
        let info = stream.get_info().await.map_err(|e| read_error(e.to_string()))?;
        Ok(info.state.first_sequence)
    }

    /// Every message from stream sequence `from_seq` on (inclusive; 0 or 1 mean from the start),
    /// then live, in order. A message that does not decode yields [`Error::CorruptEvent`] and the
    /// stream goes on; the stream ends after an error creating the consumer (resubscribe from the
    /// last processed sequence + 1).
    pub fn follow(&self, from_seq: u64) -> impl Stream<Item = Result<(u64, TelemetryMessage)>> + Send + 'static {
        let state = Follow::Start { store: Box::new(self.clone()), from_seq };
        futures::stream::unfold(state, |state| async move {
            match state {
                Follow::Start { store, from_seq } => match store.open_follow(from_seq).await {
                    Ok(messages) => {
                        info!(stream = %store.stream, from_seq, "following the telemetry stream");
                        next_message(store.subjects.all_telemetry(), messages).await
                    }
                    Err(e) => Some((Err(e), Follow::Done)),
                },
                Follow::Running { subject, messages } => next_message(subject, messages).await,
                Follow::Done => None,
            }
        })
    }

    async fn open_follow(&self, from_seq: u64) -> Result<Box<Ordered>> {
        let read_error = |reason: String| Error::Read { subject: self.subjects.all_telemetry(), reason };
        let stream = self.js.get_stream_no_info(&self.stream).await.map_err(|e| read_error(e.to_string()))?;
        let consumer = stream
            .create_consumer(OrderedConfig { deliver_policy: deliver_from(from_seq), ..Default::default() })
            .await
            .map_err(|e| read_error(e.to_string()))?;
        consumer.messages().await.map(Box::new).map_err(|e| read_error(e.to_string()))
    }

    /// Reads the stored messages from stream sequence `from_seq` on (inclusive), undecoded, through
    /// a consumer of the reader's own that [`StreamReader::close`] deletes; pulled `batch`
    /// messages at a time. For a reader that holds most messages already and fetches only the
    /// rest (the latest-values follower's gaps).
    pub async fn read_from(&self, from_seq: u64, batch: usize) -> Result<StreamReader> {
        let read_error = |reason: String| Error::Read { subject: self.subjects.all_telemetry(), reason };
        let stream = self.js.get_stream_no_info(&self.stream).await.map_err(|e| read_error(e.to_string()))?;
        let consumer = stream
            .create_consumer(pull::Config {
                deliver_policy: deliver_from(from_seq),
                ack_policy: AckPolicy::None,
                // Deleted on close; this bounds how long one left behind (a close that could not
                // reach the server) lingers.
                inactive_threshold: READER_INACTIVE_THRESHOLD,
                memory_storage: true,
                num_replicas: 1,
                ..Default::default()
            })
            .await
            .map_err(|e| read_error(e.to_string()))?;
        let consumer_name = consumer.cached_info().name.clone();
        let messages = consumer
            .stream()
            .max_messages_per_batch(batch.max(1))
            .heartbeat(READER_HEARTBEAT)
            .messages()
            .await
            .map_err(|e| read_error(e.to_string()))?;
        Ok(StreamReader { stream, consumer_name, messages, delivered: 0, subject: self.subjects.all_telemetry() })
    }
}

/// How long a reader's consumer outlives a reader that could not delete it.
const READER_INACTIVE_THRESHOLD: Duration = Duration::from_secs(10);
/// How often the server tells an idle reader that it is still there.
const READER_HEARTBEAT: Duration = Duration::from_secs(5);
/// How long closing a reader waits for the server to delete its consumer.
const READER_CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

fn deliver_from(from_seq: u64) -> DeliverPolicy {
    if from_seq <= 1 { DeliverPolicy::All } else { DeliverPolicy::ByStartSequence { start_sequence: from_seq } }
}

/// A stored message as [`StreamReader`] reads it: not decoded ([`decode`] does that).
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub seq: u64,
    /// How many messages the stream held after this one when it was delivered.
    pub pending: u64,
    pub payload: Bytes,
}

/// A stretch of the telemetry stream being read in order ([`TelemetryStore::read_from`]).
pub struct StreamReader {
    stream: async_nats::jetstream::stream::Stream<()>,
    consumer_name: String,
    messages: pull::Stream,
    /// Consumer sequence of the last delivered message: a jump means messages were lost on the
    /// way (the reader then fails and the caller reads again from where it was).
    delivered: u64,
    subject: String,
}

impl std::fmt::Debug for StreamReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamReader").field("consumer", &self.consumer_name).field("delivered", &self.delivered).finish()
    }
}

impl StreamReader {
    /// The next stored message, in stream order; `None` or an error ends the reader.
    pub async fn next(&mut self) -> Option<Result<StoredMessage>> {
        let read_error = |subject: &str, reason: String| Error::Read { subject: subject.to_string(), reason };
        let message = match self.messages.next().await? {
            Ok(message) => message,
            Err(e) => return Some(Err(read_error(&self.subject, e.to_string()))),
        };
        let info = match message.info() {
            Ok(info) => info,
            Err(e) => return Some(Err(read_error(&self.subject, e.to_string()))),
        };
        if info.consumer_sequence != self.delivered + 1 {
            let reason = format!("messages lost on the way: delivery {} after {}", info.consumer_sequence, self.delivered);
            return Some(Err(read_error(&self.subject, reason)));
        }
        self.delivered = info.consumer_sequence;
        Some(Ok(StoredMessage { seq: info.stream_sequence, pending: info.pending, payload: message.payload.clone() }))
    }

    /// Stops reading and deletes the reader's consumer (left to expire when the server cannot be
    /// reached).
    pub async fn close(self) {
        let Self { stream, consumer_name, messages, .. } = self;
        drop(messages);
        match tokio::time::timeout(READER_CLOSE_TIMEOUT, stream.delete_consumer(&consumer_name)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => debug!(consumer = %consumer_name, error = %e, "telemetry reader's consumer not deleted; it expires"),
            Err(_) => debug!(consumer = %consumer_name, "telemetry reader's consumer not deleted in time; it expires"),
        }
    }
}

enum Follow {
    Start { store: Box<TelemetryStore>, from_seq: u64 },
    Running { subject: String, messages: Box<Ordered> },
    Done,
}

async fn next_message(subject: String, mut messages: Box<Ordered>) -> Option<(Result<(u64, TelemetryMessage)>, Follow)> {
    let item = match messages.next().await? {
        Ok(message) => match message.info() {
            Ok(info) => decode(info.stream_sequence, &message.payload).map(|m| (info.stream_sequence, m)),
            Err(e) => Err(Error::Read { subject: message.subject.to_string(), reason: e.to_string() }),
        },
        Err(e) => {
            warn!(error = %e, "reading the telemetry stream failed");
            Err(Error::Read { subject: subject.clone(), reason: e.to_string() })
        }
    };
    Some((item, Follow::Running { subject, messages }))
}

/// Parses one telemetry message.
pub fn decode(seq: u64, payload: &[u8]) -> Result<TelemetryMessage> {
    serde_json::from_slice(payload)
        .map_err(|e| Error::CorruptEvent { seq, reason: format!("not a telemetry message: {e}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_a_corrupt_message() {
        assert!(matches!(decode(4, b"{"), Err(Error::CorruptEvent { seq: 4, .. })));
    }
}
