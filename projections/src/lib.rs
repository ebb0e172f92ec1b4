//! Projection workers of Thinglake: read models built from the JetStream log.
//!
//! - [`entities`]: the in-memory entity read model (current state of every entity, with its
//!   version), serving the REST API's reads and the command handlers' state.
//! - [`latest`]: the latest-values read model (attributes by scope, latest time-series value per
//!   key), followed from the telemetry stream; pushes shared-attribute changes to subscribers.
//! - [`follower`]: rebuilds a read model from the log at start and keeps it current.
//! - [`lake`]: the lake projections: the log decoded into rows of the Delta Lake tables
//!   (telemetry, events, entity, attribute and relation versions) and written exactly once, with
//!   an in-memory hot tail; the tables, writer and hot tail themselves are the lake crate's
//!   (`thinglake_lake`).
//!
//! - [`error`]: [`ProjectionError`] (the lake projections' failures, wrapping the lake's and the
//!   log's errors) and [`DecodeError`] (a message a projection cannot read).
//!
//! Every read model can be dropped and rebuilt from the log.

pub mod entities;
pub mod error;
pub mod follower;
pub mod lake;
pub mod latest;

pub use entities::{Applied, Entities, EntityView, Versioned};
pub use error::{DecodeError, ProjectionError};
pub use latest::{LatestValues, SharedUpdate};
