//! The latest-values read model: for every entity, the current attributes of each scope and the
//! latest time-series value of each key, held in memory.
//!
//! It is rebuilt from the telemetry stream at start ([`start`] replays it and returns once caught
//! up; once the stream was trimmed, what lies before its first sequence is seeded from the lake
//! first, [`crate::lake::seed`]) and kept current by following it; the platform also applies its
//! own acknowledged messages at once, so a caller reads its own writes. Applying is ordered by stream sequence per key, so
//! the early apply and the follower's apply of the same message agree, and a deleted attribute
//! stays deleted (a tombstone) however the two interleave.
//!
//! Shared-attribute changes are pushed to per-device subscribers ([`LatestValues::subscribe_shared`])
//! by the follower only: every node follows the stream, so a change saved on any node reaches
//! the node holding the device's connection, exactly once per node. Likewise every message of an
//! entity (new points, attribute changes) reaches that entity's live subscribers
//! ([`LatestValues::subscribe_entity`], the WebSocket subscriptions) from the follower only, through
//! a bounded broadcast: a subscriber that falls behind misses messages and is told so
//! (`RecvError::Lagged`); ingest never waits for it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde_json::{Map, Value};
use thinglake_domain::telemetry::{AttributeScope, KvValue, TelemetryData, TelemetryMessage};
use thinglake_infra::telemetry_store::TelemetryStore;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

/// How many unread shared-attribute updates a subscriber may lag behind before it misses some.
const SHARED_UPDATES_CAPACITY: usize = 64;

/// How many unread messages of one entity a live subscriber may lag behind before it misses some.
const ENTITY_UPDATES_CAPACITY: usize = 256;

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
    /// Sequences this node applied early ([`LatestValues::apply_own`]) that the follower has
    /// not reached yet: its apply of them is skipped (it would change nothing).
    applied_early: Vec<u64>,
}

#[derive(Debug, Default)]
struct Inner {
    entities: RwLock<HashMap<Uuid, EntityLatest>>,
    last_seq: AtomicU64,
    /// Messages this node is publishing, by message id, until the follower reads them back
    /// ([`LatestValues::publishing`]).
    publishing: Mutex<HashMap<Uuid, Arc<TelemetryMessage>>>,
    /// Whether a follower reads the stream back (and so takes what `publishing` holds): without
    /// one nothing is kept, or every publish would stay in memory.
    followed: AtomicBool,
    shared_subscribers: Mutex<HashMap<Uuid, broadcast::Sender<SharedUpdate>>>,
    entity_subscribers: Mutex<HashMap<Uuid, broadcast::Sender<Arc<TelemetryMessage>>>>,
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
        let entity = entities.entry(message.entity_id).or_default();
        apply_to(entity, seq, message);
    }

    /// Applies a message this node just published and JetStream acknowledged at `seq`, before the
    /// follower reads it back (read your writes). The follower's own apply of that sequence is
    /// then skipped, so each message updates the model once; when the follower got there first,
    /// this does nothing.
    pub fn apply_own(&self, seq: u64, message: &TelemetryMessage) {
        let mut entities = self.inner.entities.write().expect("latest values lock is not poisoned");
        if self.inner.last_seq.load(Ordering::Acquire) >= seq {
            return;
        }
        let entity = entities.entry(message.entity_id).or_default();
        apply_to(entity, seq, message);
        entity.applied_early.push(seq);
    }

    /// Records a message this node is about to publish, so the follower takes it from memory
    /// when it reads it back instead of decoding its bytes again. Call
    /// [`LatestValues::not_published`] when the publish fails.
    pub fn publishing(&self, message: Arc<TelemetryMessage>) {
        if !self.inner.followed.load(Ordering::Acquire) {
            return;
        }
        self.inner.publishing.lock().expect("publishing lock is not poisoned").insert(message.message_id, message);
    }

    /// Forgets a message whose publish failed (if it reached the log after all, the follower
    /// decodes it).
    pub fn not_published(&self, message_id: Uuid) {
        self.inner.publishing.lock().expect("publishing lock is not poisoned").remove(&message_id);
    }

    /// Marks the model as followed: from now on [`LatestValues::publishing`] keeps messages for
    /// the follower to take.
    pub(crate) fn mark_followed(&self) {
        self.inner.followed.store(true, Ordering::Release);
    }

    /// The message this node published with `message_id`, once: for the follower.
    pub fn take_publishing(&self, message_id: Uuid) -> Option<Arc<TelemetryMessage>> {
        self.inner.publishing.lock().expect("publishing lock is not poisoned").remove(&message_id)
    }

    /// The follower's apply: skipped for a sequence applied early; marks `seq` seen under the
    /// same lock, so [`LatestValues::apply_own`] sees either the mark or the early record.
    fn apply_followed(&self, seq: u64, message: &TelemetryMessage) {
        let mut entities = self.inner.entities.write().expect("latest values lock is not poisoned");
        let entity = entities.entry(message.entity_id).or_default();
        let early = entity.applied_early.contains(&seq);
        if !entity.applied_early.is_empty() {
            // The follower goes in sequence order: nothing at or below `seq` is still ahead of it.
            entity.applied_early.retain(|s| *s > seq);
        }
        if !early {
            apply_to(entity, seq, message);
        }
        self.mark_seen(seq);
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
    /// Applies a message read from the stream and pushes shared-attribute changes to the
    /// device's subscribers.
    pub fn apply_logged(&self, seq: u64, message: &TelemetryMessage) {
        self.apply_followed(seq, message);
        self.push_to_entity_subscribers(message);
        let update = match &message.data {
            TelemetryData::Attributes { scope: AttributeScope::SharedScope, values, .. } => {
                SharedUpdate::Updated(values.iter().map(|e| (e.key.clone(), e.value.to_json())).collect())
            }
            TelemetryData::AttributesDeleted { scope: AttributeScope::SharedScope, keys } => SharedUpdate::Deleted(keys.clone()),
            _ => return,
        };
        let mut subscribers = self.inner.shared_subscribers.lock().expect("subscribers lock is not poisoned");
        if let Some(sender) = subscribers.get(&message.entity_id)
            && sender.send(update).is_err()
        {
            // Nobody listens any more.
            subscribers.remove(&message.entity_id);
        }
    }

    /// Hands the message to the entity's live subscribers, if any; never waits for them.
    fn push_to_entity_subscribers(&self, message: &TelemetryMessage) {
        let mut subscribers = self.inner.entity_subscribers.lock().expect("subscribers lock is not poisoned");
        if let Some(sender) = subscribers.get(&message.entity_id)
            && sender.send(Arc::new(message.clone())).is_err()
        {
            subscribers.remove(&message.entity_id);
        }
    }

    /// Receives every message of one entity (time-series points, attribute changes and
    /// deletions) applied from the log from now on. Bounded: a receiver more than
    /// `ENTITY_UPDATES_CAPACITY` messages behind gets `RecvError::Lagged`.
    pub fn subscribe_entity(&self, entity_id: Uuid) -> broadcast::Receiver<Arc<TelemetryMessage>> {
        let mut subscribers = self.inner.entity_subscribers.lock().expect("subscribers lock is not poisoned");
        subscribers.retain(|_, sender| sender.receiver_count() > 0);
        subscribers
            .entry(entity_id)
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
    pub fn subscribe_shared(&self, device_id: Uuid) -> broadcast::Receiver<SharedUpdate> {
        let mut subscribers = self.inner.shared_subscribers.lock().expect("subscribers lock is not poisoned");
        subscribers
            .entry(device_id)
            .or_insert_with(|| broadcast::channel(SHARED_UPDATES_CAPACITY).0)
            .subscribe()
    }

    /// How many receivers listen to a device's shared-attribute changes.
    pub fn shared_subscriber_count(&self, device_id: Uuid) -> usize {
        let subscribers = self.inner.shared_subscribers.lock().expect("subscribers lock is not poisoned");
        subscribers.get(&device_id).map_or(0, broadcast::Sender::receiver_count)
    }

    /// The entity's attributes of `scope` (every scope when `None`), narrowed to `keys` when
    /// given; by scope (client, shared, server), then key.
    pub fn attributes(&self, entity: Uuid, scope: Option<AttributeScope>, keys: Option<&[String]>) -> Vec<AttributeValue> {
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
    pub fn attribute(&self, entity: Uuid, scope: AttributeScope, key: &str) -> Option<KvValue> {
        let entities = self.inner.entities.read().expect("latest values lock is not poisoned");
        let slot = entities.get(&entity)?.attributes.get(&(scope, key.to_string()))?;
        slot.value.as_ref().map(|(v, _)| v.clone())
    }

    /// The entities whose attribute `key` of `scope` currently equals `value`.
    pub fn entities_with_attribute(&self, scope: AttributeScope, key: &str, value: &KvValue) -> Vec<Uuid> {
        let entities = self.inner.entities.read().expect("latest values lock is not poisoned");
        let wanted = (scope, key.to_string());
        entities
            .iter()
            .filter(|(_, e)| e.attributes.get(&wanted).and_then(|s| s.value.as_ref()).is_some_and(|(v, _)| v == value))
            .map(|(id, _)| *id)
            .collect()
    }

    /// The entity's latest time-series value per key (of `keys` when given), by key.
    pub fn latest_timeseries(&self, entity: Uuid, keys: Option<&[String]>) -> Vec<LatestPoint> {
        let entities = self.inner.entities.read().expect("latest values lock is not poisoned");
        let Some(e) = entities.get(&entity) else { return Vec::new() };
        e.timeseries
            .iter()
            .filter(|(key, _)| keys.is_none_or(|k| k.contains(key)))
            .map(|(key, slot)| LatestPoint { key: key.clone(), ts: slot.ts, value: slot.value.clone() })
            .collect()
    }

    /// The entity's time-series keys, sorted.
    pub fn timeseries_keys(&self, entity: Uuid) -> Vec<String> {
        let entities = self.inner.entities.read().expect("latest values lock is not poisoned");
        entities.get(&entity).map(|e| e.timeseries.keys().cloned().collect()).unwrap_or_default()
    }
}

impl LatestValues {
    /// Seeds a key's latest point from the lake (a message trimmed from the stream, at stream
    /// sequence `seq`); ordered like [`LatestValues::apply`], by (ts, seq).
    pub fn seed_point(&self, entity: Uuid, key: &str, ts: i64, value: KvValue, seq: u64) {
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
    pub fn seed_attribute(&self, entity: Uuid, scope: AttributeScope, key: &str, value: Option<(KvValue, i64)>, seq: u64) {
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
    crate::follower::start(crate::follower::LatestLog { store, latest: latest.clone() }, latest, tracker, shutdown).await
}

#[cfg(test)]
mod tests {
    use thinglake_domain::Actor;
    use thinglake_domain::EntityType;
    use thinglake_domain::telemetry::{KvEntry, TsBatch};

    use super::*;

    fn message(entity: Uuid, data: TelemetryData) -> TelemetryMessage {
        TelemetryMessage::new(Uuid::nil(), EntityType::Device, entity, 0, Actor::system(), data)
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
        assert!(latest.attributes(id, Some(scope), None).is_empty());
        latest.apply(1, &saved);
        assert_eq!(latest.attribute(id, scope, "a"), None);
    }

    #[test]
    fn an_own_message_is_read_at_once_and_applied_once() {
        let latest = LatestValues::new();
        let id = Uuid::now_v7();
        let early = |latest: &LatestValues| latest.inner.entities.read().expect("lock")[&id].applied_early.clone();
        latest.apply_own(1, &message(id, points(10, "t", 1.0)));
        assert_eq!(latest.latest_timeseries(id, None)[0].value, KvValue::Double(1.0), "read your writes");
        assert_eq!(early(&latest), vec![1]);
        latest.apply_logged(1, &message(id, points(10, "t", 1.0)));
        assert!(early(&latest).is_empty(), "the follower's apply of an own message is skipped and forgotten");
        assert_eq!(latest.last_seq(), 1);
        // The follower got there first: the early apply does nothing.
        latest.apply_logged(2, &message(id, points(20, "t", 2.0)));
        latest.apply_own(2, &message(id, points(20, "t", 2.0)));
        assert!(early(&latest).is_empty());
        // Early records the follower passed (a message it could not decode) do not pile up.
        latest.apply_own(4, &message(id, points(30, "t", 3.0)));
        latest.apply_logged(5, &message(id, points(40, "t", 4.0)));
        assert!(early(&latest).is_empty());
        assert_eq!(latest.latest_timeseries(id, None)[0].value, KvValue::Double(4.0));
    }

    #[test]
    fn own_messages_are_kept_for_the_follower_only_while_one_follows() {
        let latest = LatestValues::new();
        let own = Arc::new(message(Uuid::now_v7(), points(10, "t", 1.0)));
        latest.publishing(own.clone());
        assert!(latest.take_publishing(own.message_id).is_none(), "no follower: nothing kept");
        latest.mark_followed();
        latest.publishing(own.clone());
        assert!(latest.take_publishing(own.message_id).is_some_and(|m| m.message_id == own.message_id));
        assert!(latest.take_publishing(own.message_id).is_none(), "taken once");
    }

    #[test]
    fn the_latest_point_is_the_one_with_the_greatest_timestamp() {
        let latest = LatestValues::new();
        let id = Uuid::now_v7();
        latest.apply(1, &message(id, points(20, "t", 2.0)));
        latest.apply(2, &message(id, points(10, "t", 1.0)));
        assert_eq!(latest.latest_timeseries(id, None)[0].value, KvValue::Double(2.0));
        latest.apply(3, &message(id, points(20, "t", 3.0)));
        assert_eq!(latest.latest_timeseries(id, None)[0].value, KvValue::Double(3.0));
    }

    #[test]
    fn scopes_are_kept_apart_and_keys_narrow_reads() {
        let latest = LatestValues::new();
        let id = Uuid::now_v7();
        latest.apply(1, &message(id, set(AttributeScope::ClientScope, "a", 1)));
        latest.apply(2, &message(id, set(AttributeScope::SharedScope, "a", 2)));
        latest.apply(3, &message(id, set(AttributeScope::SharedScope, "b", 3)));
        assert_eq!(latest.attributes(id, None, None).len(), 3);
        let shared = latest.attributes(id, Some(AttributeScope::SharedScope), Some(&["b".to_string()]));
        assert_eq!(shared.len(), 1);
        assert_eq!(shared[0].value, KvValue::Long(3));
    }

    #[tokio::test]
    async fn shared_changes_reach_subscribers_only_from_the_log() {
        let latest = LatestValues::new();
        let id = Uuid::now_v7();
        let mut rx = latest.subscribe_shared(id);
        let m = message(id, set(AttributeScope::SharedScope, "a", 1));
        latest.apply(1, &m);
        assert!(rx.try_recv().is_err(), "an early apply pushes nothing");
        latest.apply_logged(1, &m);
        let mut expected = Map::new();
        expected.insert("a".into(), Value::from(1));
        assert_eq!(rx.try_recv().ok(), Some(SharedUpdate::Updated(expected)));
        latest.apply_logged(2, &message(id, set(AttributeScope::ServerScope, "s", 1)));
        assert!(rx.try_recv().is_err(), "server attributes are not pushed");
    }

    #[tokio::test]
    async fn every_logged_message_of_an_entity_reaches_its_subscribers_and_a_laggard_is_told() {
        let latest = LatestValues::new();
        let id = Uuid::now_v7();
        let mut rx = latest.subscribe_entity(id);
        let m = message(id, points(10, "t", 1.0));
        latest.apply(1, &m);
        assert!(rx.try_recv().is_err(), "an early apply pushes nothing");
        latest.apply_logged(1, &m);
        assert_eq!(rx.try_recv().ok().map(|m| m.entity_id), Some(id));
        latest.apply_logged(2, &message(Uuid::now_v7(), points(10, "t", 1.0)));
        assert!(rx.try_recv().is_err(), "other entities' messages are not pushed");
        for seq in 3..(3 + ENTITY_UPDATES_CAPACITY as u64 + 1) {
            latest.apply_logged(seq, &message(id, points(seq as i64, "t", 1.0)));
        }
        assert!(matches!(rx.try_recv(), Err(broadcast::error::TryRecvError::Lagged(_))));
    }
}
