//! The pure core of Thinglake: entity ids, the event envelope, and for each entity its commands,
//! events and the `decide`/`evolve` functions.
//!
//! Nothing here does I/O, reads a clock or draws random numbers: commands carry `now` and new ids.
//! Services decide commands against current state and append the resulting events to the log
//! (`thinglake-infra`); projections `evolve` state from the log.
//!
//! Entities: [`tenant`], [`customer`], [`user`], [`device`], [`profile`] (device and asset
//! profiles), [`asset`], [`relation`], [`dashboard`]. Each has a `…State` (a [`Lifecycle`]), a `…Command` and a
//! `…Event` enum, and implements [`Aggregate`].
//!
//! Which event types delete their entity is stated in [`deletion`] ([`is_deletion`]); how
//! devices, assets and dashboards are assigned to customers in [`customer_assignment`].

pub mod asset;
pub mod contact;
pub mod customer;
pub mod customer_assignment;
pub mod dashboard;
pub mod deletion;
pub mod device;
pub mod envelope;
pub mod error;
pub mod id;
pub mod profile;
pub mod relation;
pub mod telemetry;
pub mod tenant;
pub mod user;

pub use deletion::is_deletion;
pub use envelope::{Actor, ActorKind, Aggregate, DomainEvent, EventEnvelope, Lifecycle, SECRET_FIELDS, fold_payload, payload_changes, redact_secrets};
pub use error::{DomainError, Result};
pub use id::{
    AssetId, AssetProfileId, CustomerId, DashboardId, DeviceId, DeviceProfileId, EntityId, EntityType, NULL_UUID, TenantEntityId, TenantId, UnknownEntityType, UserId,
};
