//! Live subscriptions to an entity's telemetry and attributes, what the WebSocket API serves:
//! the current values first (from the latest-values read model), then every change as the
//! latest-values follower applies it from the telemetry stream.
//!
//! Access is checked as for REST reads when subscribing, and again for every update, so a
//! device unassigned from a customer stops reaching that customer's users. Updates come through a
//! bounded broadcast: a subscriber that falls behind is told it lagged, ingest never waits.

use std::collections::BTreeMap;
use std::sync::Arc;

use thinglake_domain::EntityId;
use thinglake_domain::telemetry::{AttributeScope, KvValue, TelemetryData, TelemetryMessage};
use thinglake_queries::TimeseriesQuery;
use tokio::sync::broadcast;

use crate::error::Result;
use crate::{Platform, Principal};

/// What a subscription watches.
#[derive(Debug, Clone, PartialEq)]
pub enum SubscriptionKind {
    /// Time-series points.
    Timeseries,
    /// Attributes of one scope, or of every scope.
    Attributes { scope: Option<AttributeScope> },
}

/// One subscription: an entity, what of it, and which keys (every key when `None`).
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub entity: EntityId,
    pub kind: SubscriptionKind,
    pub keys: Option<Vec<String>>,
}

/// Values by key: `(ts, value)` pairs, oldest first.
pub type UpdateData = BTreeMap<String, Vec<(i64, KvValue)>>;

/// An accepted subscription: the current values, and the receiver of what follows.
#[derive(Debug)]
pub struct LiveSubscription {
    pub initial: UpdateData,
    pub updates: broadcast::Receiver<Arc<TelemetryMessage>>,
}

impl Subscription {
    fn wants(&self, key: &str) -> bool {
        self.keys.as_ref().is_none_or(|keys| keys.iter().any(|k| k == key))
    }

    /// What of `message` this subscription shows; empty when nothing. The receiver of
    /// [`LiveSubscription::updates`] gets only the messages of the subscribed entity of the
    /// caller's tenant; the entity is checked here again, by type and id.
    pub fn data_of(&self, message: &TelemetryMessage) -> UpdateData {
        let mut data = UpdateData::new();
        if message.entity_type != self.entity.entity_type || message.entity_id != self.entity.id {
            return data;
        }
        match (&self.kind, &message.data) {
            (SubscriptionKind::Timeseries, TelemetryData::Timeseries { batches }) => {
                for batch in batches {
                    for entry in batch.values.iter().filter(|e| self.wants(&e.key)) {
                        data.entry(entry.key.clone()).or_default().push((batch.ts, entry.value.clone()));
                    }
                }
                for points in data.values_mut() {
                    points.sort_by_key(|(ts, _)| *ts);
                }
            }
            (SubscriptionKind::Attributes { scope }, TelemetryData::Attributes { scope: changed, ts, values })
                if scope.is_none_or(|s| s == *changed) =>
            {
                for entry in values.iter().filter(|e| self.wants(&e.key)) {
                    data.entry(entry.key.clone()).or_default().push((*ts, entry.value.clone()));
                }
            }
            _ => {}
        }
        data
    }
}

/// Adds to a raw window's points (oldest first, the newest `limit` per key) each latest value
/// that falls in `[start_ts, end_ts)` and is not there yet. The latest values are applied on
/// acknowledgement while the query engine's hot tail follows the log a few milliseconds behind:
/// without this a point acknowledged just before a subscription would be in neither its window
/// nor its updates.
pub fn add_latest_to_window(window: &mut UpdateData, latest: &UpdateData, start_ts: i64, end_ts: i64, limit: usize) {
    for (key, points) in latest {
        for (ts, value) in points.iter().filter(|(ts, _)| (start_ts..end_ts).contains(ts)) {
            let have = window.entry(key.clone()).or_default();
            if have.iter().any(|(t, _)| t == ts) {
                continue;
            }
            have.push((*ts, value.clone()));
            have.sort_by_key(|(t, _)| *t);
            if have.len() > limit {
                have.drain(..have.len() - limit);
            }
        }
    }
}

impl Platform {
    /// Subscribes the caller to an entity's values: checked as a REST read of them would be.
    /// The receiver is created before the current values are read, so nothing falls between.
    pub fn subscribe(&self, p: &Principal, subscription: &Subscription) -> Result<LiveSubscription> {
        let key = self.check_telemetry_read(p, subscription.entity)?;
        let updates = self.latest().subscribe_entity(key);
        let keys = subscription.keys.as_deref();
        let mut initial = UpdateData::new();
        match subscription.kind {
            SubscriptionKind::Timeseries => {
                for point in self.latest().latest_timeseries(key, keys) {
                    initial.insert(point.key, vec![(point.ts, point.value)]);
                }
            }
            SubscriptionKind::Attributes { scope } => {
                for a in self.latest().attributes(key, scope, keys) {
                    initial.entry(a.key).or_default().push((a.last_update_ts, a.value));
                }
            }
        }
        Ok(LiveSubscription { initial, updates })
    }

    /// An entity's points of a time range (raw or aggregated, as [`Platform::timeseries`]
    /// answers them) in the shape of a subscription update, oldest first: what a `TIMESERIES`
    /// subscription with a `timeWindow` starts with and what a `TIMESERIES_HISTORY` command
    /// answers.
    pub async fn timeseries_update(&self, p: &Principal, entity: EntityId, query: TimeseriesQuery) -> Result<UpdateData> {
        let mut data = UpdateData::new();
        for (key, mut points) in self.timeseries(p, entity, query).await? {
            points.sort_by_key(|point| point.ts);
            data.insert(key, points.into_iter().map(|point| (point.ts, point.value)).collect());
        }
        Ok(data)
    }

    /// Whether the caller may still read the entity's values (checked before each update).
    pub fn may_read_values(&self, p: &Principal, entity: EntityId) -> Result<()> {
        self.check_telemetry_read(p, entity).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use thinglake_domain::telemetry::{KvEntry, TsBatch};
    use thinglake_domain::{Actor, EntityType};
    use uuid::Uuid;

    use super::*;

    fn message(entity: Uuid, data: TelemetryData) -> TelemetryMessage {
        TelemetryMessage::new(Uuid::now_v7(), Uuid::nil(), EntityType::Device, entity, 0, Actor::system(), data)
    }

    fn entry(key: &str, v: f64) -> KvEntry {
        KvEntry { key: key.into(), value: KvValue::Double(v) }
    }

    #[test]
    fn a_timeseries_subscription_shows_its_keys_oldest_first() {
        let id = Uuid::now_v7();
        let sub = Subscription {
            entity: EntityId::new(EntityType::Device, id),
            kind: SubscriptionKind::Timeseries,
            keys: Some(vec!["t".into()]),
        };
        let m = message(
            id,
            TelemetryData::Timeseries {
                batches: vec![
                    TsBatch { ts: 20, values: vec![entry("t", 2.0), entry("h", 9.0)] },
                    TsBatch { ts: 10, values: vec![entry("t", 1.0)] },
                ],
            },
        );
        let data = sub.data_of(&m);
        assert_eq!(data.len(), 1);
        assert_eq!(data["t"], vec![(10, KvValue::Double(1.0)), (20, KvValue::Double(2.0))]);
    }

    #[test]
    fn a_latest_value_missing_from_a_window_is_added_within_its_range_and_limit() {
        let p = |ts: i64, v: f64| (ts, KvValue::Double(v));
        let mut window = UpdateData::from([("t".to_string(), vec![p(10, 1.0), p(20, 2.0)])]);
        let latest = UpdateData::from([
            ("t".to_string(), vec![p(30, 3.0)]),
            ("h".to_string(), vec![p(25, 9.0)]),
            ("old".to_string(), vec![p(5, 0.0)]),
        ]);
        add_latest_to_window(&mut window, &latest, 10, 40, 2);
        assert_eq!(window["t"], vec![p(20, 2.0), p(30, 3.0)], "the newest two");
        assert_eq!(window["h"], vec![p(25, 9.0)]);
        assert!(!window.contains_key("old"), "before the window");
        let again = window.clone();
        add_latest_to_window(&mut window, &latest, 10, 40, 2);
        assert_eq!(window, again, "a point already there is not added twice");
    }

    #[test]
    fn an_attribute_subscription_ignores_other_scopes_and_time_series() {
        let id = Uuid::now_v7();
        let sub = Subscription {
            entity: EntityId::new(EntityType::Device, id),
            kind: SubscriptionKind::Attributes { scope: Some(AttributeScope::SharedScope) },
            keys: None,
        };
        let server = TelemetryData::Attributes { scope: AttributeScope::ServerScope, ts: 5, values: vec![entry("a", 1.0)] };
        let shared = TelemetryData::Attributes { scope: AttributeScope::SharedScope, ts: 6, values: vec![entry("a", 2.0)] };
        let points = TelemetryData::Timeseries { batches: vec![TsBatch { ts: 1, values: vec![entry("a", 3.0)] }] };
        assert!(sub.data_of(&message(id, server)).is_empty());
        assert!(sub.data_of(&message(id, points)).is_empty());
        assert_eq!(sub.data_of(&message(id, shared))["a"], vec![(6, KvValue::Double(2.0))]);
    }
}
