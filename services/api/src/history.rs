//! `/api/history/…`: the auditor's view (not in ThingsBoard). An entity's events in log order,
//! the changes between two times (who, what, when), and its state as of any moment, replayed
//! from the log.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use thinglake_domain::EntityId;
use thinglake_platform::history::{ChangeEntry, EntityAsOf, HistoryEntry, Snapshot};

use crate::ApiState;
use crate::error::{ApiError, Result};
use crate::extract::{Auth, Query, parse_id};

pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/history/{entity_type}/{id}", get(history))
        .route("/api/history/{entity_type}/{id}/state", get(state_as_of))
        .route("/api/history/{entity_type}/{id}/changes", get(changes))
}

#[derive(Debug, Deserialize)]
struct AsOfParams {
    /// Milliseconds since the Unix epoch; now when absent.
    ts: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChangesParams {
    /// Milliseconds since the Unix epoch: changes recorded at or after it...
    start_ts: i64,
    /// ...and before it.
    end_ts: i64,
}

fn entity(entity_type: &str, id: &str) -> Result<EntityId> {
    let entity_type = entity_type.parse().map_err(|_| ApiError::bad_request(format!("Invalid entity type: {entity_type}")))?;
    Ok(EntityId::new(entity_type, parse_id(id, "entityId")?))
}

/// An event's row without its payload: where it is on the log, what, when and who.
fn event_row(e: &HistoryEntry) -> Map<String, Value> {
    let env = &e.envelope;
    let row = json!({
        "seq": e.seq,
        "eventId": env.event_id,
        "version": env.version,
        "eventType": env.event_type,
        "schemaVersion": env.schema_version,
        "occurredAt": env.occurred_at,
        "recordedAt": env.recorded_at,
        "actor": env.actor,
    });
    match row {
        Value::Object(map) => map,
        _ => unreachable!("json! of an object literal is an object"),
    }
}

/// A history row: the event with its payload.
fn entry_json(e: &HistoryEntry) -> Value {
    let mut row = event_row(e);
    row.insert("payload".into(), e.envelope.payload.clone());
    Value::Object(row)
}

/// A change-list row: the event with the fields it changed.
fn change_json(c: &ChangeEntry) -> Value {
    let mut row = event_row(&c.entry);
    row.insert("changes".into(), Value::Object(c.changes.clone()));
    Value::Object(row)
}

/// Merges serialized fields into an object of common fields.
fn with_fields(mut common: Value, fields: Value) -> Value {
    if let (Value::Object(map), Value::Object(extra)) = (&mut common, fields) {
        for (k, v) in extra {
            map.entry(k).or_insert(v);
        }
    }
    common
}

/// A device's or an asset's fields: both belong to a tenant and may be assigned to a customer.
fn assignable_json(id: Value, created_time: i64, tenant_id: Value, customer_id: Value, fields: Value) -> Value {
    with_fields(json!({"id": id, "createdTime": created_time, "tenantId": tenant_id, "customerId": customer_id}), fields)
}

/// A device or asset profile's fields (`entity_type` names its id).
fn profile_json(entity_type: &str, id: Value, created_time: i64, tenant_id: Value, is_default: bool, fields: Value) -> Value {
    with_fields(
        json!({
            "id": {"entityType": entity_type, "id": id},
            "createdTime": created_time,
            "tenantId": tenant_id,
            "default": is_default,
        }),
        fields,
    )
}

fn to_json(value: &impl serde::Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// The entity's fields in ThingsBoard's naming (ids as `{"entityType", "id"}`).
fn snapshot_json(s: &Snapshot) -> Value {
    match s {
        Snapshot::Tenant(t) => {
            with_fields(json!({"id": t.id, "createdTime": t.created_time, "name": t.fields.title}), to_json(&t.fields))
        }
        Snapshot::Customer(c) => with_fields(
            json!({"id": c.id, "createdTime": c.created_time, "tenantId": c.tenant_id, "name": c.fields.title}),
            to_json(&c.fields),
        ),
        Snapshot::User(u) => with_fields(
            json!({
                "id": u.id,
                "createdTime": u.created_time,
                "tenantId": u.tenant_id,
                "customerId": u.customer_id,
                "authority": u.authority,
                "name": u.fields.email,
            }),
            to_json(&u.fields),
        ),
        Snapshot::Device(d) => {
            assignable_json(to_json(&d.id), d.created_time, to_json(&d.tenant_id), to_json(&d.customer_id), to_json(&d.fields))
        }
        Snapshot::Asset(a) => {
            assignable_json(to_json(&a.id), a.created_time, to_json(&a.tenant_id), to_json(&a.customer_id), to_json(&a.fields))
        }
        Snapshot::DeviceProfile(p) => {
            profile_json("DEVICE_PROFILE", to_json(&p.id), p.created_time, to_json(&p.tenant_id), p.is_default, to_json(&p.fields))
        }
        Snapshot::AssetProfile(p) => {
            profile_json("ASSET_PROFILE", to_json(&p.id), p.created_time, to_json(&p.tenant_id), p.is_default, to_json(&p.fields))
        }
        Snapshot::Dashboard(d) => with_fields(
            json!({
                "id": d.id,
                "createdTime": d.created_time,
                "tenantId": d.tenant_id,
                "name": d.fields.title,
                "assignedCustomers": d.assigned_customers,
            }),
            to_json(&d.fields),
        ),
        Snapshot::Relation(r) => json!({
            "from": r.key.from,
            "to": r.key.to,
            "type": r.key.relation_type,
            "typeGroup": r.key.type_group.as_str(),
            "additionalInfo": r.additional_info,
            "createdTime": r.created_time,
        }),
    }
}

fn as_of_json(a: &EntityAsOf) -> Value {
    json!({
        "entityId": a.entity,
        "version": a.version,
        "asOf": a.as_of,
        "exists": a.exists,
        "deleted": a.deleted,
        "state": a.state.as_ref().map(snapshot_json),
    })
}

async fn history(
    State(state): State<ApiState>,
    Auth(p): Auth,
    Path((entity_type, id)): Path<(String, String)>,
) -> Result<axum::Json<Value>> {
    let entries = state.platform.entity_history(&p, entity(&entity_type, &id)?).await?;
    Ok(axum::Json(Value::Array(entries.iter().map(entry_json).collect())))
}

async fn changes(
    State(state): State<ApiState>,
    Auth(p): Auth,
    Path((entity_type, id)): Path<(String, String)>,
    Query(q): Query<ChangesParams>,
) -> Result<axum::Json<Value>> {
    if q.start_ts >= q.end_ts {
        return Err(ApiError::bad_request("startTs must be before endTs"));
    }
    let changes = state.platform.entity_changes(&p, entity(&entity_type, &id)?, q.start_ts, q.end_ts).await?;
    Ok(axum::Json(Value::Array(changes.iter().map(change_json).collect())))
}

async fn state_as_of(
    State(state): State<ApiState>,
    Auth(p): Auth,
    Path((entity_type, id)): Path<(String, String)>,
    Query(q): Query<AsOfParams>,
) -> Result<axum::Json<Value>> {
    let ts = q.ts.unwrap_or_else(thinglake_platform::now_ms);
    let as_of = state.platform.entity_as_of(&p, entity(&entity_type, &id)?, ts).await?;
    Ok(axum::Json(as_of_json(&as_of)))
}
