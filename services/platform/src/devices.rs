//! Device use cases: save (create or update, ThingsBoard's upsert), list by type, and
//! access-token credentials. Reading, assigning and deleting a device are the
//! [`crate::customer_assignment`] use cases of an [`Assignable`].

use serde_json::Value;
use thinglake_domain::device::{Device, DeviceCommand, DeviceCredentials, DeviceFields, DeviceState};
use thinglake_domain::{DeviceId, DeviceProfileId, DomainError, EntityType, TenantId, CustomerId};
use thinglake_infra::auth::random_token;
use thinglake_infra::claims::ClaimKey;
use thinglake_projections::Entities;
use thinglake_projections::entities::Table;
use uuid::Uuid;

use crate::customer_assignment::Assignable;
use crate::error::{Error, Result};
use crate::quotas::LimitedEntity;
use crate::execute::DecideChecked;
use crate::uniqueness::{OwnerState, owner_state};
use crate::{Platform, Principal};

/// A device as the API shows it: the entity, its version and what it refers to by name.
#[derive(Debug, Clone)]
pub struct DeviceView {
    pub device: Device,
    pub version: u64,
    pub profile_name: String,
    pub customer_title: Option<String>,
}

/// What a save of a device carries (ThingsBoard's device JSON, minus what the server owns).
#[derive(Debug, Clone, Default)]
pub struct DeviceInput {
    /// Present to update an existing device.
    pub id: Option<DeviceId>,
    pub name: String,
    pub label: Option<String>,
    /// The profile by id; without it, by `type` (created on first use, as ThingsBoard does);
    /// without both, the tenant's default profile.
    pub device_profile_id: Option<DeviceProfileId>,
    pub device_type: Option<String>,
    pub additional_info: Value,
    pub device_data: Value,
    pub firmware_id: Option<Uuid>,
    pub software_id: Option<Uuid>,
    pub customer_id: Option<CustomerId>,
    /// The version the caller read; a stale one is refused.
    pub version: Option<u64>,
}

pub(crate) fn devices(e: &Entities) -> &Table<DeviceState> {
    &e.devices
}

impl Assignable for Device {
    type State = DeviceState;
    type Id = DeviceId;
    type View = DeviceView;

    fn table(entities: &Entities) -> &Table<DeviceState> {
        devices(entities)
    }

    fn live(state: &DeviceState) -> Option<&Device> {
        state.as_live()
    }

    fn id(&self) -> DeviceId {
        self.id
    }

    fn tenant_id(&self) -> TenantId {
        self.tenant_id
    }

    fn created_time(&self) -> i64 {
        self.created_time
    }

    fn is_assigned_to(&self, customer: CustomerId) -> bool {
        self.customer_id == customer
    }

    fn claimed_keys(&self) -> Vec<ClaimKey> {
        vec![ClaimKey::device_name(self.tenant_id.0, &self.fields.name), ClaimKey::access_token(&self.credentials.access_token)]
    }

    fn assign(customer_id: CustomerId) -> DeviceCommand {
        DeviceCommand::AssignDeviceToCustomer { customer_id }
    }

    fn unassign(_: Option<CustomerId>) -> DeviceCommand {
        DeviceCommand::UnassignDeviceFromCustomer
    }

    fn delete() -> DeviceCommand {
        DeviceCommand::DeleteDevice
    }

    fn view(entities: &Entities, device: Device, version: u64) -> DeviceView {
        view_of(entities, device, version)
    }
}

fn name_owner_state(name: &str) -> impl Fn(&Entities, Uuid) -> OwnerState + '_ {
    owner_state(devices, move |d: &Device| d.fields.name == name)
}

fn token_owner_state(token: &str) -> impl Fn(&Entities, Uuid) -> OwnerState + '_ {
    owner_state(devices, move |d: &Device| d.credentials.access_token == token)
}

impl Platform {
    /// Creates a device (no id) or updates one (with id), ThingsBoard's `POST /api/device`.
    /// `access_token` sets the token of a new device; one is generated when absent. As in
    /// ThingsBoard, a save with an id is an update of that device: an id that names none is 404,
    /// never a device created with an id of the caller's choosing.
    pub async fn save_device(&self, p: &Principal, input: DeviceInput, access_token: Option<String>) -> Result<DeviceView> {
        let tenant = p.require_tenant_admin()?;
        match input.id {
            Some(id) => self.update_device(p, tenant, id, input).await,
            None => self.create_device(p, tenant, input, access_token).await,
        }
    }

    async fn create_device(
        &self,
        p: &Principal,
        tenant: TenantId,
        input: DeviceInput,
        access_token: Option<String>,
    ) -> Result<DeviceView> {
        self.check_entity_limit(tenant, LimitedEntity::Device)?;
        let id = DeviceId(Uuid::now_v7());
        let customer_id = match input.customer_id {
            Some(c) if !c.is_null() => {
                self.customer_in_tenant(tenant, c)?;
                c
            }
            _ => CustomerId::NULL,
        };
        let profile_id = self.resolve_device_profile(p, tenant, input.device_profile_id, input.device_type.as_deref()).await?;
        let fields = fields_of(&input, profile_id);
        let token = access_token.unwrap_or_else(|| random_token(self.config().access_token_length));
        thinglake_domain::device::validate_access_token(&token)?;
        let now = self.now_ms();
        let command = DeviceCommand::CreateDevice {
            id,
            tenant_id: tenant,
            customer_id,
            fields: fields.clone(),
            credentials: DeviceCredentials { id: Uuid::now_v7(), access_token: token.clone(), created_time: now },
            now,
        };
        // Validate before claiming, so bad input reserves nothing.
        DeviceState::Absent.decide_checked(&command)?;
        let name_key = ClaimKey::device_name(tenant.0, &fields.name);
        let token_key = ClaimKey::access_token(&token);
        self.claim_key(&name_key, id.0, name_owner_state(&fields.name), || DomainError::NameTaken {
            entity_type: EntityType::Device,
            name: fields.name.clone(),
        })
        .await?;
        if let Err(e) = self
            .claim_key(&token_key, id.0, token_owner_state(&token), || DomainError::TokenTaken { token: token.clone() })
            .await
        {
            self.release_key(&name_key, id.0).await;
            return Err(e);
        }
        let result = self.execute(tenant.0, id.0, None, &p.actor(), devices, |_| Ok(command.clone())).await;
        match result {
            Ok(outcome) => self.outcome_view::<Device>(outcome),
            Err(e) => {
                self.release_key(&name_key, id.0).await;
                self.release_key(&token_key, id.0).await;
                Err(e)
            }
        }
    }

    async fn update_device(&self, p: &Principal, tenant: TenantId, id: DeviceId, input: DeviceInput) -> Result<DeviceView> {
        let current = self.for_write::<Device>(p, id)?;
        let _ = tenant;
        let profile_id = match (input.device_profile_id, input.device_type.as_deref()) {
            (None, None) => current.fields.device_profile_id,
            (pid, ty) => self.resolve_device_profile(p, current.tenant_id, pid, ty).await?,
        };
        let fields = fields_of(&input, profile_id);
        let renamed = fields.name != current.fields.name;
        let new_key = ClaimKey::device_name(current.tenant_id.0, &fields.name);
        if renamed {
            DeviceState::Live(current.clone()).decide_checked(&DeviceCommand::UpdateDevice { fields: fields.clone() })?;
            self.claim_key(&new_key, id.0, name_owner_state(&fields.name), || DomainError::NameTaken {
                entity_type: EntityType::Device,
                name: fields.name.clone(),
            })
            .await?;
        }
        let result = self
            .execute(current.tenant_id.0, id.0, input.version, &p.actor(), devices, |_| {
                Ok(DeviceCommand::UpdateDevice { fields: fields.clone() })
            })
            .await;
        match result {
            Ok(outcome) => {
                if renamed {
                    self.release_key(&ClaimKey::device_name(current.tenant_id.0, &current.fields.name), id.0).await;
                }
                self.outcome_view::<Device>(outcome)
            }
            Err(e) => {
                if renamed {
                    self.release_key(&new_key, id.0).await;
                }
                Err(e)
            }
        }
    }

    /// A tenant's device by its exact name.
    pub fn device_by_name(&self, p: &Principal, name: &str) -> Result<DeviceView> {
        let tenant = p.require_tenant_user()?;
        let entities = self.view().read();
        let found = entities
            .devices
            .values()
            .find(|v| v.state.as_live().is_some_and(|d| d.tenant_id == tenant && d.fields.name == name))
            .ok_or_else(|| Error::not_found(EntityType::Device, Uuid::nil()))?;
        let device = found.state.as_live().cloned().ok_or_else(|| Error::not_found(EntityType::Device, Uuid::nil()))?;
        p.check_read(device.tenant_id, device.customer_id)?;
        Ok(view_of(&entities, device, found.position.version))
    }

    /// The caller's devices, oldest first: all of the tenant's for a tenant administrator,
    /// the customer's for a customer user; narrowed to `customer` and profile name `device_type`.
    pub fn devices(&self, p: &Principal, customer: Option<CustomerId>, device_type: Option<&str>) -> Result<Vec<DeviceView>> {
        let mut views = self.entities::<Device>(p, customer)?;
        views.retain(|v| device_type.is_none_or(|t| v.profile_name == t));
        Ok(views)
    }

    /// The profile names in use by the tenant's devices (`GET /api/device/types`).
    pub fn device_types(&self, p: &Principal) -> Result<Vec<String>> {
        let mut types: Vec<String> = self.devices(p, None, None)?.into_iter().map(|v| v.profile_name).collect();
        types.sort();
        types.dedup();
        Ok(types)
    }

    /// The device's credentials (readable by whoever may read the device).
    pub fn device_credentials(&self, p: &Principal, id: DeviceId) -> Result<DeviceView> {
        self.entity::<Device>(p, id)
    }

    /// Replaces the device's access token (`POST /api/device/credentials`).
    pub async fn update_device_token(&self, p: &Principal, id: DeviceId, token: String) -> Result<DeviceView> {
        let device = self.for_write::<Device>(p, id)?;
        let old = device.credentials.access_token.clone();
        if old == token {
            return self.entity::<Device>(p, id);
        }
        DeviceState::Live(device.clone()).decide_checked(&DeviceCommand::UpdateDeviceCredentials { access_token: token.clone() })?;
        let key = ClaimKey::access_token(&token);
        self.claim_key(&key, id.0, token_owner_state(&token), || DomainError::TokenTaken { token: token.clone() }).await?;
        let result = self
            .execute(device.tenant_id.0, id.0, None, &p.actor(), devices, |_| {
                Ok(DeviceCommand::UpdateDeviceCredentials { access_token: token.clone() })
            })
            .await;
        match result {
            Ok(outcome) => {
                self.release_key(&ClaimKey::access_token(&old), id.0).await;
                self.outcome_view::<Device>(outcome)
            }
            Err(e) => {
                self.release_key(&key, id.0).await;
                Err(e)
            }
        }
    }

    /// The live device holding `token`, for the device transports; none when its tenant is
    /// deleted, even before the deletion reached the device itself.
    pub fn device_by_token(&self, token: &str) -> Option<Device> {
        let entities = self.view().read();
        let id = entities.device_by_token.get(token)?;
        let device = entities.devices.get(id).and_then(|v| v.state.as_live())?;
        let tenant_live = entities.tenants.get(&device.tenant_id.0).is_some_and(|t| t.state.as_live().is_some());
        tenant_live.then(|| device.clone())
    }

    /// Whether a device connected with its token may stay connected: it is live, its tenant
    /// too, and it still holds the token it signed in with. Device sessions recheck it whenever
    /// [`thinglake_projections::EntityView::access_changes`] moves.
    pub fn device_session_holds(&self, device: &Device) -> bool {
        self.device_by_token(&device.credentials.access_token).is_some_and(|d| d.id == device.id)
    }
}

fn fields_of(input: &DeviceInput, profile_id: DeviceProfileId) -> DeviceFields {
    DeviceFields {
        name: input.name.clone(),
        label: input.label.clone(),
        device_profile_id: profile_id,
        additional_info: input.additional_info.clone(),
        device_data: input.device_data.clone(),
        firmware_id: input.firmware_id,
        software_id: input.software_id,
    }
}

fn view_of(entities: &Entities, device: Device, version: u64) -> DeviceView {
    let profile_name = entities
        .device_profiles
        .get(&device.fields.device_profile_id.0)
        .and_then(|v| v.state.any())
        .map(|p| p.fields.name.clone())
        .unwrap_or_else(|| "default".into());
    let customer_title = entities
        .customers
        .get(&device.customer_id.0)
        .and_then(|v| v.state.as_live())
        .map(|c| c.fields.title.clone());
    DeviceView { device, version, profile_name, customer_title }
}
