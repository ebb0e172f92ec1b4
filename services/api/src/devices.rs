//! `/api/device…`: ThingsBoard's device endpoints.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use thinglake_domain::device::Device;
use thinglake_domain::{CustomerId, DeviceId, DeviceProfileId, EntityType};
use thinglake_platform::devices::{DeviceInput, DeviceView};
use thinglake_queries::paginate;
use uuid::Uuid;

use crate::ApiState;
use crate::error::{ApiError, Result};
use crate::extract::{Auth, Json, Query, parse_id};
use crate::page::{PageParams, common_sort_key};

pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/device", post(save_device))
        .route("/api/device-with-credentials", post(save_device_with_credentials))
        .route("/api/device/{id}", get(get_device).delete(delete_device))
        .route("/api/device/info/{id}", get(get_device_info))
        .route("/api/device/{id}/credentials", get(get_credentials))
        .route("/api/device/credentials", post(save_credentials))
        .route("/api/device/types", get(device_types))
        .route("/api/tenant/devices", get(tenant_devices))
        .route("/api/tenant/device", get(tenant_device_by_name))
        .route("/api/tenant/deviceInfos", get(tenant_device_infos))
        .route(
            "/api/customer/{customer_id}/devices",
            get(|State(s): State<ApiState>, Auth(p): Auth, Path(c): Path<String>, Query(q): Query<ListParams>| {
                customer_devices(s, p, c, q, device_json)
            }),
        )
        .route(
            "/api/customer/{customer_id}/deviceInfos",
            get(|State(s): State<ApiState>, Auth(p): Auth, Path(c): Path<String>, Query(q): Query<ListParams>| {
                customer_devices(s, p, c, q, device_info_json)
            }),
        )
        .route("/api/customer/{customer_id}/device/{id}", post(assign_device))
        .route("/api/customer/device/{id}", axum::routing::delete(unassign_device))
}

/// The device JSON of ThingsBoard.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeviceBody {
    id: Option<DeviceId>,
    name: Option<String>,
    label: Option<String>,
    #[serde(rename = "type")]
    device_type: Option<String>,
    device_profile_id: Option<DeviceProfileId>,
    #[serde(default)]
    additional_info: Value,
    #[serde(default)]
    device_data: Value,
    firmware_id: Option<IdRef>,
    software_id: Option<IdRef>,
    customer_id: Option<CustomerId>,
    version: Option<u64>,
}

/// An id of a kind we keep but do not model yet (firmware, software packages).
#[derive(Debug, Deserialize)]
struct IdRef {
    id: Uuid,
}

impl DeviceBody {
    fn into_input(self) -> Result<DeviceInput> {
        let name = self.name.ok_or_else(|| ApiError::invalid_argument("Device name should be specified!"))?;
        Ok(DeviceInput {
            id: self.id,
            name,
            label: self.label,
            device_profile_id: self.device_profile_id,
            device_type: self.device_type,
            additional_info: self.additional_info,
            device_data: self.device_data,
            firmware_id: self.firmware_id.map(|r| r.id),
            software_id: self.software_id.map(|r| r.id),
            customer_id: self.customer_id,
            version: self.version,
        })
    }
}

pub(crate) fn device_json(v: &DeviceView) -> Value {
    let d = &v.device;
    let device_data = if d.fields.device_data.is_null() {
        json!({"configuration": {"type": "DEFAULT"}, "transportConfiguration": {"type": "DEFAULT"}})
    } else {
        d.fields.device_data.clone()
    };
    let ota = |id: Option<Uuid>| id.map(|id| json!({"entityType": "OTA_PACKAGE", "id": id}));
    json!({
        "id": d.id,
        "createdTime": d.created_time,
        "tenantId": d.tenant_id,
        "customerId": d.customer_id,
        "name": d.fields.name,
        "type": v.profile_name,
        "label": d.fields.label,
        "deviceProfileId": d.fields.device_profile_id,
        "deviceData": device_data,
        "firmwareId": ota(d.fields.firmware_id),
        "softwareId": ota(d.fields.software_id),
        "externalId": null,
        "additionalInfo": if d.fields.additional_info.is_null() { json!({}) } else { d.fields.additional_info.clone() },
        "version": v.version,
    })
}

/// The device-info JSON: the device plus names of what it refers to.
pub(crate) fn device_info_json(v: &DeviceView) -> Value {
    let mut json = device_json(v);
    if let Value::Object(map) = &mut json {
        map.insert("customerTitle".into(), json!(v.customer_title));
        map.insert("customerIsPublic".into(), json!(false));
        map.insert("deviceProfileName".into(), json!(v.profile_name));
        map.insert("active".into(), json!(false));
    }
    json
}

fn credentials_json(v: &DeviceView) -> Value {
    let c = &v.device.credentials;
    json!({
        "id": {"id": c.id},
        "createdTime": c.created_time,
        "deviceId": v.device.id,
        "credentialsType": "ACCESS_TOKEN",
        "credentialsId": c.access_token,
        "credentialsValue": null,
        "version": v.version,
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SaveParams {
    access_token: Option<String>,
}

async fn save_device(
    State(state): State<ApiState>,
    Auth(p): Auth,
    Query(params): Query<SaveParams>,
    Json(body): Json<DeviceBody>,
) -> Result<axum::Json<Value>> {
    let view = state.platform.save_device(&p, body.into_input()?, params.access_token).await?;
    Ok(axum::Json(device_json(&view)))
}

#[derive(Debug, Deserialize)]
struct DeviceWithCredentials {
    device: DeviceBody,
    credentials: Option<CredentialsBody>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CredentialsBody {
    device_id: Option<DeviceId>,
    credentials_type: Option<String>,
    credentials_id: Option<String>,
}

fn access_token_of(credentials: &CredentialsBody) -> Result<Option<String>> {
    match credentials.credentials_type.as_deref() {
        None | Some("ACCESS_TOKEN") => Ok(credentials.credentials_id.clone()),
        Some(other) => Err(ApiError::invalid_argument(format!("Credentials type {other} is not supported; use ACCESS_TOKEN"))),
    }
}

async fn save_device_with_credentials(
    State(state): State<ApiState>,
    Auth(p): Auth,
    Json(body): Json<DeviceWithCredentials>,
) -> Result<axum::Json<Value>> {
    let token = match &body.credentials {
        Some(c) => access_token_of(c)?,
        None => None,
    };
    let view = state.platform.save_device(&p, body.device.into_input()?, token).await?;
    Ok(axum::Json(device_json(&view)))
}

async fn get_device(State(state): State<ApiState>, Auth(p): Auth, Path(id): Path<String>) -> Result<axum::Json<Value>> {
    let id = DeviceId(parse_id(&id, "deviceId")?);
    Ok(axum::Json(device_json(&state.platform.entity::<Device>(&p, id)?)))
}

async fn get_device_info(State(state): State<ApiState>, Auth(p): Auth, Path(id): Path<String>) -> Result<axum::Json<Value>> {
    let id = DeviceId(parse_id(&id, "deviceId")?);
    Ok(axum::Json(device_info_json(&state.platform.entity::<Device>(&p, id)?)))
}

async fn delete_device(State(state): State<ApiState>, Auth(p): Auth, Path(id): Path<String>) -> Result<()> {
    let id = DeviceId(parse_id(&id, "deviceId")?);
    state.platform.delete_entity::<Device>(&p, id).await?;
    Ok(())
}

async fn get_credentials(State(state): State<ApiState>, Auth(p): Auth, Path(id): Path<String>) -> Result<axum::Json<Value>> {
    let id = DeviceId(parse_id(&id, "deviceId")?);
    Ok(axum::Json(credentials_json(&state.platform.device_credentials(&p, id)?)))
}

async fn save_credentials(
    State(state): State<ApiState>,
    Auth(p): Auth,
    Json(body): Json<CredentialsBody>,
) -> Result<axum::Json<Value>> {
    let device_id = body.device_id.ok_or_else(|| ApiError::invalid_argument("Device id should be specified!"))?;
    let token = access_token_of(&body)?.ok_or_else(|| ApiError::invalid_argument("Device credentials id should be specified!"))?;
    let view = state.platform.update_device_token(&p, device_id, token).await?;
    Ok(axum::Json(credentials_json(&view)))
}

async fn device_types(State(state): State<ApiState>, Auth(p): Auth) -> Result<axum::Json<Value>> {
    let tenant = p.tenant_id;
    let types: Vec<Value> = state
        .platform
        .device_types(&p)?
        .into_iter()
        .map(|t| json!({"tenantId": tenant, "entityType": EntityType::Device, "type": t}))
        .collect();
    Ok(axum::Json(Value::Array(types)))
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ListParams {
    #[serde(flatten)]
    page: PageParams,
    #[serde(rename = "type")]
    device_type: Option<String>,
    device_profile_id: Option<Uuid>,
    device_name: Option<String>,
}

fn page_of(views: Vec<DeviceView>, params: &ListParams, render: fn(&DeviceView) -> Value) -> Result<axum::Json<Value>> {
    let views: Vec<DeviceView> = match params.device_profile_id {
        Some(pid) => views.into_iter().filter(|v| v.device.fields.device_profile_id.0 == pid).collect(),
        None => views,
    };
    let page = paginate(
        views,
        &params.page.link()?,
        |v| vec![v.device.fields.name.as_str(), v.device.fields.label.as_deref().unwrap_or(""), v.profile_name.as_str()],
        |v, prop| match prop {
            "customerTitle" => Some(thinglake_queries::SortKey::Text(v.customer_title.clone().unwrap_or_default().to_lowercase())),
            _ => common_sort_key(prop, v.device.created_time, &v.device.fields.name, v.device.fields.label.as_deref(), Some(&v.profile_name)),
        },
    )?;
    Ok(axum::Json(serde_json::to_value(page.map(|v| render(&v))).unwrap_or_default()))
}

async fn tenant_devices(State(state): State<ApiState>, Auth(p): Auth, Query(params): Query<ListParams>) -> Result<axum::Json<Value>> {
    if let Some(name) = &params.device_name {
        return Ok(axum::Json(device_json(&state.platform.device_by_name(&p, name)?)));
    }
    let views = state.platform.devices(&p, None, params.device_type.as_deref())?;
    page_of(views, &params, device_json)
}

async fn tenant_device_by_name(
    State(state): State<ApiState>,
    Auth(p): Auth,
    Query(params): Query<ListParams>,
) -> Result<axum::Json<Value>> {
    let name = params.device_name.ok_or_else(|| ApiError::bad_request("Required request parameter 'deviceName' is not present"))?;
    Ok(axum::Json(device_json(&state.platform.device_by_name(&p, &name)?)))
}

async fn tenant_device_infos(State(state): State<ApiState>, Auth(p): Auth, Query(params): Query<ListParams>) -> Result<axum::Json<Value>> {
    let views = state.platform.devices(&p, None, params.device_type.as_deref())?;
    page_of(views, &params, device_info_json)
}

/// `/api/customer/{id}/devices` and `…/deviceInfos`: one customer's devices, rendered by `render`.
async fn customer_devices(
    state: ApiState,
    p: thinglake_platform::Principal,
    customer_id: String,
    params: ListParams,
    render: fn(&DeviceView) -> Value,
) -> Result<axum::Json<Value>> {
    let customer = CustomerId(parse_id(&customer_id, "customerId")?);
    let views = state.platform.devices(&p, Some(customer), params.device_type.as_deref())?;
    page_of(views, &params, render)
}

async fn assign_device(
    State(state): State<ApiState>,
    Auth(p): Auth,
    Path((customer_id, id)): Path<(String, String)>,
) -> Result<axum::Json<Value>> {
    let customer = CustomerId(parse_id(&customer_id, "customerId")?);
    let id = DeviceId(parse_id(&id, "deviceId")?);
    Ok(axum::Json(device_json(&state.platform.assign::<Device>(&p, customer, id).await?)))
}

async fn unassign_device(State(state): State<ApiState>, Auth(p): Auth, Path(id): Path<String>) -> Result<axum::Json<Value>> {
    let id = DeviceId(parse_id(&id, "deviceId")?);
    Ok(axum::Json(device_json(&state.platform.unassign::<Device>(&p, None, id).await?)))
}
