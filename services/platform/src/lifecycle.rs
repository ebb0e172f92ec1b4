//! Device lifecycle: connect, disconnect, activity and inactivity as ThingsBoard's server-scope
//! attributes `active`, `lastConnectTime`, `lastDisconnectTime`, `lastActivityTime` and
//! `inactivityAlarmTime`, each change a message on the telemetry stream.
//!
//! Semantics follow ThingsBoard's device state service: a connect sets `lastConnectTime` and
//! makes the device active; a disconnect sets `lastDisconnectTime` (the device stays active until
//! the inactivity timeout, as in ThingsBoard); activity sets `lastActivityTime`, rate-limited to
//! one message per device per `activity_report_interval` (a device becoming active again is
//! reported at once); a device with no activity for `inactivity_timeout` gets `active = false`
//! and `inactivityAlarmTime` from the background checker ([`Platform::run_inactivity_checker`]).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use thinglake_domain::device::Device;
use thinglake_domain::{EntityType, TenantEntityId};
use thinglake_domain::telemetry::{AttributeScope, KvEntry, KvValue};
use tracing::{debug, warn};

use crate::error::Result;
use crate::Platform;

pub const ACTIVE: &str = "active";
pub const LAST_CONNECT_TIME: &str = "lastConnectTime";
pub const LAST_DISCONNECT_TIME: &str = "lastDisconnectTime";
pub const LAST_ACTIVITY_TIME: &str = "lastActivityTime";
pub const INACTIVITY_ALARM_TIME: &str = "inactivityAlarmTime";

/// What this node knows of the activity of the devices it serves, by tenant and device.
#[derive(Debug, Default)]
pub(crate) struct ActivityTracker {
    devices: Mutex<HashMap<TenantEntityId, Activity>>,
}

#[derive(Debug, Clone, Copy)]
struct Activity {
    /// Last activity seen on this node (ms).
    last_activity: i64,
    /// When `lastActivityTime` was last written (ms).
    last_reported: i64,
    /// Whether `active = true` is what this node last wrote.
    active: bool,
}

impl ActivityTracker {
    /// Records activity at `now`; returns whether a message is due (first activity, inactive
    /// device, or the report interval passed), and if so marks it reported.
    fn touch(&self, device: TenantEntityId, now: i64, interval_ms: i64) -> Option<bool> {
        let mut devices = self.devices.lock().expect("activity lock is not poisoned");
        let a = devices.entry(device).or_insert(Activity { last_activity: now, last_reported: i64::MIN, active: false });
        a.last_activity = a.last_activity.max(now);
        let was_active = a.active;
        if was_active && now.saturating_sub(a.last_reported) < interval_ms {
            return None;
        }
        a.last_reported = now;
        a.active = true;
        Some(was_active)
    }

    fn connected(&self, device: TenantEntityId, now: i64) {
        let mut devices = self.devices.lock().expect("activity lock is not poisoned");
        devices.insert(device, Activity { last_activity: now, last_reported: now, active: true });
    }

    fn last_activity(&self, device: TenantEntityId) -> Option<i64> {
        self.devices.lock().expect("activity lock is not poisoned").get(&device).map(|a| a.last_activity)
    }

    fn inactive(&self, device: TenantEntityId) {
        if let Some(a) = self.devices.lock().expect("activity lock is not poisoned").get_mut(&device) {
            a.active = false;
        }
    }
}

fn long(key: &str, value: i64) -> KvEntry {
    KvEntry { key: key.to_string(), value: KvValue::Long(value) }
}

fn flag(key: &str, value: bool) -> KvEntry {
    KvEntry { key: key.to_string(), value: KvValue::Bool(value) }
}

impl Platform {
    /// A device connected (MQTT CONNECT accepted): `active = true`, `lastConnectTime`,
    /// `lastActivityTime`.
    pub async fn device_connected(&self, device: &Device) -> Result<()> {
        let now = self.now_ms();
        self.inner.activity.connected(device.tenant_entity(), now);
        let values = vec![flag(ACTIVE, true), long(LAST_CONNECT_TIME, now), long(LAST_ACTIVITY_TIME, now)];
        self.save_system_attributes(device, AttributeScope::ServerScope, values).await?;
        Ok(())
    }

    /// A device disconnected: `lastDisconnectTime` (and the last activity not yet reported).
    pub async fn device_disconnected(&self, device: &Device) -> Result<()> {
        let now = self.now_ms();
        let mut values = vec![long(LAST_DISCONNECT_TIME, now)];
        if let Some(last) = self.inner.activity.last_activity(device.tenant_entity()) {
            values.push(long(LAST_ACTIVITY_TIME, last));
        }
        self.save_system_attributes(device, AttributeScope::ServerScope, values).await?;
        Ok(())
    }

    /// The device did something (a publish, a request, a ping). Costs a message on the log at
    /// most once per `activity_report_interval`, or at once when the device was inactive.
    pub async fn device_activity(&self, device: &Device) -> Result<()> {
        let now = self.now_ms();
        let interval = i64::try_from(self.config().telemetry.activity_report_interval.as_millis()).unwrap_or(i64::MAX);
        let Some(was_active) = self.inner.activity.touch(device.tenant_entity(), now, interval) else { return Ok(()) };
        let mut values = vec![long(LAST_ACTIVITY_TIME, now)];
        let persisted_active = self.latest().attribute(device.tenant_entity(), AttributeScope::ServerScope, ACTIVE);
        if !was_active && persisted_active != Some(KvValue::Bool(true)) {
            values.push(flag(ACTIVE, true));
        }
        self.save_system_attributes(device, AttributeScope::ServerScope, values).await?;
        Ok(())
    }

    /// Activity recorded on behalf of a publish that already succeeded: a failure is logged, not
    /// returned, since the device's data is stored.
    pub(crate) async fn device_activity_quiet(&self, device: &Device) {
        if let Err(e) = self.device_activity(device).await {
            warn!(device = %device.id.0, error = %e, "recording device activity failed");
        }
    }

    /// Marks inactive every active device whose last activity (reported on the log, or seen on
    /// this node) is older than the inactivity timeout; returns how many.
    pub async fn check_inactivity(&self) -> usize {
        let now = self.now_ms();
        let timeout = i64::try_from(self.config().telemetry.inactivity_timeout.as_millis()).unwrap_or(i64::MAX);
        let active = self.latest().entities_with_attribute(AttributeScope::ServerScope, ACTIVE, &KvValue::Bool(true));
        let mut marked = 0;
        for key in active.into_iter().filter(|key| key.entity.entity_type == EntityType::Device) {
            let device = {
                let entities = self.view().read();
                entities.devices.get(&key.entity.id).and_then(|v| v.state.as_live()).filter(|d| d.tenant_id == key.tenant_id).cloned()
            };
            let Some(device) = device else { continue };
            let id = device.id.0;
            let persisted = match self.latest().attribute(key, AttributeScope::ServerScope, LAST_ACTIVITY_TIME) {
                Some(KvValue::Long(ts)) => ts,
                _ => 0,
            };
            let last = persisted.max(self.inner.activity.last_activity(key).unwrap_or(0));
            if now < last.saturating_add(timeout) {
                continue;
            }
            let values = vec![flag(ACTIVE, false), long(INACTIVITY_ALARM_TIME, now)];
            match self.save_system_attributes(&device, AttributeScope::ServerScope, values).await {
                Ok(_) => {
                    self.inner.activity.inactive(key);
                    marked += 1;
                    debug!(device = %id, last_activity = last, "device became inactive");
                }
                Err(e) => warn!(device = %id, error = %e, "marking a device inactive failed"),
            }
        }
        marked
    }

    /// Runs [`Platform::check_inactivity`] every `inactivity_check_interval` until `stop`
    /// resolves. The server runs it on its task tracker.
    pub async fn run_inactivity_checker(&self, stop: impl Future<Output = ()>) {
        let mut ticker = tokio::time::interval(self.config().telemetry.inactivity_check_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = ticker.tick() => { self.check_inactivity().await; }
                () = &mut stop => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use thinglake_domain::{EntityId, TenantId};
    use uuid::Uuid;

    use super::*;

    fn device_key(id: Uuid) -> TenantEntityId {
        TenantEntityId::new(TenantId(Uuid::now_v7()), EntityId::new(EntityType::Device, id))
    }

    #[test]
    fn activity_is_reported_at_most_once_per_interval() {
        let tracker = ActivityTracker::default();
        let id = device_key(Uuid::now_v7());
        assert_eq!(tracker.touch(id, 1_000, 60_000), Some(false), "first activity makes the device active");
        assert_eq!(tracker.touch(id, 2_000, 60_000), None);
        assert_eq!(tracker.touch(id, 60_999, 60_000), None);
        assert_eq!(tracker.touch(id, 61_000, 60_000), Some(true));
        assert_eq!(tracker.last_activity(id), Some(61_000));
    }

    #[test]
    fn an_inactive_device_reports_activity_at_once() {
        let tracker = ActivityTracker::default();
        let id = device_key(Uuid::now_v7());
        tracker.connected(id, 1_000);
        assert_eq!(tracker.touch(id, 2_000, 60_000), None);
        tracker.inactive(id);
        assert_eq!(tracker.touch(id, 3_000, 60_000), Some(false));
    }
}
