//! The lake projections: the JetStream log turned into Delta Lake tables (Parquet files plus a
//! Delta transaction log) on object storage, exactly once. The tables themselves (specs, location,
//! writer, file scan, hot tail, upkeep) are the lake crate's (`thinglake_lake`); this module reads
//! the log and decides the rows.
//!
//! Each projection ([`projection::Projection`]) is a durable pull consumer on its source stream
//! and writes one table. The [`runner`] pulls messages in chunks, decodes each chunk into an
//! Arrow batch off the I/O runtime and shows it at once in the table's [`HotTail`];
//! when a batch is big or old enough it writes the batches as Parquet and commits them together
//! with the last stream sequence they cover (a Delta `txn` action keyed by the projection name),
//! then acks the messages and trims the hot tail. At start it reads that sequence back and
//! resumes right after it, so a crash at any point loses nothing and writes nothing twice.
//! Messages that cannot be read, and rows the table cannot take (`thinglake_lake::unwritable`),
//! go to the `dead_letters` table with their sequence and reason; the rest of the batch commits.
//!
//! - [`projection`]: what each projection decodes from the log, in `projection/`: the projection
//!   trait (`contract.rs`), the registry of projections ([`ProjectionKind`], `registry.rs`), one
//!   decoder per table (`telemetry.rs`, `telemetry_hourly.rs`, `attribute_versions.rs`,
//!   `events.rs`, `entity_versions.rs`, `relation_versions.rs`), the reading of telemetry
//!   messages they share (`points.rs`) and the scanner of JSON text as serde_json writes it
//!   (`json_text.rs`).
//! - [`options`]: how the projections batch, commit and keep their tables tidy.
//! - [`runner`]: one projection run from the log into its table, exactly once.
//! - [`rebuild`]: a table rebuilt from the log into a new table version, beside live ingestion.
//! - [`retention`]: trimming the telemetry stream, never past what every table committed.
//! - [`seed`]: the latest values of the trimmed part of the telemetry stream, read back at start.

pub mod options;
pub mod projection;
pub mod rebuild;
pub mod retention;
pub mod runner;
pub mod seed;

use std::collections::BTreeMap;

use thinglake_infra::subjects::Subjects;
use thinglake_lake::{HotTail, upkeep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::{ProjectionError, Result};

pub use options::LakeOptions;
pub use projection::{Projection, ProjectionKind};
pub use runner::{ProjectionRunner, RunnerStatus};

/// Refuses streams whose configuration lets JetStream delete what the lake has not committed.
async fn check_streams(js: &async_nats::jetstream::Context, subjects: &Subjects) -> Result<()> {
    for stream in [subjects.telemetry_stream(), subjects.events_stream()] {
        let info = js.get_stream(&stream).await.map_err(|e| ProjectionError::Trim { stream: stream.clone(), source: e.into() })?;
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
