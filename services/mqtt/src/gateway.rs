//! ThingsBoard's gateway API: a device whose `additionalInfo.gateway` is true speaks for
//! sub-devices on `v1/gateway/...`. Sub-devices are found or created on first sight by the
//! platform ([`Platform::gateway_device`]: in the gateway's tenant, linked gateway → device by a
//! `Created` relation, recorded with the gateway as actor), and their telemetry and attributes are
//! stored as theirs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::{Map, Value, json};
use thinglake_domain::device::Device;
use thinglake_platform::{Error as PlatformError, Platform};

use crate::codec::Outbound;
use crate::device_api::parse_object;
use crate::step::{Handled, Step};
use crate::topics::{self, GatewayRoute};

/// The gateway side of one gateway connection; cheap to clone.
#[derive(Clone)]
pub(crate) struct Gateway {
    platform: Platform,
    device: Arc<Device>,
    /// Sub-devices connected through this gateway, by name. Never locked across an await.
    connected: Arc<Mutex<HashMap<String, Arc<Device>>>>,
}

impl Gateway {
    /// Whether the device may use the gateway API.
    pub(crate) fn is_gateway(device: &Device) -> bool {
        device.fields.additional_info.get("gateway").and_then(Value::as_bool).unwrap_or(false)
    }

    pub(crate) fn new(platform: Platform, device: Arc<Device>) -> Self {
        Gateway { platform, device, connected: Arc::default() }
    }

    /// The connected sub-devices.
    pub(crate) fn connected(&self) -> Vec<(String, Arc<Device>)> {
        self.lock().iter().map(|(n, d)| (n.clone(), d.clone())).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Device>>> {
        self.connected.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Handles a publish on a gateway topic.
    pub(crate) async fn handle(&self, route: GatewayRoute, payload: &[u8]) -> Handled {
        let body = parse_object(payload)?;
        // The gateway's rate counts every message it sends; telemetry with its data points
        // once checked ([`Gateway::per_device`]).
        if !matches!(route, GatewayRoute::Telemetry | GatewayRoute::Attributes) {
            self.platform.admit_device_message(&self.device, 0)?;
        }
        match route {
            GatewayRoute::Connect => {
                let name = device_name(&body)?;
                let device_type = body.get("type").and_then(Value::as_str).unwrap_or("default");
                let (device, first) = self.sub_device(name, device_type).await?;
                let mut step = Step::default();
                if first {
                    if let Err(e) = self.platform.device_connected(&device).await {
                        tracing::warn!(device = %device.id.0, error = %e, "recording a sub-device connect failed");
                    }
                    step.watch.push((name.to_string(), device));
                }
                Ok(step)
            }
            GatewayRoute::Disconnect => {
                let name = device_name(&body)?;
                let removed = self.lock().remove(name);
                if let Some(device) = removed
                    && let Err(e) = self.platform.device_disconnected(&device).await
                {
                    tracing::warn!(device = %device.id.0, error = %e, "recording a sub-device disconnect failed");
                }
                Ok(Step { unwatch: vec![name.to_string()], ..Step::default() })
            }
            GatewayRoute::Telemetry => self.per_device(body, Kind::Telemetry).await,
            GatewayRoute::Attributes => self.per_device(body, Kind::Attributes).await,
            GatewayRoute::AttributesRequest => self.attributes_request(&body).await,
            // The gateway's answer to a server-side RPC: accepted; delivery is later work.
            GatewayRoute::Rpc => Ok(Step::default()),
        }
    }

    /// `{"Name": payload, …}`: every sub-device's payload is checked before any is stored, so a
    /// refused message stores nothing.
    async fn per_device(&self, body: Map<String, Value>, kind: Kind) -> Handled {
        let mut points = 0;
        for value in body.values() {
            let valid = match kind {
                Kind::Telemetry => thinglake_domain::telemetry::parse_telemetry(value, 0)
                    .map(|batches| points += batches.iter().map(|b| b.point_count()).sum::<usize>()),
                Kind::Attributes => thinglake_domain::telemetry::parse_attributes(value).map(|_| ()),
            };
            valid.map_err(|e| PlatformError::bad_payload(e.to_string()))?;
        }
        self.platform.admit_device_message(&self.device, points)?;
        let mut step = Step::default();
        for (name, value) in &body {
            let (device, first) = self.sub_device(name, "default").await?;
            if first {
                step.watch.push((name.clone(), device.clone()));
            }
            match kind {
                Kind::Telemetry => self.platform.publish_telemetry_json(&device, value).await?,
                Kind::Attributes => self.platform.publish_client_attributes_json(&device, value).await?,
            };
        }
        Ok(step)
    }

    /// `{"id", "device", "client": bool, "key": k}` → `{"id", "device", "value"}`, or with
    /// `"keys": [...]` → `{"id", "device", "values": {…}}`.
    async fn attributes_request(&self, body: &Map<String, Value>) -> Handled {
        let name = device_name(body)?;
        let (device, _) = self.sub_device(name, "default").await?;
        let client = body.get("client").and_then(Value::as_bool).unwrap_or(false);
        let single = body.get("key").and_then(Value::as_str).map(String::from);
        let keys: Vec<String> = match (&single, body.get("keys")) {
            (Some(k), _) => vec![k.clone()],
            (None, Some(Value::Array(items))) => items.iter().filter_map(Value::as_str).map(String::from).collect(),
            (None, Some(Value::String(s))) => s.split(',').map(str::trim).filter(|k| !k.is_empty()).map(String::from).collect(),
            _ => Vec::new(),
        };
        let (client_values, shared_values) = if client {
            self.platform.device_attributes(&device, Some(&keys), None)
        } else {
            self.platform.device_attributes(&device, None, Some(&keys))
        };
        let values = if client { client_values } else { shared_values };
        let mut answer = json!({"id": body.get("id").cloned().unwrap_or(Value::Null), "device": name});
        match single {
            Some(k) => answer["value"] = values.get(&k).cloned().unwrap_or(Value::Null),
            None => answer["values"] = Value::Object(values),
        }
        Ok(Step::packets(vec![Outbound::Publish {
            topic: topics::GATEWAY_ATTRIBUTES_RESPONSE.into(),
            payload: Bytes::from(answer.to_string()),
        }]))
    }

    /// The named sub-device, created on first sight; `true` when it was not connected yet.
    async fn sub_device(&self, name: &str, device_type: &str) -> Result<(Arc<Device>, bool), PlatformError> {
        if let Some(device) = self.lock().get(name) {
            return Ok((device.clone(), false));
        }
        let device = Arc::new(self.platform.gateway_device(&self.device, name, device_type).await?);
        let mut connected = self.lock();
        let first = !connected.contains_key(name);
        let device = connected.entry(name.to_string()).or_insert(device).clone();
        Ok((device, first))
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Telemetry,
    Attributes,
}

fn device_name(body: &Map<String, Value>) -> Result<&str, PlatformError> {
    body.get("device")
        .and_then(Value::as_str)
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| PlatformError::bad_payload("'device' must name the sub-device"))
}
