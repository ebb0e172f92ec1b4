//! What each lake projection reads from the log and the rows it makes of it.
//!
//! A projection decodes one log message at a time into rows of its table. A message it cannot
//! read (corrupt JSON, an unknown schema version) is refused with a reason and ends up in the
//! dead-letter table; the projection goes on.
//!
//! - `contract`: the [`Projection`] trait, the [`LogMessage`]s it reads from its [`Source`] and
//!   the [`ArchivedEvent`]s a rebuild replays through it.
//! - `registry`: the projections Thinglake runs ([`ProjectionKind`]) and where a rebuild finds
//!   their trimmed rows ([`Archive`]).
//! - One decoder per table: `telemetry`, `telemetry_hourly`, `attribute_versions` (the
//!   telemetry stream, read by `points`), `events`, `entity_versions`, `relation_versions` (the
//!   events stream).
//! - `json_text`: the scanner of JSON text as serde_json writes it, which lets `events` and
//!   `entity_versions` take payload texts as they are.

mod attribute_versions;
mod contract;
mod entity_versions;
mod events;
#[cfg(test)]
mod fixtures;
mod json_text;
mod points;
mod registry;
mod relation_versions;
mod telemetry;
mod telemetry_hourly;

pub use attribute_versions::AttributeVersionsProjection;
pub use contract::{ArchivedEvent, KNOWN_EVENT_SCHEMA_VERSION, LogMessage, Projection, Source};
pub use entity_versions::EntityVersionsProjection;
pub use events::EventsProjection;
pub use registry::{Archive, ProjectionKind};
pub use relation_versions::RelationVersionsProjection;
pub use telemetry::TelemetryProjection;
pub use telemetry_hourly::TelemetryHourlyProjection;
