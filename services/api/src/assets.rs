//! `/api/asset…`: ThingsBoard's asset endpoints.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use thinglake_domain::asset::Asset;
use thinglake_domain::{AssetId, AssetProfileId, CustomerId, EntityType};
use thinglake_platform::Principal;
use thinglake_platform::assets::{AssetInput, AssetView};
use thinglake_queries::{SortKey, paginate};
use uuid::Uuid;

use crate::ApiState;
use crate::error::{ApiError, Result};
use crate::extract::{Auth, Json, Query, parse_id};
use crate::page::{PageParams, common_sort_key};

pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/asset", post(save_asset))
        .route("/api/asset/{id}", get(get_asset).delete(delete_asset))
        .route("/api/asset/info/{id}", get(get_asset_info))
        .route("/api/asset/types", get(asset_types))
        .route("/api/tenant/assets", get(tenant_assets))
        .route("/api/tenant/asset", get(tenant_asset_by_name))
        .route("/api/tenant/assetInfos", get(tenant_asset_infos))
        .route(
            "/api/customer/{customer_id}/assets",
            get(|State(s): State<ApiState>, Auth(p): Auth, Path(c): Path<String>, Query(q): Query<ListParams>| {
                customer_assets(s, p, c, q, asset_json)
            }),
        )
        .route(
            "/api/customer/{customer_id}/assetInfos",
            get(|State(s): State<ApiState>, Auth(p): Auth, Path(c): Path<String>, Query(q): Query<ListParams>| {
                customer_assets(s, p, c, q, asset_info_json)
            }),
        )
        .route("/api/customer/{customer_id}/asset/{id}", post(assign_asset))
        .route("/api/customer/asset/{id}", delete(unassign_asset))
}

/// The asset JSON of ThingsBoard.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AssetBody {
    id: Option<AssetId>,
    name: Option<String>,
    label: Option<String>,
    #[serde(rename = "type")]
    asset_type: Option<String>,
    asset_profile_id: Option<AssetProfileId>,
    #[serde(default)]
    additional_info: Value,
    customer_id: Option<CustomerId>,
    version: Option<u64>,
}

impl AssetBody {
    fn into_input(self) -> Result<AssetInput> {
        let name = self.name.ok_or_else(|| ApiError::invalid_argument("Asset name should be specified!"))?;
        Ok(AssetInput {
            id: self.id,
            name,
            label: self.label,
            asset_profile_id: self.asset_profile_id,
            asset_type: self.asset_type,
            additional_info: self.additional_info,
            customer_id: self.customer_id,
            version: self.version,
        })
    }
}

fn asset_json(v: &AssetView) -> Value {
    let a = &v.asset;
    json!({
        "id": a.id,
        "createdTime": a.created_time,
        "tenantId": a.tenant_id,
        "customerId": a.customer_id,
        "name": a.fields.name,
        "type": v.profile_name,
        "label": a.fields.label,
        "assetProfileId": a.fields.asset_profile_id,
        "externalId": null,
        "additionalInfo": if a.fields.additional_info.is_null() { json!({}) } else { a.fields.additional_info.clone() },
        "version": v.version,
    })
}

/// The asset-info JSON: the asset plus names of what it refers to.
fn asset_info_json(v: &AssetView) -> Value {
    let mut json = asset_json(v);
    if let Value::Object(map) = &mut json {
        map.insert("customerTitle".into(), json!(v.customer_title));
        map.insert("customerIsPublic".into(), json!(false));
        map.insert("assetProfileName".into(), json!(v.profile_name));
    }
    json
}

async fn save_asset(State(state): State<ApiState>, Auth(p): Auth, Json(body): Json<AssetBody>) -> Result<axum::Json<Value>> {
    let view = state.platform.save_asset(&p, body.into_input()?).await?;
    Ok(axum::Json(asset_json(&view)))
}

async fn get_asset(State(state): State<ApiState>, Auth(p): Auth, Path(id): Path<String>) -> Result<axum::Json<Value>> {
    let id = AssetId(parse_id(&id, "assetId")?);
    Ok(axum::Json(asset_json(&state.platform.entity::<Asset>(&p, id)?)))
}

async fn get_asset_info(State(state): State<ApiState>, Auth(p): Auth, Path(id): Path<String>) -> Result<axum::Json<Value>> {
    let id = AssetId(parse_id(&id, "assetId")?);
    Ok(axum::Json(asset_info_json(&state.platform.entity::<Asset>(&p, id)?)))
}

async fn delete_asset(State(state): State<ApiState>, Auth(p): Auth, Path(id): Path<String>) -> Result<()> {
    let id = AssetId(parse_id(&id, "assetId")?);
    state.platform.delete_entity::<Asset>(&p, id).await?;
    Ok(())
}

async fn asset_types(State(state): State<ApiState>, Auth(p): Auth) -> Result<axum::Json<Value>> {
    let tenant = p.tenant_id;
    let types: Vec<Value> = state
        .platform
        .asset_types(&p)?
        .into_iter()
        .map(|t| json!({"tenantId": tenant, "entityType": EntityType::Asset, "type": t}))
        .collect();
    Ok(axum::Json(Value::Array(types)))
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ListParams {
    #[serde(flatten)]
    page: PageParams,
    #[serde(rename = "type")]
    asset_type: Option<String>,
    asset_profile_id: Option<Uuid>,
    asset_name: Option<String>,
}

/// One page of the caller's assets (of `customer`, if given) as `render` shows them.
fn page_of(
    state: &ApiState,
    p: &Principal,
    customer: Option<CustomerId>,
    params: &ListParams,
    render: fn(&AssetView) -> Value,
) -> Result<axum::Json<Value>> {
    let views: Vec<AssetView> = state
        .platform
        .assets(p, customer, params.asset_type.as_deref())?
        .into_iter()
        .filter(|v| params.asset_profile_id.is_none_or(|pid| v.asset.fields.asset_profile_id.0 == pid))
        .collect();
    let page = paginate(
        views,
        &params.page.link()?,
        |v| vec![v.asset.fields.name.as_str(), v.asset.fields.label.as_deref().unwrap_or(""), v.profile_name.as_str()],
        |v, prop| match prop {
            "customerTitle" => Some(SortKey::Text(v.customer_title.clone().unwrap_or_default().to_lowercase())),
            _ => common_sort_key(prop, v.asset.created_time, &v.asset.fields.name, v.asset.fields.label.as_deref(), Some(&v.profile_name)),
        },
    )?;
    Ok(axum::Json(serde_json::to_value(page.map(|v| render(&v))).unwrap_or_default()))
}

async fn tenant_assets(State(state): State<ApiState>, Auth(p): Auth, Query(params): Query<ListParams>) -> Result<axum::Json<Value>> {
    match &params.asset_name {
        Some(name) => Ok(axum::Json(asset_json(&state.platform.asset_by_name(&p, name)?))),
        None => page_of(&state, &p, None, &params, asset_json),
    }
}

async fn tenant_asset_by_name(State(state): State<ApiState>, Auth(p): Auth, Query(params): Query<ListParams>) -> Result<axum::Json<Value>> {
    let name = params.asset_name.ok_or_else(|| ApiError::bad_request("Required request parameter 'assetName' is not present"))?;
    Ok(axum::Json(asset_json(&state.platform.asset_by_name(&p, &name)?)))
}

async fn tenant_asset_infos(State(state): State<ApiState>, Auth(p): Auth, Query(params): Query<ListParams>) -> Result<axum::Json<Value>> {
    page_of(&state, &p, None, &params, asset_info_json)
}

/// `/api/customer/{id}/assets` and `…/assetInfos`: one customer's assets, rendered by `render`.
async fn customer_assets(
    state: ApiState,
    p: thinglake_platform::Principal,
    customer_id: String,
    params: ListParams,
    render: fn(&AssetView) -> Value,
) -> Result<axum::Json<Value>> {
    let customer = CustomerId(parse_id(&customer_id, "customerId")?);
    page_of(&state, &p, Some(customer), &params, render)
}

async fn assign_asset(
    State(state): State<ApiState>,
    Auth(p): Auth,
    Path((customer_id, id)): Path<(String, String)>,
) -> Result<axum::Json<Value>> {
    let customer = CustomerId(parse_id(&customer_id, "customerId")?);
    let id = AssetId(parse_id(&id, "assetId")?);
    Ok(axum::Json(asset_json(&state.platform.assign::<Asset>(&p, customer, id).await?)))
}

async fn unassign_asset(State(state): State<ApiState>, Auth(p): Auth, Path(id): Path<String>) -> Result<axum::Json<Value>> {
    let id = AssetId(parse_id(&id, "assetId")?);
    Ok(axum::Json(asset_json(&state.platform.unassign::<Asset>(&p, None, id).await?)))
}
