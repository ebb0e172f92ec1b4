//! Request extractors that answer bad input with ThingsBoard's error JSON: the authenticated
//! caller, JSON bodies, query strings and path ids.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;
use thinglake_platform::Principal;
use uuid::Uuid;

use crate::ApiState;
use crate::error::{ApiError, code};

/// The caller, from `X-Authorization: Bearer <JWT>` (or `Authorization: Bearer`).
#[derive(Debug, Clone)]
pub struct Auth(pub Principal);

/// Reads the bearer token of a request.
pub fn bearer_token(parts: &Parts) -> Option<&str> {
    ["x-authorization", header::AUTHORIZATION.as_str()].into_iter().find_map(|name| {
        let value = parts.headers.get(name)?.to_str().ok()?;
        let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer "))?;
        Some(token.trim())
    })
}

impl FromRequestParts<ApiState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts).ok_or_else(|| ApiError::unauthorized("Authentication failed"))?;
        authenticate(state, token).map(Auth)
    }
}

/// The caller of an access token (REST header, WebSocket `?token=` or `authCmd`).
pub fn authenticate(state: &ApiState, token: &str) -> Result<Principal, ApiError> {
    Ok(state.platform.principal_of(token)?)
}

/// A JSON body; malformed or mistyped JSON is a 400 with the parser's message.
#[derive(Debug, Clone)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// A JSON body whatever its `Content-Type`: ThingsBoard's telemetry and attribute saves read
/// the body as a string and parse it themselves, so clients send it as `text/plain`
/// (`tb-rest-client` 4.4, generated from ThingsBoard's API description) or with no type at all.
/// Malformed JSON is a 400 with the parser's message, as [`Json`].
#[derive(Debug, Clone)]
pub struct AnyJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for AnyJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        parts.headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
        let Json(value) = Json::from_request(Request::from_parts(parts, body), state).await?;
        Ok(AnyJson(value))
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::BytesRejection(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, code::BAD_REQUEST_PARAMS, "Request body is too large")
        }
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::bad_request("Content-Type must be application/json")
        }
        other => ApiError::bad_request(format!("Invalid request body: {}", other.body_text())),
    }
}

/// A query string; bad parameters are a 400 naming the problem.
#[derive(Debug, Clone)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::bad_request(format!("Invalid request parameters: {}", rejection.body_text()))
}

/// Parses an id from a path segment; a malformed one is a 400, as ThingsBoard answers.
pub fn parse_id(raw: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::bad_request(format!("Invalid UUID string: {raw} ({what})")))
}
