//! `/api/tenant…` and `/api/tenants`: ThingsBoard's tenant endpoints (system administrator).

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use thinglake_domain::TenantId;
use thinglake_domain::contact::Contact;
use thinglake_domain::tenant::TenantFields;
use thinglake_platform::tenants::{TenantInput, TenantView};
use thinglake_queries::paginate;
use uuid::Uuid;

use crate::ApiState;
use crate::error::{ApiError, Result};
use crate::extract::{Auth, Json, Query, parse_id};
use crate::page::{PageParams, common_sort_key};

/// The id of the one tenant profile every tenant shows ("Default"): tenant profiles are not
/// modelled yet, but ThingsBoard clients expect the reference.
pub(crate) const DEFAULT_TENANT_PROFILE_ID: Uuid = Uuid::from_u128(0x3f0c_7a40_8d5e_11ee_b9d1_0242_ac12_0002);

pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/tenant", post(save_tenant))
        .route("/api/tenant/{id}", get(get_tenant).delete(delete_tenant))
        .route("/api/tenant/info/{id}", get(get_tenant_info))
        .route("/api/tenants", get(list_tenants))
        .route("/api/tenantInfos", get(list_tenant_infos))
}

/// The tenant JSON of ThingsBoard.
pub(crate) fn tenant_json(v: &TenantView) -> Value {
    let t = &v.tenant;
    let c = &t.fields.contact;
    json!({
        "id": t.id,
        "createdTime": t.created_time,
        "title": t.fields.title,
        "name": t.fields.title,
        "region": t.fields.region.clone().unwrap_or_else(|| "Global".into()),
        "tenantProfileId": {"entityType": "TENANT_PROFILE", "id": DEFAULT_TENANT_PROFILE_ID},
        "country": c.country,
        "state": c.state,
        "city": c.city,
        "address": c.address,
        "address2": c.address2,
        "zip": c.zip,
        "phone": c.phone,
        "email": c.email,
        "additionalInfo": if t.fields.additional_info.is_null() { json!({}) } else { t.fields.additional_info.clone() },
        "version": v.version,
    })
}

/// The tenant-info JSON: the tenant plus its profile's name.
fn tenant_info_json(v: &TenantView) -> Value {
    let mut json = tenant_json(v);
    if let Value::Object(map) = &mut json {
        map.insert("tenantProfileName".into(), json!("Default"));
    }
    json
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TenantBody {
    id: Option<TenantId>,
    title: Option<String>,
    region: Option<String>,
    #[serde(flatten)]
    contact: Contact,
    #[serde(default)]
    additional_info: Value,
    version: Option<u64>,
}

impl TenantBody {
    fn into_input(self) -> Result<TenantInput> {
        let title = self.title.ok_or_else(|| ApiError::invalid_argument("Tenant title should be specified!"))?;
        Ok(TenantInput {
            id: self.id,
            fields: TenantFields { title, region: self.region, contact: self.contact, additional_info: self.additional_info },
            version: self.version,
        })
    }
}

async fn save_tenant(State(state): State<ApiState>, Auth(p): Auth, Json(body): Json<TenantBody>) -> Result<axum::Json<Value>> {
    let view = state.platform.save_tenant(&p, body.into_input()?).await?;
    Ok(axum::Json(tenant_json(&view)))
}

async fn get_tenant(State(state): State<ApiState>, Auth(p): Auth, Path(id): Path<String>) -> Result<axum::Json<Value>> {
    let id = TenantId(parse_id(&id, "tenantId")?);
    Ok(axum::Json(tenant_json(&state.platform.tenant(&p, id)?)))
}

async fn get_tenant_info(State(state): State<ApiState>, Auth(p): Auth, Path(id): Path<String>) -> Result<axum::Json<Value>> {
    let id = TenantId(parse_id(&id, "tenantId")?);
    Ok(axum::Json(tenant_info_json(&state.platform.tenant(&p, id)?)))
}

async fn delete_tenant(State(state): State<ApiState>, Auth(p): Auth, Path(id): Path<String>) -> Result<()> {
    let id = TenantId(parse_id(&id, "tenantId")?);
    state.platform.delete_tenant(&p, id).await?;
    Ok(())
}

fn page_of(views: Vec<TenantView>, params: &PageParams, render: fn(&TenantView) -> Value) -> Result<axum::Json<Value>> {
    let page = paginate(
        views,
        &params.link()?,
        |v| vec![v.tenant.fields.title.as_str()],
        |v, prop| {
            let text = |s: &Option<String>| Some(thinglake_queries::SortKey::Text(s.clone().unwrap_or_default().to_lowercase()));
            let c = &v.tenant.fields.contact;
            match prop {
                "email" => text(&c.email),
                "country" => text(&c.country),
                "state" => text(&c.state),
                "city" => text(&c.city),
                "address" => text(&c.address),
                "address2" => text(&c.address2),
                "zip" => text(&c.zip),
                "phone" => text(&c.phone),
                "tenantProfileName" => Some(thinglake_queries::SortKey::Text("default".into())),
                _ => common_sort_key(prop, v.tenant.created_time, &v.tenant.fields.title, None, None),
            }
        },
    )?;
    Ok(axum::Json(serde_json::to_value(page.map(|v| render(&v))).unwrap_or_default()))
}

async fn list_tenants(State(state): State<ApiState>, Auth(p): Auth, Query(params): Query<PageParams>) -> Result<axum::Json<Value>> {
    page_of(state.platform.tenants(&p)?, &params, tenant_json)
}

async fn list_tenant_infos(State(state): State<ApiState>, Auth(p): Auth, Query(params): Query<PageParams>) -> Result<axum::Json<Value>> {
    page_of(state.platform.tenants(&p)?, &params, tenant_info_json)
}
