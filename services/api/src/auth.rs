//! `/api/auth/…`: sign-in, token refresh, the current user, sign-out and password change.

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::Value;
use thinglake_infra::auth::TokenPair;

use crate::ApiState;
use crate::client_addr::ClientAddr;
use crate::error::Result;
use crate::extract::{Auth, Json};
use crate::users::user_json;

pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/auth/login", post(login))
        .route("/api/auth/token", post(refresh))
        .route("/api/auth/user", get(current_user))
        .route("/api/auth/logout", post(logout))
        .route("/api/auth/changePassword", post(change_password))
}

#[derive(Debug, Deserialize)]
struct LoginBody {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

async fn login(
    State(state): State<ApiState>,
    ClientAddr(client): ClientAddr,
    Json(body): Json<LoginBody>,
) -> Result<axum::Json<TokenPair>> {
    Ok(axum::Json(state.platform.login(&body.username, &body.password, client).await?))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RefreshBody {
    #[serde(default)]
    refresh_token: String,
}

async fn refresh(State(state): State<ApiState>, Json(body): Json<RefreshBody>) -> Result<axum::Json<TokenPair>> {
    Ok(axum::Json(state.platform.refresh_tokens(&body.refresh_token)?))
}

async fn current_user(State(state): State<ApiState>, Auth(p): Auth) -> Result<axum::Json<Value>> {
    Ok(axum::Json(user_json(&state.platform.current_user(&p)?)))
}

/// Ends every session of the caller: its access and refresh tokens stop working on every node
/// (ThingsBoard revokes only the presented token; see docs/api.md).
async fn logout(State(state): State<ApiState>, Auth(p): Auth) -> Result<()> {
    Ok(state.platform.logout(&p).await?)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChangePasswordBody {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
}

async fn change_password(
    State(state): State<ApiState>,
    Auth(p): Auth,
    ClientAddr(client): ClientAddr,
    Json(body): Json<ChangePasswordBody>,
) -> Result<axum::Json<TokenPair>> {
    Ok(axum::Json(state.platform.change_password(&p, &body.current_password, &body.new_password, client).await?))
}
