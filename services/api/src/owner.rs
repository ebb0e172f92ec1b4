//! `/api/owner/{CUSTOMER|TENANT}/{ownerId}/{entityType}/{entityId}`: ThingsBoard 4.x's change of
//! owner, which the 4.4 Python client uses to assign devices and assets to customers.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::post;
use thinglake_domain::{CustomerId, EntityId, EntityType, TenantId};
use thinglake_platform::ownership::Owner;

use crate::ApiState;
use crate::error::{ApiError, Result};
use crate::extract::{Auth, parse_id};

pub(crate) fn routes() -> Router<ApiState> {
    Router::new().route("/api/owner/{owner_type}/{owner_id}/{entity_type}/{entity_id}", post(change_owner))
}

async fn change_owner(
    State(state): State<ApiState>,
    Auth(p): Auth,
    Path((owner_type, owner_id, entity_type, entity_id)): Path<(String, String, String, String)>,
) -> Result<()> {
    let owner_id = parse_id(&owner_id, "ownerId")?;
    let owner = match owner_type.to_ascii_uppercase().as_str() {
        "CUSTOMER" => Owner::Customer(CustomerId(owner_id)),
        "TENANT" => Owner::Tenant(TenantId(owner_id)),
        other => return Err(ApiError::bad_request(format!("Owner type {other} is not supported: use CUSTOMER or TENANT"))),
    };
    let entity_type: EntityType = entity_type.parse()?;
    let entity = EntityId::new(entity_type, parse_id(&entity_id, "entityId")?);
    state.platform.change_owner(&p, owner, entity).await?;
    Ok(())
}
