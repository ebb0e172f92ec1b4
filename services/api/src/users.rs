//! `/api/user…`, `/api/users`, `/api/tenant/{id}/users`, `/api/customer/{id}/users` and
//! `/api/noauth/activate`: ThingsBoard's user endpoints.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use thinglake_domain::user::Authority;
use thinglake_domain::{CustomerId, TenantId, UserId};
use thinglake_infra::auth::TokenPair;
use thinglake_platform::users::{UserInput, UserView};
use thinglake_queries::paginate;

use crate::ApiState;
use crate::error::{ApiError, Result};
use crate::extract::{Auth, Json, Query, parse_id};
use crate::page::{PageParams, common_sort_key};

pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/user", post(save_user))
        .route("/api/user/{id}", get(get_user).delete(delete_user))
        .route("/api/user/{id}/activationLink", get(activation_link))
        .route("/api/noauth/activate", post(activate).get(activation_page))
        .route("/api/users", get(managed_users))
        // The 4.4 Python client's `get_users` calls this path.
        .route("/api/user/users", get(managed_users))
        .route("/api/tenant/{id}/users", get(tenant_users))
        .route("/api/customer/{customer_id}/users", get(customer_users))
}

/// The user JSON of ThingsBoard (without secrets: hashes and tokens are never rendered).
pub(crate) fn user_json(v: &UserView) -> Value {
    let u = &v.user;
    json!({
        "id": u.id,
        "createdTime": u.created_time,
        "tenantId": u.tenant_id,
        "customerId": u.customer_id,
        "email": u.fields.email,
        "name": u.fields.email,
        "authority": u.authority,
        "firstName": u.fields.first_name,
        "lastName": u.fields.last_name,
        "phone": u.fields.phone,
        "additionalInfo": if u.fields.additional_info.is_null() { json!({}) } else { u.fields.additional_info.clone() },
        "version": v.version,
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserBody {
    id: Option<UserId>,
    email: Option<String>,
    authority: Option<Authority>,
    tenant_id: Option<TenantId>,
    customer_id: Option<CustomerId>,
    first_name: Option<String>,
    last_name: Option<String>,
    phone: Option<String>,
    #[serde(default)]
    additional_info: Value,
    version: Option<u64>,
}

impl UserBody {
    fn into_input(self) -> Result<UserInput> {
        let email = self.email.ok_or_else(|| ApiError::invalid_argument("User email should be specified!"))?;
        Ok(UserInput {
            id: self.id,
            email,
            authority: self.authority,
            tenant_id: self.tenant_id,
            customer_id: self.customer_id,
            first_name: self.first_name,
            last_name: self.last_name,
            phone: self.phone,
            additional_info: self.additional_info,
            version: self.version,
        })
    }
}

/// `sendActivationMail` is accepted and ignored: Thinglake sends no mail; the creator fetches
/// the activation link.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SaveParams {
    #[serde(rename = "sendActivationMail")]
    _send_activation_mail: Option<String>,
}

async fn save_user(
    State(state): State<ApiState>,
    Auth(p): Auth,
    Query(_params): Query<SaveParams>,
    Json(body): Json<UserBody>,
) -> Result<axum::Json<Value>> {
    let view = state.platform.save_user(&p, body.into_input()?).await?;
    Ok(axum::Json(user_json(&view)))
}

async fn get_user(State(state): State<ApiState>, Auth(p): Auth, Path(id): Path<String>) -> Result<axum::Json<Value>> {
    let id = UserId(parse_id(&id, "userId")?);
    Ok(axum::Json(user_json(&state.platform.user(&p, id)?)))
}

async fn delete_user(State(state): State<ApiState>, Auth(p): Auth, Path(id): Path<String>) -> Result<()> {
    let id = UserId(parse_id(&id, "userId")?);
    state.platform.delete_user(&p, id).await?;
    Ok(())
}

/// The link as plain text, as ThingsBoard answers it. Each call issues a new token (only token
/// hashes are stored), so only the latest link works.
async fn activation_link(State(state): State<ApiState>, Auth(p): Auth, Path(id): Path<String>) -> Result<String> {
    let id = UserId(parse_id(&id, "userId")?);
    Ok(state.platform.activation_link(&p, id).await?)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ActivateBody {
    #[serde(default)]
    activate_token: String,
    #[serde(default)]
    password: String,
}

async fn activate(State(state): State<ApiState>, Json(body): Json<ActivateBody>) -> Result<axum::Json<TokenPair>> {
    Ok(axum::Json(state.platform.activate_user(&body.activate_token, &body.password).await?))
}

fn page_of(views: Vec<UserView>, params: &PageParams) -> Result<axum::Json<Value>> {
    let page = paginate(
        views,
        &params.link()?,
        |v| {
            vec![
                v.user.fields.email.as_str(),
                v.user.fields.first_name.as_deref().unwrap_or(""),
                v.user.fields.last_name.as_deref().unwrap_or(""),
            ]
        },
        |v, prop| match prop {
            "firstName" => Some(thinglake_queries::SortKey::Text(v.user.fields.first_name.clone().unwrap_or_default().to_lowercase())),
            "lastName" => Some(thinglake_queries::SortKey::Text(v.user.fields.last_name.clone().unwrap_or_default().to_lowercase())),
            _ => common_sort_key(prop, v.user.created_time, &v.user.fields.email, None, Some(v.user.authority.as_str())),
        },
    )?;
    Ok(axum::Json(serde_json::to_value(page.map(|v| user_json(&v))).unwrap_or_default()))
}

async fn managed_users(State(state): State<ApiState>, Auth(p): Auth, Query(params): Query<PageParams>) -> Result<axum::Json<Value>> {
    page_of(state.platform.managed_users(&p)?, &params)
}

async fn tenant_users(
    State(state): State<ApiState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    Query(params): Query<PageParams>,
) -> Result<axum::Json<Value>> {
    let tenant = TenantId(parse_id(&id, "tenantId")?);
    page_of(state.platform.tenant_users(&p, tenant)?, &params)
}

async fn customer_users(
    State(state): State<ApiState>,
    Auth(p): Auth,
    Path(customer_id): Path<String>,
    Query(params): Query<PageParams>,
) -> Result<axum::Json<Value>> {
    let customer = CustomerId(parse_id(&customer_id, "customerId")?);
    page_of(state.platform.customer_users(&p, customer)?, &params)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ActivationLinkParams {
    activate_token: Option<String>,
}

/// Opening an activation link in a browser: as in ThingsBoard, a redirect to the UI's page that
/// sets the password (which then posts the token to this same path).
async fn activation_page(Query(params): Query<ActivationLinkParams>) -> axum::response::Redirect {
    let token = params.activate_token.unwrap_or_default();
    let token: String = token.chars().filter(char::is_ascii_alphanumeric).collect();
    axum::response::Redirect::to(&format!("/login/createPassword?activateToken={token}"))
}
