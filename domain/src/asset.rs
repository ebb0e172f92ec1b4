//! An asset: a building, a vehicle, a field — anything devices can be related to.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::customer_assignment;
use crate::envelope::{Aggregate, DomainEvent, Lifecycle};
use crate::error::{DomainError, Result, check_len, check_text};
use crate::id::{AssetId, AssetProfileId, CustomerId, EntityType, TenantId};

/// What a save of an asset carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssetFields {
    pub name: String,
    #[serde(default)]
    pub label: Option<String>,
    pub asset_profile_id: AssetProfileId,
    #[serde(default)]
    pub additional_info: Value,
}

impl AssetFields {
    fn validate(&self) -> Result<()> {
        check_text("name", &self.name, 255)?;
        if let Some(label) = &self.label {
            check_len("label", label, 255)?;
        }
        if !(self.additional_info.is_null() || self.additional_info.is_object()) {
            return Err(DomainError::Invalid { field: "additionalInfo", reason: "must be a JSON object".into() });
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Asset {
    pub id: AssetId,
    pub tenant_id: TenantId,
    pub customer_id: CustomerId,
    pub fields: AssetFields,
    pub created_time: i64,
}

pub type AssetState = Lifecycle<Asset>;

#[derive(Debug, Clone)]
pub enum AssetCommand {
    CreateAsset { id: AssetId, tenant_id: TenantId, customer_id: CustomerId, fields: AssetFields, now: i64 },
    UpdateAsset { fields: AssetFields },
    AssignAssetToCustomer { customer_id: CustomerId },
    UnassignAssetFromCustomer,
    DeleteAsset,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "eventType", content = "payload")]
pub enum AssetEvent {
    AssetCreated {
        id: AssetId,
        tenant_id: TenantId,
        customer_id: CustomerId,
        #[serde(flatten)]
        fields: AssetFields,
        created_time: i64,
    },
    AssetUpdated {
        #[serde(flatten)]
        fields: AssetFields,
    },
    AssetAssignedToCustomer {
        customer_id: CustomerId,
    },
    AssetUnassignedFromCustomer {
        customer_id: CustomerId,
    },
    AssetDeleted {},
}

impl DomainEvent for AssetEvent {}

impl Aggregate for AssetState {
    const ENTITY_TYPE: EntityType = EntityType::Asset;
    type Command = AssetCommand;
    type Event = AssetEvent;

    fn decide(&self, command: AssetCommand) -> Result<Vec<AssetEvent>> {
        let id = self.any().map(|a| a.id.0).unwrap_or_default();
        match command {
            AssetCommand::CreateAsset { id, tenant_id, customer_id, fields, now } => {
                if !matches!(self, Lifecycle::Absent) {
                    return Err(DomainError::AlreadyExists { entity_type: EntityType::Asset, id: id.0 });
                }
                fields.validate()?;
                Ok(vec![AssetEvent::AssetCreated { id, tenant_id, customer_id, fields, created_time: now }])
            }
            AssetCommand::UpdateAsset { fields } => {
                let asset = self.live(EntityType::Asset, id)?;
                fields.validate()?;
                if asset.fields == fields {
                    return Ok(vec![]);
                }
                Ok(vec![AssetEvent::AssetUpdated { fields }])
            }
            AssetCommand::AssignAssetToCustomer { customer_id } => {
                let asset = self.live(EntityType::Asset, id)?;
                customer_assignment::assign(&asset.customer_id, customer_id, |customer_id| {
                    AssetEvent::AssetAssignedToCustomer { customer_id }
                })
            }
            AssetCommand::UnassignAssetFromCustomer => {
                let asset = self.live(EntityType::Asset, id)?;
                customer_assignment::unassign_sole(EntityType::Asset, asset.customer_id, |customer_id| {
                    AssetEvent::AssetUnassignedFromCustomer { customer_id }
                })
            }
            AssetCommand::DeleteAsset => {
                self.live(EntityType::Asset, id)?;
                Ok(vec![AssetEvent::AssetDeleted {}])
            }
        }
    }

    fn evolve(self, event: &AssetEvent) -> Self {
        match event {
            AssetEvent::AssetCreated { id, tenant_id, customer_id, fields, created_time } => Lifecycle::Live(Asset {
                id: *id,
                tenant_id: *tenant_id,
                customer_id: *customer_id,
                fields: fields.clone(),
                created_time: *created_time,
            }),
            AssetEvent::AssetUpdated { fields } => self.map_live(|a| Asset { fields: fields.clone(), ..a }),
            AssetEvent::AssetAssignedToCustomer { customer_id } => {
                self.map_live(|a| Asset { customer_id: *customer_id, ..a })
            }
            AssetEvent::AssetUnassignedFromCustomer { .. } => {
                self.map_live(|a| Asset { customer_id: CustomerId::NULL, ..a })
            }
            AssetEvent::AssetDeleted {} => self.into_deleted(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn create(name: &str) -> AssetCommand {
        AssetCommand::CreateAsset {
            id: AssetId(Uuid::from_u128(5)),
            tenant_id: TenantId(Uuid::from_u128(1)),
            customer_id: CustomerId::NULL,
            fields: AssetFields {
                name: name.into(),
                label: Some("Floor 1".into()),
                asset_profile_id: AssetProfileId(Uuid::from_u128(6)),
                additional_info: Value::Null,
            },
            now: 3,
        }
    }

    #[test]
    fn a_created_asset_can_be_deleted_once() {
        let state = AssetState::replay(&AssetState::Absent.decide(create("Building")).expect("valid"));
        assert_eq!(state.as_live().map(|a| a.fields.name.as_str()), Some("Building"));
        let events = state.decide(AssetCommand::DeleteAsset).expect("live");
        let state = state.evolve(&events[0]);
        assert!(matches!(state.decide(AssetCommand::DeleteAsset), Err(DomainError::Deleted { .. })));
    }

    #[test]
    fn assigning_to_the_null_customer_is_rejected() {
        let state = AssetState::replay(&AssetState::Absent.decide(create("B")).expect("valid"));
        let err = state.decide(AssetCommand::AssignAssetToCustomer { customer_id: CustomerId::NULL }).unwrap_err();
        assert_eq!(err, DomainError::Required { field: "customerId" });
    }
}
