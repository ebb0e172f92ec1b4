//! `/api/v1/{token}/…`: ThingsBoard's device HTTP API (telemetry, client attributes, attribute
//! requests, the long poll for shared-attribute updates).
//!
//! The access token in the path identifies the device; an unknown one answers 401 with an empty
//! body, as ThingsBoard does. Bodies are read up to the platform's payload limit (413 beyond);
//! a 200 is sent only after JetStream acknowledged the data (503 with `Retry-After` when it
//! cannot be reached).

use std::time::Duration;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use thinglake_platform::Error as PlatformError;
use thinglake_projections::SharedUpdate;
use tokio::sync::broadcast::error::RecvError;

use crate::ApiState;
use crate::error::{ApiError, Result};
use crate::extract::Query;

/// Longest long poll a device may ask for.
const MAX_POLL_TIMEOUT: Duration = Duration::from_secs(600);
/// Long poll length when the device gives none.
const DEFAULT_POLL_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/{token}/telemetry", post(post_telemetry))
        .route("/api/v1/{token}/attributes", post(post_attributes).get(get_attributes))
        .route("/api/v1/{token}/attributes/updates", get(attribute_updates))
        // The platform's payload limit applies instead (read in the handlers).
        .layer(DefaultBodyLimit::disable())
}

/// An unknown token: the bare 401 ThingsBoard answers.
fn unknown_token() -> Response {
    StatusCode::UNAUTHORIZED.into_response()
}

/// Reads a body up to the payload limit; a longer one is refused before it is read whole.
async fn read_body(state: &ApiState, body: Body) -> Result<axum::body::Bytes> {
    let limit = state.platform.config().telemetry.max_payload_bytes;
    to_bytes(body, limit).await.map_err(|_| {
        ApiError::from(PlatformError::PayloadTooLarge { size: limit.saturating_add(1), limit })
    })
}

async fn post_telemetry(State(state): State<ApiState>, Path(token): Path<String>, body: Body) -> Response {
    let Some(device) = state.platform.device_by_token(&token) else { return unknown_token() };
    let result = async {
        let bytes = read_body(&state, body).await?;
        state.platform.publish_telemetry(&device, &bytes).await?;
        Ok::<_, ApiError>(StatusCode::OK)
    };
    result.await.into_response()
}

async fn post_attributes(State(state): State<ApiState>, Path(token): Path<String>, body: Body) -> Response {
    let Some(device) = state.platform.device_by_token(&token) else { return unknown_token() };
    let result = async {
        let bytes = read_body(&state, body).await?;
        state.platform.publish_client_attributes(&device, &bytes).await?;
        Ok::<_, ApiError>(StatusCode::OK)
    };
    result.await.into_response()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AttributesQuery {
    client_keys: Option<String>,
    shared_keys: Option<String>,
}

/// Splits ThingsBoard's comma-separated key lists.
pub(crate) fn split_keys(keys: Option<&str>) -> Option<Vec<String>> {
    let keys: Vec<String> =
        keys?.split(',').map(str::trim).filter(|k| !k.is_empty()).map(str::to_string).collect();
    (!keys.is_empty()).then_some(keys)
}

async fn get_attributes(
    State(state): State<ApiState>,
    Path(token): Path<String>,
    Query(q): Query<AttributesQuery>,
) -> Response {
    let Some(device) = state.platform.device_by_token(&token) else { return unknown_token() };
    let client = split_keys(q.client_keys.as_deref());
    let shared = split_keys(q.shared_keys.as_deref());
    let (client, shared) = state.platform.device_attributes(&device, client.as_deref(), shared.as_deref());
    let _ = state.platform.device_activity(&device).await;
    axum::Json(attributes_response(client, shared)).into_response()
}

/// `{"client": {…}, "shared": {…}}`, a scope with nothing left out.
pub(crate) fn attributes_response(client: Map<String, Value>, shared: Map<String, Value>) -> Value {
    let mut out = Map::new();
    if !client.is_empty() {
        out.insert("client".into(), Value::Object(client));
    }
    if !shared.is_empty() {
        out.insert("shared".into(), Value::Object(shared));
    }
    Value::Object(out)
}

/// The JSON a device receives for a shared-attribute change.
pub(crate) fn shared_update_json(update: SharedUpdate) -> Value {
    match update {
        SharedUpdate::Updated(values) => Value::Object(values),
        SharedUpdate::Deleted(keys) => json!({"deleted": keys}),
    }
}

#[derive(Debug, Deserialize)]
struct PollQuery {
    /// Milliseconds.
    timeout: Option<u64>,
}

async fn attribute_updates(State(state): State<ApiState>, Path(token): Path<String>, Query(q): Query<PollQuery>) -> Response {
    let Some(device) = state.platform.device_by_token(&token) else { return unknown_token() };
    let timeout = q.timeout.map_or(DEFAULT_POLL_TIMEOUT, Duration::from_millis).min(MAX_POLL_TIMEOUT);
    let mut updates = state.platform.subscribe_shared_updates(&device);
    let _ = state.platform.device_activity(&device).await;
    let next = async {
        loop {
            match updates.recv().await {
                Ok(update) => return Some(update),
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    };
    match tokio::time::timeout(timeout, next).await {
        Ok(Some(update)) => axum::Json(shared_update_json(update)).into_response(),
        Ok(None) | Err(_) => StatusCode::REQUEST_TIMEOUT.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_lists_are_comma_separated_and_empty_means_none() {
        assert_eq!(split_keys(Some("a, b,")), Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(split_keys(Some("")), None);
        assert_eq!(split_keys(None), None);
    }

    #[test]
    fn an_empty_scope_is_left_out_of_an_attribute_response() {
        let mut client = Map::new();
        client.insert("a".into(), json!(1));
        assert_eq!(attributes_response(client, Map::new()), json!({"client": {"a": 1}}));
    }
}
