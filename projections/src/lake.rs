//! The lake projections: the JetStream log turned into Delta Lake tables (Parquet files plus a
//! Delta transaction log) on object storage, exactly once.
//!
//! Each projection ([`projection::Projection`]) is a durable pull consumer on its source stream
//! and writes one table. The [`runner`] pulls messages in chunks, decodes each chunk into an
//! Arrow batch off the I/O runtime and shows it at once in the table's [`hot_tail::HotTail`];
//! when a batch is big or old enough it writes the batches as Parquet and commits them together
//! with the last stream sequence they cover (a Delta `txn` action keyed by the projection name),
//! then acks the messages and trims the hot tail. At start it reads that sequence back and
//! resumes right after it, so a crash at any point loses nothing and writes nothing twice.
//! Messages that cannot be read, and rows the table cannot take (`unwritable`), go to the
//! `dead_letters` table with their sequence and reason; the rest of the batch commits.
//!
//! - [`store`]: where the tables live (a local directory, or a URL) and opening/creating them.
//! - [`s3`]: S3-compatible object storage (`s3://bucket/prefix`).
//! - [`table`]: the schemas (see `docs/lake.md`).
//! - [`upkeep`]: compaction of small files, vacuum; checkpoints come with the commits.
//! - [`rebuild`]: a table rebuilt from the log into a new table version, beside live ingestion.
//! - [`retention`]: trimming the telemetry stream, never past what every table committed.
//! - [`seed`]: the latest values of the trimmed part of the telemetry stream, read back at start.

pub mod error;
pub mod hot_tail;
pub mod options;
pub mod partition;
pub mod projection;
pub mod rebuild;
pub mod retention;
pub mod rollup;
pub mod runner;
pub mod s3;
pub mod scan;
pub mod seed;
pub mod store;
pub mod table;
pub mod upkeep;
mod unwritable;
mod writer;

use std::collections::BTreeMap;

use thinglake_infra::subjects::Subjects;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use error::{LakeError, Result};
pub use hot_tail::{HotTail, TailSnapshot};
pub use options::LakeOptions;
pub use projection::{Projection, ProjectionKind};
pub use runner::{ProjectionRunner, RunnerStatus};
pub use s3::S3Options;
pub use store::LakeLocation;
pub use table::PAGE_ROWS;
pub use writer::ROW_GROUP_ROWS;

/// Refuses streams whose configuration lets JetStream delete what the lake has not committed.
async fn check_streams(js: &async_nats::jetstream::Context, subjects: &Subjects) -> Result<()> {
    for stream in [subjects.telemetry_stream(), subjects.events_stream()] {
        let info = js.get_stream(&stream).await.map_err(|e| LakeError::Trim { stream: stream.clone(), reason: e.to_string() })?;
        retention::check_stream_limits(&info.cached_info().config)?;
    }
    Ok(())
}

/// The running lake projections and their hot tails, for the query layer.
#[derive(Debug, Clone, Default)]
pub struct Lake {
    tails: BTreeMap<&'static str, HotTail>,
    statuses: BTreeMap<&'static str, RunnerStatus>,
}

impl Lake {
    /// Starts every lake projection on `tracker`; they flush and commit when `shutdown` fires.
    /// Returns once each has opened its table and its consumer.
    pub async fn start(
        js: async_nats::jetstream::Context,
        subjects: Subjects,
        options: LakeOptions,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<Self> {
        let mut lake = Lake::default();
        Box::pin(check_streams(&js, &subjects)).await?;
        if let Some(retention) = options.telemetry_retention
            && !options.upkeep_interval.is_zero()
        {
            tracker.spawn(retention::run(js.clone(), subjects.clone(), options.clone(), retention, shutdown.clone()));
        }
        for kind in ProjectionKind::ALL {
            let runner =
                ProjectionRunner::open(js.clone(), subjects.clone(), kind.projection(), options.clone()).await?;
            lake.tails.insert(kind.name(), runner.hot_tail());
            lake.statuses.insert(kind.name(), runner.status());
            let stop = shutdown.clone();
            tracker.spawn(runner.run(stop));
            if !options.upkeep_interval.is_zero() {
                tracker.spawn(upkeep::run(
                    options.location.clone(),
                    kind.name(),
                    options.upkeep_interval,
                    options.vacuum_retention,
                    shutdown.clone(),
                ));
            }
        }
        Ok(lake)
    }

    /// The hot tail of a table: rows seen on the log and not yet committed.
    pub fn hot_tail(&self, table: &str) -> Option<&HotTail> {
        self.tails.get(table)
    }

    /// Progress of a projection (last committed and last seen sequence).
    pub fn status(&self, projection: &str) -> Option<&RunnerStatus> {
        self.statuses.get(projection)
    }
}
