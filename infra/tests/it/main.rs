//! Integration tests of `thinglake-infra`, gathered into one binary (link time dominates).

mod auth;
mod claims;
mod event_store;
mod nats_server;
