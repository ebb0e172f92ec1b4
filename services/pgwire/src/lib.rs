//! The PostgreSQL wire protocol of Thinglake: `psql`, Grafana's PostgreSQL data source, JDBC and
//! other PostgreSQL clients run the same tenant-scoped, read-only SQL as `POST /api/sql`.
//!
//! A connection signs in with the platform's credentials (user = email, password = the platform
//! password or an access token, sent as a cleartext password message) and then runs every
//! statement as that [`Principal`](thinglake_platform::Principal) through the platform's SQL use
//! case: the same views, read-only checks, limits and cancellation. Both the simple query
//! protocol and the extended one (parse, bind with `$n` parameters, describe, execute) are served;
//! the session statements clients send at connect (`SET`, `SHOW`, `BEGIN`, `SELECT version()`)
//! are answered here without reaching the engine.
//!
//! - [`server`]: [`PgServer`], the listener and its connections: TLS when a certificate is
//!   configured, a connection cap and an idle timeout ([`PgOptions`]).
//! - [`activity`]: when each connection last ran a statement (the idle timeout's clock).
//! - [`auth`]: the startup handshake and sign-in.
//! - [`query`]: the simple and extended query handlers.
//! - [`session`]: the statements answered locally.
//! - [`types`]: Arrow columns as PostgreSQL types and values, parameters as DataFusion values.
//! - [`error`]: platform and query errors as PostgreSQL errors with their SQLSTATE.

pub mod activity;
pub mod auth;
pub mod error;
pub mod query;
pub mod server;
pub mod session;
pub mod types;

pub use server::{PgOptions, PgServer};
