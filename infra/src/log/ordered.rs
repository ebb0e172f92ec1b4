//! Reading a stream in order through an ordered consumer: ephemeral, flow-controlled by the
//! client, recreated by it after a lost delivery, never acknowledged.

use async_nats::jetstream::consumer::pull::{self, OrderedConfig};
use async_nats::jetstream::{self, Context};
use futures::{Stream, StreamExt};
use tracing::{info, warn};

use crate::error::{BoxError, Error, Result};
use crate::log::{Delivery, delete_consumer, deliver_from};

/// A stream being read in order from a sequence, optionally only the messages on one subject
/// (filter).
pub struct OrderedReader {
    stream: jetstream::stream::Stream<()>,
    consumer: String,
    /// The messages to deliver when the reader was opened.
    pending: u64,
    /// Boxed: large, and held across awaits by every caller.
    messages: Box<pull::Ordered>,
    /// What is read, for errors.
    reading: String,
}

impl std::fmt::Debug for OrderedReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderedReader").field("consumer", &self.consumer).field("reading", &self.reading).finish()
    }
}

impl OrderedReader {
    /// Opens a reader of `stream` from `from_seq` on (inclusive; 0 or 1 mean from the start),
    /// of every message or of those on `filter_subject`. Errors name `reading`.
    pub async fn open(
        js: &Context,
        stream: &str,
        from_seq: u64,
        filter_subject: Option<String>,
        reading: String,
    ) -> Result<Self> {
        // Boxed: the consumer's creation is a large future, and opening is rare.
        Box::pin(async move {
            let read_error = |source: BoxError| Error::read(reading.clone(), source);
            let stream = js.get_stream_no_info(stream).await.map_err(|e| read_error(e.into()))?;
            let consumer = stream
                .create_consumer(OrderedConfig {
                    deliver_policy: deliver_from(from_seq),
                    filter_subject: filter_subject.unwrap_or_default(),
                    ..Default::default()
                })
                .await
                .map_err(|e| read_error(e.into()))?;
            let name = consumer.cached_info().name.clone();
            let pending = consumer.cached_info().num_pending;
            let messages = Box::new(consumer.messages().await.map_err(|e| read_error(e.into()))?);
            Ok(Self { stream, consumer: name, pending, messages, reading })
        })
        .await
    }

    /// How many messages there were to read when the reader was opened.
    pub fn pending_at_open(&self) -> u64 {
        self.pending
    }

    /// The next message in stream order, live once the stored ones are read. A failed read
    /// yields [`Error::Read`] and the reader goes on (the consumer recreates itself).
    pub async fn next(&mut self) -> Option<Result<Delivery>> {
        Some(match self.messages.next().await? {
            Ok(message) => Delivery::new(message),
            Err(e) => Err(Error::read(self.reading.clone(), e)),
        })
    }

    /// Stops reading and deletes the consumer rather than leaving it to expire (30 s).
    pub async fn close(self) {
        let Self { stream, consumer, messages, .. } = self;
        drop(messages);
        delete_consumer(&stream, &consumer).await;
    }
}

/// Every message of `stream` from sequence `from_seq` on (inclusive; 0 or 1 mean from the start),
/// then live, in order, each with its sequence and as `decode` reads it; `what` names the log in
/// what is logged, `reading` (its subjects) in read errors.
///
/// A message `decode` refuses yields its error and the stream goes on; a failed read yields
/// [`Error::Read`] and the stream goes on (the ordered consumer recreates itself). The stream
/// ends after an error opening the reader: follow again from the last sequence processed + 1.
pub fn follow<T, D>(
    js: Context,
    stream: String,
    from_seq: u64,
    what: &'static str,
    reading: String,
    decode: D,
) -> impl Stream<Item = Result<(u64, T)>> + Send + 'static
where
    T: Send + 'static,
    D: Fn(&Delivery) -> Result<T> + Send + 'static,
{
    enum Follow<D> {
        /// Boxed: the context is large, and the state is moved on every message.
        Start { js: Box<Context>, stream: String, from_seq: u64, reading: String, decode: D },
        Running { reader: Box<OrderedReader>, decode: D },
        Done,
    }
    let start = Follow::Start { js: Box::new(js), stream, from_seq, reading, decode };
    futures::stream::unfold(start, move |state| async move {
        let (mut reader, decode) = match state {
            Follow::Start { js, stream, from_seq, reading, decode } => {
                match OrderedReader::open(&js, &stream, from_seq, None, reading).await {
                    Ok(reader) => {
                        info!(stream, from_seq, "following {what}");
                        (Box::new(reader), decode)
                    }
                    Err(e) => return Some((Err(e), Follow::Done)),
                }
            }
            Follow::Running { reader, decode } => (reader, decode),
            Follow::Done => return None,
        };
        let item = match reader.next().await? {
            Ok(delivery) => decode(&delivery).map(|value| (delivery.seq, value)),
            Err(e) => {
                warn!(error = %e, "reading {what} failed");
                Err(e)
            }
        };
        Some((item, Follow::Running { reader, decode }))
    })
}
