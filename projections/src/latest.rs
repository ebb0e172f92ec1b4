//! The latest-values read model: for every entity, the current attributes of each scope and the
//! latest time-series value of each key, held in memory. Everything here (values, subscribers)
//! is keyed by tenant, entity type and id ([`TenantEntityId`]), never by a bare id.
//!
//! It is rebuilt from the telemetry stream at start ([`start`] replays it and returns once caught
//! up; once the stream was trimmed, what lies before its first sequence is seeded from the lake
//! first, [`crate::lake::seed`]) and kept current by following it; the platform also applies its
//! own acknowledged messages at once ([`LatestValues::publishing`], [`OwnPublish::acked`]), so a
//! caller reads its own writes. Applying is ordered by stream sequence per key, so an early
//! apply and a later apply of the same message agree, and a deleted attribute stays deleted (a
//! tombstone) however the two interleave.
//!
//! The follower ([`follower`]) does not read this node's own acknowledged messages back from
//! the stream: it passes over them in sequence order from memory and fetches only the gaps
//! between them (other nodes' messages, and own publishes whose acknowledgement was lost).
//!
//! Shared-attribute changes are pushed to per-device subscribers ([`LatestValues::subscribe_shared`])
//! by the follower only: every node follows the stream, so a change saved on any node reaches
//! the node holding the device's connection, exactly once per node and in stream order. Likewise
//! every message of an entity (new points, attribute changes) reaches that entity's live
//! subscribers ([`LatestValues::subscribe_entity`], the WebSocket subscriptions) from the follower
//! only, through a bounded broadcast: a subscriber that falls behind misses messages and is told
//! so (`RecvError::Lagged`); ingest never waits for it.

mod follower;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde_json::{Map, Value};
use thinglake_domain::TenantEntityId;
use thinglake_domain::telemetry::{AttributeScope, KvValue, TelemetryData, TelemetryMessage};
use thinglake_infra::telemetry_store::TelemetryStore;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How many unread shared-attribute updates a subscriber may lag behind before it misses some.
const SHARED_UPDATES_CAPACITY: usize = 64;

/// How many unread messages of one entity a live subscriber may lag behind before it misses some.
const ENTITY_UPDATES_CAPACITY: usize = 256;

/// At most this many own acknowledged messages wait in memory for the follower (it passes them
/// within milliseconds; they pile up only while it cannot read a gap): one beyond is not kept,
/// and the follower reads it from the stream instead.
const OWN_MESSAGES_KEPT: usize = 16_384;

/// A change of a device's shared attributes, as pushed to the device.
#[derive(Debug, Clone, PartialEq)]
pub enum SharedUpdate {
    /// Keys set to new values (`{"k": v}`).
    Updated(Map<String, Value>),
    /// Keys removed.
    Deleted(Vec<String>),
}

/// An attribute's current value.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeValue {
    pub key: String,
    pub scope: AttributeScope,
    pub value: KvValue,
    /// When it was last saved (ms).
    pub last_update_ts: i64,
}

/// A key's latest time-series point.
#[derive(Debug, Clone, PartialEq)]
pub struct LatestPoint {
    pub key: String,
    pub ts: i64,
    pub value: KvValue,
}

#[derive(Debug, Clone)]
struct AttrSlot {
    /// `None` once deleted (a tombstone that orders later applies of older messages).
    value: Option<(KvValue, i64)>,
    seq: u64,
}

#[derive(Debug, Clone)]
struct TsSlot {
    ts: i64,
    value: KvValue,
    seq: u64,
}

#[derive(Debug, Default)]
struct EntityLatest {
    attributes: BTreeMap<(AttributeScope, String), AttrSlot>,
    timeseries: BTreeMap<String, TsSlot>,
}

#[derive(Debug, Default)]
struct OwnMessages {
    by_seq: BTreeMap<u64, Arc<TelemetryMessage>>,
    /// The highest sequence ever acknowledged to this node: every sequence below it is on the
    /// stream.
    highest: u64,
}

#[derive(Debug, Default)]
struct Inner {
    /// By tenant, entity type and id: an id another tenant's entity (of another type) carries
    /// too never reaches this entity's values.
    entities: RwLock<HashMap<TenantEntityId, EntityLatest>>,
    last_seq: AtomicU64,
    /// This node's acknowledged messages above `last_seq`, which the follower passes over from
    /// memory instead of reading them from the stream.
    own: Mutex<OwnMessages>,
    /// Woken when an own message is acknowledged.
    own_acked: Notify,
    /// Own publishes awaiting their acknowledgement: while there are none, a sequence missing
    /// from `own` below the highest known one is certainly another writer's.
    in_flight: AtomicUsize,
    /// Whether a follower follows the stream (and so takes what `own` holds): without one
    /// nothing is kept, or every publish would stay in memory.
    followed: AtomicBool,
    /// Times the follower read the stream, and messages it read (what it could not take from
    /// memory).
    stream_reads: AtomicU64,
    messages_read: AtomicU64,
    shared_subscribers: Mutex<HashMap<TenantEntityId, broadcast::Sender<SharedUpdate>>>,
    entity_subscribers: Mutex<HashMap<TenantEntityId, broadcast::Sender<Arc<TelemetryMessage>>>>,
}

/// A shared handle on the latest-values read model. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct LatestValues {
    inner: Arc<Inner>,
}

const SCOPES: [AttributeScope; 3] = [AttributeScope::ClientScope, AttributeScope::SharedScope, AttributeScope::ServerScope];

impl LatestValues {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one message at stream sequence `seq`. Idempotent; a key moves only to a message
    /// at a higher (attributes) or equal-or-later timestamp (time series) than what it holds.
    pub fn apply(&self, seq: u64, message: &TelemetryMessage) {
        let mut entities = self.inner.entities.write().expect("latest values lock is not poisoned");
        let entity = entities.entry(message.tenant_entity()).or_default();
        apply_to(entity, seq, message);
    }

    /// Counts an own publish as in flight until the returned guard is acknowledged
    /// ([`OwnPublish::acked`]) or dropped (the publish failed).
    pub fn publishing(&self) -> OwnPublish<'_> {
        self.inner.in_flight.fetch_add(1, Ordering::SeqCst);
        OwnPublish { latest: self }
    }

    /// Applies a message this node published and JetStream acknowledged at `seq`, before the
    /// follower gets there (read your writes), and keeps it for the follower, which passes
    /// over it from memory instead of reading it from the stream. When the follower got there
    /// first (it read the sequence as a gap), this does nothing.
    pub fn apply_own(&self, seq: u64, message: Arc<TelemetryMessage>) {
        {
            let mut entities = self.inner.entities.write().expect("latest values lock is not poisoned");
            if self.inner.last_seq.load(Ordering::Acquire) >= seq {
                return;
            }
            apply_to(entities.entry(message.tenant_entity()).or_default(), seq, &message);
            if !self.inner.followed.load(Ordering::Acquire) {
                return;
            }
            // Under the entities lock: the follower marks a sequence it read seen under it too,
            // so nothing below its mark is added here.
            let mut own = self.inner.own.lock().expect("own messages lock is not poisoned");
            own.highest = own.highest.max(seq);
            if own.by_seq.len() < OWN_MESSAGES_KEPT {
                own.by_seq.insert(seq, message);
            }
        }
        self.inner.own_acked.notify_one();
    }

    /// Marks the model as followed: from now on [`LatestValues::apply_own`] keeps messages for
    /// the follower to take.
    pub(crate) fn mark_followed(&self) {
        self.inner.followed.store(true, Ordering::Release);
    }

    /// How many times the follower read the stream, and how many messages it read: what it
    /// could not take from memory (other writers' messages, own ones whose acknowledgement it
    /// did not wait for).
    pub fn stream_reads(&self) -> (u64, u64) {
        (self.inner.stream_reads.load(Ordering::Relaxed), self.inner.messages_read.load(Ordering::Relaxed))
    }
}

/// An own publish in flight ([`LatestValues::publishing`]).
#[derive(Debug)]
#[must_use = "an own publish counts as in flight until acknowledged or dropped"]
pub struct OwnPublish<'a> {
    latest: &'a LatestValues,
}

impl OwnPublish<'_> {
    /// JetStream acknowledged the message at `seq`: [`LatestValues::apply_own`].
    pub fn acked(self, seq: u64, message: Arc<TelemetryMessage>) {
        self.latest.apply_own(seq, message);
    }
}

impl Drop for OwnPublish<'_> {
    fn drop(&mut self) {
        // After the message was kept (in `acked`): a follower that sees no publish in flight
        // finds every acknowledged one in memory.
        self.latest.inner.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn apply_to(entity: &mut EntityLatest, seq: u64, message: &TelemetryMessage) {
    match &message.data {
        TelemetryData::Timeseries { batches } => {
            for batch in batches {
                for entry in &batch.values {
                    // A key already held is updated in place: its `String` is not cloned again.
                    match entity.timeseries.get_mut(&entry.key) {
                        Some(slot) if (batch.ts, seq) >= (slot.ts, slot.seq) => {
                            *slot = TsSlot { ts: batch.ts, value: entry.value.clone(), seq };
                        }
                        Some(_) => {}
                        None => {
                            entity
                                .timeseries
                                .insert(entry.key.clone(), TsSlot { ts: batch.ts, value: entry.value.clone(), seq });
                        }
                    }
                }
            }
        }
        TelemetryData::Attributes { scope, ts, values } => {
            for entry in values {
                let slot = AttrSlot { value: Some((entry.value.clone(), *ts)), seq };
                put_attribute(entity, (*scope, entry.key.clone()), slot);
            }
        }
        TelemetryData::AttributesDeleted { scope, keys } => {
            for key in keys {
                put_attribute(entity, (*scope, key.clone()), AttrSlot { value: None, seq });
            }
        }
    }
}

impl LatestValues {
    /// The follower's apply of a message it read from the stream: applied (again, if this node
    /// applied it early: idempotent), pushed to subscribers and marked seen under one lock, so
    /// [`LatestValues::apply_own`] sees either the mark or keeps the message before it (then
    /// dropped by the next take).
    fn deliver_read(&self, seq: u64, message: &Arc<TelemetryMessage>) {
        let mut entities = self.inner.entities.write().expect("latest values lock is not poisoned");
        apply_to(entities.entry(message.tenant_entity()).or_default(), seq, message);
        self.push_to_subscribers(message);
        self.mark_seen(seq);
    }

    /// The follower passing over an own message (applied when it was acknowledged): pushed to
    /// subscribers, marked seen.
    fn deliver_own(&self, seq: u64, message: &Arc<TelemetryMessage>) {
        self.push_to_subscribers(message);
        self.mark_seen(seq);
    }

    /// The own messages at `from`, `from + 1`, … as far as they run unbroken, taken out of memory
    /// (older ones the follower passed by reading them are dropped).
    fn take_own_run(&self, from: u64, run: &mut Vec<(u64, Arc<TelemetryMessage>)>) {
        let mut own = self.inner.own.lock().expect("own messages lock is not poisoned");
        let mut next = from;
        while let Some(entry) = own.by_seq.first_entry() {
            if *entry.key() < from {
                entry.remove();
            } else if *entry.key() == next {
                run.push((next, entry.remove()));
                next += 1;
            } else {
                break;
            }
        }
    }

    /// The own message at `seq`, taken out of memory (older ones are dropped).
    fn take_own(&self, seq: u64) -> Option<Arc<TelemetryMessage>> {
        let mut own = self.inner.own.lock().expect("own messages lock is not poisoned");
        while let Some(entry) = own.by_seq.first_entry() {
            match entry.key().cmp(&seq) {
                std::cmp::Ordering::Less => {
                    entry.remove();
                }
                std::cmp::Ordering::Equal => return Some(entry.remove()),
                std::cmp::Ordering::Greater => return None,
            }
        }
        None
    }

    /// The highest sequence acknowledged to this node, and how many of the sequences from `from`
    /// on are not in memory before the next own one (at most `limit`).
    fn own_gap(&self, from: u64, limit: u64) -> (u64, u64) {
        let own = self.inner.own.lock().expect("own messages lock is not poisoned");
        let next_own = own.by_seq.range(from..).next().map_or(u64::MAX, |(seq, _)| *seq);
        (own.highest, next_own.saturating_sub(from).min(limit))
    }

    fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::SeqCst)
    }

    /// Pushes a message to the entity's live subscribers and a shared-attribute change to the
    /// device's; never waits for them.
    fn push_to_subscribers(&self, message: &Arc<TelemetryMessage>) {
        self.push_to_entity_subscribers(message);
        let update = match &message.data {
            TelemetryData::Attributes { scope: AttributeScope::SharedScope, values, .. } => {
                SharedUpdate::Updated(values.iter().map(|e| (e.key.clone(), e.value.to_json())).collect())
            }
            TelemetryData::AttributesDeleted { scope: AttributeScope::SharedScope, keys } => SharedUpdate::Deleted(keys.clone()),
            _ => return,
        };
        let key = message.tenant_entity();
        let mut subscribers = self.inner.shared_subscribers.lock().expect("subscribers lock is not poisoned");
        if let Some(sender) = subscribers.get(&key)
            && sender.send(update).is_err()
        {
            // Nobody listens any more.
            subscribers.remove(&key);
        }
    }

    /// Hands the message to the entity's live subscribers, if any; never waits for them.
    fn push_to_entity_subscribers(&self, message: &Arc<TelemetryMessage>) {
        let key = message.tenant_entity();
        let mut subscribers = self.inner.entity_subscribers.lock().expect("subscribers lock is not poisoned");
        if let Some(sender) = subscribers.get(&key)
            && sender.send(message.clone()).is_err()
        {
            subscribers.remove(&key);
        }
    }

    /// Receives every message of one entity (time-series points, attribute changes and
    /// deletions) the follower passes from now on, in stream order. Bounded: a receiver more than
    /// `ENTITY_UPDATES_CAPACITY` messages behind gets `RecvError::Lagged`.
    pub fn subscribe_entity(&self, entity: TenantEntityId) -> broadcast::Receiver<Arc<TelemetryMessage>> {
        let mut subscribers = self.inner.entity_subscribers.lock().expect("subscribers lock is not poisoned");
        subscribers.retain(|_, sender| sender.receiver_count() > 0);
        subscribers
            .entry(entity)
            .or_insert_with(|| broadcast::channel(ENTITY_UPDATES_CAPACITY).0)
            .subscribe()
    }

    /// Records that the follower has processed `seq`.
    pub fn mark_seen(&self, seq: u64) {
        self.inner.last_seq.fetch_max(seq, Ordering::AcqRel);
    }

    /// The highest stream sequence the follower has processed.
    pub fn last_seq(&self) -> u64 {
        self.inner.last_seq.load(Ordering::Acquire)
    }

    /// Receives the shared-attribute changes of one device from now on.
    pub fn subscribe_shared(&self, device: TenantEntityId) -> broadcast::Receiver<SharedUpdate> {
        let mut subscribers = self.inner.shared_subscribers.lock().expect("subscribers lock is not poisoned");
        subscribers
            .entry(device)
            .or_insert_with(|| broadcast::channel(SHARED_UPDATES_CAPACITY).0)
            .subscribe()
    }

    /// How many receivers listen to a device's shared-attribute changes.
    pub fn shared_subscriber_count(&self, device: TenantEntityId) -> usize {
        let subscribers = self.inner.shared_subscribers.lock().expect("subscribers lock is not poisoned");
        subscribers.get(&device).map_or(0, broadcast::Sender::receiver_count)
    }

    /// The entity's attributes of `scope` (every scope when `None`), narrowed to `keys` when
    /// given; by scope (client, shared, server), then key.
    pub fn attributes(&self, entity: TenantEntityId, scope: Option<AttributeScope>, keys: Option<&[String]>) -> Vec<AttributeValue> {
        let entities = self.inner.entities.read().expect("latest values lock is not poisoned");
        let Some(e) = entities.get(&entity) else { return Vec::new() };
        let mut out = Vec::new();
        for s in SCOPES.into_iter().filter(|s| scope.is_none_or(|wanted| wanted == *s)) {
            let range = e.attributes.range((s, String::new())..).take_while(|((scope, _), _)| *scope == s);
            for ((_, key), slot) in range {
                if keys.is_some_and(|k| !k.contains(key)) {
                    continue;
                }
                if let Some((value, ts)) = &slot.value {
                    out.push(AttributeValue { key: key.clone(), scope: s, value: value.clone(), last_update_ts: *ts });
                }
            }
        }
        out
    }

    /// One attribute's value.
    pub fn attribute(&self, entity: TenantEntityId, scope: AttributeScope, key: &str) -> Option<KvValue> {
        let entities = self.inner.entities.read().expect("latest values lock is not poisoned");
        let slot = entities.get(&entity)?.attributes.get(&(scope, key.to_string()))?;
        slot.value.as_ref().map(|(v, _)| v.clone())
    }

    /// The entities whose attribute `key` of `scope` currently equals `value`.
    pub fn entities_with_attribute(&self, scope: AttributeScope, key: &str, value: &KvValue) -> Vec<TenantEntityId> {
        let entities = self.inner.entities.read().expect("latest values lock is not poisoned");
        let wanted = (scope, key.to_string());
        entities
            .iter()
            .filter(|(_, e)| e.attributes.get(&wanted).and_then(|s| s.value.as_ref()).is_some_and(|(v, _)| v == value))
            .map(|(id, _)| *id)
            .collect()
    }

    /// The entity's latest time-series value per key (of `keys` when given), by key.
    pub fn latest_timeseries(&self, entity: TenantEntityId, keys: Option<&[String]>) -> Vec<LatestPoint> {
        let entities = self.inner.entities.read().expect("latest values lock is not poisoned");
        let Some(e) = entities.get(&entity) else { return Vec::new() };
        e.timeseries
            .iter()
            .filter(|(key, _)| keys.is_none_or(|k| k.contains(key)))
            .map(|(key, slot)| LatestPoint { key: key.clone(), ts: slot.ts, value: slot.value.clone() })
            .collect()
    }

    /// The entity's time-series keys, sorted.
    pub fn timeseries_keys(&self, entity: TenantEntityId) -> Vec<String> {
        let entities = self.inner.entities.read().expect("latest values lock is not poisoned");
        entities.get(&entity).map(|e| e.timeseries.keys().cloned().collect()).unwrap_or_default()
    }
}

impl LatestValues {
    /// Seeds a key's latest point from the lake (a message trimmed from the stream, at stream
    /// sequence `seq`); ordered like [`LatestValues::apply`], by (ts, seq).
    pub fn seed_point(&self, entity: TenantEntityId, key: &str, ts: i64, value: KvValue, seq: u64) {
        let mut entities = self.inner.entities.write().expect("latest values lock is not poisoned");
        let e = entities.entry(entity).or_default();
        match e.timeseries.get_mut(key) {
            Some(slot) if (ts, seq) < (slot.ts, slot.seq) => {}
            Some(slot) => *slot = TsSlot { ts, value, seq },
            None => {
                e.timeseries.insert(key.to_string(), TsSlot { ts, value, seq });
            }
        }
    }

    /// Seeds an attribute from the lake (a change trimmed from the stream, at stream sequence
    /// `seq`): its value and last-update time, or `None` for a deletion (kept as a tombstone).
    /// Ordered like [`LatestValues::apply`], by sequence.
    pub fn seed_attribute(&self, entity: TenantEntityId, scope: AttributeScope, key: &str, value: Option<(KvValue, i64)>, seq: u64) {
        let mut entities = self.inner.entities.write().expect("latest values lock is not poisoned");
        let e = entities.entry(entity).or_default();
        put_attribute(e, (scope, key.to_string()), AttrSlot { value, seq });
    }
}

fn put_attribute(entity: &mut EntityLatest, key: (AttributeScope, String), slot: AttrSlot) {
    match entity.attributes.get_mut(&key) {
        Some(current) if current.seq > slot.seq => {}
        Some(current) => *current = slot,
        None => {
            entity.attributes.insert(key, slot);
        }
    }
}

/// Starts following the telemetry stream into `latest` and returns once it has caught up with
/// everything that was on the stream when it was called.
pub async fn start(
    store: TelemetryStore,
    latest: LatestValues,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> thinglake_infra::Result<()> {
    follower::start(store, latest, tracker, shutdown).await
}

#[cfg(test)]
mod tests {
    use thinglake_domain::{Actor, EntityId, EntityType, TenantId};
    use thinglake_domain::telemetry::{KvEntry, TsBatch};

    use uuid::Uuid;

    use super::*;

    fn message(entity: Uuid, data: TelemetryData) -> TelemetryMessage {
        TelemetryMessage::new(Uuid::now_v7(), Uuid::nil(), EntityType::Device, entity, 0, Actor::system(), data)
    }

    /// The key of [`message`]'s entity.
    fn key(entity: Uuid) -> TenantEntityId {
        TenantEntityId::new(TenantId(Uuid::nil()), EntityId::new(EntityType::Device, entity))
    }

    fn set(scope: AttributeScope, key: &str, value: i64) -> TelemetryData {
        TelemetryData::Attributes { scope, ts: value, values: vec![KvEntry { key: key.into(), value: KvValue::Long(value) }] }
    }

    fn points(ts: i64, key: &str, value: f64) -> TelemetryData {
        TelemetryData::Timeseries {
            batches: vec![TsBatch { ts, values: vec![KvEntry { key: key.into(), value: KvValue::Double(value) }] }],
        }
    }

    #[test]
    fn a_deleted_attribute_disappears_and_stays_deleted_when_older_messages_replay() {
        let latest = LatestValues::new();
        let id = Uuid::now_v7();
        let scope = AttributeScope::ServerScope;
        let saved = message(id, set(scope, "a", 1));
        latest.apply(1, &saved);
        latest.apply(2, &message(id, TelemetryData::AttributesDeleted { scope, keys: vec!["a".into()] }));
        assert!(latest.attributes(key(id), Some(scope), None).is_empty());
        latest.apply(1, &saved);
        assert_eq!(latest.attribute(key(id), scope, "a"), None);
    }

    fn kept(latest: &LatestValues) -> Vec<u64> {
        latest.inner.own.lock().expect("lock").by_seq.keys().copied().collect()
    }

    #[test]
    fn an_own_message_is_read_at_once_and_kept_for_the_follower_only_while_one_follows() {
        let latest = LatestValues::new();
        let id = Uuid::now_v7();
        latest.apply_own(1, Arc::new(message(id, points(10, "t", 1.0))));
        assert_eq!(latest.latest_timeseries(key(id), None)[0].value, KvValue::Double(1.0), "read your writes");
        assert!(kept(&latest).is_empty(), "no follower: nothing kept");
        latest.mark_followed();
        latest.apply_own(3, Arc::new(message(id, points(30, "t", 3.0))));
        latest.apply_own(2, Arc::new(message(id, points(20, "t", 2.0))));
        assert_eq!(kept(&latest), vec![2, 3]);
        assert_eq!(latest.own_gap(1, 100), (3, 1), "sequence 1 is not in memory, 2 is");
        let mut run = Vec::new();
        latest.take_own_run(1, &mut run);
        assert!(run.is_empty(), "a run starts at the watermark");
        latest.mark_seen(1);
        latest.take_own_run(2, &mut run);
        assert_eq!(run.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(), vec![2, 3]);
        assert!(kept(&latest).is_empty(), "taken once");
        for (seq, m) in &run {
            latest.deliver_own(*seq, m);
        }
        assert_eq!(latest.last_seq(), 3);
        // The follower got there first: the early apply does nothing and keeps nothing.
        latest.apply_own(3, Arc::new(message(id, points(30, "t", 9.0))));
        assert!(kept(&latest).is_empty());
        assert_eq!(latest.latest_timeseries(key(id), None)[0].value, KvValue::Double(3.0));
        // An own message the follower read from the stream instead is dropped from memory by the
        // next take.
        latest.apply_own(4, Arc::new(message(id, points(40, "t", 4.0))));
        latest.apply_own(6, Arc::new(message(id, points(60, "t", 6.0))));
        assert!(latest.take_own(5).is_none());
        assert_eq!(kept(&latest), vec![6]);
        assert!(latest.take_own(6).is_some());
    }

    #[test]
    fn own_messages_beyond_the_bound_are_left_to_the_stream_but_known_to_exist() {
        let latest = LatestValues::new();
        latest.mark_followed();
        let m = Arc::new(message(Uuid::now_v7(), points(10, "t", 1.0)));
        for seq in 1..=OWN_MESSAGES_KEPT as u64 + 1 {
            latest.apply_own(seq, m.clone());
        }
        let beyond = OWN_MESSAGES_KEPT as u64 + 1;
        assert_eq!(kept(&latest).len(), OWN_MESSAGES_KEPT);
        assert_eq!(latest.own_gap(beyond, 10), (beyond, 10), "known to be on the stream, not in memory");
    }

    #[test]
    fn an_own_publish_counts_as_in_flight_until_acknowledged_or_dropped() {
        let latest = LatestValues::new();
        latest.mark_followed();
        let failed = latest.publishing();
        let acked = latest.publishing();
        assert_eq!(latest.in_flight(), 2);
        drop(failed);
        assert_eq!(latest.in_flight(), 1);
        acked.acked(1, Arc::new(message(Uuid::now_v7(), points(10, "t", 1.0))));
        assert_eq!(latest.in_flight(), 0);
        assert_eq!(kept(&latest), vec![1], "kept before it stops counting as in flight");
    }

    #[test]
    fn the_latest_point_is_the_one_with_the_greatest_timestamp() {
        let latest = LatestValues::new();
        let id = Uuid::now_v7();
        latest.apply(1, &message(id, points(20, "t", 2.0)));
        latest.apply(2, &message(id, points(10, "t", 1.0)));
        assert_eq!(latest.latest_timeseries(key(id), None)[0].value, KvValue::Double(2.0));
        latest.apply(3, &message(id, points(20, "t", 3.0)));
        assert_eq!(latest.latest_timeseries(key(id), None)[0].value, KvValue::Double(3.0));
    }

    #[test]
    fn scopes_are_kept_apart_and_keys_narrow_reads() {
        let latest = LatestValues::new();
        let id = Uuid::now_v7();
        latest.apply(1, &message(id, set(AttributeScope::ClientScope, "a", 1)));
        latest.apply(2, &message(id, set(AttributeScope::SharedScope, "a", 2)));
        latest.apply(3, &message(id, set(AttributeScope::SharedScope, "b", 3)));
        assert_eq!(latest.attributes(key(id), None, None).len(), 3);
        let shared = latest.attributes(key(id), Some(AttributeScope::SharedScope), Some(&["b".to_string()]));
        assert_eq!(shared.len(), 1);
        assert_eq!(shared[0].value, KvValue::Long(3));
    }

    #[tokio::test]
    async fn shared_changes_reach_subscribers_only_from_the_log() {
        let latest = LatestValues::new();
        let id = Uuid::now_v7();
        let mut rx = latest.subscribe_shared(key(id));
        let m = message(id, set(AttributeScope::SharedScope, "a", 1));
        latest.apply(1, &m);
        assert!(rx.try_recv().is_err(), "an early apply pushes nothing");
        latest.deliver_read(1, &Arc::new(m));
        let mut expected = Map::new();
        expected.insert("a".into(), Value::from(1));
        assert_eq!(rx.try_recv().ok(), Some(SharedUpdate::Updated(expected.clone())));
        latest.deliver_read(2, &Arc::new(message(id, set(AttributeScope::ServerScope, "s", 1))));
        assert!(rx.try_recv().is_err(), "server attributes are not pushed");
        latest.deliver_own(3, &Arc::new(message(id, set(AttributeScope::SharedScope, "a", 1))));
        assert_eq!(rx.try_recv().ok(), Some(SharedUpdate::Updated(expected)), "own changes are pushed from memory");
    }

    #[tokio::test]
    async fn every_followed_message_of_an_entity_reaches_its_subscribers_and_a_laggard_is_told() {
        let latest = LatestValues::new();
        let id = Uuid::now_v7();
        let mut rx = latest.subscribe_entity(key(id));
        let m = message(id, points(10, "t", 1.0));
        latest.apply(1, &m);
        assert!(rx.try_recv().is_err(), "an early apply pushes nothing");
        latest.deliver_read(1, &Arc::new(m));
        assert_eq!(rx.try_recv().ok().map(|m| m.entity_id), Some(id));
        latest.deliver_read(2, &Arc::new(message(Uuid::now_v7(), points(10, "t", 1.0))));
        assert!(rx.try_recv().is_err(), "other entities' messages are not pushed");
        for seq in 3..(3 + ENTITY_UPDATES_CAPACITY as u64 + 1) {
            latest.deliver_own(seq, &Arc::new(message(id, points(seq as i64, "t", 1.0))));
        }
        assert!(matches!(rx.try_recv(), Err(broadcast::error::TryRecvError::Lagged(_))));
    }

    /// Tenant A's device and tenant B's asset (and device) that carry the same id.
    fn colliding(id: Uuid) -> [(TenantEntityId, Uuid, EntityType); 3] {
        let (a, b) = (Uuid::from_u128(0xa), Uuid::from_u128(0xb));
        let of = |tenant: Uuid, entity_type| (TenantEntityId::new(TenantId(tenant), EntityId::new(entity_type, id)), tenant, entity_type);
        [of(a, EntityType::Device), of(b, EntityType::Asset), of(b, EntityType::Device)]
    }

    fn message_of(tenant: Uuid, entity_type: EntityType, entity: Uuid, data: TelemetryData) -> TelemetryMessage {
        TelemetryMessage::new(Uuid::now_v7(), tenant, entity_type, entity, 0, Actor::system(), data)
    }

    #[test]
    fn entities_of_two_tenants_with_one_id_keep_their_values_apart() {
        let latest = LatestValues::new();
        let id = Uuid::now_v7();
        let [(victim, a, device), (asset, b, asset_type), (other_device, _, _)] = colliding(id);
        let server = AttributeScope::ServerScope;
        latest.apply(1, &message_of(a, device, id, points(10, "t", 1.0)));
        latest.apply(2, &message_of(a, device, id, set(server, "active", 1)));
        for other in [asset, other_device] {
            assert!(latest.latest_timeseries(other, None).is_empty(), "{other} reads the victim's points");
            assert!(latest.timeseries_keys(other).is_empty());
            assert!(latest.attributes(other, None, None).is_empty(), "{other} reads the victim's attributes");
            assert_eq!(latest.attribute(other, server, "active"), None);
        }
        // Writes and deletions through the other tenant's entity leave the victim's values.
        latest.apply(3, &message_of(b, asset_type, id, points(20, "t", 9.0)));
        latest.apply(4, &message_of(b, asset_type, id, TelemetryData::AttributesDeleted { scope: server, keys: vec!["active".into()] }));
        assert_eq!(latest.latest_timeseries(victim, None)[0].value, KvValue::Double(1.0));
        assert_eq!(latest.latest_timeseries(asset, None)[0].value, KvValue::Double(9.0));
        assert_eq!(latest.attribute(victim, server, "active"), Some(KvValue::Long(1)));
        assert_eq!(latest.entities_with_attribute(server, "active", &KvValue::Long(1)), vec![victim]);
        // Seeded from the lake the same way.
        latest.seed_point(other_device, "t", 30, KvValue::Double(7.0), 5);
        latest.seed_attribute(other_device, server, "active", None, 6);
        assert_eq!(latest.latest_timeseries(victim, None)[0].value, KvValue::Double(1.0));
        assert_eq!(latest.attribute(victim, server, "active"), Some(KvValue::Long(1)));
    }

    #[tokio::test]
    async fn subscribers_get_only_the_messages_of_their_own_tenants_entity() {
        let latest = LatestValues::new();
        let id = Uuid::now_v7();
        let [(victim, a, device), (asset, b, asset_type), (other_device, _, _)] = colliding(id);
        let mut shared = latest.subscribe_shared(victim);
        let mut live = latest.subscribe_entity(victim);
        let shared_set = set(AttributeScope::SharedScope, "s", 1);
        latest.deliver_read(1, &Arc::new(message_of(b, asset_type, id, shared_set.clone())));
        latest.deliver_read(2, &Arc::new(message_of(b, device, id, shared_set.clone())));
        latest.deliver_own(3, &Arc::new(message_of(b, asset_type, id, points(10, "t", 1.0))));
        assert!(shared.try_recv().is_err(), "another tenant's shared attribute reached the victim's device");
        assert!(live.try_recv().is_err(), "another tenant's message reached the victim's subscriber");
        assert_eq!(latest.shared_subscriber_count(asset), 0);
        assert_eq!(latest.shared_subscriber_count(other_device), 0);
        latest.deliver_read(4, &Arc::new(message_of(a, device, id, shared_set)));
        assert!(shared.try_recv().is_ok());
        assert_eq!(live.try_recv().ok().map(|m| m.tenant_entity()), Some(victim));
    }
}
