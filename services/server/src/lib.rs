//! The `thinglake` binary's library: configuration ([`config`]) and the wiring that runs the
//! whole platform on one node ([`app`]). `main.rs` only parses the command line and calls in.

pub mod app;
pub mod config;

pub use app::RunningApp;
pub use config::{RunArgs, Settings};
