//! Reading a stream through a pull consumer at an explicit position: durable and acknowledged
//! (the lake runner, which commits before it acks), or ephemeral without acks (a rebuild, the
//! latest-values follower's gap reader). Messages are pulled in large batches.

use std::time::Duration;

use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::consumer::AckPolicy;
use async_nats::jetstream::{self, Context};
use futures::StreamExt;

use crate::error::{BoxError, Error, Result};
use crate::log::{Delivery, delete_consumer, deliver_from};

/// How often the server tells an idle reader that it is still there.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// What a pull consumer reads and how.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The consumer's name when it is durable: it then outlives the reader, and a delivery not
    /// acknowledged within `ack_wait` is delivered again. `None`: ephemeral, never acknowledged.
    pub durable: Option<String>,
    pub description: Option<String>,
    /// The first stream sequence read (0 or 1: from the start).
    pub from_seq: u64,
    /// Only the messages on this subject (every message when `None`).
    pub filter_subject: Option<String>,
    /// The longest a durable consumer's delivery waits for its acknowledgement.
    pub ack_wait: Duration,
    /// How long an ephemeral consumer outlives a reader that could not delete it.
    pub inactive_threshold: Duration,
    /// An ephemeral consumer's state kept in memory on one replica.
    pub memory: bool,
    /// Messages asked for in one pull.
    pub batch: usize,
    /// Bytes asked for in one pull at most (0: no limit).
    pub max_bytes: usize,
    /// How long one pull request lives on the server (`None`: the client's default).
    pub expires: Option<Duration>,
}

impl Default for PullOptions {
    fn default() -> Self {
        Self {
            durable: None,
            description: None,
            from_seq: 1,
            filter_subject: None,
            ack_wait: Duration::from_secs(30),
            inactive_threshold: Duration::from_secs(5),
            memory: false,
            batch: 500,
            max_bytes: 0,
            expires: None,
        }
    }
}

/// A stream being read through a pull consumer ([`PullReader::open`]).
pub struct PullReader {
    stream: jetstream::stream::Stream<()>,
    consumer: String,
    /// Boxed: large, and held across awaits by every caller.
    messages: Box<pull::Stream>,
    /// Consumer sequence of the last delivery handed out by [`PullReader::next_in_order`].
    delivered: u64,
    /// What is read, for errors.
    reading: String,
}

impl std::fmt::Debug for PullReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullReader").field("consumer", &self.consumer).field("delivered", &self.delivered).finish()
    }
}

impl PullReader {
    /// Creates the consumer and starts pulling. A durable consumer is deleted and created
    /// again at `from_seq`: its reader, not the server, keeps the position. Errors name
    /// `reading`.
    pub async fn open(js: &Context, stream: &str, options: PullOptions, reading: String) -> Result<Self> {
        // Boxed: the consumer's creation is a large future, and opening is rare.
        Box::pin(async move {
            let read_error = |source: BoxError| Error::read(reading.clone(), source);
            let stream = js.get_stream_no_info(stream).await.map_err(|e| read_error(e.into()))?;
            let durable = options.durable.is_some();
            if let Some(name) = &options.durable {
                match stream.delete_consumer(name).await {
                    Ok(_) => {}
                    Err(e) if e.to_string().contains("not found") => {}
                    Err(e) => return Err(read_error(e.into())),
                }
            }
            let config = pull::Config {
                durable_name: options.durable,
                description: options.description,
                deliver_policy: deliver_from(options.from_seq),
                filter_subject: options.filter_subject.unwrap_or_default(),
                ..if durable {
                    pull::Config { ack_policy: AckPolicy::All, ack_wait: options.ack_wait, max_ack_pending: -1, ..Default::default() }
                } else {
                    pull::Config {
                        ack_policy: AckPolicy::None,
                        inactive_threshold: options.inactive_threshold,
                        memory_storage: options.memory,
                        num_replicas: if options.memory { 1 } else { 0 },
                        ..Default::default()
                    }
                }
            };
            let consumer = stream.create_consumer(config).await.map_err(|e| read_error(e.into()))?;
            let name = consumer.cached_info().name.clone();
            let mut pulls = consumer.stream().max_messages_per_batch(options.batch.max(1)).heartbeat(HEARTBEAT);
            if options.max_bytes > 0 {
                pulls = pulls.max_bytes_per_batch(options.max_bytes);
            }
            if let Some(expires) = options.expires {
                pulls = pulls.expires(expires);
            }
            let messages = Box::new(pulls.messages().await.map_err(|e| read_error(e.into()))?);
            Ok(Self { stream, consumer: name, messages, delivered: 0, reading })
        })
        .await
    }

    /// The next delivery; `None` when the subscription ended. Deliveries may repeat or skip
    /// (after a lost one): [`Delivery::consumer_seq`] tells.
    pub async fn next(&mut self) -> Option<Result<Delivery>> {
        Some(match self.messages.next().await? {
            Ok(message) => Delivery::new(message),
            Err(e) => Err(Error::read(self.reading.clone(), e)),
        })
    }

    /// The next delivery, failing with [`Error::Read`] when one was lost on the way (the caller
    /// then reads again from where it was).
    pub async fn next_in_order(&mut self) -> Option<Result<Delivery>> {
        let delivery = match self.next().await? {
            Ok(delivery) => delivery,
            Err(e) => return Some(Err(e)),
        };
        if delivery.consumer_seq != self.delivered + 1 {
            let reason = format!("messages lost on the way: delivery {} after {}", delivery.consumer_seq, self.delivered);
            return Some(Err(Error::read(self.reading.clone(), reason)));
        }
        self.delivered = delivery.consumer_seq;
        Some(Ok(delivery))
    }

    /// Stops reading and deletes the consumer (left to expire when the server cannot be
    /// reached).
    pub async fn close(self) {
        let Self { stream, consumer, messages, .. } = self;
        drop(messages);
        delete_consumer(&stream, &consumer).await;
    }
}
