//! The `thinglake` binary's library: configuration ([`config`]'s option blocks, with [`config::limits`]
//! and [`config::quotas`]), the HTTP listener
//! ([`http_server`]), the wiring that runs the
//! whole platform on one node ([`app`]), the NATS ingress of device payloads
//! ([`nats_ingress`]) and demo mode ([`demo`]). `main.rs` only parses the command line and calls in.

pub mod app;
pub mod config;
pub mod demo;
pub mod http_server;
pub mod nats_ingress;

pub use app::RunningApp;
pub use config::{MqttTls, RunArgs, Settings};
