//! Entity ids in ThingsBoard's shape: `{"entityType": "DEVICE", "id": "<uuid>"}`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;


/// ThingsBoard's null id, used where an entity has no customer (or a system entity no tenant).
pub const NULL_UUID: Uuid = Uuid::from_u128(0x13814000_1dd2_11b2_8080_808080808080);

/// The kinds of entity the platform knows, named as ThingsBoard names them on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EntityType {
    Tenant,
    Customer,
    User,
    Device,
    DeviceProfile,
    Asset,
    AssetProfile,
    Dashboard,
    Alarm,
    RuleChain,
    EntityView,
    /// A relation between two entities; its id is derived from its key (see `relation.rs`).
    Relation,
}

impl EntityType {
    pub const ALL: [EntityType; 12] = [
        EntityType::Tenant,
        EntityType::Customer,
        EntityType::User,
        EntityType::Device,
        EntityType::DeviceProfile,
        EntityType::Asset,
        EntityType::AssetProfile,
        EntityType::Dashboard,
        EntityType::Alarm,
        EntityType::RuleChain,
        EntityType::EntityView,
        EntityType::Relation,
    ];

    /// The wire name, `DEVICE_PROFILE`.
    pub fn as_str(self) -> &'static str {
        match self {
            EntityType::Tenant => "TENANT",
            EntityType::Customer => "CUSTOMER",
            EntityType::User => "USER",
            EntityType::Device => "DEVICE",
            EntityType::DeviceProfile => "DEVICE_PROFILE",
            EntityType::Asset => "ASSET",
            EntityType::AssetProfile => "ASSET_PROFILE",
            EntityType::Dashboard => "DASHBOARD",
            EntityType::Alarm => "ALARM",
            EntityType::RuleChain => "RULE_CHAIN",
            EntityType::EntityView => "ENTITY_VIEW",
            EntityType::Relation => "RELATION",
        }
    }

    /// The lowercase token used in NATS subjects and table rows, `device_profile`.
    pub fn token(self) -> &'static str {
        match self {
            EntityType::Tenant => "tenant",
            EntityType::Customer => "customer",
            EntityType::User => "user",
            EntityType::Device => "device",
            EntityType::DeviceProfile => "device_profile",
            EntityType::Asset => "asset",
            EntityType::AssetProfile => "asset_profile",
            EntityType::Dashboard => "dashboard",
            EntityType::Alarm => "alarm",
            EntityType::RuleChain => "rule_chain",
            EntityType::EntityView => "entity_view",
            EntityType::Relation => "relation",
        }
    }

    pub fn from_token(token: &str) -> Option<EntityType> {
        EntityType::ALL.into_iter().find(|t| t.token() == token)
    }
}

impl fmt::Display for EntityType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is no entity type's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown entity type {name}")]
pub struct UnknownEntityType {
    pub name: String,
}

impl FromStr for EntityType {
    type Err = UnknownEntityType;

    /// Accepts the wire name in any case (`DEVICE`, `device`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.to_ascii_uppercase();
        EntityType::ALL
            .into_iter()
            .find(|t| t.as_str() == upper)
            .ok_or_else(|| UnknownEntityType { name: s.to_string() })
    }
}

/// Any entity's id with its type, serialized as ThingsBoard does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EntityId {
    #[serde(rename = "entityType")]
    pub entity_type: EntityType,
    pub id: Uuid,
}

impl EntityId {
    pub fn new(entity_type: EntityType, id: Uuid) -> Self {
        Self { entity_type, id }
    }
}

impl fmt::Display for EntityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.entity_type, self.id)
    }
}

/// An entity named by its tenant, its type and its id: the key of everything held per entity
/// across tenants (latest values, live subscriptions, device activity). Ids are unique per
/// type, but what one tenant's entity holds must never be reachable through another tenant's
/// entity of another type that carries the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantEntityId {
    pub tenant_id: TenantId,
    pub entity: EntityId,
}

impl TenantEntityId {
    pub fn new(tenant_id: TenantId, entity: EntityId) -> Self {
        Self { tenant_id, entity }
    }
}

impl fmt::Display for TenantEntityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tenant_id, self.entity)
    }
}

/// Defines a typed id that serializes as `{"entityType": ..., "id": ...}` and accepts
/// (on input) either that shape or a bare UUID string.
macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $entity_type:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub Uuid);

        impl $name {
            pub const ENTITY_TYPE: EntityType = $entity_type;

            pub fn entity_id(self) -> EntityId {
                EntityId::new($entity_type, self.0)
            }

            pub fn is_null(self) -> bool {
                self.0 == NULL_UUID || self.0.is_nil()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                $name(id)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                self.entity_id().serialize(serializer)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                #[derive(Deserialize)]
                #[serde(untagged)]
                enum Wire {
                    Bare(Uuid),
                    Shaped {
                        #[serde(rename = "entityType")]
                        entity_type: Option<EntityType>,
                        id: Uuid,
                    },
                }
                match Wire::deserialize(deserializer)? {
                    Wire::Bare(id) => Ok($name(id)),
                    Wire::Shaped { entity_type, id } => match entity_type {
                        Some(t) if t != $entity_type => Err(serde::de::Error::custom(format!(
                            "expected an id of entity type {}, got {}",
                            $entity_type, t
                        ))),
                        _ => Ok($name(id)),
                    },
                }
            }
        }
    };
}

typed_id!(TenantId, EntityType::Tenant);
typed_id!(CustomerId, EntityType::Customer);
typed_id!(UserId, EntityType::User);
typed_id!(DeviceId, EntityType::Device);
typed_id!(DeviceProfileId, EntityType::DeviceProfile);
typed_id!(AssetId, EntityType::Asset);
typed_id!(AssetProfileId, EntityType::AssetProfile);
typed_id!(DashboardId, EntityType::Dashboard);

impl TenantId {
    /// The tenant id of system-level entities (the system administrator).
    pub const SYSTEM: TenantId = TenantId(NULL_UUID);
}

impl CustomerId {
    /// "Not assigned to a customer".
    pub const NULL: CustomerId = CustomerId(NULL_UUID);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_ids_use_thingsboard_shape() {
        let id = DeviceId(Uuid::nil());
        let json = serde_json::to_value(id).expect("serializable");
        assert_eq!(json["entityType"], "DEVICE");
        assert_eq!(json["id"], "00000000-0000-0000-0000-000000000000");
    }

    #[test]
    fn typed_id_rejects_a_different_entity_type() {
        let json = serde_json::json!({"entityType": "ASSET", "id": Uuid::nil()});
        assert!(serde_json::from_value::<DeviceId>(json).is_err());
    }

    #[test]
    fn entity_type_parses_any_case() {
        assert_eq!("device_profile".parse::<EntityType>().ok(), Some(EntityType::DeviceProfile));
        assert!("gizmo".parse::<EntityType>().is_err());
    }

    #[test]
    fn null_uuid_is_thingsboards() {
        assert_eq!(NULL_UUID.to_string(), "13814000-1dd2-11b2-8080-808080808080");
    }
}
