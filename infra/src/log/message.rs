//! The message every reader of the log yields, and a consumer's delivery of it.

use async_nats::jetstream;
use bytes::Bytes;

use crate::error::{Error, Result};

/// One message stored on a stream: its stream sequence, subject and payload. Batched direct
/// gets ask for messages without their subjects and leave `subject` empty.
#[derive(Debug, Clone)]
pub struct LogMessage {
    pub seq: u64,
    pub subject: String,
    pub payload: Bytes,
}

impl From<jetstream::message::StreamMessage> for LogMessage {
    /// A message read by itself (a get or a direct get); the payload is shared, not copied.
    fn from(message: jetstream::message::StreamMessage) -> Self {
        Self { seq: message.sequence, subject: message.subject.to_string(), payload: message.payload }
    }
}

/// A message as a consumer delivered it: where it stands on the stream and among the
/// consumer's deliveries, read once from its metadata. The message is read in place
/// ([`Delivery::subject`], [`Delivery::payload`]) or taken as a [`LogMessage`]; a durable
/// consumer's delivery is acknowledged with [`Delivery::ack`].
#[derive(Debug)]
pub struct Delivery {
    raw: jetstream::Message,
    /// The message's stream sequence.
    pub seq: u64,
    /// The delivery's place among the consumer's deliveries (1, 2, …): a jump means a delivery
    /// was lost on the way.
    pub consumer_seq: u64,
    /// How many messages the consumer had still to deliver after this one.
    pub pending: u64,
}

impl Delivery {
    /// Reads the delivery's metadata; a message without it (not from JetStream) is a read error
    /// on its subject.
    pub(crate) fn new(raw: jetstream::Message) -> Result<Self> {
        let (seq, consumer_seq, pending) = match raw.info() {
            Ok(info) => (info.stream_sequence, info.consumer_sequence, info.pending),
            Err(e) => return Err(Error::read(raw.subject.to_string(), e)),
        };
        Ok(Self { raw, seq, consumer_seq, pending })
    }

    pub fn subject(&self) -> &str {
        &self.raw.subject
    }

    pub fn payload(&self) -> &Bytes {
        &self.raw.payload
    }

    /// The message (the payload is shared, not copied).
    pub fn message(&self) -> LogMessage {
        LogMessage { seq: self.seq, subject: self.raw.subject.to_string(), payload: self.raw.payload.clone() }
    }

    /// Acknowledges the delivery (with an ack-all consumer, every one before it too).
    pub async fn ack(&self) -> Result<()> {
        self.raw.ack().await.map_err(|e| Error::read(self.raw.subject.to_string(), e))
    }
}
