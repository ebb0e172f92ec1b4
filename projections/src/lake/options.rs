//! How the lake projections batch, commit and keep their tables tidy ([`LakeOptions`]).

use std::time::Duration;

use thinglake_lake::LakeLocation;

/// How the projections batch, commit and keep their tables tidy.
#[derive(Debug, Clone)]
pub struct LakeOptions {
    /// Where the tables live.
    pub location: LakeLocation,
    /// A batch is committed once it holds this many rows...
    pub batch_rows: usize,
    /// ...or once its oldest row is this old.
    pub batch_interval: Duration,
    /// How often compaction and vacuum run (zero: never).
    pub upkeep_interval: Duration,
    /// Files replaced by compaction are deleted by vacuum once they are this old, so readers of
    /// older table versions keep working meanwhile.
    pub vacuum_retention: Duration,
    /// How long telemetry stays on the log at least: older messages are trimmed every
    /// `upkeep_interval`, but never past what every lake table has committed (`None`: kept
    /// forever).
    pub telemetry_retention: Option<Duration>,
}

impl LakeOptions {
    pub fn new(location: LakeLocation) -> Self {
        Self {
            location,
            batch_rows: 100_000,
            batch_interval: Duration::from_secs(2),
            upkeep_interval: Duration::from_secs(600),
            vacuum_retention: Duration::from_secs(7 * 24 * 3600),
            telemetry_retention: Some(Duration::from_secs(7 * 24 * 3600)),
        }
    }
}
