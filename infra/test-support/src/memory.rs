//! In-memory implementations of the platform's storage ports, for tests that need no
//! nats-server: [`MemoryEventLog`] ([`EventLog`]), [`MemoryTelemetryLog`] ([`TelemetryLog`])
//! and [`MemoryClaims`] ([`ClaimStore`]).
//!
//! They keep the contracts the JetStream implementations keep, as far as a single process can
//! tell: sequences count from 1 per log, an append expects the entity's last sequence and fails
//! with [`AppendError::Conflict`] when another append came first, a retried append or publish (same
//! event or message id) is answered with what was stored, and following a log replays it from
//! a sequence and then goes on live. There is no duplicate window (ids are remembered for ever),
//! no trimming and no failure.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use thinglake_domain::telemetry::TelemetryMessage;
use thinglake_domain::{EntityId, EventEnvelope};
use thinglake_infra::Result;
use thinglake_infra::claims::{ClaimKey, ClaimOutcome, ClaimStore};
use thinglake_infra::error::AppendError;
use thinglake_infra::event_store::{Appended, EntityPosition, EventLog, Loaded, PendingEvent};
use thinglake_infra::subjects::Subjects;
use thinglake_infra::telemetry_store::TelemetryLog;
use tokio::sync::watch;
use uuid::Uuid;

/// An append-only sequence of items numbered from 1, followed live through a watch of its last
/// sequence.
#[derive(Debug)]
struct Sequence<T> {
    items: Mutex<Vec<T>>,
    last: watch::Sender<u64>,
}

impl<T: Clone + Send + Sync + 'static> Sequence<T> {
    fn new() -> Arc<Self> {
        Arc::new(Self { items: Mutex::new(Vec::new()), last: watch::Sender::new(0) })
    }

    fn lock(&self) -> MutexGuard<'_, Vec<T>> {
        self.items.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends `item` under the lock the caller holds; returns its sequence.
    fn push(&self, items: &mut Vec<T>, item: T) -> u64 {
        items.push(item);
        let seq = items.len() as u64;
        self.last.send_replace(seq);
        seq
    }

    fn at(&self, seq: u64) -> Option<T> {
        let index = usize::try_from(seq.checked_sub(1)?).ok()?;
        self.lock().get(index).cloned()
    }

    fn last_sequence(&self) -> u64 {
        self.lock().len() as u64
    }

    /// Every item from `from_seq` on (0 or 1: from the start), then live.
    fn follow(self: &Arc<Self>, from_seq: u64) -> BoxStream<'static, Result<(u64, T)>> {
        let state = (self.clone(), self.last.subscribe(), from_seq.max(1));
        futures::stream::unfold(state, |(sequence, mut changes, next)| async move {
            loop {
                if let Some(item) = sequence.at(next) {
                    return Some((Ok((next, item)), (sequence, changes, next + 1)));
                }
                // The sender lives as long as `sequence`: this waits for the next append.
                changes.changed().await.ok()?;
            }
        })
        .boxed()
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The event log in memory. Cheap to clone; clones share the log.
#[derive(Debug, Clone)]
pub struct MemoryEventLog {
    events: Arc<Sequence<EventEnvelope>>,
    subjects: Subjects,
}

impl Default for MemoryEventLog {
    fn default() -> Self {
        Self { events: Sequence::new(), subjects: Subjects::default() }
    }
}

impl MemoryEventLog {
    pub fn new() -> Self {
        Self::default()
    }

    fn is_entity(envelope: &EventEnvelope, tenant: Uuid, entity: EntityId) -> bool {
        envelope.tenant_id == tenant && envelope.entity_type == entity.entity_type && envelope.entity_id == entity.id
    }

    /// The entity's events with their sequences.
    fn entity_events(events: &[EventEnvelope], tenant: Uuid, entity: EntityId) -> Vec<(u64, EventEnvelope)> {
        (1u64..)
            .zip(events)
            .filter(|(_, e)| Self::is_entity(e, tenant, entity))
            .map(|(seq, e)| (seq, e.clone()))
            .collect()
    }

    fn append_now(
        &self,
        tenant: Uuid,
        entity: EntityId,
        expected: EntityPosition,
        pending: Vec<PendingEvent>,
    ) -> Result<Appended, AppendError> {
        let subject = self.subjects.entity(tenant, entity.entity_type, entity.id);
        let mut events = self.events.lock();
        let mut position = expected;
        let mut appended = Vec::with_capacity(pending.len());
        for pending in pending {
            let mine = Self::entity_events(&events, tenant, entity);
            let last_seq = mine.last().map_or(0, |(seq, _)| *seq);
            if last_seq != position.last_seq {
                // As JetStream: the expected sequence is checked before the id, so a retry of a
                // stored append finds its event right after the position it expected.
                match mine.into_iter().find(|(seq, _)| *seq > position.last_seq) {
                    Some((seq, stored)) if stored.event_id == pending.event_id => {
                        position = EntityPosition { version: stored.version, last_seq: seq };
                        appended.push((seq, stored));
                        continue;
                    }
                    _ => return Err(AppendError::Conflict { subject, expected: position.version }),
                }
            }
            let seq = match (1u64..).zip(events.iter()).find(|(_, e)| e.event_id == pending.event_id) {
                Some((seq, _)) => seq,
                None => {
                    let envelope = pending.into_envelope(tenant, entity, position.version + 1, now_ms());
                    self.events.push(&mut events, envelope)
                }
            };
            let stored = events[(seq - 1) as usize].clone();
            position = EntityPosition { version: stored.version, last_seq: seq };
            appended.push((seq, stored));
        }
        Ok(Appended { events: appended, position })
    }

    fn load_now(&self, tenant: Uuid, entity: EntityId) -> Loaded {
        let events = Self::entity_events(&self.events.lock(), tenant, entity);
        let position = match events.last() {
            Some((seq, _)) => EntityPosition { version: events.len() as u64, last_seq: *seq },
            None => EntityPosition::NEW,
        };
        (events, position)
    }
}

impl EventLog for MemoryEventLog {
    fn append(
        &self,
        tenant: Uuid,
        entity: EntityId,
        expected: EntityPosition,
        events: Vec<PendingEvent>,
    ) -> BoxFuture<'_, Result<Appended, AppendError>> {
        Box::pin(std::future::ready(self.append_now(tenant, entity, expected, events)))
    }

    fn position(&self, tenant: Uuid, entity: EntityId) -> BoxFuture<'_, Result<EntityPosition>> {
        let position = Self::entity_events(&self.events.lock(), tenant, entity)
            .last()
            .map_or(EntityPosition::NEW, |(seq, last)| EntityPosition { version: last.version, last_seq: *seq });
        Box::pin(std::future::ready(Ok(position)))
    }

    fn load(&self, tenant: Uuid, entity: EntityId) -> BoxFuture<'_, Result<Loaded>> {
        Box::pin(std::future::ready(Ok(self.load_now(tenant, entity))))
    }

    fn last_sequence(&self) -> BoxFuture<'_, Result<u64>> {
        Box::pin(std::future::ready(Ok(self.events.last_sequence())))
    }

    fn follow(&self, from_seq: u64) -> BoxStream<'static, Result<(u64, EventEnvelope)>> {
        self.events.follow(from_seq)
    }
}

/// The telemetry log in memory. Cheap to clone; clones share the log.
#[derive(Debug, Clone)]
pub struct MemoryTelemetryLog {
    messages: Arc<Sequence<TelemetryMessage>>,
}

impl Default for MemoryTelemetryLog {
    fn default() -> Self {
        Self { messages: Sequence::new() }
    }
}

impl MemoryTelemetryLog {
    pub fn new() -> Self {
        Self::default()
    }

    fn publish_now(&self, message: &TelemetryMessage) -> u64 {
        let mut messages = self.messages.lock();
        match (1u64..).zip(messages.iter()).find(|(_, m)| m.message_id == message.message_id) {
            Some((seq, _)) => seq,
            None => self.messages.push(&mut messages, message.clone()),
        }
    }
}

impl TelemetryLog for MemoryTelemetryLog {
    fn publish<'a>(&'a self, message: &'a TelemetryMessage) -> BoxFuture<'a, Result<u64>> {
        Box::pin(std::future::ready(Ok(self.publish_now(message))))
    }

    fn last_sequence(&self) -> BoxFuture<'_, Result<u64>> {
        Box::pin(std::future::ready(Ok(self.messages.last_sequence())))
    }

    fn first_sequence(&self) -> BoxFuture<'_, Result<u64>> {
        let first = u64::from(self.messages.last_sequence() > 0);
        Box::pin(std::future::ready(Ok(first)))
    }

    fn follow(&self, from_seq: u64) -> BoxStream<'static, Result<(u64, TelemetryMessage)>> {
        self.messages.follow(from_seq)
    }
}

/// The claims in memory. Cheap to clone; clones share the claims.
#[derive(Debug, Clone, Default)]
pub struct MemoryClaims {
    owners: Arc<Mutex<HashMap<String, Uuid>>>,
}

impl MemoryClaims {
    pub fn new() -> Self {
        Self::default()
    }

    fn owners(&self) -> MutexGuard<'_, HashMap<String, Uuid>> {
        self.owners.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn claim_now(&self, key: &ClaimKey, owner: Uuid) -> ClaimOutcome {
        match self.owners().entry(key.as_str().to_string()) {
            Entry::Vacant(free) => {
                free.insert(owner);
                ClaimOutcome::Claimed
            }
            Entry::Occupied(held) if *held.get() == owner => ClaimOutcome::AlreadyOurs,
            Entry::Occupied(held) => ClaimOutcome::TakenBy(*held.get()),
        }
    }

    fn release_now(&self, key: &ClaimKey, owner: Uuid) -> bool {
        let mut owners = self.owners();
        let ours = owners.get(key.as_str()) == Some(&owner);
        if ours {
            owners.remove(key.as_str());
        }
        ours
    }

    fn take_over_now(&self, key: &ClaimKey, from: Uuid, to: Uuid) -> ClaimOutcome {
        let mut owners = self.owners();
        match owners.get(key.as_str()).copied() {
            Some(holder) if holder == to => ClaimOutcome::AlreadyOurs,
            Some(holder) if holder != from => ClaimOutcome::TakenBy(holder),
            _ => {
                owners.insert(key.as_str().to_string(), to);
                ClaimOutcome::Claimed
            }
        }
    }
}

impl ClaimStore for MemoryClaims {
    fn claim<'a>(&'a self, key: &'a ClaimKey, owner: Uuid) -> BoxFuture<'a, Result<ClaimOutcome>> {
        Box::pin(std::future::ready(Ok(self.claim_now(key, owner))))
    }

    fn release<'a>(&'a self, key: &'a ClaimKey, owner: Uuid) -> BoxFuture<'a, Result<bool>> {
        Box::pin(std::future::ready(Ok(self.release_now(key, owner))))
    }

    fn owner<'a>(&'a self, key: &'a ClaimKey) -> BoxFuture<'a, Result<Option<Uuid>>> {
        Box::pin(std::future::ready(Ok(self.owners().get(key.as_str()).copied())))
    }

    fn take_over<'a>(&'a self, key: &'a ClaimKey, from: Uuid, to: Uuid) -> BoxFuture<'a, Result<ClaimOutcome>> {
        Box::pin(std::future::ready(Ok(self.take_over_now(key, from, to))))
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use thinglake_domain::{Actor, EntityType};

    use super::*;

    fn pending(event_id: Uuid) -> PendingEvent {
        PendingEvent {
            event_id,
            event_type: "DeviceRenamed".to_string(),
            schema_version: 1,
            occurred_at: 1,
            actor: Actor::system(),
            payload: Default::default(),
        }
    }

    fn entity() -> (Uuid, EntityId) {
        (Uuid::now_v7(), EntityId::new(EntityType::Device, Uuid::now_v7()))
    }

    #[tokio::test]
    async fn an_append_at_a_stale_position_is_a_conflict() {
        let log = MemoryEventLog::new();
        let (tenant, device) = entity();
        log.append(tenant, device, EntityPosition::NEW, vec![pending(Uuid::now_v7())]).await.expect("first append");
        let stale = log.append(tenant, device, EntityPosition::NEW, vec![pending(Uuid::now_v7())]).await;
        assert!(matches!(stale, Err(AppendError::Conflict { expected: 0, .. })), "{stale:?}");
    }

    #[tokio::test]
    async fn a_retried_append_answers_what_was_stored() {
        let log = MemoryEventLog::new();
        let (tenant, device) = entity();
        let id = Uuid::now_v7();
        let first = log.append(tenant, device, EntityPosition::NEW, vec![pending(id)]).await.expect("append");
        let retried = log.append(tenant, device, EntityPosition::NEW, vec![pending(id)]).await.expect("retry");
        assert_eq!(retried, first);
        let (events, position) = log.load(tenant, device).await.expect("load");
        assert_eq!((events.len(), position), (1, EntityPosition { version: 1, last_seq: 1 }));
    }

    #[tokio::test]
    async fn following_replays_from_a_sequence_then_goes_on_live() {
        let log = MemoryEventLog::new();
        let (tenant, device) = entity();
        let first = log.append(tenant, device, EntityPosition::NEW, vec![pending(Uuid::now_v7())]).await.expect("append");
        let mut follow = log.follow(1);
        assert_eq!(follow.next().await.expect("replayed").expect("event").0, 1);
        log.append(tenant, device, first.position, vec![pending(Uuid::now_v7())]).await.expect("append");
        assert_eq!(follow.next().await.expect("live").expect("event").0, 2);
    }

    #[tokio::test]
    async fn a_claim_belongs_to_one_owner_until_released() {
        let claims = MemoryClaims::new();
        let key = ClaimKey::access_token("token");
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(claims.claim(&key, a).await.expect("claim"), ClaimOutcome::Claimed);
        assert_eq!(claims.claim(&key, a).await.expect("claim"), ClaimOutcome::AlreadyOurs);
        assert_eq!(claims.claim(&key, b).await.expect("claim"), ClaimOutcome::TakenBy(a));
        assert!(!claims.release(&key, b).await.expect("release"));
        assert!(claims.release(&key, a).await.expect("release"));
        assert_eq!(claims.take_over(&key, a, b).await.expect("take over"), ClaimOutcome::Claimed);
        assert_eq!(claims.owner(&key).await.expect("owner"), Some(b));
    }
}
