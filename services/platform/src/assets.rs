//! Asset use cases: save (create or update, name unique within the tenant) and list by type.
//! Reading, assigning and deleting an asset are the [`crate::customer_assignment`] use cases of
//! an [`Assignable`]. Assets are devices without credentials, typed by an asset profile.

use serde_json::Value;
use thinglake_domain::asset::{Asset, AssetCommand, AssetFields, AssetState};
use thinglake_domain::{AssetId, AssetProfileId, CustomerId, DomainError, EntityType, TenantId};
use thinglake_infra::claims::ClaimKey;
use thinglake_projections::Entities;
use thinglake_projections::entities::Table;
use uuid::Uuid;

use crate::customer_assignment::Assignable;
use crate::error::{Error, Result};
use crate::execute::DecideChecked;
use crate::quotas::LimitedEntity;
use crate::uniqueness::{NameClaim, OwnerState, owner_state};
use crate::{Platform, Principal};

/// An asset as the API shows it: the entity, its version and what it refers to by name.
#[derive(Debug, Clone)]
pub struct AssetView {
    pub asset: Asset,
    pub version: u64,
    pub profile_name: String,
    pub customer_title: Option<String>,
}

/// What a save of an asset carries (ThingsBoard's asset JSON, minus what the server owns).
#[derive(Debug, Clone, Default)]
pub struct AssetInput {
    /// Present to update an existing asset.
    pub id: Option<AssetId>,
    pub name: String,
    pub label: Option<String>,
    /// The profile by id; without it, by `type` (created on first use, as ThingsBoard does);
    /// without both, the tenant's default profile.
    pub asset_profile_id: Option<AssetProfileId>,
    pub asset_type: Option<String>,
    pub additional_info: Value,
    pub customer_id: Option<CustomerId>,
    /// The version the caller read; a stale one is refused.
    pub version: Option<u64>,
}

pub(crate) fn assets(e: &Entities) -> &Table<AssetState> {
    &e.assets
}

impl Assignable for Asset {
    type State = AssetState;
    type Id = AssetId;
    type View = AssetView;

    fn table(entities: &Entities) -> &Table<AssetState> {
        assets(entities)
    }

    fn live(state: &AssetState) -> Option<&Asset> {
        state.as_live()
    }

    fn id(&self) -> AssetId {
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
        vec![ClaimKey::asset_name(self.tenant_id.0, &self.fields.name)]
    }

    fn assign(customer_id: CustomerId) -> AssetCommand {
        AssetCommand::AssignAssetToCustomer { customer_id }
    }

    fn unassign(_: Option<CustomerId>) -> AssetCommand {
        AssetCommand::UnassignAssetFromCustomer
    }

    fn delete() -> AssetCommand {
        AssetCommand::DeleteAsset
    }

    fn view(entities: &Entities, asset: Asset, version: u64) -> AssetView {
        view_of(entities, asset, version)
    }
}

impl Platform {
    /// Creates an asset (no id) or updates one (with id), ThingsBoard's `POST /api/asset`: an id
    /// that names no asset of the caller is 404, never an asset created with that id.
    pub async fn save_asset(&self, p: &Principal, input: AssetInput) -> Result<AssetView> {
        let tenant = p.require_tenant_admin()?;
        match input.id {
            Some(id) => self.update_asset(p, id, input).await,
            None => self.create_asset(p, tenant, input).await,
        }
    }

    async fn create_asset(&self, p: &Principal, tenant: TenantId, input: AssetInput) -> Result<AssetView> {
        self.check_entity_limit(tenant, LimitedEntity::Asset)?;
        let id = AssetId(Uuid::now_v7());
        let customer_id = match input.customer_id {
            Some(c) if !c.is_null() => {
                self.customer_in_tenant(tenant, c)?;
                c
            }
            _ => CustomerId::NULL,
        };
        let profile_id = self.resolve_asset_profile(p, tenant, input.asset_profile_id, input.asset_type.as_deref()).await?;
        let fields = fields_of(&input, profile_id);
        let claim = name_claim(tenant, id, &fields.name);
        let command = AssetCommand::CreateAsset { id, tenant_id: tenant, customer_id, fields, now: self.now_ms() };
        // Validate before claiming, so bad input reserves nothing.
        AssetState::Absent.decide_checked(&command)?;
        let actor = p.actor();
        let save = Box::pin(self.execute(tenant.0, id.0, None, &actor, assets, |_| Ok(command.clone())));
        let outcome = self.save_claimed(Some(claim), save).await?;
        self.outcome_view::<Asset>(outcome)
    }

    async fn update_asset(&self, p: &Principal, id: AssetId, input: AssetInput) -> Result<AssetView> {
        let current = self.for_write::<Asset>(p, id)?;
        let tenant = current.tenant_id;
        let profile_id = match (input.asset_profile_id, input.asset_type.as_deref()) {
            (None, None) => current.fields.asset_profile_id,
            (pid, ty) => self.resolve_asset_profile(p, tenant, pid, ty).await?,
        };
        let fields = fields_of(&input, profile_id);
        let renamed = fields.name != current.fields.name;
        if renamed {
            AssetState::Live(current.clone()).decide_checked(&AssetCommand::UpdateAsset { fields: fields.clone() })?;
        }
        let claim = renamed.then(|| name_claim(tenant, id, &fields.name));
        let actor = p.actor();
        let save = Box::pin(self.execute(tenant.0, id.0, input.version, &actor, assets, |_| {
            Ok(AssetCommand::UpdateAsset { fields: fields.clone() })
        }));
        let outcome = self.save_claimed(claim, save).await?;
        if renamed {
            self.release_key(&ClaimKey::asset_name(tenant.0, &current.fields.name), id.0).await;
        }
        self.outcome_view::<Asset>(outcome)
    }

    /// A tenant's asset by its exact name.
    pub fn asset_by_name(&self, p: &Principal, name: &str) -> Result<AssetView> {
        let tenant = p.require_tenant_user()?;
        let id = self
            .view()
            .read()
            .assets
            .values()
            .find_map(|v| v.state.as_live().filter(|a| a.tenant_id == tenant && a.fields.name == name).map(|a| a.id))
            .ok_or_else(|| Error::not_found(EntityType::Asset, Uuid::nil()))?;
        self.entity::<Asset>(p, id)
    }

    /// The caller's assets, oldest first: all of the tenant's for a tenant administrator, the
    /// customer's for a customer user; narrowed to `customer` and profile name `asset_type`.
    pub fn assets(&self, p: &Principal, customer: Option<CustomerId>, asset_type: Option<&str>) -> Result<Vec<AssetView>> {
        let mut views = self.entities::<Asset>(p, customer)?;
        views.retain(|v| asset_type.is_none_or(|t| v.profile_name == t));
        Ok(views)
    }

    /// The profile names in use by the caller's assets (`GET /api/asset/types`).
    pub fn asset_types(&self, p: &Principal) -> Result<Vec<String>> {
        let mut types: Vec<String> = self.assets(p, None, None)?.into_iter().map(|v| v.profile_name).collect();
        types.sort();
        types.dedup();
        Ok(types)
    }
}

fn name_claim(tenant: TenantId, id: AssetId, name: &str) -> NameClaim<impl Fn(&Entities, Uuid) -> OwnerState + use<>> {
    let owned = name.to_string();
    NameClaim {
        key: ClaimKey::asset_name(tenant.0, name),
        owner: id.0,
        owner_state: owner_state(assets, move |a: &Asset| a.fields.name == owned),
        taken: DomainError::NameTaken { entity_type: EntityType::Asset, name: name.to_string() },
    }
}

fn fields_of(input: &AssetInput, profile_id: AssetProfileId) -> AssetFields {
    AssetFields {
        name: input.name.clone(),
        label: input.label.clone(),
        asset_profile_id: profile_id,
        additional_info: input.additional_info.clone(),
    }
}

fn view_of(entities: &Entities, asset: Asset, version: u64) -> AssetView {
    let profile_name = entities
        .asset_profiles
        .get(&asset.fields.asset_profile_id.0)
        .and_then(|v| v.state.any())
        .map(|p| p.fields.name.clone())
        .unwrap_or_else(|| "default".into());
    let customer_title =
        entities.customers.get(&asset.customer_id.0).and_then(|v| v.state.as_live()).map(|c| c.fields.title.clone());
    AssetView { asset, version, profile_name, customer_title }
}
