//! Telemetry use cases: what devices publish (any transport) and what users save over REST, as
//! one [`TelemetryMessage`] per publish on the telemetry stream; and the latest values read back.
//!
//! A publish returns only after JetStream has acknowledged the message, so a transport that
//! acknowledges the device afterwards (MQTT PUBACK, HTTP 200, NATS reply) acknowledges a durable
//! point. A payload is parsed completely before anything is published: a refused payload stores
//! nothing.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use thinglake_domain::device::Device;
use thinglake_domain::telemetry::{
    AttributeScope, KvEntry, TelemetryData, TelemetryMessage, parse_attributes, parse_telemetry, parse_telemetry_slice,
};
use thinglake_domain::{Actor, CustomerId, EntityId, EntityType, TenantEntityId, TenantId};
use thinglake_infra::telemetry_store::DEFAULT_PUBLISH_TIMEOUT;
use thinglake_projections::latest::LatestPoint;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::{Platform, Principal};

/// Payload limits and device lifecycle settings.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// Largest device payload accepted, in bytes (ThingsBoard's MQTT default: 65536).
    pub max_payload_bytes: usize,
    /// How long a publish waits for JetStream's acknowledgement before failing (retryable).
    pub publish_timeout: Duration,
    /// At most one `lastActivityTime` message per device per this interval.
    pub activity_report_interval: Duration,
    /// A device with no activity for this long becomes inactive (ThingsBoard's default: 600 s).
    pub inactivity_timeout: Duration,
    /// How often the inactivity checker looks for devices past the timeout.
    pub inactivity_check_interval: Duration,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            max_payload_bytes: 65_536,
            publish_timeout: DEFAULT_PUBLISH_TIMEOUT,
            activity_report_interval: Duration::from_secs(60),
            inactivity_timeout: Duration::from_secs(600),
            inactivity_check_interval: Duration::from_secs(10),
        }
    }
}

impl Platform {
    /// Publishes a device's telemetry payload (`{"k": v}`, `{"ts", "values"}` or an array of
    /// either; values without `ts` get the server time) as one message, and returns the number
    /// of points once JetStream has acknowledged it. Counts as device activity.
    pub async fn publish_telemetry(&self, device: &Device, payload: &[u8]) -> Result<usize> {
        self.check_payload_size(payload)?;
        let now = self.now_ms();
        // Typed straight from the bytes: no intermediate JSON map of the payload.
        let batches = parse_telemetry_slice(payload, now).map_err(|e| Error::bad_payload(e.to_string()))?;
        self.admit_device_message(device, batches.iter().map(|b| b.point_count()).sum())?;
        self.publish_timeseries(device, batches, now).await
    }

    /// [`Platform::publish_telemetry`] for a payload already parsed (gateway sub-devices, whose
    /// messages the gateway's rate admitted).
    pub async fn publish_telemetry_json(&self, device: &Device, payload: &Value) -> Result<usize> {
        let now = self.now_ms();
        let batches = parse_telemetry(payload, now).map_err(|e| Error::bad_payload(e.to_string()))?;
        self.publish_timeseries(device, batches, now).await
    }

    async fn publish_timeseries(&self, device: &Device, batches: Vec<thinglake_domain::telemetry::TsBatch>, now: i64) -> Result<usize> {
        let message = TelemetryMessage::new(
            Uuid::now_v7(),
            device.tenant_id.0,
            EntityType::Device,
            device.id.0,
            now,
            Actor::device(device.id.0),
            TelemetryData::Timeseries { batches },
        );
        let points = self.publish_message(message).await?;
        self.device_activity_quiet(device).await;
        Ok(points)
    }

    /// Publishes a device's client attributes (a flat JSON object) as one message; returns the
    /// number of attributes once JetStream has acknowledged it. Counts as device activity.
    pub async fn publish_client_attributes(&self, device: &Device, payload: &[u8]) -> Result<usize> {
        let json = self.parse_payload(payload)?;
        self.admit_device_message(device, 0)?;
        self.publish_client_attributes_json(device, &json).await
    }

    /// [`Platform::publish_client_attributes`] for a payload already parsed (gateway
    /// sub-devices, whose messages the gateway's rate admitted).
    pub async fn publish_client_attributes_json(&self, device: &Device, payload: &Value) -> Result<usize> {
        let values = parse_attributes(payload).map_err(|e| Error::bad_payload(e.to_string()))?;
        let message = self.attributes_message(
            device.tenant_id,
            device.id.entity_id(),
            AttributeScope::ClientScope,
            values,
            Actor::device(device.id.0),
        );
        let count = self.publish_message(message).await?;
        self.device_activity_quiet(device).await;
        Ok(count)
    }

    /// Saves time series over REST (`POST …/timeseries/{scope}`): the device payload shapes.
    pub async fn save_telemetry(&self, p: &Principal, entity: EntityId, payload: &Value) -> Result<usize> {
        let (tenant, _) = self.telemetry_owner(entity)?;
        p.check_write(tenant)?;
        let now = self.now_ms();
        let batches = parse_telemetry(payload, now).map_err(|e| Error::bad_payload(e.to_string()))?;
        let message = TelemetryMessage::new(
            Uuid::now_v7(),
            tenant.0,
            entity.entity_type,
            entity.id,
            now,
            p.actor(),
            TelemetryData::Timeseries { batches },
        );
        self.publish_message(message).await
    }

    /// The entity's latest value per time-series key (of `keys` when given), from memory.
    pub fn latest_timeseries(&self, p: &Principal, entity: EntityId, keys: Option<&[String]>) -> Result<Vec<LatestPoint>> {
        let key = self.check_telemetry_read(p, entity)?;
        Ok(self.latest().latest_timeseries(key, keys))
    }

    /// The entity's time-series keys.
    pub fn timeseries_keys(&self, p: &Principal, entity: EntityId) -> Result<Vec<String>> {
        let key = self.check_telemetry_read(p, entity)?;
        Ok(self.latest().timeseries_keys(key))
    }

    /// Refuses oversized payloads and parses JSON, keeping the parser's message.
    fn parse_payload(&self, payload: &[u8]) -> Result<Value> {
        self.check_payload_size(payload)?;
        serde_json::from_slice(payload).map_err(|e| Error::bad_payload(e.to_string()))
    }

    fn check_payload_size(&self, payload: &[u8]) -> Result<()> {
        let limit = self.config().telemetry.max_payload_bytes;
        if payload.len() > limit {
            return Err(Error::PayloadTooLarge { size: payload.len(), limit });
        }
        Ok(())
    }

    pub(crate) fn attributes_message(
        &self,
        tenant: TenantId,
        entity: EntityId,
        scope: AttributeScope,
        values: Vec<KvEntry>,
        actor: Actor,
    ) -> TelemetryMessage {
        let now = self.now_ms();
        TelemetryMessage::new(
            Uuid::now_v7(),
            tenant.0,
            entity.entity_type,
            entity.id,
            now,
            actor,
            TelemetryData::Attributes { scope, ts: now, values },
        )
    }

    /// Publishes one message (nothing when it carries no point), waits for the acknowledgement
    /// and applies it to the latest values at once (read your writes). Returns its point count.
    pub(crate) async fn publish_message(&self, message: TelemetryMessage) -> Result<usize> {
        let points = message.point_count();
        if points == 0 {
            return Ok(0);
        }
        // Counted in flight until acknowledged: the follower tells an own publish whose
        // acknowledgement is on its way from another writer's message by it.
        let own = self.latest().publishing();
        let message = Arc::new(message);
        let seq = self.telemetry_store().publish(&message).await?;
        own.acked(seq, message);
        Ok(points)
    }

    /// The tenant and customer owning an entity that may carry telemetry and attributes.
    pub(crate) fn telemetry_owner(&self, entity: EntityId) -> Result<(TenantId, CustomerId)> {
        let entities = self.view().read();
        let not_found = || Error::not_found(entity.entity_type, entity.id);
        match entity.entity_type {
            EntityType::Device => {
                let d = entities.devices.get(&entity.id).and_then(|v| v.state.as_live()).ok_or_else(not_found)?;
                Ok((d.tenant_id, d.customer_id))
            }
            EntityType::Asset => {
                let a = entities.assets.get(&entity.id).and_then(|v| v.state.as_live()).ok_or_else(not_found)?;
                Ok((a.tenant_id, a.customer_id))
            }
            EntityType::Customer => {
                let c = entities.customers.get(&entity.id).and_then(|v| v.state.as_live()).ok_or_else(not_found)?;
                Ok((c.tenant_id, c.id))
            }
            EntityType::Tenant => {
                entities.tenants.get(&entity.id).and_then(|v| v.state.as_live()).ok_or_else(not_found)?;
                Ok((TenantId(entity.id), CustomerId::NULL))
            }
            other => Err(Error::UnsupportedEntityType { entity_type: other }),
        }
    }

    /// Checks that the caller may read the entity's values; returns the entity with its tenant,
    /// the key of its latest values and subscriptions.
    pub(crate) fn check_telemetry_read(&self, p: &Principal, entity: EntityId) -> Result<TenantEntityId> {
        let (tenant, customer) = self.telemetry_owner(entity)?;
        p.check_read(tenant, customer)?;
        Ok(TenantEntityId::new(tenant, entity))
    }
}
