//! The use cases devices, assets and dashboards share as entities a tenant assigns to its
//! customers: read one, list the caller's (or one customer's), assign, unassign and delete.
//!
//! Each kind says in [`Assignable`] where its entities are kept and how its commands and views
//! are made; what differs beyond that (saving, unique names, credentials, profiles) stays in the
//! kind's own module.

use thinglake_domain::{Aggregate, CustomerId, EntityId, EntityType, TenantId};
use thinglake_infra::claims::ClaimKey;
use thinglake_projections::Entities;
use thinglake_projections::entities::Table;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::execute::Outcome;
use crate::{Platform, Principal};

/// A kind of entity a tenant administrator assigns to customers, whose users may then read it:
/// devices and assets (one customer at most) and dashboards (any number).
pub trait Assignable: Clone + Send + Sync + 'static {
    /// The aggregate whose live state the entity is.
    type State: Aggregate<Command: Clone + Send + Sync>;
    type Id: Copy + Ord + From<Uuid> + Into<Uuid> + Send + Sync;
    /// What the use cases answer: the entity, its version and what it refers to by name.
    type View: Send + 'static;

    fn table(entities: &Entities) -> &Table<Self::State>;
    fn live(state: &Self::State) -> Option<&Self>;
    fn id(&self) -> Self::Id;
    fn tenant_id(&self) -> TenantId;
    fn created_time(&self) -> i64;
    /// Whether `customer`'s users are given the entity.
    fn is_assigned_to(&self, customer: CustomerId) -> bool;
    /// The unique keys the entity holds, freed when it is deleted.
    fn claimed_keys(&self) -> Vec<ClaimKey>;
    fn assign(customer: CustomerId) -> <Self::State as Aggregate>::Command;
    /// The unassignment from `customer`; a kind of one customer at most takes the entity from
    /// the customer it has, whichever is named.
    fn unassign(customer: Option<CustomerId>) -> <Self::State as Aggregate>::Command;
    fn delete() -> <Self::State as Aggregate>::Command;
    fn view(entities: &Entities, entity: Self, version: u64) -> Self::View;
}

impl Platform {
    /// An entity the caller may read: any of the tenant's for its administrator, one assigned to
    /// their customer for a customer user.
    pub fn entity<K: Assignable>(&self, p: &Principal, id: K::Id) -> Result<K::View> {
        let id: Uuid = id.into();
        let entities = self.view().read();
        let v = K::table(&entities).get(&id).ok_or_else(|| Error::not_found(K::State::ENTITY_TYPE, id))?;
        let entity = K::live(&v.state).ok_or_else(|| Error::not_found(K::State::ENTITY_TYPE, id))?;
        check_read(p, entity)?;
        Ok(K::view(&entities, entity.clone(), v.position.version))
    }

    /// The caller's entities, oldest first: all of the tenant's for a tenant administrator (those
    /// assigned to `customer` when given), those assigned to their customer for a customer user.
    pub fn entities<K: Assignable>(&self, p: &Principal, customer: Option<CustomerId>) -> Result<Vec<K::View>> {
        let tenant = p.require_tenant_user()?;
        if let Some(c) = customer {
            p.check_read(tenant, c)?;
        }
        let scope = p.customer_scope().or(customer);
        let entities = self.view().read();
        let mut found: Vec<(&K, u64)> = K::table(&entities)
            .values()
            .filter_map(|v| K::live(&v.state).map(|e| (e, v.position.version)))
            .filter(|(e, _)| e.tenant_id() == tenant && scope.is_none_or(|c| e.is_assigned_to(c)))
            .collect();
        found.sort_by_key(|(e, _)| (e.created_time(), e.id()));
        Ok(found.into_iter().map(|(e, version)| K::view(&entities, e.clone(), version)).collect())
    }

    /// Lets `customer`'s users read the entity; a device or an asset moves to it from the
    /// customer it had.
    pub async fn assign<K: Assignable>(&self, p: &Principal, customer: CustomerId, id: K::Id) -> Result<K::View> {
        let entity = self.for_write::<K>(p, id)?;
        self.customer_in_tenant(entity.tenant_id(), customer)?;
        self.change(p, &entity, K::assign(customer)).await
    }

    /// Takes the entity from `customer`'s users (see [`Assignable::unassign`]).
    pub async fn unassign<K: Assignable>(&self, p: &Principal, customer: Option<CustomerId>, id: K::Id) -> Result<K::View> {
        let entity = self.for_write::<K>(p, id)?;
        self.change(p, &entity, K::unassign(customer)).await
    }

    /// Deletes the entity, frees its unique keys and removes its relations.
    pub async fn delete_entity<K: Assignable>(&self, p: &Principal, id: K::Id) -> Result<()> {
        let entity = self.for_write::<K>(p, id)?;
        let id: Uuid = id.into();
        self.execute(entity.tenant_id().0, id, None, &p.actor(), K::table, |_| Ok(K::delete())).await?;
        for key in entity.claimed_keys() {
            self.release_key(&key, id).await;
        }
        self.delete_relations_of(p, EntityId::new(K::State::ENTITY_TYPE, id)).await
    }

    /// Checks that `customer` is a live customer of `tenant`, one its entities can be assigned to.
    pub(crate) fn customer_in_tenant(&self, tenant: TenantId, customer: CustomerId) -> Result<()> {
        let entities = self.view().read();
        match entities.customers.get(&customer.0).and_then(|v| v.state.as_live()) {
            Some(c) if c.tenant_id == tenant => Ok(()),
            Some(_) => Err(Error::Forbidden),
            None => Err(Error::not_found(EntityType::Customer, customer.0)),
        }
    }

    /// A live entity the caller may change.
    pub(crate) fn for_write<K: Assignable>(&self, p: &Principal, id: K::Id) -> Result<K> {
        self.live_for_write(p, K::table, K::live, K::State::ENTITY_TYPE, id.into(), K::tenant_id)
    }

    /// The view of an entity a command left live.
    pub(crate) fn outcome_view<K: Assignable>(&self, outcome: Outcome<K::State>) -> Result<K::View> {
        let entity = K::live(&outcome.state).cloned().ok_or_else(|| Error::not_found(K::State::ENTITY_TYPE, Uuid::nil()))?;
        Ok(K::view(&self.view().read(), entity, outcome.position.version))
    }

    async fn change<K: Assignable>(&self, p: &Principal, entity: &K, command: <K::State as Aggregate>::Command) -> Result<K::View> {
        let id: Uuid = entity.id().into();
        let outcome = self.execute(entity.tenant_id().0, id, None, &p.actor(), K::table, |_| Ok(command.clone())).await?;
        self.outcome_view::<K>(outcome)
    }
}

/// A tenant administrator reads the tenant's entities; a customer user those assigned to their
/// customer.
fn check_read<K: Assignable>(p: &Principal, entity: &K) -> Result<()> {
    let customer = p.customer_scope().filter(|c| entity.is_assigned_to(*c)).unwrap_or(CustomerId::NULL);
    p.check_read(entity.tenant_id(), customer)
}
