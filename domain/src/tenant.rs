//! A tenant: an isolated organisation owning customers, users, devices and assets.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::contact::Contact;
use crate::envelope::{Aggregate, DomainEvent, Lifecycle};
use crate::error::{DomainError, Result, check_len, check_text};
use crate::id::{EntityType, TenantId};

/// What a save of a tenant carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantFields {
    pub title: String,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(flatten)]
    pub contact: Contact,
    #[serde(default)]
    pub additional_info: Value,
}

impl TenantFields {
    fn validate(&self) -> Result<()> {
        check_text("title", &self.title, 255)?;
        if let Some(region) = &self.region {
            check_len("region", region, 255)?;
        }
        self.contact.validate()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tenant {
    pub id: TenantId,
    pub fields: TenantFields,
    pub created_time: i64,
}

pub type TenantState = Lifecycle<Tenant>;

#[derive(Debug, Clone)]
pub enum TenantCommand {
    CreateTenant { id: TenantId, fields: TenantFields, now: i64 },
    UpdateTenant { fields: TenantFields },
    DeleteTenant,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "eventType", content = "payload")]
pub enum TenantEvent {
    TenantCreated {
        id: TenantId,
        #[serde(flatten)]
        fields: TenantFields,
        created_time: i64,
    },
    TenantUpdated {
        #[serde(flatten)]
        fields: TenantFields,
    },
    TenantDeleted {},
}

impl DomainEvent for TenantEvent {}

impl Aggregate for TenantState {
    const ENTITY_TYPE: EntityType = EntityType::Tenant;
    type Command = TenantCommand;
    type Event = TenantEvent;

    fn decide(&self, command: TenantCommand) -> Result<Vec<TenantEvent>> {
        match command {
            TenantCommand::CreateTenant { id, fields, now } => {
                if !matches!(self, Lifecycle::Absent) {
                    return Err(DomainError::AlreadyExists { entity_type: EntityType::Tenant, id: id.0 });
                }
                fields.validate()?;
                Ok(vec![TenantEvent::TenantCreated { id, fields, created_time: now }])
            }
            TenantCommand::UpdateTenant { fields } => {
                let tenant = self.live(EntityType::Tenant, self.id())?;
                fields.validate()?;
                if tenant.fields == fields {
                    return Ok(vec![]);
                }
                Ok(vec![TenantEvent::TenantUpdated { fields }])
            }
            TenantCommand::DeleteTenant => {
                self.live(EntityType::Tenant, self.id())?;
                Ok(vec![TenantEvent::TenantDeleted {}])
            }
        }
    }

    fn evolve(self, event: &TenantEvent) -> Self {
        match event {
            TenantEvent::TenantCreated { id, fields, created_time } => {
                Lifecycle::Live(Tenant { id: *id, fields: fields.clone(), created_time: *created_time })
            }
            TenantEvent::TenantUpdated { fields } => self.map_live(|t| Tenant { fields: fields.clone(), ..t }),
            TenantEvent::TenantDeleted {} => self.into_deleted(),
        }
    }
}

impl TenantState {
    fn id(&self) -> uuid::Uuid {
        self.any().map(|t| t.id.0).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn fields(title: &str) -> TenantFields {
        TenantFields { title: title.into(), region: None, contact: Contact::default(), additional_info: Value::Null }
    }

    fn created() -> TenantState {
        let id = TenantId(Uuid::from_u128(1));
        TenantState::replay(&[TenantEvent::TenantCreated { id, fields: fields("Acme"), created_time: 5 }])
    }

    #[test]
    fn creating_a_tenant_records_its_title() {
        let id = TenantId(Uuid::from_u128(1));
        let events = TenantState::Absent
            .decide(TenantCommand::CreateTenant { id, fields: fields("Acme"), now: 5 })
            .expect("valid");
        assert_eq!(events, vec![TenantEvent::TenantCreated { id, fields: fields("Acme"), created_time: 5 }]);
    }

    #[test]
    fn a_tenant_needs_a_title() {
        let err = TenantState::Absent
            .decide(TenantCommand::CreateTenant { id: TenantId(Uuid::from_u128(1)), fields: fields(" "), now: 5 })
            .unwrap_err();
        assert_eq!(err, DomainError::Required { field: "title" });
    }

    #[test]
    fn saving_unchanged_fields_records_nothing() {
        assert!(created().decide(TenantCommand::UpdateTenant { fields: fields("Acme") }).expect("ok").is_empty());
    }

    #[test]
    fn a_deleted_tenant_cannot_be_updated() {
        let state = created().evolve(&TenantEvent::TenantDeleted {});
        let err = state.decide(TenantCommand::UpdateTenant { fields: fields("New") }).unwrap_err();
        assert!(matches!(err, DomainError::Deleted { .. }));
    }
}
