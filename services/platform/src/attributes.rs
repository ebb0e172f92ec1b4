//! Attribute use cases: server and shared attributes saved and deleted over REST, attribute reads
//! for users and devices, and the push of shared-attribute changes to a device's connection.
//!
//! Every change is a message on the telemetry stream ([`thinglake_domain::telemetry::TelemetryData`]
//! `Attributes` / `AttributesDeleted`); reads come from the latest-values read model.

use serde_json::{Map, Value};
use thinglake_domain::device::Device;
use thinglake_domain::telemetry::{AttributeScope, TelemetryData, TelemetryMessage, parse_attributes};
use thinglake_domain::{Actor, EntityId};
use thinglake_projections::SharedUpdate;
use thinglake_projections::latest::AttributeValue;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::{Platform, Principal};

impl Platform {
    /// Saves server or shared attributes of an entity (a flat JSON object); returns how many.
    pub async fn save_attributes(
        &self,
        p: &Principal,
        entity: EntityId,
        scope: AttributeScope,
        payload: &Value,
    ) -> Result<usize> {
        if scope == AttributeScope::ClientScope {
            return Err(Error::ScopeNotWritable { scope: scope.as_str().to_string() });
        }
        let (tenant, _) = self.telemetry_owner(entity)?;
        p.check_write(tenant)?;
        let values = parse_attributes(payload).map_err(|e| Error::bad_payload(e.to_string()))?;
        let message = self.attributes_message(tenant, entity, scope, values, p.actor());
        self.publish_message(message).await
    }

    /// Deletes attribute keys of one scope of an entity.
    pub async fn delete_attributes(&self, p: &Principal, entity: EntityId, scope: AttributeScope, keys: &[String]) -> Result<()> {
        let (tenant, _) = self.telemetry_owner(entity)?;
        p.check_write(tenant)?;
        let keys: Vec<String> = keys.iter().filter(|k| !k.trim().is_empty()).cloned().collect();
        if keys.is_empty() {
            return Err(Error::bad_payload("keys must be specified"));
        }
        let message = TelemetryMessage::new(
            Uuid::now_v7(),
            tenant.0,
            entity.entity_type,
            entity.id,
            self.now_ms(),
            p.actor(),
            TelemetryData::AttributesDeleted { scope, keys },
        );
        self.publish_message(message).await?;
        Ok(())
    }

    /// The entity's attributes of `scope` (all scopes when `None`), narrowed to `keys`.
    pub fn attributes(
        &self,
        p: &Principal,
        entity: EntityId,
        scope: Option<AttributeScope>,
        keys: Option<&[String]>,
    ) -> Result<Vec<AttributeValue>> {
        let key = self.check_telemetry_read(p, entity)?;
        Ok(self.latest().attributes(key, scope, keys))
    }

    /// The entity's attribute keys of `scope` (all scopes when `None`), sorted and unique.
    pub fn attribute_keys(&self, p: &Principal, entity: EntityId, scope: Option<AttributeScope>) -> Result<Vec<String>> {
        let mut keys: Vec<String> = self.attributes(p, entity, scope, None)?.into_iter().map(|a| a.key).collect();
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// A device's attribute request, ThingsBoard's semantics: with no keys at all, every client
    /// and every shared attribute; with keys of one scope only, just those (the other scope
    /// empty). Returns (client, shared) as typed JSON.
    pub fn device_attributes(
        &self,
        device: &Device,
        client_keys: Option<&[String]>,
        shared_keys: Option<&[String]>,
    ) -> (Map<String, Value>, Map<String, Value>) {
        let client_keys = client_keys.filter(|k| !k.is_empty());
        let shared_keys = shared_keys.filter(|k| !k.is_empty());
        let fetch = |scope, keys: Option<&[String]>| -> Map<String, Value> {
            self.latest()
                .attributes(device.tenant_entity(), Some(scope), keys)
                .into_iter()
                .map(|a| (a.key, a.value.to_json()))
                .collect()
        };
        match (client_keys, shared_keys) {
            (None, None) => (fetch(AttributeScope::ClientScope, None), fetch(AttributeScope::SharedScope, None)),
            (Some(c), None) => (fetch(AttributeScope::ClientScope, Some(c)), Map::new()),
            (None, Some(s)) => (Map::new(), fetch(AttributeScope::SharedScope, Some(s))),
            (Some(c), Some(s)) => (fetch(AttributeScope::ClientScope, Some(c)), fetch(AttributeScope::SharedScope, Some(s))),
        }
    }

    /// Receives the device's shared-attribute changes made from now on, on any node: the
    /// latest-values follower feeds it from the telemetry stream. Drop the receiver to stop.
    pub fn subscribe_shared_updates(&self, device: &Device) -> broadcast::Receiver<SharedUpdate> {
        self.latest().subscribe_shared(device.tenant_entity())
    }

    /// Saves attributes on behalf of the system (device lifecycle).
    pub(crate) async fn save_system_attributes(
        &self,
        device: &Device,
        scope: AttributeScope,
        values: Vec<thinglake_domain::telemetry::KvEntry>,
    ) -> Result<usize> {
        let message = self.attributes_message(device.tenant_id, device.id.entity_id(), scope, values, Actor::system());
        self.publish_message(message).await
    }
}
