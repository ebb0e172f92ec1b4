//! Adapters of Thinglake: everything that talks to the outside world on behalf of the pure domain.
//!
//! - [`nats_server`]: starts and supervises a local `nats-server` with JetStream (single-node mode).
//! - [`nats_auth`]: the supervised server's users (platform, NATS ingress) and how the platform
//!   signs in to a server.
//! - [`subjects`]: every NATS subject, stream, bucket and consumer name, in one place.
//! - [`event_store`]: the JetStream event store — append with optimistic concurrency and
//!   de-duplication, load an entity by replaying its subject, follow the whole log.
//! - [`log`]: every way of reading the log (ordered consumers, pull consumers, batched direct
//!   gets), each yielding [`log::LogMessage`]s.
//! - [`claims`]: create-only reservations of unique keys (device names, access tokens, emails).
//! - [`telemetry_store`]: publish telemetry messages (acknowledged by JetStream) and follow the
//!   telemetry stream.
//! - [`auth`]: password hashing (argon2) and ThingsBoard-compatible JWTs (HS512).
//! - [`listener`]: the accept step of the TCP listeners, with a pause after a failed accept.
//! - [`tls`]: the server configuration of the TLS listeners (MQTT, PostgreSQL wire) from PEM files.
//!
//! Data flow: services decide commands with `thinglake-domain`, then append the events here;
//! projections follow the log through [`event_store::EventStore::follow`] and the readers of
//! [`log`]. The platform writes through three traits, [`event_store::EventLog`],
//! [`telemetry_store::TelemetryLog`] and [`claims::ClaimStore`], implemented here on JetStream
//! and in memory by `thinglake-test-support`, so that the platform and the API are tested in
//! process without a nats-server.

pub mod auth;
pub mod claims;
pub mod error;
pub mod event_store;
pub mod listener;
pub mod log;
pub mod nats_auth;
pub mod nats_server;
pub mod subjects;
pub mod telemetry_store;
pub mod tls;

pub use error::{AppendError, Error, ErrorKind, Result};
