//! The registry of the lake projections Thinglake runs ([`ProjectionKind`]): their names, where a
//! rebuild finds their trimmed rows ([`Archive`]) and a fresh projection of each kind.

use thinglake_lake::table::{
    LAKE_ATTRIBUTE_VERSIONS, LAKE_ENTITY_VERSIONS, LAKE_EVENTS, LAKE_RELATION_VERSIONS, LAKE_TELEMETRY, LAKE_TELEMETRY_HOURLY,
};

use super::attribute_versions::AttributeVersionsProjection;
use super::contract::Projection;
use super::entity_versions::EntityVersionsProjection;
use super::events::EventsProjection;
use super::relation_versions::RelationVersionsProjection;
use super::telemetry::TelemetryProjection;
use super::telemetry_hourly::TelemetryHourlyProjection;

/// Where a rebuild finds the rows of log messages that were trimmed from the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Archive {
    /// In the table itself: its rows below the log's first sequence are kept.
    OwnTable,
    /// In the `events` table: its rows are replayed through the projection.
    EventsTable,
    /// In the `telemetry` table: its points are aggregated again (the hourly rollup).
    TelemetryTable,
}

/// The projections Thinglake runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectionKind {
    Telemetry,
    TelemetryHourly,
    Events,
    EntityVersions,
    AttributeVersions,
    RelationVersions,
}

impl ProjectionKind {
    pub const ALL: [ProjectionKind; 6] = [
        ProjectionKind::Telemetry,
        ProjectionKind::TelemetryHourly,
        ProjectionKind::Events,
        ProjectionKind::EntityVersions,
        ProjectionKind::AttributeVersions,
        ProjectionKind::RelationVersions,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ProjectionKind::Telemetry => LAKE_TELEMETRY,
            ProjectionKind::TelemetryHourly => LAKE_TELEMETRY_HOURLY,
            ProjectionKind::Events => LAKE_EVENTS,
            ProjectionKind::EntityVersions => LAKE_ENTITY_VERSIONS,
            ProjectionKind::AttributeVersions => LAKE_ATTRIBUTE_VERSIONS,
            ProjectionKind::RelationVersions => LAKE_RELATION_VERSIONS,
        }
    }

    /// Where the rows of trimmed log messages come from in a rebuild.
    pub fn archive(self) -> Archive {
        match self {
            ProjectionKind::EntityVersions | ProjectionKind::RelationVersions => Archive::EventsTable,
            ProjectionKind::Telemetry | ProjectionKind::Events | ProjectionKind::AttributeVersions => Archive::OwnTable,
            ProjectionKind::TelemetryHourly => Archive::TelemetryTable,
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// A fresh projection of this kind.
    pub fn projection(self) -> Box<dyn Projection> {
        match self {
            ProjectionKind::Telemetry => Box::new(TelemetryProjection),
            ProjectionKind::TelemetryHourly => Box::new(TelemetryHourlyProjection),
            ProjectionKind::Events => Box::new(EventsProjection::default()),
            ProjectionKind::EntityVersions => Box::new(EntityVersionsProjection::default()),
            ProjectionKind::AttributeVersions => Box::new(AttributeVersionsProjection),
            ProjectionKind::RelationVersions => Box::new(RelationVersionsProjection::default()),
        }
    }
}
