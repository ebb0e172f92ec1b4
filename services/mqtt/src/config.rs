//! Settings of the MQTT transport, including the session limits answered to `getSessionLimits`
//! (the rate limits there are the platform's, [`thinglake_platform::QuotaConfig`]).

use std::time::Duration;

/// Settings of the MQTT transport.
#[derive(Debug, Clone)]
pub struct MqttConfig {
    /// Largest accepted PUBLISH payload in bytes; larger ones close the connection (MQTT 5
    /// DISCONNECT reason 0x95). Also answered as `maxPayloadSize`.
    pub max_payload_size: usize,
    /// QoS 1 publishes of one connection waiting for their JetStream acknowledgement at once;
    /// further packets are not read until one completes (back-pressure). Also the MQTT 5
    /// Receive Maximum and the answered `maxInflightMessages`.
    pub max_inflight: u16,
    /// How long a new connection may take to send its CONNECT.
    pub connect_timeout: Duration,
    /// Most connections held at once; more are refused (CONNACK "server unavailable").
    pub max_connections: usize,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            max_payload_size: 64 * 1024,
            max_inflight: 100,
            connect_timeout: Duration::from_secs(10),
            max_connections: 100_000,
        }
    }
}

impl MqttConfig {
    /// Largest packet the reader frames: the payload limit plus room for the topic and properties,
    /// so an oversized payload is recognised as such instead of as a broken frame.
    pub(crate) fn max_packet_size(&self) -> usize {
        self.max_payload_size.saturating_add(64 * 1024)
    }
}
