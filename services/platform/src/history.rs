//! The auditor's view: an entity's whole history, replayed from its log subject, and its state
//! as of any moment (time travel).
//!
//! Tenant administrators read the history of their tenant's entities, deleted ones included; the
//! system administrator reads tenants and system users. Secrets (password and activation-token
//! hashes) never leave this module.

use thinglake_domain::asset::{Asset, AssetState};
use thinglake_domain::customer::{Customer, CustomerState};
use thinglake_domain::dashboard::{Dashboard, DashboardState};
use thinglake_domain::device::{Device, DeviceState};
use thinglake_domain::profile::{AssetProfile, AssetProfileState, DeviceProfile, DeviceProfileState};
use thinglake_domain::relation::{Relation, RelationState};
use thinglake_domain::tenant::{Tenant, TenantState};
use thinglake_domain::user::{Authority, User, UserState};
use serde_json::{Map, Value};
use thinglake_domain::{
    Aggregate, DomainEvent, EntityId, EntityType, EventEnvelope, Lifecycle, NULL_UUID, fold_payload, payload_changes, redact_secrets,
};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::{Platform, Principal};

/// One event of an entity's history, its payload stripped of secrets.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    /// The event's sequence on the log.
    pub seq: u64,
    pub envelope: EventEnvelope,
}

/// One event of a change list: the event (payload stripped of secrets) and what it changed.
#[derive(Debug, Clone)]
pub struct ChangeEntry {
    pub entry: HistoryEntry,
    /// Each payload field whose value differs from the fold of the entity's earlier payloads,
    /// as `{"from", "to"}` ([`thinglake_domain::payload_changes`]).
    pub changes: Map<String, Value>,
}

/// An entity as it was at some moment.
#[derive(Debug, Clone)]
pub enum Snapshot {
    Tenant(Tenant),
    Customer(Customer),
    /// The user without its secrets (password and activation-token hashes are cleared).
    User(User),
    Device(Device),
    DeviceProfile(DeviceProfile),
    Asset(Asset),
    AssetProfile(AssetProfile),
    Dashboard(Dashboard),
    Relation(Relation),
}

/// The answer of a time-travel read.
#[derive(Debug, Clone)]
pub struct EntityAsOf {
    pub entity: EntityId,
    /// The entity's version at that moment (0 before it was created).
    pub version: u64,
    pub as_of: i64,
    pub exists: bool,
    pub deleted: bool,
    /// The entity's fields then (its last state when deleted); none before it was created.
    pub state: Option<Snapshot>,
}

/// Replays the events recorded up to `ts` through the aggregate; returns the state and version.
fn replay_until<S: Aggregate>(events: &[(u64, EventEnvelope)], ts: i64) -> Result<(S, u64)> {
    let mut state = S::default();
    let mut version = 0;
    for (_, envelope) in events.iter().filter(|(_, e)| e.recorded_at <= ts) {
        state = state.evolve(&S::Event::from_envelope(envelope)?);
        version = envelope.version;
    }
    Ok((state, version))
}

fn snapshot_of<T: Clone>(state: &Lifecycle<T>, wrap: impl Fn(T) -> Snapshot) -> (bool, bool, Option<Snapshot>) {
    let exists = !matches!(state, Lifecycle::Absent);
    let deleted = matches!(state, Lifecycle::Deleted(_));
    (exists, deleted, state.any().cloned().map(wrap))
}

impl Platform {
    /// The entity's events in log order (`GET /api/history/{type}/{id}`).
    pub async fn entity_history(&self, p: &Principal, entity: EntityId) -> Result<Vec<HistoryEntry>> {
        let subject_tenant = self.history_access(p, entity)?;
        let (events, _) = self.store().load(subject_tenant, entity).await?;
        Ok(events
            .into_iter()
            .map(|(seq, mut envelope)| {
                redact_secrets(&mut envelope.payload);
                HistoryEntry { seq, envelope }
            })
            .collect())
    }

    /// The entity's changes recorded in `[start_ts, end_ts)` (ms), oldest first: for each event
    /// who, what (its type and the fields it changed) and when.
    pub async fn entity_changes(&self, p: &Principal, entity: EntityId, start_ts: i64, end_ts: i64) -> Result<Vec<ChangeEntry>> {
        let mut state = Map::new();
        let mut changes = Vec::new();
        for entry in self.entity_history(p, entity).await? {
            let payload = &entry.envelope.payload;
            if (start_ts..end_ts).contains(&entry.envelope.recorded_at) {
                changes.push(ChangeEntry { changes: payload_changes(&state, payload), entry: entry.clone() });
            }
            fold_payload(&mut state, payload);
        }
        Ok(changes)
    }

    /// The entity as it was at `ts` (ms): its events recorded up to then, replayed.
    pub async fn entity_as_of(&self, p: &Principal, entity: EntityId, ts: i64) -> Result<EntityAsOf> {
        let subject_tenant = self.history_access(p, entity)?;
        let (events, _) = self.store().load(subject_tenant, entity).await?;
        let (version, (exists, deleted, state)) = match entity.entity_type {
            EntityType::Tenant => {
                let (s, v) = replay_until::<TenantState>(&events, ts)?;
                (v, snapshot_of(&s, Snapshot::Tenant))
            }
            EntityType::Customer => {
                let (s, v) = replay_until::<CustomerState>(&events, ts)?;
                (v, snapshot_of(&s, Snapshot::Customer))
            }
            EntityType::User => {
                let (s, v) = replay_until::<UserState>(&events, ts)?;
                let without_secrets = |u: User| Snapshot::User(User { password_hash: None, activation_token_hash: None, ..u });
                (v, snapshot_of(&s, without_secrets))
            }
            EntityType::Device => {
                let (s, v) = replay_until::<DeviceState>(&events, ts)?;
                (v, snapshot_of(&s, Snapshot::Device))
            }
            EntityType::DeviceProfile => {
                let (s, v) = replay_until::<DeviceProfileState>(&events, ts)?;
                (v, snapshot_of(&s, Snapshot::DeviceProfile))
            }
            EntityType::Asset => {
                let (s, v) = replay_until::<AssetState>(&events, ts)?;
                (v, snapshot_of(&s, Snapshot::Asset))
            }
            EntityType::AssetProfile => {
                let (s, v) = replay_until::<AssetProfileState>(&events, ts)?;
                (v, snapshot_of(&s, Snapshot::AssetProfile))
            }
            EntityType::Dashboard => {
                let (s, v) = replay_until::<DashboardState>(&events, ts)?;
                (v, snapshot_of(&s, Snapshot::Dashboard))
            }
            EntityType::Relation => {
                let (s, v) = replay_until::<RelationState>(&events, ts)?;
                (v, snapshot_of(&s, Snapshot::Relation))
            }
            other => return Err(Error::not_found(other, entity.id)),
        };
        Ok(EntityAsOf { entity, version, as_of: ts, exists, deleted, state })
    }

    /// Who may read an entity's history; returns the tenant whose subject holds its events.
    /// Unknown entities are 404; deleted ones stay readable.
    fn history_access(&self, p: &Principal, entity: EntityId) -> Result<Uuid> {
        let subject_tenant = self.view().read().tenant_of(entity).ok_or_else(|| Error::not_found(entity.entity_type, entity.id))?;
        let system_level = entity.entity_type == EntityType::Tenant || subject_tenant == NULL_UUID;
        let allowed = match p.authority {
            Authority::SysAdmin => system_level,
            Authority::TenantAdmin => !system_level && p.tenant_id.0 == subject_tenant,
            Authority::CustomerUser => false,
        };
        if allowed { Ok(subject_tenant) } else { Err(Error::Forbidden) }
    }
}
