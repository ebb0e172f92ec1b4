//! The entity read model: the current state of every tenant, customer, user, device, profile,
//! asset, dashboard and relation, held in memory. It is rebuilt from the event log at start and kept current
//! by following the log; command handlers also apply their own appended events at once, so a
//! client reads its own writes.
//!
//! Applying is idempotent and ordered per entity: an event is taken only when its version is the
//! entity's next one, so the handler's early apply and the log follower never apply twice.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use thinglake_domain::asset::AssetState;
use thinglake_domain::customer::CustomerState;
use thinglake_domain::dashboard::DashboardState;
use thinglake_domain::device::DeviceState;
use thinglake_domain::profile::{AssetProfileState, DeviceProfileState};
use thinglake_domain::relation::{Relation, RelationState};
use thinglake_domain::tenant::TenantState;
use thinglake_domain::user::UserState;
use thinglake_domain::{Aggregate, DomainEvent, EntityId, EntityType, EventEnvelope, Lifecycle};
use thinglake_infra::event_store::EntityPosition;
use tokio::sync::watch;
use tracing::warn;
use uuid::Uuid;

/// One entity's state with its position on the log.
#[derive(Debug, Clone)]
pub struct Versioned<S> {
    pub state: S,
    pub position: EntityPosition,
    /// The tenant whose subject holds the entity's events.
    pub tenant_id: Uuid,
    /// When the last event was recorded (ms).
    pub updated_at: i64,
}

/// The entities of one type, by id.
pub type Table<S> = HashMap<Uuid, Versioned<S>>;

/// The live entities of `table` on `tenant`'s subject (a scan of the whole table).
pub fn live_of_tenant<T>(table: &Table<Lifecycle<T>>, tenant: Uuid) -> impl Iterator<Item = &T> {
    table.values().filter(move |v| v.tenant_id == tenant).filter_map(|v| v.state.as_live())
}

/// Everything the read model holds. Read it through [`EntityView::read`].
#[derive(Debug, Default)]
pub struct Entities {
    pub tenants: Table<TenantState>,
    pub customers: Table<CustomerState>,
    pub users: Table<UserState>,
    pub devices: Table<DeviceState>,
    pub device_profiles: Table<DeviceProfileState>,
    pub assets: Table<AssetState>,
    pub asset_profiles: Table<AssetProfileState>,
    pub dashboards: Table<DashboardState>,
    pub relations: Table<RelationState>,
    /// Live devices by access token.
    pub device_by_token: HashMap<String, Uuid>,
    /// Live users by (normalised) email.
    pub user_by_email: HashMap<String, Uuid>,
    /// Users by pending activation-token hash.
    pub user_by_activation: HashMap<String, Uuid>,
    /// Live relation ids by their from-entity and by their to-entity.
    pub relations_from: HashMap<EntityId, BTreeSet<Uuid>>,
    pub relations_to: HashMap<EntityId, BTreeSet<Uuid>>,
    /// Highest stream sequence applied by the log follower.
    pub last_seq: u64,
}

/// What applying one envelope did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The event advanced the entity.
    Advanced,
    /// The entity already had this version (applied earlier).
    AlreadyApplied,
    /// The event is ahead of the entity; the follower will deliver the missing ones first.
    Gap,
}

/// Errors reading an event off the log into the read model.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("event {event_type} of {entity} at sequence {seq} cannot be read: {source}")]
    Unreadable {
        event_type: String,
        entity: EntityId,
        seq: u64,
        #[source]
        source: thinglake_domain::DomainError,
    },
    #[error("entity type {entity_type} has no read model")]
    UnknownEntityType { entity_type: EntityType },
}

/// A shared handle on the read model.
#[derive(Debug, Clone)]
pub struct EntityView {
    inner: Arc<RwLock<Entities>>,
    /// Counts applied tenant, user and device events: what may change who may sign in or
    /// connect. Long-lived sessions wait on it and recheck their rights.
    access: Arc<watch::Sender<u64>>,
}

impl Default for EntityView {
    fn default() -> Self {
        Self { inner: Arc::default(), access: Arc::new(watch::Sender::new(0)) }
    }
}

impl EntityView {
    pub fn new() -> Self {
        Self::default()
    }

    /// Changes whenever a tenant, user or device event is applied (from this node or from the
    /// log), so a session can recheck at once that its user or device still holds its rights.
    pub fn access_changes(&self) -> watch::Receiver<u64> {
        self.access.subscribe()
    }

    /// A read lock. Never hold it across an `.await`.
    pub fn read(&self) -> RwLockReadGuard<'_, Entities> {
        self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Entities> {
        self.inner.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies an event at stream sequence `seq`.
    pub fn apply(&self, seq: u64, envelope: &EventEnvelope) -> Result<Applied, ApplyError> {
        let applied = self.write().apply(seq, envelope)?;
        let affects_access = matches!(envelope.entity_type, EntityType::Tenant | EntityType::User | EntityType::Device);
        if applied == Applied::Advanced && affects_access {
            self.access.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(applied)
    }

    /// Records that the follower has seen the log up to `seq` (including events it skipped).
    pub fn mark_seen(&self, seq: u64) {
        let mut entities = self.write();
        entities.last_seq = entities.last_seq.max(seq);
    }

    pub fn last_seq(&self) -> u64 {
        self.read().last_seq
    }
}

impl Entities {
    fn apply(&mut self, seq: u64, envelope: &EventEnvelope) -> Result<Applied, ApplyError> {
        let applied = match envelope.entity_type {
            EntityType::Tenant => apply_to(&mut self.tenants, seq, envelope)?.0,
            EntityType::Customer => apply_to(&mut self.customers, seq, envelope)?.0,
            EntityType::Device => {
                let (applied, before, after) = apply_to(&mut self.devices, seq, envelope)?;
                let token = |s: &DeviceState| s.as_live().map(|d| d.credentials.access_token.clone());
                reindex(&mut self.device_by_token, before.as_ref().and_then(token), after.as_ref().and_then(token), envelope.entity_id);
                applied
            }
            EntityType::DeviceProfile => apply_to(&mut self.device_profiles, seq, envelope)?.0,
            EntityType::Asset => apply_to(&mut self.assets, seq, envelope)?.0,
            EntityType::AssetProfile => apply_to(&mut self.asset_profiles, seq, envelope)?.0,
            EntityType::Dashboard => apply_to(&mut self.dashboards, seq, envelope)?.0,
            EntityType::User => {
                let (applied, before, after) = apply_to(&mut self.users, seq, envelope)?;
                let email = |s: &UserState| s.as_live().map(|u| u.fields.email.clone());
                let activation = |s: &UserState| s.as_live().and_then(|u| u.activation_token_hash.clone());
                reindex(&mut self.user_by_email, before.as_ref().and_then(email), after.as_ref().and_then(email), envelope.entity_id);
                reindex(
                    &mut self.user_by_activation,
                    before.as_ref().and_then(activation),
                    after.as_ref().and_then(activation),
                    envelope.entity_id,
                );
                applied
            }
            EntityType::Relation => {
                let (applied, before, after) = apply_to(&mut self.relations, seq, envelope)?;
                let id = envelope.entity_id;
                if let Some(r) = before.as_ref().and_then(|s| s.as_live()) {
                    unlink(&mut self.relations_from, r.key.from, id);
                    unlink(&mut self.relations_to, r.key.to, id);
                }
                if let Some(r) = after.as_ref().and_then(|s| s.as_live()) {
                    self.relations_from.entry(r.key.from).or_default().insert(id);
                    self.relations_to.entry(r.key.to).or_default().insert(id);
                }
                applied
            }
            entity_type => return Err(ApplyError::UnknownEntityType { entity_type }),
        };
        Ok(applied)
    }

    /// Live relations starting at `from`.
    pub fn relations_from(&self, from: EntityId) -> impl Iterator<Item = &Relation> {
        self.relations_from
            .get(&from)
            .into_iter()
            .flatten()
            .filter_map(|id| self.relations.get(id).and_then(|v| v.state.as_live()))
    }

    /// Live relations ending at `to`.
    pub fn relations_to(&self, to: EntityId) -> impl Iterator<Item = &Relation> {
        self.relations_to
            .get(&to)
            .into_iter()
            .flatten()
            .filter_map(|id| self.relations.get(id).and_then(|v| v.state.as_live()))
    }

    /// The tenant an entity belongs to, if the entity exists (live or deleted).
    pub fn tenant_of(&self, entity: EntityId) -> Option<Uuid> {
        let id = &entity.id;
        match entity.entity_type {
            EntityType::Tenant => self.tenants.get(id).map(|v| v.tenant_id),
            EntityType::Customer => self.customers.get(id).map(|v| v.tenant_id),
            EntityType::User => self.users.get(id).map(|v| v.tenant_id),
            EntityType::Device => self.devices.get(id).map(|v| v.tenant_id),
            EntityType::DeviceProfile => self.device_profiles.get(id).map(|v| v.tenant_id),
            EntityType::Asset => self.assets.get(id).map(|v| v.tenant_id),
            EntityType::AssetProfile => self.asset_profiles.get(id).map(|v| v.tenant_id),
            EntityType::Dashboard => self.dashboards.get(id).map(|v| v.tenant_id),
            EntityType::Relation => self.relations.get(id).map(|v| v.tenant_id),
            _ => None,
        }
    }
}

fn unlink(index: &mut HashMap<EntityId, BTreeSet<Uuid>>, key: EntityId, id: Uuid) {
    if let Some(set) = index.get_mut(&key) {
        set.remove(&id);
        if set.is_empty() {
            index.remove(&key);
        }
    }
}

fn reindex(index: &mut HashMap<String, Uuid>, before: Option<String>, after: Option<String>, id: Uuid) {
    if before == after {
        return;
    }
    if let Some(old) = before
        && index.get(&old) == Some(&id) {
            index.remove(&old);
        }
    if let Some(new) = after {
        index.insert(new, id);
    }
}

/// Applies an envelope to one table; returns what happened and the state before and after when
/// the entity advanced (for index upkeep).
fn apply_to<S: Aggregate>(
    table: &mut Table<S>,
    seq: u64,
    envelope: &EventEnvelope,
) -> Result<(Applied, Option<S>, Option<S>), ApplyError> {
    let current = table.get(&envelope.entity_id).map(|v| v.position.version).unwrap_or(0);
    if envelope.version <= current {
        return Ok((Applied::AlreadyApplied, None, None));
    }
    if envelope.version > current + 1 {
        warn!(entity = %envelope.entity(), version = envelope.version, current, "event ahead of read model; waiting for the log");
        return Ok((Applied::Gap, None, None));
    }
    let event = S::Event::from_envelope(envelope).map_err(|source| ApplyError::Unreadable {
        event_type: envelope.event_type.clone(),
        entity: envelope.entity(),
        seq,
        source,
    })?;
    let before = table.remove(&envelope.entity_id).map(|v| v.state).unwrap_or_default();
    let after = before.clone().evolve(&event);
    table.insert(
        envelope.entity_id,
        Versioned {
            state: after.clone(),
            position: EntityPosition { version: envelope.version, last_seq: seq },
            tenant_id: envelope.tenant_id,
            updated_at: envelope.recorded_at,
        },
    );
    Ok((Applied::Advanced, Some(before), Some(after)))
}
