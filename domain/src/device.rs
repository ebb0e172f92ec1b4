//! A device: a thing that sends telemetry, identified on the transports by its access token.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::customer_assignment;
use crate::envelope::{Aggregate, DomainEvent, Lifecycle};
use crate::error::{DomainError, Result, check_len, check_text};
use crate::id::{CustomerId, DeviceId, DeviceProfileId, EntityType, TenantEntityId, TenantId};

/// What a save of a device carries (ThingsBoard's save overwrites all of these).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceFields {
    pub name: String,
    #[serde(default)]
    pub label: Option<String>,
    pub device_profile_id: DeviceProfileId,
    #[serde(default)]
    pub additional_info: Value,
    #[serde(default)]
    pub device_data: Value,
    #[serde(default)]
    pub firmware_id: Option<Uuid>,
    #[serde(default)]
    pub software_id: Option<Uuid>,
}

impl DeviceFields {
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

    /// ThingsBoard marks a gateway with `additionalInfo.gateway = true`.
    pub fn is_gateway(&self) -> bool {
        self.additional_info.get("gateway").and_then(Value::as_bool).unwrap_or(false)
    }
}

/// The device's access-token credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceCredentials {
    pub id: Uuid,
    pub access_token: String,
    pub created_time: i64,
}

/// Checks an access token: it travels as an MQTT user name and inside URL paths, so it is
/// printable ASCII without spaces or URL delimiters.
pub fn validate_access_token(token: &str) -> Result<()> {
    check_text("credentialsId", token, 255)?;
    if let Some(c) = token.chars().find(|c| !c.is_ascii_graphic() || matches!(c, '/' | '?' | '#' | '%')) {
        return Err(DomainError::Invalid {
            field: "credentialsId",
            reason: format!("access token may not contain {c:?}"),
        });
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    pub id: DeviceId,
    pub tenant_id: TenantId,
    pub customer_id: CustomerId,
    pub fields: DeviceFields,
    pub credentials: DeviceCredentials,
    pub created_time: i64,
}

impl Device {
    /// The device with its tenant: the key of its latest values and subscriptions.
    pub fn tenant_entity(&self) -> TenantEntityId {
        TenantEntityId::new(self.tenant_id, self.id.entity_id())
    }
}

pub type DeviceState = Lifecycle<Device>;

#[derive(Debug, Clone)]
pub enum DeviceCommand {
    CreateDevice {
        id: DeviceId,
        tenant_id: TenantId,
        customer_id: CustomerId,
        fields: DeviceFields,
        credentials: DeviceCredentials,
        now: i64,
    },
    UpdateDevice { fields: DeviceFields },
    AssignDeviceToCustomer { customer_id: CustomerId },
    UnassignDeviceFromCustomer,
    UpdateDeviceCredentials { access_token: String },
    DeleteDevice,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "eventType", content = "payload")]
pub enum DeviceEvent {
    DeviceCreated {
        id: DeviceId,
        tenant_id: TenantId,
        customer_id: CustomerId,
        #[serde(flatten)]
        fields: DeviceFields,
        credentials: DeviceCredentials,
        created_time: i64,
    },
    DeviceUpdated {
        #[serde(flatten)]
        fields: DeviceFields,
    },
    DeviceAssignedToCustomer {
        customer_id: CustomerId,
    },
    DeviceUnassignedFromCustomer {
        customer_id: CustomerId,
    },
    DeviceCredentialsUpdated {
        access_token: String,
    },
    DeviceDeleted {},
}

impl DomainEvent for DeviceEvent {}

impl Aggregate for DeviceState {
    const ENTITY_TYPE: EntityType = EntityType::Device;
    type Command = DeviceCommand;
    type Event = DeviceEvent;

    fn decide(&self, command: DeviceCommand) -> Result<Vec<DeviceEvent>> {
        let id = self.any().map(|d| d.id.0).unwrap_or_default();
        match command {
            DeviceCommand::CreateDevice { id, tenant_id, customer_id, fields, credentials, now } => {
                if !matches!(self, Lifecycle::Absent) {
                    return Err(DomainError::AlreadyExists { entity_type: EntityType::Device, id: id.0 });
                }
                fields.validate()?;
                validate_access_token(&credentials.access_token)?;
                Ok(vec![DeviceEvent::DeviceCreated { id, tenant_id, customer_id, fields, credentials, created_time: now }])
            }
            DeviceCommand::UpdateDevice { fields } => {
                let device = self.live(EntityType::Device, id)?;
                fields.validate()?;
                if device.fields == fields {
                    return Ok(vec![]);
                }
                Ok(vec![DeviceEvent::DeviceUpdated { fields }])
            }
            DeviceCommand::AssignDeviceToCustomer { customer_id } => {
                let device = self.live(EntityType::Device, id)?;
                customer_assignment::assign(&device.customer_id, customer_id, |customer_id| {
                    DeviceEvent::DeviceAssignedToCustomer { customer_id }
                })
            }
            DeviceCommand::UnassignDeviceFromCustomer => {
                let device = self.live(EntityType::Device, id)?;
                customer_assignment::unassign_sole(EntityType::Device, device.customer_id, |customer_id| {
                    DeviceEvent::DeviceUnassignedFromCustomer { customer_id }
                })
            }
            DeviceCommand::UpdateDeviceCredentials { access_token } => {
                let device = self.live(EntityType::Device, id)?;
                validate_access_token(&access_token)?;
                if device.credentials.access_token == access_token {
                    return Ok(vec![]);
                }
                Ok(vec![DeviceEvent::DeviceCredentialsUpdated { access_token }])
            }
            DeviceCommand::DeleteDevice => {
                self.live(EntityType::Device, id)?;
                Ok(vec![DeviceEvent::DeviceDeleted {}])
            }
        }
    }

    fn evolve(self, event: &DeviceEvent) -> Self {
        match event {
            DeviceEvent::DeviceCreated { id, tenant_id, customer_id, fields, credentials, created_time } => {
                Lifecycle::Live(Device {
                    id: *id,
                    tenant_id: *tenant_id,
                    customer_id: *customer_id,
                    fields: fields.clone(),
                    credentials: credentials.clone(),
                    created_time: *created_time,
                })
            }
            DeviceEvent::DeviceUpdated { fields } => self.map_live(|d| Device { fields: fields.clone(), ..d }),
            DeviceEvent::DeviceAssignedToCustomer { customer_id } => {
                self.map_live(|d| Device { customer_id: *customer_id, ..d })
            }
            DeviceEvent::DeviceUnassignedFromCustomer { .. } => {
                self.map_live(|d| Device { customer_id: CustomerId::NULL, ..d })
            }
            DeviceEvent::DeviceCredentialsUpdated { access_token } => self.map_live(|d| Device {
                credentials: DeviceCredentials { access_token: access_token.clone(), ..d.credentials },
                ..d
            }),
            DeviceEvent::DeviceDeleted {} => self.into_deleted(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fields(name: &str) -> DeviceFields {
        DeviceFields {
            name: name.into(),
            label: None,
            device_profile_id: DeviceProfileId(Uuid::from_u128(9)),
            additional_info: Value::Null,
            device_data: Value::Null,
            firmware_id: None,
            software_id: None,
        }
    }

    fn create(name: &str, token: &str) -> DeviceCommand {
        DeviceCommand::CreateDevice {
            id: DeviceId(Uuid::from_u128(3)),
            tenant_id: TenantId(Uuid::from_u128(1)),
            customer_id: CustomerId::NULL,
            fields: fields(name),
            credentials: DeviceCredentials { id: Uuid::from_u128(4), access_token: token.into(), created_time: 1 },
            now: 1,
        }
    }

    fn given(commands: Vec<DeviceCommand>) -> DeviceState {
        commands.into_iter().fold(DeviceState::Absent, |state, command| {
            let events = state.decide(command).expect("given commands are valid");
            events.iter().fold(state, |s, e| s.evolve(e))
        })
    }

    #[test]
    fn a_device_is_created_with_its_token() {
        let state = given(vec![create("Thermometer", "abc123")]);
        let device = state.as_live().expect("live");
        assert_eq!(device.fields.name, "Thermometer");
        assert_eq!(device.credentials.access_token, "abc123");
        assert!(device.customer_id.is_null());
    }

    #[test]
    fn a_token_with_a_slash_is_rejected() {
        let err = DeviceState::Absent.decide(create("T", "a/b")).unwrap_err();
        assert!(matches!(err, DomainError::Invalid { field: "credentialsId", .. }));
    }

    #[test]
    fn an_empty_name_is_rejected() {
        assert_eq!(DeviceState::Absent.decide(create("", "t")).unwrap_err(), DomainError::Required { field: "name" });
    }

    #[test]
    fn additional_info_must_be_an_object() {
        let mut state = given(vec![create("T", "t")]);
        let mut f = fields("T");
        f.additional_info = Value::from(5);
        let err = state.decide(DeviceCommand::UpdateDevice { fields: f }).unwrap_err();
        assert!(matches!(err, DomainError::Invalid { field: "additionalInfo", .. }));
        state = state.evolve(&DeviceEvent::DeviceDeleted {});
        assert!(matches!(state.decide(DeviceCommand::DeleteDevice), Err(DomainError::Deleted { .. })));
    }

    #[test]
    fn assigning_and_unassigning_moves_the_device_between_customers() {
        let customer = CustomerId(Uuid::from_u128(77));
        let state = given(vec![create("T", "t"), DeviceCommand::AssignDeviceToCustomer { customer_id: customer }]);
        assert_eq!(state.as_live().map(|d| d.customer_id), Some(customer));
        let events = state.decide(DeviceCommand::UnassignDeviceFromCustomer).expect("assigned");
        assert_eq!(events, vec![DeviceEvent::DeviceUnassignedFromCustomer { customer_id: customer }]);
        let state = state.evolve(&events[0]);
        assert!(state.decide(DeviceCommand::UnassignDeviceFromCustomer).is_err());
    }

    #[test]
    fn updating_credentials_changes_the_token_only() {
        let state = given(vec![create("T", "old"), DeviceCommand::UpdateDeviceCredentials { access_token: "new".into() }]);
        let device = state.as_live().expect("live");
        assert_eq!(device.credentials.access_token, "new");
        assert_eq!(device.credentials.id, Uuid::from_u128(4));
    }

    #[test]
    fn gateways_are_marked_in_additional_info() {
        let mut f = fields("G");
        assert!(!f.is_gateway());
        f.additional_info = serde_json::json!({"gateway": true});
        assert!(f.is_gateway());
    }

    #[test]
    fn events_survive_encoding_into_an_envelope_payload() {
        let events = DeviceState::Absent.decide(create("T", "t")).expect("valid");
        let (event_type, payload) = events[0].encode();
        assert_eq!(event_type, "DeviceCreated");
        assert_eq!(payload["name"], "T");
        let back = DeviceEvent::decode(&event_type, 1, payload).expect("decodes");
        assert_eq!(back, events[0]);
        assert!(DeviceEvent::decode(&event_type, 99, serde_json::json!({})).is_err());
    }

    proptest! {
        #[test]
        fn replaying_decided_events_is_deterministic(names in proptest::collection::vec("[a-zA-Z0-9 ]{1,20}", 1..8)) {
            let mut state = given(vec![create("start", "tok")]);
            let mut log = Vec::new();
            for name in names {
                let events = state.decide(DeviceCommand::UpdateDevice { fields: fields(&name) });
                if let Ok(events) = events {
                    for e in &events {
                        state = state.evolve(e);
                    }
                    log.extend(events);
                }
            }
            let mut all = DeviceState::Absent.decide(create("start", "tok")).expect("valid");
            all.extend(log);
            prop_assert_eq!(DeviceState::replay(&all), state);
        }
    }
}
