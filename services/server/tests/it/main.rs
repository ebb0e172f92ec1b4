//! Black-box tests of the platform over HTTP, against a real nats-server.

mod auth;
mod devices;
mod harness;
mod history;
mod process;
mod relations;
mod tenants;
mod users;
