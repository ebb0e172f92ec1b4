//! `/api/device…`: ThingsBoard's device endpoints.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use thinglake_domain::device::Device;
use thinglake_domain::{CustomerId, DeviceId, DeviceProfileId, EntityType};
use thinglake_platform::Principal;
use thinglake_platform::devices::{DeviceInput, DeviceView};
use uuid::Uuid;

use crate::ApiState;
use crate::customer_assignment::{self, AssignableResource, Render, RouteTable};
use crate::error::{ApiError, Result};
use crate::extract::{Auth, Json, Query, parse_id};
use crate::page::{PageParams, Profiled, profiled_page};

pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/device", post(save_device))
        .route("/api/device-with-credentials", post(save_device_with_credentials))
        .route("/api/device/{id}/credentials", get(get_credentials))
        .route("/api/device/credentials", post(save_credentials))
        .route("/api/device/types", get(device_types))
        .route("/api/tenant/devices", get(tenant_devices))
        .route("/api/tenant/device", get(tenant_device_by_name))
        .route("/api/tenant/deviceInfos", get(tenant_device_infos))
        .merge(customer_assignment::routes::<Device>())
}

impl AssignableResource for Device {
    const ROUTES: RouteTable<Device> = RouteTable {
        id_param: "deviceId",
        json: device_json,
        info_json: device_info_json,
        entity: "/api/device/{id}",
        info: "/api/device/info/{id}",
        customer_lists: &[
            ("/api/customer/{customer_id}/devices", device_json),
            ("/api/customer/{customer_id}/deviceInfos", device_info_json),
        ],
        assign: "/api/customer/{customer_id}/device/{id}",
        unassign: "/api/customer/device/{id}",
    };
    type ListParams = ListParams;

    fn page(
        state: &ApiState,
        p: &Principal,
        customer: Option<CustomerId>,
        params: &ListParams,
        render: Render<Device>,
    ) -> Result<axum::Json<Value>> {
        let views = state.platform.devices(p, customer, params.device_type.as_deref())?;
        profiled_page(views, &params.page, params.device_profile_id, profiled, render)
    }
}

fn profiled(v: &DeviceView) -> Profiled<'_> {
    let d = &v.device;
    Profiled {
        created_time: d.created_time,
        profile_id: d.fields.device_profile_id.0,
        name: &d.fields.name,
        label: d.fields.label.as_deref(),
        profile_name: &v.profile_name,
        customer_title: v.customer_title.as_deref(),
    }
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
pub(crate) struct ListParams {
    #[serde(flatten)]
    page: PageParams,
    #[serde(rename = "type")]
    device_type: Option<String>,
    device_profile_id: Option<Uuid>,
    device_name: Option<String>,
}

async fn tenant_devices(State(state): State<ApiState>, Auth(p): Auth, Query(params): Query<ListParams>) -> Result<axum::Json<Value>> {
    if let Some(name) = &params.device_name {
        return Ok(axum::Json(device_json(&state.platform.device_by_name(&p, name)?)));
    }
    Device::page(&state, &p, None, &params, device_json)
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
    Device::page(&state, &p, None, &params, device_info_json)
}
