//! Reading a range of a stream by batched direct gets: no consumer, the stream's replicas
//! answer requests.
//!
//! [`BatchedDirectGet`] reads a contiguous range of sequences in batches (ADR-31), without
//!   headers or subjects: a rebuild's fast path. Each request asks for a range,
//!   `{"seq","batch","max_bytes","no_hdr"}`; the messages come back on the request's own inbox
//!   in sequence order, then a `204 EOB` status message whose `Nats-Last-Sequence` is the
//!   sequence of the last one sent. nats-server steps over missing sequences, so a range is
//!   whole exactly when it brought `last - start + 1` messages: each message's sequence is known
//!   from its place, and a chunk is handed on only once its ranges are checked. [`DIRECT_DEPTH`]
//!   requests are in flight; when nats-server cuts one short at [`DIRECT_BYTES`], those after
//!   it are dropped (their replies ignored) and the rest is asked for again from where it
//!   stopped.

use std::collections::VecDeque;
use std::time::Duration;

use futures::StreamExt;

use crate::error::{BoxError, Error, Result};
use crate::log::LogMessage;
use crate::subjects::JS_DIRECT_GET;

/// Messages asked for in one batched direct get, their bytes at most (nats-server sends a batch
/// without flow control: the requests in flight stay well below its 64 MiB slow-consumer
/// limit), and the requests in flight.
pub const DIRECT_BATCH: u64 = 10_000;
pub const DIRECT_BYTES: usize = 16 * 1024 * 1024;
pub const DIRECT_DEPTH: usize = 2;
/// How long the reader waits for nats-server's next message before it gives up.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether the server answers batched direct gets (nats-server 2.11 and later).
pub fn has_batched_direct_get(client: &async_nats::Client) -> bool {
    let info = client.server_info();
    let mut parts = info.version.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (2, 11)
}

/// A batched direct get in flight: sequences `start..start + count`, answered on the inbox
/// ending in `token`.
#[derive(Debug, Clone, Copy)]
struct Request {
    token: u64,
    start: u64,
    count: u64,
    received: u64,
}

/// Sequences `from..=target` of a stream being read by batched direct gets, in chunks
/// ([`BatchedDirectGet::next_chunk`]). A hole in the sequences fails the read with
/// [`Error::LogGap`].
pub struct BatchedDirectGet {
    client: async_nats::Client,
    stream: String,
    api: String,
    inbox: String,
    replies: async_nats::Subscriber,
    in_flight: VecDeque<Request>,
    /// The first sequence not asked for yet, and the last request's token.
    next: u64,
    token: u64,
    target: u64,
    chunk_len: usize,
    chunk: Vec<LogMessage>,
}

impl std::fmt::Debug for BatchedDirectGet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchedDirectGet").field("stream", &self.stream).field("next", &self.next).finish()
    }
}

impl BatchedDirectGet {
    /// Starts reading `stream`'s sequences `from..=target` in chunks of at least `chunk_len`
    /// messages (the last one may be shorter).
    pub async fn open(client: async_nats::Client, stream: &str, from: u64, target: u64, chunk_len: usize) -> Result<Self> {
        let inbox = client.new_inbox();
        let replies = client
            .subscribe(format!("{inbox}.*"))
            .await
            .map_err(|e| Error::read(stream.to_string(), e))?;
        Ok(Self {
            api: format!("{JS_DIRECT_GET}.{stream}"),
            stream: stream.to_string(),
            client,
            inbox,
            replies,
            in_flight: VecDeque::with_capacity(DIRECT_DEPTH),
            next: from,
            token: 0,
            target,
            chunk_len,
            chunk: Vec::with_capacity(chunk_len),
        })
    }

    fn read_error(&self, source: impl Into<BoxError>) -> Error {
        Error::read(self.stream.clone(), source)
    }

    fn gap(&self, from: u64, to: u64) -> Error {
        Error::LogGap { stream: self.stream.clone(), from, to }
    }

    /// The next chunk of messages in sequence order (their subjects left empty); `None` once
    /// `target` was handed on. An error ends the read.
    pub async fn next_chunk(&mut self) -> Option<Result<Vec<LogMessage>>> {
        match self.fill_chunk().await {
            Ok(true) => Some(Ok(std::mem::replace(&mut self.chunk, Vec::with_capacity(self.chunk_len)))),
            Ok(false) => None,
            Err(e) => {
                // Nothing more after an error.
                self.in_flight.clear();
                self.next = self.target.saturating_add(1);
                self.chunk.clear();
                Some(Err(e))
            }
        }
    }

    /// Reads until a chunk is complete (`true`) or there is nothing more to read (`false`).
    async fn fill_chunk(&mut self) -> Result<bool> {
        loop {
            while self.in_flight.len() < DIRECT_DEPTH && self.next <= self.target {
                let count = DIRECT_BATCH.min(self.target + 1 - self.next);
                self.token += 1;
                let request = format!(r#"{{"seq":{},"batch":{count},"max_bytes":{DIRECT_BYTES},"no_hdr":true}}"#, self.next);
                self.client
                    .publish_with_reply(self.api.clone(), format!("{}.{}", self.inbox, self.token), request.into())
                    .await
                    .map_err(|e| self.read_error(e))?;
                self.in_flight.push_back(Request { token: self.token, start: self.next, count, received: 0 });
                self.next += count;
            }
            if self.in_flight.is_empty() {
                return Ok(!self.chunk.is_empty());
            }
            let message = match tokio::time::timeout(REPLY_TIMEOUT, self.replies.next()).await {
                Ok(Some(message)) => message,
                Ok(None) => return Err(self.read_error("the subscription to the log's replies ended")),
                Err(_) => return Err(self.read_error(format!("no reply from the log within {} s", REPLY_TIMEOUT.as_secs()))),
            };
            let current = *self.in_flight.front().expect("a request is in flight");
            // Replies to requests dropped after a batch cut short.
            if message.subject.rsplit('.').next().and_then(|t| t.parse::<u64>().ok()) != Some(current.token) {
                continue;
            }
            match message.status.map(|s| s.as_u16()) {
                None => {
                    let seq = current.start + current.received;
                    self.in_flight[0].received += 1;
                    self.chunk.push(LogMessage { seq, subject: String::new(), payload: message.payload });
                }
                Some(204) => {
                    let last = message
                        .headers
                        .as_ref()
                        .and_then(|h| h.get("Nats-Last-Sequence"))
                        .and_then(|v| v.as_str().parse::<u64>().ok())
                        .ok_or_else(|| self.read_error("a direct get's end of batch without its last sequence"))?;
                    if current.received == 0 || last != current.start + current.received - 1 {
                        return Err(self.gap(current.start, last));
                    }
                    self.in_flight.pop_front();
                    if current.received < current.count {
                        // Cut short at the byte limit: the requests after it start too far on.
                        self.in_flight.clear();
                        self.next = last + 1;
                    }
                    if self.chunk.len() >= self.chunk_len || (self.in_flight.is_empty() && self.next > self.target) {
                        return Ok(true);
                    }
                }
                // The first sequence asked for and every one after it are gone.
                Some(404) => return Err(self.gap(current.start, self.target)),
                Some(status) => {
                    return Err(self.read_error(format!(
                        "a direct get answered {status} {}",
                        message.description.as_deref().unwrap_or_default()
                    )));
                }
            }
        }
    }
}
