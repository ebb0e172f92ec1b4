//! `/api/deviceProfile…` and `/api/assetProfile…`: ThingsBoard's profile endpoints. Both kinds
//! share one set of generic handlers; [`ProfileApi`] holds what their JSON does not share.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use thinglake_domain::EntityType;
use thinglake_domain::profile::{AssetProfileFields, DeviceProfileFields};
use thinglake_platform::profiles::{ProfileKind, ProfileView};
use thinglake_queries::{SortKey, paginate};
use uuid::Uuid;

use crate::ApiState;
use crate::error::{ApiError, Result};
use crate::extract::{Auth, Json, Query, parse_id};
use crate::page::{PageParams, common_sort_key};

pub(crate) fn routes() -> Router<ApiState> {
    kind_routes::<DeviceProfileFields>("device").merge(kind_routes::<AssetProfileFields>("asset"))
}

/// The routes of one kind of profile; `kind` is `device` or `asset`.
fn kind_routes<F: ProfileApi>(kind: &str) -> Router<ApiState> {
    Router::new()
        .route(&format!("/api/{kind}Profile"), post(save_profile::<F>))
        .route(&format!("/api/{kind}Profile/{{id}}"), get(get_profile::<F>).delete(delete_profile::<F>))
        .route(&format!("/api/{kind}Profile/{{id}}/default"), post(set_default_profile::<F>))
        .route(&format!("/api/{kind}Profiles"), get(list_profiles::<F>))
        .route(&format!("/api/{kind}ProfileInfos"), get(list_profile_infos::<F>))
        .route(&format!("/api/{kind}ProfileInfo/default"), get(default_profile_info::<F>))
        .route(&format!("/api/{kind}ProfileInfo/{{id}}"), get(profile_info::<F>))
}

/// An id given as `{"entityType", "id"}` for an entity we keep by id only.
#[derive(Debug, Clone, Copy, Deserialize)]
struct IdRef {
    id: Uuid,
}

/// The fields both kinds of profile carry besides their name.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Shared {
    description: Option<String>,
    image: Option<String>,
    default_rule_chain_id: Option<IdRef>,
    default_dashboard_id: Option<IdRef>,
    default_queue_name: Option<String>,
}

/// The [`Shared`] part of a profile's fields (both kinds name them alike).
macro_rules! shared_of {
    ($fields:expr) => {
        Shared {
            description: $fields.description.clone(),
            image: $fields.image.clone(),
            default_rule_chain_id: $fields.default_rule_chain_id.map(|id| IdRef { id }),
            default_dashboard_id: $fields.default_dashboard_id.map(|id| IdRef { id }),
            default_queue_name: $fields.default_queue_name.clone(),
        }
    };
}

/// The profile JSON of ThingsBoard: shared fields, then the kind's own.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", bound = "E: DeserializeOwned")]
struct ProfileBody<E> {
    id: Option<IdRef>,
    name: Option<String>,
    version: Option<u64>,
    #[serde(flatten)]
    shared: Shared,
    #[serde(flatten)]
    extra: E,
}

/// What the JSON of one kind of profile adds to the shared shape.
pub(crate) trait ProfileApi: ProfileKind {
    /// The kind's own fields in a save.
    type Extra: DeserializeOwned + Send + 'static;
    fn build(name: String, shared: Shared, extra: Self::Extra) -> Self;
    fn shared(&self) -> Shared;
    /// The kind's own fields in the profile JSON.
    fn extra_json(&self) -> Map<String, Value>;
    /// The kind's own fields in the profile-info JSON.
    fn info_json(&self) -> Map<String, Value>;
}

/// A device profile's own fields in a save; ThingsBoard's defaults when left out.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeviceProfileExtra {
    #[serde(rename = "type")]
    profile_type: Option<String>,
    transport_type: Option<String>,
    provision_type: Option<String>,
    provision_device_key: Option<String>,
    #[serde(default)]
    profile_data: Value,
}

impl ProfileApi for DeviceProfileFields {
    type Extra = DeviceProfileExtra;

    fn build(name: String, shared: Shared, extra: DeviceProfileExtra) -> Self {
        let default = DeviceProfileFields::default_profile();
        DeviceProfileFields {
            name,
            description: shared.description,
            image: shared.image,
            profile_type: extra.profile_type.unwrap_or(default.profile_type),
            transport_type: extra.transport_type.unwrap_or(default.transport_type),
            provision_type: extra.provision_type.unwrap_or(default.provision_type),
            provision_device_key: extra.provision_device_key,
            profile_data: if extra.profile_data.is_null() { default.profile_data } else { extra.profile_data },
            default_rule_chain_id: shared.default_rule_chain_id.map(|r| r.id),
            default_dashboard_id: shared.default_dashboard_id.map(|r| r.id),
            default_queue_name: shared.default_queue_name,
        }
    }

    fn shared(&self) -> Shared {
        shared_of!(self)
    }

    fn extra_json(&self) -> Map<String, Value> {
        let mut map = self.info_json();
        map.insert("provisionType".into(), json!(self.provision_type));
        map.insert("provisionDeviceKey".into(), json!(self.provision_device_key));
        map.insert("profileData".into(), self.profile_data.clone());
        map.insert("firmwareId".into(), Value::Null);
        map.insert("softwareId".into(), Value::Null);
        map
    }

    fn info_json(&self) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("type".into(), json!(self.profile_type));
        map.insert("transportType".into(), json!(self.transport_type));
        map
    }
}

/// Asset profiles add nothing of their own.
#[derive(Debug, Deserialize)]
pub(crate) struct NoExtra {}

impl ProfileApi for AssetProfileFields {
    type Extra = NoExtra;

    fn build(name: String, shared: Shared, _: NoExtra) -> Self {
        AssetProfileFields {
            name,
            description: shared.description,
            image: shared.image,
            default_rule_chain_id: shared.default_rule_chain_id.map(|r| r.id),
            default_dashboard_id: shared.default_dashboard_id.map(|r| r.id),
            default_queue_name: shared.default_queue_name,
        }
    }

    fn shared(&self) -> Shared {
        shared_of!(self)
    }

    fn extra_json(&self) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("defaultEdgeRuleChainId".into(), Value::Null);
        map
    }

    fn info_json(&self) -> Map<String, Value> {
        Map::new()
    }
}

fn ref_json(entity_type: EntityType, id: Option<IdRef>) -> Value {
    id.map_or(Value::Null, |r| json!({"entityType": entity_type, "id": r.id}))
}

fn profile_json<F: ProfileApi>(v: &ProfileView<F>) -> Value {
    let pr = &v.profile;
    let shared = pr.fields.shared();
    let mut map = Map::new();
    map.insert("id".into(), json!({"entityType": F::ENTITY_TYPE, "id": pr.id}));
    map.insert("createdTime".into(), json!(pr.created_time));
    map.insert("tenantId".into(), json!(pr.tenant_id));
    map.insert("name".into(), json!(pr.fields.name()));
    map.insert("description".into(), json!(shared.description));
    map.insert("image".into(), json!(shared.image));
    map.insert("defaultRuleChainId".into(), ref_json(EntityType::RuleChain, shared.default_rule_chain_id));
    map.insert("defaultDashboardId".into(), ref_json(EntityType::Dashboard, shared.default_dashboard_id));
    map.insert("defaultQueueName".into(), json!(shared.default_queue_name));
    map.insert("default".into(), json!(pr.is_default));
    map.insert("externalId".into(), Value::Null);
    map.insert("version".into(), json!(v.version));
    map.extend(pr.fields.extra_json());
    Value::Object(map)
}

fn profile_info_json<F: ProfileApi>(v: &ProfileView<F>) -> Value {
    let pr = &v.profile;
    let mut map = Map::new();
    map.insert("id".into(), json!({"entityType": F::ENTITY_TYPE, "id": pr.id}));
    map.insert("tenantId".into(), json!(pr.tenant_id));
    map.insert("name".into(), json!(pr.fields.name()));
    map.insert("image".into(), json!(pr.fields.shared().image));
    map.insert("defaultDashboardId".into(), ref_json(EntityType::Dashboard, pr.fields.shared().default_dashboard_id));
    map.extend(pr.fields.info_json());
    Value::Object(map)
}

fn parse_profile_id<F: ProfileApi>(raw: &str) -> Result<Uuid> {
    parse_id(raw, if F::ENTITY_TYPE == EntityType::DeviceProfile { "deviceProfileId" } else { "assetProfileId" })
}

async fn save_profile<F: ProfileApi>(
    State(state): State<ApiState>,
    Auth(p): Auth,
    Json(body): Json<ProfileBody<F::Extra>>,
) -> Result<axum::Json<Value>> {
    let name = body.name.ok_or_else(|| ApiError::invalid_argument("Profile name should be specified!"))?;
    let fields = F::build(name, body.shared, body.extra);
    let view = state.platform.save_profile::<F>(&p, body.id.map(|r| r.id), fields, body.version).await?;
    Ok(axum::Json(profile_json(&view)))
}

async fn get_profile<F: ProfileApi>(State(state): State<ApiState>, Auth(p): Auth, Path(id): Path<String>) -> Result<axum::Json<Value>> {
    let id = parse_profile_id::<F>(&id)?;
    Ok(axum::Json(profile_json(&state.platform.profile::<F>(&p, id)?)))
}

async fn profile_info<F: ProfileApi>(State(state): State<ApiState>, Auth(p): Auth, Path(id): Path<String>) -> Result<axum::Json<Value>> {
    let id = parse_profile_id::<F>(&id)?;
    Ok(axum::Json(profile_info_json(&state.platform.profile::<F>(&p, id)?)))
}

async fn default_profile_info<F: ProfileApi>(State(state): State<ApiState>, Auth(p): Auth) -> Result<axum::Json<Value>> {
    Ok(axum::Json(profile_info_json(&state.platform.default_profile::<F>(&p)?)))
}

async fn delete_profile<F: ProfileApi>(State(state): State<ApiState>, Auth(p): Auth, Path(id): Path<String>) -> Result<()> {
    let id = parse_profile_id::<F>(&id)?;
    state.platform.delete_profile::<F>(&p, id).await?;
    Ok(())
}

async fn set_default_profile<F: ProfileApi>(
    State(state): State<ApiState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>> {
    let id = parse_profile_id::<F>(&id)?;
    Ok(axum::Json(profile_json(&state.platform.set_default_profile::<F>(&p, id).await?)))
}

/// One page of the tenant's profiles as `render` shows them.
fn page_of<F: ProfileApi>(
    state: &ApiState,
    p: &thinglake_platform::Principal,
    params: &PageParams,
    render: fn(&ProfileView<F>) -> Value,
) -> Result<axum::Json<Value>> {
    let page = paginate(
        state.platform.profiles::<F>(p)?,
        &params.link()?,
        |v| vec![v.profile.fields.name()],
        |v, prop| match prop {
            "isDefault" | "default" => Some(SortKey::Number(i64::from(v.profile.is_default))),
            "description" => Some(SortKey::Text(v.profile.fields.shared().description.unwrap_or_default().to_lowercase())),
            _ => common_sort_key(prop, v.profile.created_time, v.profile.fields.name(), None, None),
        },
    )?;
    Ok(axum::Json(serde_json::to_value(page.map(|v| render(&v))).unwrap_or_default()))
}

async fn list_profiles<F: ProfileApi>(State(state): State<ApiState>, Auth(p): Auth, Query(params): Query<PageParams>) -> Result<axum::Json<Value>> {
    page_of::<F>(&state, &p, &params, profile_json)
}

async fn list_profile_infos<F: ProfileApi>(
    State(state): State<ApiState>,
    Auth(p): Auth,
    Query(params): Query<PageParams>,
) -> Result<axum::Json<Value>> {
    page_of::<F>(&state, &p, &params, profile_info_json)
}
