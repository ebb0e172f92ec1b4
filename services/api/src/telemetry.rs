//! `/api/plugins/telemetry/…`: ThingsBoard's REST endpoints to save and delete attributes, save
//! time series, and read attributes, keys and time series.
//!
//! Saves take a JSON body whatever its `Content-Type` ([`AnyJson`]), as ThingsBoard does:
//! `tb-rest-client` 4.4 sends them as `text/plain`.
//!
//! `…/values/timeseries` (and `…/values/timeseries/history`) with `startTs` and `endTs` is a range
//! query answered by the query engine (raw points or aggregates per bucket); without them it
//! answers the latest value per key from memory.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use thinglake_domain::telemetry::AttributeScope;
use thinglake_domain::{EntityId, EntityType};
use thinglake_domain::telemetry::KvValue;
use thinglake_projections::latest::AttributeValue;
use thinglake_queries::timeseries::DEFAULT_LIMIT;
use thinglake_queries::{Aggregation, Calendar, Order, TimeseriesQuery};

use crate::ApiState;
use crate::device_http::split_keys;
use crate::error::{ApiError, Result};
use crate::extract::{AnyJson, Auth, Query, parse_id};

const BASE: &str = "/api/plugins/telemetry";

pub(crate) fn routes() -> Router<ApiState> {
    // Path parameters at one position share one name (the router requires it): in the device
    // shortcut `/{deviceId}/{scope}` they are read as (device id, scope).
    Router::new()
        .route(&format!("{BASE}/{{a}}/{{b}}"), post(save_device_attributes).delete(delete_device_attributes))
        .route(&format!("{BASE}/{{a}}/{{b}}/{{scope}}"), post(save_attributes_v1).delete(delete_attributes))
        .route(&format!("{BASE}/{{a}}/{{b}}/attributes/{{scope}}"), post(save_attributes_v2))
        .route(&format!("{BASE}/{{a}}/{{b}}/timeseries/{{scope}}"), post(save_timeseries))
        .route(&format!("{BASE}/{{a}}/{{b}}/timeseries/{{scope}}/{{ttl}}"), post(save_timeseries_ttl))
        .route(&format!("{BASE}/{{a}}/{{b}}/values/attributes"), get(attribute_values))
        .route(&format!("{BASE}/{{a}}/{{b}}/values/attributes/{{scope}}"), get(attribute_values_of_scope))
        .route(&format!("{BASE}/{{a}}/{{b}}/keys/attributes"), get(attribute_keys))
        .route(&format!("{BASE}/{{a}}/{{b}}/keys/attributes/{{scope}}"), get(attribute_keys_of_scope))
        .route(&format!("{BASE}/{{a}}/{{b}}/keys/timeseries"), get(timeseries_keys))
        .route(&format!("{BASE}/{{a}}/{{b}}/values/timeseries"), get(timeseries_values))
        .route(&format!("{BASE}/{{a}}/{{b}}/values/timeseries/history"), get(timeseries_values))
}

fn entity(entity_type: &str, id: &str) -> Result<EntityId> {
    let entity_type: EntityType = entity_type.parse().map_err(ApiError::from)?;
    Ok(EntityId::new(entity_type, parse_id(id, "entityId")?))
}

fn scope(raw: &str) -> Result<AttributeScope> {
    raw.parse().map_err(|_| ApiError::invalid_argument(format!("Invalid attribute scope: {raw}")))
}

#[derive(Debug, Deserialize)]
struct KeysQuery {
    keys: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TimeseriesParams {
    keys: Option<String>,
    start_ts: Option<i64>,
    end_ts: Option<i64>,
    /// Bucket length in ms (0: no aggregation).
    interval: Option<i64>,
    /// `MILLISECONDS` (the default), `WEEK`, `WEEK_ISO`, `MONTH` or `QUARTER`.
    interval_type: Option<String>,
    /// The IANA zone of calendar intervals' boundaries (UTC when absent).
    time_zone: Option<String>,
    agg: Option<String>,
    limit: Option<usize>,
    order_by: Option<String>,
    #[serde(default)]
    use_strict_data_types: bool,
}



async fn save_device_attributes(
    State(state): State<ApiState>,
    Auth(p): Auth,
    Path((device_id, raw_scope)): Path<(String, String)>,
    AnyJson(body): AnyJson<Value>,
) -> Result<Done> {
    let entity = EntityId::new(EntityType::Device, parse_id(&device_id, "deviceId")?);
    state.platform.save_attributes(&p, entity, scope(&raw_scope)?, &body).await?;
    Ok(Done)
}

async fn delete_device_attributes(
    State(state): State<ApiState>,
    Auth(p): Auth,
    Path((device_id, raw_scope)): Path<(String, String)>,
    Query(q): Query<KeysQuery>,
) -> Result<Done> {
    let entity = EntityId::new(EntityType::Device, parse_id(&device_id, "deviceId")?);
    let keys = split_keys(q.keys.as_deref()).unwrap_or_default();
    state.platform.delete_attributes(&p, entity, scope(&raw_scope)?, &keys).await?;
    Ok(Done)
}

async fn save_attributes_v1(
    State(state): State<ApiState>,
    Auth(p): Auth,
    Path((entity_type, id, raw_scope)): Path<(String, String, String)>,
    AnyJson(body): AnyJson<Value>,
) -> Result<Done> {
    state.platform.save_attributes(&p, entity(&entity_type, &id)?, scope(&raw_scope)?, &body).await?;
    Ok(Done)
}

async fn save_attributes_v2(
    state: State<ApiState>,
    auth: Auth,
    path: Path<(String, String, String)>,
    body: AnyJson<Value>,
) -> Result<Done> {
    save_attributes_v1(state, auth, path, body).await
}

async fn delete_attributes(
    State(state): State<ApiState>,
    Auth(p): Auth,
    Path((entity_type, id, raw_scope)): Path<(String, String, String)>,
    Query(q): Query<KeysQuery>,
) -> Result<Done> {
    let keys = split_keys(q.keys.as_deref()).unwrap_or_default();
    state.platform.delete_attributes(&p, entity(&entity_type, &id)?, scope(&raw_scope)?, &keys).await?;
    Ok(Done)
}

/// `POST …/timeseries/{scope}`: the scope (`ANY`) is ignored, as is the `?scope=ANY` the 4.3
/// client appends.
async fn save_timeseries(
    State(state): State<ApiState>,
    Auth(p): Auth,
    Path((entity_type, id, _scope)): Path<(String, String, String)>,
    AnyJson(body): AnyJson<Value>,
) -> Result<Done> {
    state.platform.save_telemetry(&p, entity(&entity_type, &id)?, &body).await?;
    Ok(Done)
}

/// With a TTL: kept as long as the telemetry stream and the lake keep data (per-point TTLs are
/// not modelled).
async fn save_timeseries_ttl(
    State(state): State<ApiState>,
    Auth(p): Auth,
    Path((entity_type, id, _scope, _ttl)): Path<(String, String, String, String)>,
    AnyJson(body): AnyJson<Value>,
) -> Result<Done> {
    state.platform.save_telemetry(&p, entity(&entity_type, &id)?, &body).await?;
    Ok(Done)
}

fn attribute_json(a: AttributeValue) -> Value {
    json!({"key": a.key, "value": a.value.to_json(), "lastUpdateTs": a.last_update_ts})
}

async fn attribute_values(
    State(state): State<ApiState>,
    Auth(p): Auth,
    Path((entity_type, id)): Path<(String, String)>,
    Query(q): Query<KeysQuery>,
) -> Result<axum::Json<Value>> {
    let keys = split_keys(q.keys.as_deref());
    let values = state.platform.attributes(&p, entity(&entity_type, &id)?, None, keys.as_deref())?;
    Ok(axum::Json(Value::Array(values.into_iter().map(attribute_json).collect())))
}

async fn attribute_values_of_scope(
    State(state): State<ApiState>,
    Auth(p): Auth,
    Path((entity_type, id, raw_scope)): Path<(String, String, String)>,
    Query(q): Query<KeysQuery>,
) -> Result<axum::Json<Value>> {
    let keys = split_keys(q.keys.as_deref());
    let values = state.platform.attributes(&p, entity(&entity_type, &id)?, Some(scope(&raw_scope)?), keys.as_deref())?;
    Ok(axum::Json(Value::Array(values.into_iter().map(attribute_json).collect())))
}

async fn attribute_keys(
    State(state): State<ApiState>,
    Auth(p): Auth,
    Path((entity_type, id)): Path<(String, String)>,
) -> Result<axum::Json<Vec<String>>> {
    Ok(axum::Json(state.platform.attribute_keys(&p, entity(&entity_type, &id)?, None)?))
}

async fn attribute_keys_of_scope(
    State(state): State<ApiState>,
    Auth(p): Auth,
    Path((entity_type, id, raw_scope)): Path<(String, String, String)>,
) -> Result<axum::Json<Vec<String>>> {
    Ok(axum::Json(state.platform.attribute_keys(&p, entity(&entity_type, &id)?, Some(scope(&raw_scope)?))?))
}

async fn timeseries_keys(
    State(state): State<ApiState>,
    Auth(p): Auth,
    Path((entity_type, id)): Path<(String, String)>,
) -> Result<axum::Json<Vec<String>>> {
    Ok(axum::Json(state.platform.timeseries_keys(&p, entity(&entity_type, &id)?)?))
}

/// `GET …/values/timeseries?keys=[&startTs&endTs&interval&intervalType&timeZone&agg&limit&orderBy]`: with both
/// `startTs` and `endTs` a range query through the query engine, otherwise the latest value per
/// key; `{"k": [{"ts", "value"}]}`, values as strings unless `useStrictDataTypes=true`.
async fn timeseries_values(
    State(state): State<ApiState>,
    Auth(p): Auth,
    Path((entity_type, id)): Path<(String, String)>,
    Query(q): Query<TimeseriesParams>,
) -> Result<axum::Json<Value>> {
    let entity = entity(&entity_type, &id)?;
    let keys = split_keys(q.keys.as_deref());
    let render = |value: &KvValue| if q.use_strict_data_types { value.to_json() } else { Value::String(value.to_text()) };
    let mut out = Map::new();
    let (Some(start_ts), Some(end_ts)) = (q.start_ts, q.end_ts) else {
        for point in state.platform.latest_timeseries(&p, entity, keys.as_deref())? {
            out.insert(point.key, json!([{"ts": point.ts, "value": render(&point.value)}]));
        }
        return Ok(axum::Json(Value::Object(out)));
    };
    let query = TimeseriesQuery {
        keys: keys.unwrap_or_default(),
        start_ts,
        end_ts,
        interval: q.interval.unwrap_or(0),
        agg: q.agg.as_deref().map(str::parse).transpose()?.unwrap_or(Aggregation::None),
        limit: q.limit.unwrap_or(DEFAULT_LIMIT),
        order: q.order_by.as_deref().map(str::parse).transpose()?.unwrap_or(Order::Desc),
        calendar: Calendar::parse(q.interval_type.as_deref(), q.time_zone.as_deref())?,
    };
    for (key, points) in state.platform.timeseries(&p, entity, query).await? {
        let points: Vec<Value> = points.iter().map(|point| json!({"ts": point.ts, "value": render(&point.value)})).collect();
        out.insert(key, Value::Array(points));
    }
    Ok(axum::Json(Value::Object(out)))
}

/// ThingsBoard answers these writes with 200 and an empty body.
struct Done;

impl axum::response::IntoResponse for Done {
    fn into_response(self) -> axum::response::Response {
        axum::http::StatusCode::OK.into_response()
    }
}
