//! ThingsBoard-compatible REST API of Thinglake.
//!
//! [`router`] builds the whole axum router over an [`ApiState`]; tests call it without a socket
//! (`tests/it`, on the in-memory storage of `thinglake-test-support`, without a nats-server) and
//! the `thinglake` binary serves it. Each resource has its module (`devices`, `assets`, ...);
//! requests become calls on [`thinglake_platform::Platform`], and every error becomes
//! ThingsBoard's error JSON in [`error`]. [`ws::routes`] adds the WebSocket API for live
//! dashboards (merged by the server beside [`router`]).

pub mod client_addr;
pub mod error;
pub mod extract;
pub mod page;
pub mod ws;

mod assets;
mod auth;
mod customer_assignment;
mod customers;
mod dashboards;
mod device_http;
mod devices;
mod history;
mod owner;
mod profiles;
mod relations;
mod sql;
mod telemetry;
mod tenants;
mod users;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use thinglake_platform::Platform;

pub use error::{ApiError, Result};

/// Largest request body accepted by default (ThingsBoard's default is 10 MB... we keep 1 MiB for
/// entity JSON; telemetry endpoints set their own).
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// ThingsBoard's answer for an unknown API path (404, errorCode 32); also what the web UI's
/// router answers for `/api/…` paths no API route matched.
pub fn no_such_endpoint() -> axum::response::Response {
    use axum::response::IntoResponse;
    ApiError::not_found("No such endpoint").into_response()
}

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct ApiState {
    pub platform: Platform,
}

/// The REST API.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .merge(auth::routes())
        .merge(users::routes())
        .merge(tenants::routes())
        .merge(customers::routes())
        .merge(devices::routes())
        .merge(profiles::routes())
        .merge(assets::routes())
        .merge(dashboards::routes())
        .merge(relations::routes())
        .merge(history::routes())
        .merge(device_http::routes())
        .merge(telemetry::routes())
        .merge(sql::routes())
        .merge(owner::routes())
        .fallback(|| async { no_such_endpoint() })
        .layer(DefaultBodyLimit::max(DEFAULT_BODY_LIMIT))
        .with_state(state)
}
