//! Gateway sub-devices: ThingsBoard's gateway API names devices that stand behind a gateway
//! device (`additionalInfo.gateway = true`); the platform finds them in the gateway's tenant or
//! creates them on first sight. What the gateway causes is recorded with the gateway as a device
//! actor (`Actor::device(gateway id)`), not as a user.
//!
//! A new sub-device gets `additionalInfo.lastConnectedGateway` = the gateway's id and a
//! `Created` relation gateway → device (ThingsBoard's); an existing device that now connects
//! through another gateway gets `lastConnectedGateway` updated. Two gateways creating one name
//! at once end with one device (the name claim).

use serde_json::{Value, json};
use thinglake_domain::device::{Device, DeviceCommand, DeviceCredentials, DeviceFields, DeviceState};
use thinglake_domain::relation::{RelationCommand, RelationKey, RelationTypeGroup};
use thinglake_domain::user::Authority;
use thinglake_domain::{Actor, CustomerId, DeviceId, DomainError, EntityType, UserId};
use thinglake_infra::auth::random_token;
use thinglake_infra::claims::ClaimKey;
use uuid::Uuid;

use crate::devices::devices;
use crate::error::{Error, Result};
use crate::quotas::LimitedEntity;
use crate::execute::DecideChecked;
use crate::relations::relations;
use crate::uniqueness::owner_state;
use crate::{Platform, Principal};

/// Relation type from a gateway to the sub-devices it created (ThingsBoard's).
pub const CREATED_RELATION: &str = "Created";

/// The `additionalInfo` key naming the gateway a sub-device last connected through.
pub const LAST_CONNECTED_GATEWAY: &str = "lastConnectedGateway";

impl Platform {
    /// The gateway's sub-device `name`, of profile `device_type` when it is new: the tenant's
    /// device of that name (its `lastConnectedGateway` brought up to date), or a new one with a
    /// `Created` relation from the gateway.
    pub async fn gateway_device(&self, gateway: &Device, name: &str, device_type: &str) -> Result<Device> {
        let actor = Actor::device(gateway.id.0);
        if let Some(existing) = self.tenant_device_named(gateway, name) {
            return self.connected_through(existing, gateway, &actor).await;
        }
        match self.create_sub_device(gateway, name, device_type, &actor).await {
            Ok(created) => Ok(created),
            // Created meanwhile by another connection or node.
            Err(Error::Rejected(DomainError::NameTaken { .. })) => match self.tenant_device_named(gateway, name) {
                Some(existing) => self.connected_through(existing, gateway, &actor).await,
                None => Err(Error::not_found(EntityType::Device, Uuid::nil())),
            },
            Err(e) => Err(e),
        }
    }

    fn tenant_device_named(&self, gateway: &Device, name: &str) -> Option<Device> {
        let entities = self.view().read();
        entities
            .devices
            .values()
            .filter_map(|v| v.state.as_live())
            .find(|d| d.tenant_id == gateway.tenant_id && d.fields.name == name)
            .cloned()
    }

    /// Records that `device` now connects through `gateway`, unless it already says so.
    async fn connected_through(&self, device: Device, gateway: &Device, actor: &Actor) -> Result<Device> {
        let gateway_id = gateway.id.0.to_string();
        if device.fields.additional_info.get(LAST_CONNECTED_GATEWAY).and_then(Value::as_str) == Some(gateway_id.as_str()) {
            return Ok(device);
        }
        let outcome = self
            .execute(device.tenant_id.0, device.id.0, None, actor, devices, |state| {
                let current = state.as_live().ok_or_else(|| Error::not_found(EntityType::Device, device.id.0))?;
                let mut fields = current.fields.clone();
                with_gateway(&mut fields.additional_info, &gateway_id);
                Ok(DeviceCommand::UpdateDevice { fields })
            })
            .await?;
        outcome.state.as_live().cloned().ok_or_else(|| Error::not_found(EntityType::Device, device.id.0))
    }

    async fn create_sub_device(&self, gateway: &Device, name: &str, device_type: &str, actor: &Actor) -> Result<Device> {
        let tenant = gateway.tenant_id;
        self.check_entity_limit(tenant, LimitedEntity::Device)?;
        // A profile named by a type seen for the first time is created as for any device save.
        let profile_id = self.resolve_device_profile(&gateway_principal(gateway), tenant, None, Some(device_type)).await?;
        let id = DeviceId(Uuid::now_v7());
        let mut additional_info = json!({});
        with_gateway(&mut additional_info, &gateway.id.0.to_string());
        let fields = DeviceFields {
            name: name.to_string(),
            label: None,
            device_profile_id: profile_id,
            additional_info,
            device_data: Value::Null,
            firmware_id: None,
            software_id: None,
        };
        let token = random_token(self.config().access_token_length);
        let now = self.now_ms();
        let command = DeviceCommand::CreateDevice {
            id,
            tenant_id: tenant,
            customer_id: CustomerId::NULL,
            fields,
            credentials: DeviceCredentials { id: Uuid::now_v7(), access_token: token.clone(), created_time: now },
            now,
        };
        DeviceState::Absent.decide_checked(&command)?;
        let name_key = ClaimKey::device_name(tenant.0, name);
        let token_key = ClaimKey::access_token(&token);
        self.claim_key(&name_key, id.0, owner_state(devices, move |d: &Device| d.fields.name == name), || DomainError::NameTaken {
            entity_type: EntityType::Device,
            name: name.to_string(),
        })
        .await?;
        let token_holder = token.clone();
        if let Err(e) = self
            .claim_key(&token_key, id.0, owner_state(devices, move |d: &Device| d.credentials.access_token == token_holder), || {
                DomainError::TokenTaken { token: token.clone() }
            })
            .await
        {
            self.release_key(&name_key, id.0).await;
            return Err(e);
        }
        let created = match self.execute(tenant.0, id.0, None, actor, devices, |_| Ok(command.clone())).await {
            Ok(outcome) => outcome.state.as_live().cloned().ok_or_else(|| Error::not_found(EntityType::Device, id.0))?,
            Err(e) => {
                self.release_key(&name_key, id.0).await;
                self.release_key(&token_key, id.0).await;
                return Err(e);
            }
        };
        let key = RelationKey {
            from: gateway.id.entity_id(),
            to: created.id.entity_id(),
            relation_type: CREATED_RELATION.to_string(),
            type_group: RelationTypeGroup::default(),
        };
        self.execute(tenant.0, key.relation_id(), None, actor, relations, |_| {
            Ok(RelationCommand::SaveRelation { key: key.clone(), additional_info: json!({}), now })
        })
        .await?;
        Ok(created)
    }
}

/// Sets `lastConnectedGateway` in an `additionalInfo` (an object; anything else is replaced).
fn with_gateway(additional_info: &mut Value, gateway_id: &str) {
    if !additional_info.is_object() {
        *additional_info = json!({});
    }
    additional_info[LAST_CONNECTED_GATEWAY] = Value::String(gateway_id.to_string());
}

/// The gateway as its tenant's administrator, for the profile lookup of a new sub-device.
fn gateway_principal(gateway: &Device) -> Principal {
    Principal {
        user_id: UserId(gateway.id.0),
        email: format!("gateway:{}", gateway.fields.name),
        authority: Authority::TenantAdmin,
        tenant_id: gateway.tenant_id,
        customer_id: CustomerId::NULL,
        token_version: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_is_set_in_any_additional_info() {
        let mut info = json!({"description": "x"});
        with_gateway(&mut info, "g1");
        assert_eq!(info, json!({"description": "x", "lastConnectedGateway": "g1"}));
        let mut null = Value::Null;
        with_gateway(&mut null, "g2");
        assert_eq!(null, json!({"lastConnectedGateway": "g2"}));
    }
}
