//! Black-box tests of the platform over HTTP, against a real nats-server.

mod assets;
mod auth;
mod customers;
mod clients;
mod cluster;
mod devices;
mod harness;
mod history;
mod isolation;
mod process;
mod profiles;
mod relations;
mod tenants;
mod users;
