//! Device profiles and asset profiles: the type of a device or asset, one of them the tenant's
//! default. Both follow the same rules, so they share one generic aggregate.

use serde::{Deserialize, Serialize};
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use crate::envelope::{Aggregate, DomainEvent, Lifecycle};
use crate::error::{DomainError, Result, check_len, check_text};
use crate::id::{AssetProfileId, DeviceProfileId, EntityType, TenantId};

/// What a save of a device profile carries besides its name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceProfileFields {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
    /// `DEFAULT` (ThingsBoard's only device profile type).
    #[serde(rename = "type")]
    pub profile_type: String,
    /// `DEFAULT`, `MQTT`, `COAP`, `LWM2M`, `SNMP`.
    pub transport_type: String,
    /// `DISABLED`, `ALLOW_CREATE_NEW_DEVICES`, `CHECK_PRE_PROVISIONED_DEVICES`.
    pub provision_type: String,
    #[serde(default)]
    pub provision_device_key: Option<String>,
    /// Transport, provisioning and alarm-rule configuration, kept as ThingsBoard's JSON.
    #[serde(default)]
    pub profile_data: Value,
    #[serde(default)]
    pub default_rule_chain_id: Option<Uuid>,
    #[serde(default)]
    pub default_dashboard_id: Option<Uuid>,
    #[serde(default)]
    pub default_queue_name: Option<String>,
}

/// What a save of an asset profile carries besides its name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssetProfileFields {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub default_rule_chain_id: Option<Uuid>,
    #[serde(default)]
    pub default_dashboard_id: Option<Uuid>,
    #[serde(default)]
    pub default_queue_name: Option<String>,
}

const PROFILE_TYPES: &[&str] = &["DEFAULT"];
const TRANSPORT_TYPES: &[&str] = &["DEFAULT", "MQTT", "COAP", "LWM2M", "SNMP"];
const PROVISION_TYPES: &[&str] = &["DISABLED", "ALLOW_CREATE_NEW_DEVICES", "CHECK_PRE_PROVISIONED_DEVICES"];

fn one_of(field: &'static str, value: &str, allowed: &[&str]) -> Result<()> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(DomainError::Invalid { field, reason: format!("'{value}' is not one of {}", allowed.join(", ")) })
    }
}

/// The fields of one kind of profile.
pub trait ProfileFields: Clone + PartialEq + std::fmt::Debug + Serialize + DeserializeOwned + Send + Sync + 'static {
    fn name(&self) -> &str;
    fn validate(&self) -> Result<()>;
}

impl ProfileFields for DeviceProfileFields {
    fn name(&self) -> &str {
        &self.name
    }

    fn validate(&self) -> Result<()> {
        check_text("name", &self.name, 255)?;
        if let Some(d) = &self.description {
            check_len("description", d, 1024)?;
        }
        one_of("type", &self.profile_type, PROFILE_TYPES)?;
        one_of("transportType", &self.transport_type, TRANSPORT_TYPES)?;
        one_of("provisionType", &self.provision_type, PROVISION_TYPES)
    }
}

impl ProfileFields for AssetProfileFields {
    fn name(&self) -> &str {
        &self.name
    }

    fn validate(&self) -> Result<()> {
        check_text("name", &self.name, 255)?;
        if let Some(d) = &self.description {
            check_len("description", d, 1024)?;
        }
        Ok(())
    }
}

impl DeviceProfileFields {
    /// The profile ThingsBoard creates for every tenant, named `default`.
    pub fn default_profile() -> Self {
        Self {
            name: "default".into(),
            description: Some("Default device profile".into()),
            image: None,
            profile_type: "DEFAULT".into(),
            transport_type: "DEFAULT".into(),
            provision_type: "DISABLED".into(),
            provision_device_key: None,
            profile_data: serde_json::json!({
                "configuration": {"type": "DEFAULT"},
                "transportConfiguration": {"type": "DEFAULT"},
                "provisionConfiguration": {"type": "DISABLED", "provisionDeviceSecret": null},
                "alarms": null
            }),
            default_rule_chain_id: None,
            default_dashboard_id: None,
            default_queue_name: None,
        }
    }
}

impl AssetProfileFields {
    /// The asset profile every tenant starts with, named `default`.
    pub fn default_profile() -> Self {
        Self {
            name: "default".into(),
            description: Some("Default asset profile".into()),
            image: None,
            default_rule_chain_id: None,
            default_dashboard_id: None,
            default_queue_name: None,
        }
    }
}

/// A device or asset profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile<F> {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub fields: F,
    pub is_default: bool,
    pub created_time: i64,
}

pub type DeviceProfile = Profile<DeviceProfileFields>;
pub type AssetProfile = Profile<AssetProfileFields>;
pub type DeviceProfileState = Lifecycle<DeviceProfile>;
pub type AssetProfileState = Lifecycle<AssetProfile>;

#[derive(Debug, Clone)]
pub enum ProfileCommand<F> {
    CreateProfile { id: Uuid, tenant_id: TenantId, fields: F, is_default: bool, now: i64 },
    UpdateProfile { fields: F },
    MakeProfileDefault,
    ClearProfileDefault,
    DeleteProfile,
    /// Deletes the profile with its tenant: the default one too.
    DeleteProfileWithTenant,
}

pub type DeviceProfileCommand = ProfileCommand<DeviceProfileFields>;
pub type AssetProfileCommand = ProfileCommand<AssetProfileFields>;

macro_rules! profile_events {
    ($event:ident, $fields:ty, $created:ident, $updated:ident, $made_default:ident, $cleared:ident, $deleted:ident) => {
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "eventType", content = "payload")]
        pub enum $event {
            $created {
                id: Uuid,
                tenant_id: TenantId,
                #[serde(flatten)]
                fields: $fields,
                is_default: bool,
                created_time: i64,
            },
            $updated {
                #[serde(flatten)]
                fields: $fields,
            },
            $made_default {},
            $cleared {},
            $deleted {},
        }

        impl DomainEvent for $event {}

        impl ProfileEvent for $event {
            type Fields = $fields;

            fn created(id: Uuid, tenant_id: TenantId, fields: $fields, is_default: bool, created_time: i64) -> Self {
                $event::$created { id, tenant_id, fields, is_default, created_time }
            }
            fn updated(fields: $fields) -> Self {
                $event::$updated { fields }
            }
            fn made_default() -> Self {
                $event::$made_default {}
            }
            fn default_cleared() -> Self {
                $event::$cleared {}
            }
            fn deleted() -> Self {
                $event::$deleted {}
            }
            fn apply(&self, state: Lifecycle<Profile<$fields>>) -> Lifecycle<Profile<$fields>> {
                match self {
                    $event::$created { id, tenant_id, fields, is_default, created_time } => Lifecycle::Live(Profile {
                        id: *id,
                        tenant_id: *tenant_id,
                        fields: fields.clone(),
                        is_default: *is_default,
                        created_time: *created_time,
                    }),
                    $event::$updated { fields } => state.map_live(|p| Profile { fields: fields.clone(), ..p }),
                    $event::$made_default {} => state.map_live(|p| Profile { is_default: true, ..p }),
                    $event::$cleared {} => state.map_live(|p| Profile { is_default: false, ..p }),
                    $event::$deleted {} => state.into_deleted(),
                }
            }
        }
    };
}

/// Event constructors shared by both kinds of profile.
pub trait ProfileEvent: DomainEvent {
    type Fields: ProfileFields;
    fn created(id: Uuid, tenant_id: TenantId, fields: Self::Fields, is_default: bool, created_time: i64) -> Self;
    fn updated(fields: Self::Fields) -> Self;
    fn made_default() -> Self;
    fn default_cleared() -> Self;
    fn deleted() -> Self;
    fn apply(&self, state: Lifecycle<Profile<Self::Fields>>) -> Lifecycle<Profile<Self::Fields>>;
}

profile_events!(
    DeviceProfileEvent,
    DeviceProfileFields,
    DeviceProfileCreated,
    DeviceProfileUpdated,
    DeviceProfileMadeDefault,
    DeviceProfileDefaultCleared,
    DeviceProfileDeleted
);
profile_events!(
    AssetProfileEvent,
    AssetProfileFields,
    AssetProfileCreated,
    AssetProfileUpdated,
    AssetProfileMadeDefault,
    AssetProfileDefaultCleared,
    AssetProfileDeleted
);

fn decide_profile<E: ProfileEvent>(
    state: &Lifecycle<Profile<E::Fields>>,
    entity_type: EntityType,
    command: ProfileCommand<E::Fields>,
) -> Result<Vec<E>> {
    let id = state.any().map(|p| p.id).unwrap_or_default();
    match command {
        ProfileCommand::CreateProfile { id, tenant_id, fields, is_default, now } => {
            if !matches!(state, Lifecycle::Absent) {
                return Err(DomainError::AlreadyExists { entity_type, id });
            }
            fields.validate()?;
            Ok(vec![E::created(id, tenant_id, fields, is_default, now)])
        }
        ProfileCommand::UpdateProfile { fields } => {
            let profile = state.live(entity_type, id)?;
            fields.validate()?;
            if profile.fields == fields {
                return Ok(vec![]);
            }
            Ok(vec![E::updated(fields)])
        }
        ProfileCommand::MakeProfileDefault => {
            let profile = state.live(entity_type, id)?;
            Ok(if profile.is_default { vec![] } else { vec![E::made_default()] })
        }
        ProfileCommand::ClearProfileDefault => {
            let profile = state.live(entity_type, id)?;
            Ok(if profile.is_default { vec![E::default_cleared()] } else { vec![] })
        }
        ProfileCommand::DeleteProfile => {
            let profile = state.live(entity_type, id)?;
            if profile.is_default {
                return Err(DomainError::NotAllowed {
                    reason: format!("the default {} cannot be deleted", entity_type.token().replace('_', " ")),
                });
            }
            Ok(vec![E::deleted()])
        }
        ProfileCommand::DeleteProfileWithTenant => {
            state.live(entity_type, id)?;
            Ok(vec![E::deleted()])
        }
    }
}

impl Aggregate for DeviceProfileState {
    const ENTITY_TYPE: EntityType = EntityType::DeviceProfile;
    type Command = DeviceProfileCommand;
    type Event = DeviceProfileEvent;

    fn decide(&self, command: DeviceProfileCommand) -> Result<Vec<DeviceProfileEvent>> {
        decide_profile(self, Self::ENTITY_TYPE, command)
    }

    fn evolve(self, event: &DeviceProfileEvent) -> Self {
        event.apply(self)
    }
}

impl Aggregate for AssetProfileState {
    const ENTITY_TYPE: EntityType = EntityType::AssetProfile;
    type Command = AssetProfileCommand;
    type Event = AssetProfileEvent;

    fn decide(&self, command: AssetProfileCommand) -> Result<Vec<AssetProfileEvent>> {
        decide_profile(self, Self::ENTITY_TYPE, command)
    }

    fn evolve(self, event: &AssetProfileEvent) -> Self {
        event.apply(self)
    }
}

impl DeviceProfile {
    pub fn typed_id(&self) -> DeviceProfileId {
        DeviceProfileId(self.id)
    }
}

impl AssetProfile {
    pub fn typed_id(&self) -> AssetProfileId {
        AssetProfileId(self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created_default() -> DeviceProfileState {
        let events = DeviceProfileState::Absent
            .decide(ProfileCommand::CreateProfile {
                id: Uuid::from_u128(8),
                tenant_id: TenantId(Uuid::from_u128(1)),
                fields: DeviceProfileFields::default_profile(),
                is_default: true,
                now: 2,
            })
            .expect("valid");
        DeviceProfileState::replay(&events)
    }

    #[test]
    fn the_default_profile_cannot_be_deleted() {
        let err = created_default().decide(ProfileCommand::DeleteProfile).unwrap_err();
        assert!(matches!(err, DomainError::NotAllowed { .. }), "{err}");
    }

    #[test]
    fn the_default_profile_goes_with_its_tenant() {
        let events = created_default().decide(ProfileCommand::DeleteProfileWithTenant).expect("allowed");
        assert_eq!(events, vec![DeviceProfileEvent::DeviceProfileDeleted {}]);
    }

    #[test]
    fn a_profile_no_longer_default_can_be_deleted() {
        let state = created_default();
        let events = state.decide(ProfileCommand::ClearProfileDefault).expect("live");
        assert_eq!(events, vec![DeviceProfileEvent::DeviceProfileDefaultCleared {}]);
        let state = state.evolve(&events[0]);
        assert_eq!(state.decide(ProfileCommand::DeleteProfile).expect("allowed"), vec![DeviceProfileEvent::DeviceProfileDeleted {}]);
    }

    #[test]
    fn an_unknown_transport_type_is_rejected() {
        let mut fields = DeviceProfileFields::default_profile();
        fields.transport_type = "CARRIER_PIGEON".into();
        let err = created_default().decide(ProfileCommand::UpdateProfile { fields }).unwrap_err();
        assert!(matches!(err, DomainError::Invalid { field: "transportType", .. }));
    }

    #[test]
    fn asset_profiles_follow_the_same_rules() {
        let events = AssetProfileState::Absent
            .decide(ProfileCommand::CreateProfile {
                id: Uuid::from_u128(9),
                tenant_id: TenantId(Uuid::from_u128(1)),
                fields: AssetProfileFields::default_profile(),
                is_default: false,
                now: 2,
            })
            .expect("valid");
        let (event_type, _) = events[0].encode();
        assert_eq!(event_type, "AssetProfileCreated");
        let state = AssetProfileState::replay(&events);
        assert_eq!(state.decide(ProfileCommand::MakeProfileDefault).expect("live"), vec![AssetProfileEvent::AssetProfileMadeDefault {}]);
    }
}
