//! `/api/history/…`: the auditor's view (not in ThingsBoard). An entity's events in log order,
//! and its state as of any moment, replayed from the log.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use thinglake_domain::EntityId;
use thinglake_platform::history::{EntityAsOf, HistoryEntry, Snapshot};

use crate::ApiState;
use crate::error::{ApiError, Result};
use crate::extract::{Auth, Query, parse_id};

pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/history/{entity_type}/{id}", get(history))
        .route("/api/history/{entity_type}/{id}/state", get(state_as_of))
}

#[derive(Debug, Deserialize)]
struct AsOfParams {
    /// Milliseconds since the Unix epoch; now when absent.
    ts: Option<i64>,
}

fn entity(entity_type: &str, id: &str) -> Result<EntityId> {
    let entity_type = entity_type.parse().map_err(|_| ApiError::bad_request(format!("Invalid entity type: {entity_type}")))?;
    Ok(EntityId::new(entity_type, parse_id(id, "entityId")?))
}

fn entry_json(e: &HistoryEntry) -> Value {
    let env = &e.envelope;
    json!({
        "seq": e.seq,
        "eventId": env.event_id,
        "version": env.version,
        "eventType": env.event_type,
        "schemaVersion": env.schema_version,
        "occurredAt": env.occurred_at,
        "recordedAt": env.recorded_at,
        "actor": env.actor,
        "payload": env.payload,
    })
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

fn fields_json(fields: &impl serde::Serialize) -> Value {
    serde_json::to_value(fields).unwrap_or(Value::Null)
}

/// The entity's fields in ThingsBoard's naming (ids as `{"entityType", "id"}`).
fn snapshot_json(s: &Snapshot) -> Value {
    match s {
        Snapshot::Tenant(t) => with_fields(
            json!({"id": t.id, "createdTime": t.created_time, "name": t.fields.title}),
            fields_json(&t.fields),
        ),
        Snapshot::Customer(c) => with_fields(
            json!({"id": c.id, "createdTime": c.created_time, "tenantId": c.tenant_id, "name": c.fields.title}),
            fields_json(&c.fields),
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
            fields_json(&u.fields),
        ),
        Snapshot::Device(d) => with_fields(
            json!({
                "id": d.id,
                "createdTime": d.created_time,
                "tenantId": d.tenant_id,
                "customerId": d.customer_id,
            }),
            fields_json(&d.fields),
        ),
        Snapshot::Asset(a) => with_fields(
            json!({"id": a.id, "createdTime": a.created_time, "tenantId": a.tenant_id, "customerId": a.customer_id}),
            fields_json(&a.fields),
        ),
        Snapshot::DeviceProfile(p) => with_fields(
            json!({
                "id": {"entityType": "DEVICE_PROFILE", "id": p.id},
                "createdTime": p.created_time,
                "tenantId": p.tenant_id,
                "default": p.is_default,
            }),
            fields_json(&p.fields),
        ),
        Snapshot::AssetProfile(p) => with_fields(
            json!({
                "id": {"entityType": "ASSET_PROFILE", "id": p.id},
                "createdTime": p.created_time,
                "tenantId": p.tenant_id,
                "default": p.is_default,
            }),
            fields_json(&p.fields),
        ),
        Snapshot::Dashboard(d) => with_fields(
            json!({
                "id": d.id,
                "createdTime": d.created_time,
                "tenantId": d.tenant_id,
                "name": d.fields.title,
                "assignedCustomers": d.assigned_customers,
            }),
            fields_json(&d.fields),
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
