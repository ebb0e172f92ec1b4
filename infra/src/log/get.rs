//! Reading single messages: by sequence, the last or the next one on a subject; and the
//! stream's state (its first and last sequences).
//!
//! [`next_on_subject`] is a direct get (any replica answers, with the time the message was
//! stored); the others ask the stream leader, which sees every acknowledged write.

use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::jetstream::{self, Context};

use crate::error::{BoxError, Error, Result};
use crate::log::LogMessage;

/// The stream's state now: its first and last sequences, message count. Errors name `reading`.
pub async fn stream_state(js: &Context, stream: &str, reading: String) -> Result<jetstream::stream::State> {
    let read_error = |source: BoxError| Error::read(reading.clone(), source);
    let handle = js.get_stream_no_info(stream).await.map_err(|e| read_error(e.into()))?;
    let info = handle.get_info().await.map_err(|e| read_error(e.into()))?;
    Ok(info.state)
}

/// The message stored at `seq`.
pub async fn at(js: &Context, stream: &str, seq: u64) -> Result<LogMessage> {
    let read_error = |source: BoxError| Error::read(format!("{stream}#{seq}"), source);
    let handle = js.get_stream_no_info(stream).await.map_err(|e| read_error(e.into()))?;
    Ok(handle.get_raw_message(seq).await.map_err(|e| read_error(e.into()))?.into())
}

/// The last message on `subject`; `None` when there is none.
pub async fn last_on_subject(js: &Context, stream: &str, subject: &str) -> Result<Option<LogMessage>> {
    let read_error = |source: BoxError| Error::read(subject.to_string(), source);
    let handle = js.get_stream_no_info(stream).await.map_err(|e| read_error(e.into()))?;
    match handle.get_last_raw_message_by_subject(subject).await {
        Ok(message) => Ok(Some(message.into())),
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(read_error(e.into())),
    }
}

/// The first message on `subject` after stream sequence `after`; `None` when there is none.
pub async fn after_on_subject(js: &Context, stream: &str, subject: &str, after: u64) -> Result<Option<LogMessage>> {
    let read_error = |source: BoxError| Error::read(subject.to_string(), source);
    let handle = js.get_stream_no_info(stream).await.map_err(|e| read_error(e.into()))?;
    match handle.raw_message_builder().sequence(after + 1).next_by_subject(subject).send().await {
        Ok(message) => Ok(Some(message.into())),
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(read_error(e.into())),
    }
}

/// The first message on `subject` at or after stream sequence `from_seq` (purged or deleted
/// sequences are stepped over), with the time it was stored in milliseconds since the Unix
/// epoch; `None` when there is none.
pub async fn next_on_subject(
    stream: &jetstream::stream::Stream,
    subject: &str,
    from_seq: u64,
) -> Result<Option<(LogMessage, i64)>> {
    match stream.direct_get_next_for_subject(subject, Some(from_seq)).await {
        Ok(message) => {
            let at = (message.time.unix_timestamp_nanos() / 1_000_000) as i64;
            Ok(Some((message.into(), at)))
        }
        Err(e) if e.kind() == jetstream::stream::DirectGetErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::read(subject.to_string(), e)),
    }
}
