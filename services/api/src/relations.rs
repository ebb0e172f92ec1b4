//! `/api/relation…`: ThingsBoard's relation endpoints, the classic ones (tb-rest-client 4.3) and
//! those of ThingsBoard 4.3.1.2 (`/api/v2/relation`, `/api/relations/from|to/…`).

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use thinglake_domain::relation::{RelationKey, RelationTypeGroup};
use thinglake_domain::{EntityId, EntityType};
use thinglake_platform::relations::{Direction, RelationFilter, RelationInfo, RelationInput, RelationView, RelationsQuery};

use crate::ApiState;
use crate::error::{ApiError, Result};
use crate::extract::{Auth, Json, Query, parse_id};

pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/relation", post(save_relation).get(get_relation).delete(delete_relation))
        .route("/api/v2/relation", post(save_relation_v2).delete(delete_relation_v2))
        .route("/api/relations", get(list_relations).post(query_relations))
        .route("/api/relations/info", get(list_relation_infos).post(query_relation_infos))
        .route("/api/relations/from/{entity_type}/{id}", get(relations_from))
        .route("/api/relations/from/{entity_type}/{id}/{relation_type}", get(relations_from_of_type))
        .route("/api/relations/to/{entity_type}/{id}", get(relations_to))
        .route("/api/relations/to/{entity_type}/{id}/{relation_type}", get(relations_to_of_type))
}

/// The relation JSON of ThingsBoard, as saved.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RelationBody {
    from: Option<EntityId>,
    to: Option<EntityId>,
    #[serde(rename = "type")]
    relation_type: Option<String>,
    type_group: Option<String>,
    #[serde(default)]
    additional_info: Value,
}

impl RelationBody {
    fn into_input(self) -> Result<RelationInput> {
        let from = self.from.ok_or_else(|| ApiError::invalid_argument("Relation 'from' should be specified!"))?;
        let to = self.to.ok_or_else(|| ApiError::invalid_argument("Relation 'to' should be specified!"))?;
        let relation_type = self.relation_type.ok_or_else(|| ApiError::invalid_argument("Relation type should be specified!"))?;
        Ok(RelationInput { from, to, relation_type, type_group: parse_group(self.type_group.as_deref())?, additional_info: self.additional_info })
    }
}

/// The query string of the relation endpoints; which fields are needed depends on the endpoint.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RelationParams {
    from_id: Option<String>,
    from_type: Option<String>,
    to_id: Option<String>,
    to_type: Option<String>,
    relation_type: Option<String>,
    relation_type_group: Option<String>,
}

impl RelationParams {
    fn from(&self) -> Result<Option<EntityId>> {
        entity_id(self.from_type.as_deref(), self.from_id.as_deref(), "fromId")
    }

    fn to(&self) -> Result<Option<EntityId>> {
        entity_id(self.to_type.as_deref(), self.to_id.as_deref(), "toId")
    }

    fn group(&self) -> Result<Option<RelationTypeGroup>> {
        parse_group(self.relation_type_group.as_deref())
    }

    /// The full key of one relation.
    fn key(&self) -> Result<RelationKey> {
        let missing = |name: &str| ApiError::bad_request(format!("Required request parameter '{name}' is not present"));
        Ok(RelationKey {
            from: self.from()?.ok_or_else(|| missing("fromId"))?,
            to: self.to()?.ok_or_else(|| missing("toId"))?,
            relation_type: self.relation_type.clone().ok_or_else(|| missing("relationType"))?,
            type_group: self.group()?.unwrap_or_default(),
        })
    }

    /// The root and direction of a list: `fromId&fromType` or `toId&toType`.
    fn end(&self) -> Result<(EntityId, Direction)> {
        match (self.from()?, self.to()?) {
            (Some(from), None) => Ok((from, Direction::From)),
            (None, Some(to)) => Ok((to, Direction::To)),
            _ => Err(ApiError::bad_request("Either 'fromId' and 'fromType' or 'toId' and 'toType' must be present")),
        }
    }
}

/// Only the type group, for the 4.4 path endpoints.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupParam {
    relation_type_group: Option<String>,
}

fn entity_id(entity_type: Option<&str>, id: Option<&str>, what: &str) -> Result<Option<EntityId>> {
    match (entity_type, id) {
        (None, None) => Ok(None),
        (Some(t), Some(id)) => Ok(Some(EntityId::new(parse_type(t)?, parse_id(id, what)?))),
        _ => Err(ApiError::bad_request(format!("Both the id and the type of '{what}' must be present"))),
    }
}

fn parse_type(raw: &str) -> Result<EntityType> {
    raw.parse::<EntityType>().map_err(|_| ApiError::bad_request(format!("Invalid entity type: {raw}")))
}

fn parse_group(raw: Option<&str>) -> Result<Option<RelationTypeGroup>> {
    match raw {
        None | Some("") => Ok(None),
        Some(g) => g.parse().map(Some).map_err(|_| ApiError::bad_request(format!("Invalid relation type group: {g}"))),
    }
}

/// ThingsBoard's `EntityRelation` JSON.
fn relation_json(v: &RelationView) -> Value {
    let r = &v.relation;
    json!({
        "from": r.key.from,
        "to": r.key.to,
        "type": r.key.relation_type,
        "typeGroup": r.key.type_group.as_str(),
        "additionalInfo": r.additional_info,
        "version": v.version,
    })
}

/// ThingsBoard's `EntityRelationInfo` JSON: the relation with the names of its ends.
fn relation_info_json(i: &RelationInfo) -> Value {
    let mut json = relation_json(&i.view);
    if let Value::Object(map) = &mut json {
        map.insert("fromName".into(), json!(i.from_name));
        map.insert("toName".into(), json!(i.to_name));
    }
    json
}

fn list(views: &[RelationView]) -> axum::Json<Value> {
    axum::Json(Value::Array(views.iter().map(relation_json).collect()))
}

async fn save_relation(State(state): State<ApiState>, Auth(p): Auth, Json(body): Json<RelationBody>) -> Result<()> {
    state.platform.save_relation(&p, body.into_input()?).await?;
    Ok(())
}

async fn save_relation_v2(
    State(state): State<ApiState>,
    Auth(p): Auth,
    Json(body): Json<RelationBody>,
) -> Result<axum::Json<Value>> {
    Ok(axum::Json(relation_json(&state.platform.save_relation(&p, body.into_input()?).await?)))
}

async fn get_relation(State(state): State<ApiState>, Auth(p): Auth, Query(q): Query<RelationParams>) -> Result<axum::Json<Value>> {
    Ok(axum::Json(relation_json(&state.platform.relation(&p, &q.key()?)?)))
}

async fn delete_relation(State(state): State<ApiState>, Auth(p): Auth, Query(q): Query<RelationParams>) -> Result<()> {
    state.platform.delete_relation(&p, &q.key()?).await?;
    Ok(())
}

async fn delete_relation_v2(
    State(state): State<ApiState>,
    Auth(p): Auth,
    Query(q): Query<RelationParams>,
) -> Result<axum::Json<Value>> {
    Ok(axum::Json(relation_json(&state.platform.delete_relation(&p, &q.key()?).await?)))
}

fn find(state: &ApiState, p: &thinglake_platform::Principal, q: &RelationParams) -> Result<Vec<RelationView>> {
    let (root, direction) = q.end()?;
    Ok(state.platform.relations_of(p, root, direction, q.relation_type.as_deref(), q.group()?)?)
}

async fn list_relations(State(state): State<ApiState>, Auth(p): Auth, Query(q): Query<RelationParams>) -> Result<axum::Json<Value>> {
    Ok(list(&find(&state, &p, &q)?))
}

async fn list_relation_infos(
    State(state): State<ApiState>,
    Auth(p): Auth,
    Query(q): Query<RelationParams>,
) -> Result<axum::Json<Value>> {
    let infos = state.platform.relation_infos(find(&state, &p, &q)?);
    Ok(axum::Json(Value::Array(infos.iter().map(relation_info_json).collect())))
}

fn by_path(
    state: &ApiState,
    p: &thinglake_platform::Principal,
    direction: Direction,
    (entity_type, id): (&str, &str),
    relation_type: Option<&str>,
    group: &GroupParam,
) -> Result<axum::Json<Value>> {
    let root = EntityId::new(parse_type(entity_type)?, parse_id(id, "entityId")?);
    let group = parse_group(group.relation_type_group.as_deref())?;
    Ok(list(&state.platform.relations_of(p, root, direction, relation_type, group)?))
}

async fn relations_from(
    State(state): State<ApiState>,
    Auth(p): Auth,
    Path((entity_type, id)): Path<(String, String)>,
    Query(g): Query<GroupParam>,
) -> Result<axum::Json<Value>> {
    by_path(&state, &p, Direction::From, (&entity_type, &id), None, &g)
}

async fn relations_from_of_type(
    State(state): State<ApiState>,
    Auth(p): Auth,
    Path((entity_type, id, relation_type)): Path<(String, String, String)>,
    Query(g): Query<GroupParam>,
) -> Result<axum::Json<Value>> {
    by_path(&state, &p, Direction::From, (&entity_type, &id), Some(&relation_type), &g)
}

async fn relations_to(
    State(state): State<ApiState>,
    Auth(p): Auth,
    Path((entity_type, id)): Path<(String, String)>,
    Query(g): Query<GroupParam>,
) -> Result<axum::Json<Value>> {
    by_path(&state, &p, Direction::To, (&entity_type, &id), None, &g)
}

async fn relations_to_of_type(
    State(state): State<ApiState>,
    Auth(p): Auth,
    Path((entity_type, id, relation_type)): Path<(String, String, String)>,
    Query(g): Query<GroupParam>,
) -> Result<axum::Json<Value>> {
    by_path(&state, &p, Direction::To, (&entity_type, &id), Some(&relation_type), &g)
}

/// ThingsBoard's `EntityRelationsQuery` JSON.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryBody {
    parameters: Option<QueryParameters>,
    #[serde(default)]
    filters: Option<Vec<FilterBody>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryParameters {
    root_id: Option<String>,
    root_type: Option<String>,
    direction: Option<String>,
    relation_type_group: Option<String>,
    #[serde(default)]
    max_level: Option<i64>,
    #[serde(default)]
    fetch_last_level_only: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FilterBody {
    relation_type: Option<String>,
    #[serde(default)]
    entity_types: Option<Vec<String>>,
}

impl QueryBody {
    fn into_query(self) -> Result<RelationsQuery> {
        let params = self.parameters.ok_or_else(|| ApiError::invalid_argument("Relations query parameters should be specified!"))?;
        let root_type = params.root_type.as_deref().ok_or_else(|| ApiError::invalid_argument("Root entity type should be specified!"))?;
        let root_id = params.root_id.as_deref().ok_or_else(|| ApiError::invalid_argument("Root entity id should be specified!"))?;
        let root = EntityId::new(parse_type(root_type)?, parse_id(root_id, "rootId")?);
        let direction = match params.direction.as_deref().map(str::to_ascii_uppercase).as_deref() {
            Some("FROM") => Direction::From,
            Some("TO") => Direction::To,
            _ => return Err(ApiError::invalid_argument("Direction should be FROM or TO!")),
        };
        let filters = self
            .filters
            .unwrap_or_default()
            .into_iter()
            .map(|f| {
                let entity_types =
                    f.entity_types.unwrap_or_default().iter().map(|t| parse_type(t)).collect::<Result<Vec<_>>>()?;
                Ok(RelationFilter { relation_type: f.relation_type, entity_types })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RelationsQuery {
            root,
            direction,
            type_group: parse_group(params.relation_type_group.as_deref())?,
            max_level: u32::try_from(params.max_level.unwrap_or(0).max(0)).unwrap_or(u32::MAX),
            fetch_last_level_only: params.fetch_last_level_only.unwrap_or(false),
            filters,
        })
    }
}

async fn query_relations(State(state): State<ApiState>, Auth(p): Auth, Json(body): Json<QueryBody>) -> Result<axum::Json<Value>> {
    Ok(list(&state.platform.find_relations(&p, &body.into_query()?)?))
}

async fn query_relation_infos(
    State(state): State<ApiState>,
    Auth(p): Auth,
    Json(body): Json<QueryBody>,
) -> Result<axum::Json<Value>> {
    let infos = state.platform.relation_infos(state.platform.find_relations(&p, &body.into_query()?)?);
    Ok(axum::Json(Value::Array(infos.iter().map(relation_info_json).collect())))
}
