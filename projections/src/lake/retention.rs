//! Trimming the telemetry stream, never past what the lake has committed.
//!
//! The telemetry stream has no JetStream limits (no `max_age`, `max_bytes`, `max_msgs`): a limit
//! would drop messages whether or not the lake holds them. Old messages leave the log only
//! through [`trim`], which purges up to the *floor*: the lowest sequence committed by every lake
//! projection that reads the stream (each table's Delta `txn` version). A trim asked for beyond
//! the floor is refused, or clipped to it when the caller says so; the scheduled retention
//! ([`run`]) clips. [`check_stream_limits`] reports a stream whose configuration would let
//! JetStream drop messages by itself.
//!
//! The events stream is never trimmed: it is the write side's source of truth (the entity view
//! replays it from the start).

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use thinglake_infra::log::get;
use thinglake_infra::subjects::Subjects;
use thinglake_lake::LakeLocation;
use thinglake_lake::writer::TableWriter;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::error::{BoxError, ProjectionError, Result};
use crate::lake::options::LakeOptions;
use crate::lake::projection::{ProjectionKind, Source};

/// Where a trim should stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrimPoint {
    /// Purge every message with a smaller stream sequence.
    Sequence(u64),
    /// Purge every message stored before this time (milliseconds since the Unix epoch).
    Time(i64),
}

/// How far the lake has committed a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedFloor {
    /// The lowest committed sequence over the projections (0: one of them committed nothing).
    pub seq: u64,
    /// Each projection reading the stream and its committed sequence.
    pub projections: Vec<(&'static str, u64)>,
}

impl CommittedFloor {
    /// The projection holding the floor back (the first with the lowest sequence).
    pub fn slowest(&self) -> Option<&'static str> {
        self.projections.iter().find(|(_, seq)| *seq == self.seq).map(|(name, _)| *name)
    }
}

/// What a trim did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrimReport {
    pub stream: String,
    /// The first sequence the caller wanted to keep.
    pub requested: u64,
    /// The first sequence kept (requested, or the floor + 1 when clipped).
    pub keep_from: u64,
    pub floor: CommittedFloor,
    /// Whether the trim stopped short of the request because the lake had not committed it.
    pub clipped: bool,
    /// Messages purged.
    pub purged: u64,
    /// The stream's first sequence afterwards.
    pub first_seq: u64,
}

/// The lowest sequence of `source`'s stream that every lake projection reading it committed.
pub async fn committed_floor(location: &LakeLocation, source: Source) -> Result<CommittedFloor> {
    let mut projections = Vec::new();
    for kind in ProjectionKind::ALL {
        let projection = kind.projection();
        if projection.source() != source {
            continue;
        }
        let name = projection.name();
        let committed = match location.open(name).await? {
            Some(table) => TableWriter::new(name, table)?.committed_seq(name).await?,
            None => 0,
        };
        projections.push((name, committed));
    }
    let seq = projections.iter().map(|(_, seq)| *seq).min().unwrap_or(0);
    Ok(CommittedFloor { seq, projections })
}

/// Purges the telemetry stream before `point`, but never a message some lake projection has
/// not committed: beyond the floor it fails with [`ProjectionError::TrimBeyondLake`], or stops at the
/// floor when `clip` is set.
pub async fn trim(
    js: &jetstream::Context,
    subjects: &Subjects,
    location: &LakeLocation,
    source: Source,
    point: TrimPoint,
    clip: bool,
) -> Result<TrimReport> {
    let stream_name = source.stream(subjects);
    if source == Source::Events {
        return Err(ProjectionError::TrimRefused {
            stream: stream_name,
            reason: "the events stream is the write side's source of truth; only telemetry is trimmed".to_string(),
        });
    }
    let trim_error = |source: BoxError| ProjectionError::Trim { stream: stream_name.clone(), source };
    let mut stream = js.get_stream(&stream_name).await.map_err(|e| trim_error(e.into()))?;
    let state = stream.info().await.map_err(|e| trim_error(e.into()))?.state.clone();
    let requested = match point {
        TrimPoint::Sequence(seq) => seq,
        TrimPoint::Time(ms) => first_seq_at_or_after(&stream, subjects, &state, ms).await?,
    };
    // Read after the stream state: a commit racing this only raises the floor.
    let floor = committed_floor(location, source).await?;
    let safe = floor.seq.saturating_add(1);
    let (keep_from, clipped) = if requested > safe {
        if !clip {
            return Err(ProjectionError::TrimBeyondLake {
                stream: stream_name,
                requested,
                floor: floor.seq,
                projection: floor.slowest().unwrap_or("none").to_string(),
            });
        }
        (safe, true)
    } else {
        (requested, false)
    };
    let mut report =
        TrimReport { stream: stream_name.clone(), requested, keep_from, floor, clipped, purged: 0, first_seq: state.first_sequence };
    if keep_from <= state.first_sequence || state.messages == 0 {
        return Ok(report);
    }
    let purged = stream.purge().sequence(keep_from).await.map_err(|e| trim_error(e.into()))?;
    report.purged = purged.purged;
    report.first_seq = stream.info().await.map_err(|e| trim_error(e.into()))?.state.first_sequence;
    info!(
        stream = %report.stream,
        keep_from,
        purged = report.purged,
        floor = report.floor.seq,
        clipped,
        "stream trimmed up to what the lake has committed"
    );
    Ok(report)
}

/// The first sequence of a message stored at or after `ms` (one past the last if none is):
/// a binary search over the stream's message times, which grow with the sequence.
async fn first_seq_at_or_after(
    stream: &jetstream::stream::Stream,
    subjects: &Subjects,
    state: &stream::State,
    ms: i64,
) -> Result<u64> {
    let filter = subjects.all_telemetry();
    let stored_at = async |seq: u64| -> Result<Option<(u64, i64)>> {
        // The first message at or after `seq` (purged or deleted sequences are skipped).
        match get::next_on_subject(stream, &filter, seq).await {
            Ok(found) => Ok(found.map(|(message, at)| (message.seq, at))),
            Err(e) => Err(ProjectionError::Trim { stream: stream.cached_info().config.name.clone(), source: e.into() }),
        }
    };
    // The smallest position whose next message is not older than `ms` (or has none): purging
    // below it purges exactly the older messages.
    let (mut low, mut high) = (state.first_sequence, state.last_sequence + 1);
    while low < high {
        let mid = low + (high - low) / 2;
        match stored_at(mid).await? {
            Some((_, at)) if at < ms => low = mid + 1,
            _ => high = mid,
        }
    }
    Ok(low)
}

/// A stream configuration under which JetStream itself deletes messages (limits with
/// `discard: old`, or interest / work-queue retention): such deletions do not wait for the lake.
pub fn check_stream_limits(config: &stream::Config) -> Result<()> {
    let mut limits = Vec::new();
    if config.retention != stream::RetentionPolicy::Limits {
        limits.push(format!("retention {:?}", config.retention));
    }
    if config.discard == stream::DiscardPolicy::Old {
        if !config.max_age.is_zero() {
            limits.push(format!("max_age {:?}", config.max_age));
        }
        if config.max_bytes > 0 {
            limits.push(format!("max_bytes {}", config.max_bytes));
        }
        if config.max_messages > 0 {
            limits.push(format!("max_msgs {}", config.max_messages));
        }
        if config.max_messages_per_subject > 0 {
            limits.push(format!("max_msgs_per_subject {}", config.max_messages_per_subject));
        }
    }
    if limits.is_empty() {
        Ok(())
    } else {
        Err(ProjectionError::UnsafeStreamLimits { stream: config.name.clone(), limits: limits.join(", ") })
    }
}

/// Scheduled retention: every `options.upkeep_interval`, trims the telemetry stream of messages
/// older than `retention`, clipped to what the lake has committed.
pub async fn run(
    js: jetstream::Context,
    subjects: Subjects,
    options: LakeOptions,
    retention: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(options.upkeep_interval);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let cutoff = now_ms() - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        match trim(&js, &subjects, &options.location, Source::Telemetry, TrimPoint::Time(cutoff), true).await {
            Ok(report) if report.clipped => warn!(
                stream = %report.stream,
                requested = report.requested,
                floor = report.floor.seq,
                projection = report.floor.slowest().unwrap_or("none"),
                "telemetry older than the retention is kept: the lake has not committed it yet"
            ),
            Ok(_) => {}
            Err(e) => warn!(error = %e, "telemetry retention failed; the next round retries"),
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
