//! `/api/asset…`: ThingsBoard's asset endpoints.

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use thinglake_domain::asset::Asset;
use thinglake_domain::{AssetId, AssetProfileId, CustomerId, EntityType};
use thinglake_platform::Principal;
use thinglake_platform::assets::{AssetInput, AssetView};
use uuid::Uuid;

use crate::ApiState;
use crate::customer_assignment::{self, AssignableResource, Render, RouteTable};
use crate::error::{ApiError, Result};
use crate::extract::{Auth, Json, Query};
use crate::page::{PageParams, Profiled, profiled_page};

pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/asset", post(save_asset))
        .route("/api/asset/types", get(asset_types))
        .route("/api/tenant/assets", get(tenant_assets))
        .route("/api/tenant/asset", get(tenant_asset_by_name))
        .route("/api/tenant/assetInfos", get(tenant_asset_infos))
        .merge(customer_assignment::routes::<Asset>())
}

impl AssignableResource for Asset {
    const ROUTES: RouteTable<Asset> = RouteTable {
        id_param: "assetId",
        json: asset_json,
        info_json: asset_info_json,
        entity: "/api/asset/{id}",
        info: "/api/asset/info/{id}",
        customer_lists: &[
            ("/api/customer/{customer_id}/assets", asset_json),
            ("/api/customer/{customer_id}/assetInfos", asset_info_json),
        ],
        assign: "/api/customer/{customer_id}/asset/{id}",
        unassign: "/api/customer/asset/{id}",
    };
    type ListParams = ListParams;

    fn page(
        state: &ApiState,
        p: &Principal,
        customer: Option<CustomerId>,
        params: &ListParams,
        render: Render<Asset>,
    ) -> Result<axum::Json<Value>> {
        let views = state.platform.assets(p, customer, params.asset_type.as_deref())?;
        profiled_page(views, &params.page, params.asset_profile_id, profiled, render)
    }
}

fn profiled(v: &AssetView) -> Profiled<'_> {
    let a = &v.asset;
    Profiled {
        created_time: a.created_time,
        profile_id: a.fields.asset_profile_id.0,
        name: &a.fields.name,
        label: a.fields.label.as_deref(),
        profile_name: &v.profile_name,
        customer_title: v.customer_title.as_deref(),
    }
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
pub(crate) struct ListParams {
    #[serde(flatten)]
    page: PageParams,
    #[serde(rename = "type")]
    asset_type: Option<String>,
    asset_profile_id: Option<Uuid>,
    asset_name: Option<String>,
}

async fn tenant_assets(State(state): State<ApiState>, Auth(p): Auth, Query(params): Query<ListParams>) -> Result<axum::Json<Value>> {
    match &params.asset_name {
        Some(name) => Ok(axum::Json(asset_json(&state.platform.asset_by_name(&p, name)?))),
        None => Asset::page(&state, &p, None, &params, asset_json),
    }
}

async fn tenant_asset_by_name(State(state): State<ApiState>, Auth(p): Auth, Query(params): Query<ListParams>) -> Result<axum::Json<Value>> {
    let name = params.asset_name.ok_or_else(|| ApiError::bad_request("Required request parameter 'assetName' is not present"))?;
    Ok(axum::Json(asset_json(&state.platform.asset_by_name(&p, &name)?)))
}

async fn tenant_asset_infos(State(state): State<ApiState>, Auth(p): Auth, Query(params): Query<ListParams>) -> Result<axum::Json<Value>> {
    Asset::page(&state, &p, None, &params, asset_info_json)
}
