//! The pure core of Thinglake: entity ids, the event envelope, and for each entity its commands,
//! events and the `decide`/`evolve` functions.
//!
//! Nothing here does I/O, reads a clock or draws random numbers: commands carry `now` and new ids.
//! Services decide commands against current state and append the resulting events to the log
//! (`thinglake-infra`); projections `evolve` state from the log.

pub mod envelope;
pub mod error;
pub mod id;

pub use envelope::{Actor, ActorKind, Aggregate, DomainEvent, EventEnvelope, Lifecycle};
pub use error::{DomainError, Result};
pub use id::{
    AssetId, AssetProfileId, CustomerId, DeviceId, DeviceProfileId, EntityId, EntityType, NULL_UUID, TenantId, UserId,
};
