//! Client-side RPC over MQTT (`v1/devices/me/rpc/request/{n}`): the platform answers
//! `getSessionLimits` itself, from the transport's configured limits and the platform's enforced
//! rates, as the ThingsBoard SDKs expect right after connecting. Other methods are answered with `{"error": …}` until rule
//! chains can handle them.

use bytes::Bytes;
use serde_json::{Value, json};
use thinglake_domain::device::Device;
use thinglake_platform::QuotaConfig;

use crate::codec::Outbound;
use crate::config::MqttConfig;
use crate::step::{Handled, Step};
use crate::topics;

/// The method the SDKs call to learn the server's limits.
pub(crate) const GET_SESSION_LIMITS: &str = "getSessionLimits";

/// Answers a device's client-side RPC request `id`.
pub(crate) fn client_request(
    config: &MqttConfig,
    quotas: &QuotaConfig,
    device: &Device,
    is_gateway: bool,
    id: &str,
    payload: &[u8],
) -> Handled {
    let request: Value =
        serde_json::from_slice(payload).map_err(|e| thinglake_platform::Error::bad_payload(e.to_string()))?;
    let method = request.get("method").and_then(Value::as_str).unwrap_or_default();
    let answer = match method {
        GET_SESSION_LIMITS => session_limits(config, quotas, is_gateway),
        "" => json!({"error": "the request has no 'method'"}),
        other => {
            tracing::debug!(device = %device.id.0, method = other, "unsupported client-side RPC");
            json!({"error": format!("unsupported method '{other}'")})
        }
    };
    Ok(Step::packets(vec![Outbound::Publish {
        topic: format!("{}{id}", topics::RPC_RESPONSE),
        payload: Bytes::from(answer.to_string()),
    }]))
}

/// ThingsBoard's session limits answer: the device rates the platform enforces (a device's
/// telemetry messages count against its message rate; a gateway's rate covers what it sends
/// for its sub-devices).
pub(crate) fn session_limits(config: &MqttConfig, quotas: &QuotaConfig, is_gateway: bool) -> Value {
    let limits = json!({
        "messages": quotas.device_messages.to_string(),
        "telemetryMessages": quotas.device_messages.to_string(),
        "telemetryDataPoints": quotas.device_data_points.to_string(),
    });
    let mut answer = json!({
        "maxPayloadSize": config.max_payload_size,
        "maxInflightMessages": config.max_inflight,
        "rateLimits": limits,
    });
    if is_gateway {
        answer["gatewayRateLimits"] = limits;
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_limits_come_from_the_configuration() {
        let config = MqttConfig { max_payload_size: 1000, max_inflight: 7, ..MqttConfig::default() };
        let quotas = QuotaConfig { device_messages: "100:1,3000:60".parse().expect("valid"), ..QuotaConfig::default() };
        let answer = session_limits(&config, &quotas, false);
        assert_eq!(answer["maxPayloadSize"], 1000);
        assert_eq!(answer["maxInflightMessages"], 7);
        assert_eq!(answer["rateLimits"]["messages"], "100:1,3000:60");
        assert_eq!(answer["rateLimits"]["telemetryMessages"], "100:1,3000:60");
        assert_eq!(answer["rateLimits"]["telemetryDataPoints"], "");
        assert!(answer.get("gatewayRateLimits").is_none());
        assert!(session_limits(&config, &quotas, true).get("gatewayRateLimits").is_some());
    }
}
