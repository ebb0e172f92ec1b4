//! Device and asset profile use cases. Each tenant has one default profile of each kind; a
//! device saved with an unknown `type` gets a profile of that name, as in ThingsBoard.

use thinglake_domain::profile::{
    AssetProfileFields, AssetProfileState, DeviceProfileFields, DeviceProfileState, Profile, ProfileCommand, ProfileFields,
};
use thinglake_domain::{Actor, Aggregate, DeviceProfileId, AssetProfileId, DomainError, EntityType, TenantId};
use thinglake_infra::claims::ClaimKey;
use thinglake_projections::Entities;
use thinglake_projections::entities::Table;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::quotas::LimitedEntity;
use crate::execute::DecideChecked;
use crate::uniqueness::OwnerState;
use crate::{Platform, Principal};

/// A profile as the API shows it.
#[derive(Debug, Clone)]
pub struct ProfileView<F> {
    pub profile: Profile<F>,
    pub version: u64,
}

/// What differs between device and asset profiles.
pub trait ProfileKind: ProfileFields {
    const ENTITY_TYPE: EntityType;
    type State: Aggregate<Command = ProfileCommand<Self>> + ProfileLifecycle<Self>;
    fn table(e: &Entities) -> &Table<Self::State>;
    fn claim_key(tenant: Uuid, name: &str) -> ClaimKey;
    /// Whether any live device or asset still uses the profile.
    fn in_use(e: &Entities, profile: Uuid) -> bool;
    fn default_fields() -> Self;
    /// The default fields under another name (a profile made on first use of a `type`).
    fn named(name: &str) -> Self;
}

/// Access to the profile inside a profile state.
pub trait ProfileLifecycle<F> {
    fn live_profile(&self) -> Option<&Profile<F>>;
    fn from_live(profile: Profile<F>) -> Self;
}

impl<F> ProfileLifecycle<F> for thinglake_domain::Lifecycle<Profile<F>> {
    fn live_profile(&self) -> Option<&Profile<F>> {
        self.as_live()
    }
    fn from_live(profile: Profile<F>) -> Self {
        thinglake_domain::Lifecycle::Live(profile)
    }
}

impl ProfileKind for DeviceProfileFields {
    const ENTITY_TYPE: EntityType = EntityType::DeviceProfile;
    type State = DeviceProfileState;
    fn table(e: &Entities) -> &Table<DeviceProfileState> {
        &e.device_profiles
    }
    fn claim_key(tenant: Uuid, name: &str) -> ClaimKey {
        ClaimKey::device_profile_name(tenant, name)
    }
    fn in_use(e: &Entities, profile: Uuid) -> bool {
        e.devices.values().any(|v| v.state.as_live().is_some_and(|d| d.fields.device_profile_id.0 == profile))
    }
    fn default_fields() -> Self {
        DeviceProfileFields::default_profile()
    }
    fn named(name: &str) -> Self {
        DeviceProfileFields { name: name.to_string(), ..DeviceProfileFields::default_profile() }
    }
}

impl ProfileKind for AssetProfileFields {
    const ENTITY_TYPE: EntityType = EntityType::AssetProfile;
    type State = AssetProfileState;
    fn table(e: &Entities) -> &Table<AssetProfileState> {
        &e.asset_profiles
    }
    fn claim_key(tenant: Uuid, name: &str) -> ClaimKey {
        ClaimKey::asset_profile_name(tenant, name)
    }
    fn in_use(e: &Entities, profile: Uuid) -> bool {
        e.assets.values().any(|v| v.state.as_live().is_some_and(|a| a.fields.asset_profile_id.0 == profile))
    }
    fn default_fields() -> Self {
        AssetProfileFields::default_profile()
    }
    fn named(name: &str) -> Self {
        AssetProfileFields { name: name.to_string(), ..AssetProfileFields::default_profile() }
    }
}

fn name_owner_state<F: ProfileKind>(name: &str) -> impl Fn(&Entities, Uuid) -> OwnerState + '_ {
    move |e, holder| match F::table(e).get(&holder) {
        Some(v) => match v.state.live_profile() {
            Some(p) if p.fields.name() == name => OwnerState::Holds,
            _ => OwnerState::LetGo,
        },
        None => OwnerState::Unknown,
    }
}

impl Platform {
    /// Creates (no id) or updates (with id) a profile (`POST /api/deviceProfile`,
    /// `POST /api/assetProfile`): an id that names no live profile is 404, never a profile
    /// created with that id.
    pub async fn save_profile<F: ProfileKind>(
        &self,
        p: &Principal,
        id: Option<Uuid>,
        fields: F,
        version: Option<u64>,
    ) -> Result<ProfileView<F>> {
        let tenant = p.require_tenant_admin()?;
        let existing = match id {
            Some(id) => Some(
                F::table(&self.view().read())
                    .get(&id)
                    .and_then(|v| v.state.live_profile().cloned())
                    .ok_or_else(|| Error::not_found(F::ENTITY_TYPE, id))?,
            ),
            None => None,
        };
        match existing {
            Some(current) => {
                p.check_write(current.tenant_id)?;
                let renamed = current.fields.name() != fields.name();
                let new_key = F::claim_key(tenant.0, fields.name());
                if renamed {
                    F::State::from_live(current.clone()).decide_checked(&ProfileCommand::UpdateProfile { fields: fields.clone() })?;
                    self.claim_key(&new_key, current.id, name_owner_state::<F>(fields.name()), || taken::<F>(fields.name()))
                        .await?;
                }
                let result = self
                    .execute(tenant.0, current.id, version, &p.actor(), F::table, |_| {
                        Ok(ProfileCommand::UpdateProfile { fields: fields.clone() })
                    })
                    .await;
                match result {
                    Ok(_) => {
                        if renamed {
                            self.release_key(&F::claim_key(tenant.0, current.fields.name()), current.id).await;
                        }
                        self.profile::<F>(p, current.id)
                    }
                    Err(e) => {
                        if renamed {
                            self.release_key(&new_key, current.id).await;
                        }
                        Err(e)
                    }
                }
            }
            None => {
                self.check_entity_limit(tenant, LimitedEntity::Profile)?;
                let is_default = !self.has_default_profile::<F>(tenant);
                let id = self.create_profile(tenant, Uuid::now_v7(), fields, is_default, &p.actor()).await?;
                self.profile::<F>(p, id)
            }
        }
    }

    async fn create_profile<F: ProfileKind>(
        &self,
        tenant: TenantId,
        id: Uuid,
        fields: F,
        is_default: bool,
        actor: &Actor,
    ) -> Result<Uuid> {
        let command = ProfileCommand::CreateProfile { id, tenant_id: tenant, fields: fields.clone(), is_default, now: self.now_ms() };
        F::State::default().decide_checked(&command)?;
        let key = F::claim_key(tenant.0, fields.name());
        self.claim_key(&key, id, name_owner_state::<F>(fields.name()), || taken::<F>(fields.name())).await?;
        if let Err(e) = self.execute(tenant.0, id, None, actor, F::table, |_| Ok(command.clone())).await {
            self.release_key(&key, id).await;
            return Err(e);
        }
        Ok(id)
    }

    /// A profile the caller may read (any user of the tenant).
    pub fn profile<F: ProfileKind>(&self, p: &Principal, id: Uuid) -> Result<ProfileView<F>> {
        let tenant = p.require_tenant_user()?;
        let entities = self.view().read();
        let v = F::table(&entities).get(&id).ok_or_else(|| Error::not_found(F::ENTITY_TYPE, id))?;
        let profile = v.state.live_profile().ok_or_else(|| Error::not_found(F::ENTITY_TYPE, id))?;
        if profile.tenant_id != tenant {
            return Err(Error::Forbidden);
        }
        Ok(ProfileView { profile: profile.clone(), version: v.position.version })
    }

    /// The tenant's profiles, oldest first.
    pub fn profiles<F: ProfileKind>(&self, p: &Principal) -> Result<Vec<ProfileView<F>>> {
        let tenant = p.require_tenant_user()?;
        let entities = self.view().read();
        let mut out: Vec<ProfileView<F>> = F::table(&entities)
            .values()
            .filter_map(|v| v.state.live_profile().map(|pr| (pr, v.position.version)))
            .filter(|(pr, _)| pr.tenant_id == tenant)
            .map(|(pr, version)| ProfileView { profile: pr.clone(), version })
            .collect();
        out.sort_by_key(|v| (v.profile.created_time, v.profile.id));
        Ok(out)
    }

    /// The tenant's default profile.
    pub fn default_profile<F: ProfileKind>(&self, p: &Principal) -> Result<ProfileView<F>> {
        self.profiles::<F>(p)?
            .into_iter()
            .find(|v| v.profile.is_default)
            .ok_or_else(|| Error::not_found(F::ENTITY_TYPE, Uuid::nil()))
    }

    /// Makes a profile the tenant's default, clearing the flag on the previous one.
    pub async fn set_default_profile<F: ProfileKind>(&self, p: &Principal, id: Uuid) -> Result<ProfileView<F>> {
        let tenant = p.require_tenant_admin()?;
        let view = self.profile::<F>(p, id)?;
        let previous: Vec<Uuid> = self
            .profiles::<F>(p)?
            .into_iter()
            .filter(|v| v.profile.is_default && v.profile.id != id)
            .map(|v| v.profile.id)
            .collect();
        self.execute(tenant.0, view.profile.id, None, &p.actor(), F::table, |_| Ok(ProfileCommand::MakeProfileDefault)).await?;
        for old in previous {
            self.execute(tenant.0, old, None, &p.actor(), F::table, |_| Ok(ProfileCommand::ClearProfileDefault)).await?;
        }
        self.profile::<F>(p, id)
    }

    /// Deletes a profile that is neither the default nor in use.
    pub async fn delete_profile<F: ProfileKind>(&self, p: &Principal, id: Uuid) -> Result<()> {
        let tenant = p.require_tenant_admin()?;
        let view = self.profile::<F>(p, id)?;
        if view.profile.is_default {
            return Err(Error::Rejected(DomainError::NotAllowed {
                reason: format!("the default {} cannot be deleted", F::ENTITY_TYPE.token().replace('_', " ")),
            }));
        }
        if F::in_use(&self.view().read(), id) {
            return Err(Error::Rejected(DomainError::NotAllowed {
                reason: format!("the {} is referenced by existing entities and cannot be deleted", F::ENTITY_TYPE.token().replace('_', " ")),
            }));
        }
        self.execute(tenant.0, id, None, &p.actor(), F::table, |_| Ok(ProfileCommand::DeleteProfile)).await?;
        self.release_key(&F::claim_key(tenant.0, view.profile.fields.name()), id).await;
        Ok(())
    }

    fn has_default_profile<F: ProfileKind>(&self, tenant: TenantId) -> bool {
        F::table(&self.view().read())
            .values()
            .any(|v| v.state.live_profile().is_some_and(|pr| pr.tenant_id == tenant && pr.is_default))
    }

    /// Creates the tenant's default device and asset profiles (named `default`) if missing.
    pub async fn ensure_default_profiles(&self, tenant: TenantId, actor: &Actor) -> Result<()> {
        self.ensure_default::<DeviceProfileFields>(tenant, actor).await?;
        self.ensure_default::<AssetProfileFields>(tenant, actor).await?;
        Ok(())
    }

    async fn ensure_default<F: ProfileKind>(&self, tenant: TenantId, actor: &Actor) -> Result<Uuid> {
        let existing = F::table(&self.view().read())
            .values()
            .find_map(|v| v.state.live_profile().filter(|pr| pr.tenant_id == tenant && pr.is_default).map(|pr| pr.id));
        match existing {
            Some(id) => Ok(id),
            None => self.create_profile(tenant, Uuid::now_v7(), F::default_fields(), true, actor).await,
        }
    }

    /// The profile a device or asset save refers to: by id, else by name (created on first use,
    /// as ThingsBoard does), else the tenant's default.
    pub(crate) async fn resolve_profile<F: ProfileKind>(
        &self,
        p: &Principal,
        tenant: TenantId,
        id: Option<Uuid>,
        name: Option<&str>,
    ) -> Result<Uuid> {
        if let Some(id) = id.filter(|id| *id != thinglake_domain::NULL_UUID && !id.is_nil()) {
            let entities = self.view().read();
            return match F::table(&entities).get(&id).and_then(|v| v.state.live_profile()) {
                Some(pr) if pr.tenant_id == tenant => Ok(id),
                Some(_) => Err(Error::Forbidden),
                None => Err(Error::not_found(F::ENTITY_TYPE, id)),
            };
        }
        let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) else {
            return self.ensure_default::<F>(tenant, &p.actor()).await;
        };
        let found = F::table(&self.view().read())
            .values()
            .find_map(|v| v.state.live_profile().filter(|pr| pr.tenant_id == tenant && pr.fields.name() == name).map(|pr| pr.id));
        match found {
            Some(id) => Ok(id),
            None => {
                self.check_entity_limit(tenant, LimitedEntity::Profile)?;
                let is_default = !self.has_default_profile::<F>(tenant);
                self.create_profile(tenant, Uuid::now_v7(), F::named(name), is_default, &p.actor()).await
            }
        }
    }

    pub(crate) async fn resolve_device_profile(
        &self,
        p: &Principal,
        tenant: TenantId,
        id: Option<DeviceProfileId>,
        name: Option<&str>,
    ) -> Result<DeviceProfileId> {
        self.resolve_profile::<DeviceProfileFields>(p, tenant, id.map(|i| i.0), name).await.map(DeviceProfileId)
    }

    pub(crate) async fn resolve_asset_profile(
        &self,
        p: &Principal,
        tenant: TenantId,
        id: Option<AssetProfileId>,
        name: Option<&str>,
    ) -> Result<AssetProfileId> {
        self.resolve_profile::<AssetProfileFields>(p, tenant, id.map(|i| i.0), name).await.map(AssetProfileId)
    }
}

fn taken<F: ProfileKind>(name: &str) -> DomainError {
    DomainError::NameTaken { entity_type: F::ENTITY_TYPE, name: name.to_string() }
}
