//! The MQTT device transport's options: its plain and TLS listeners and what one connection holds.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use clap::Args;

use crate::config::MqttTls;

/// The MQTT listeners.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "MQTT")]
pub struct MqttArgs {
    /// Address the MQTT device transport listens on.
    #[arg(long, env = "THINGLAKE_MQTT_HOST", default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    pub mqtt_host: IpAddr,
    /// Port of the MQTT device transport (0 picks a free port).
    #[arg(long, env = "THINGLAKE_MQTT_PORT", default_value_t = 1883)]
    pub mqtt_port: u16,
    /// QoS 1 publishes of one MQTT connection awaiting JetStream's acknowledgement at once
    /// (MQTT 5 Receive Maximum; `maxInflightMessages` of getSessionLimits).
    #[arg(long, env = "THINGLAKE_MQTT_MAX_INFLIGHT", default_value_t = 100)]
    pub mqtt_max_inflight: u16,
    /// Most MQTT connections held at once.
    #[arg(long, env = "THINGLAKE_MQTT_MAX_CONNECTIONS", default_value_t = 100_000)]
    pub mqtt_max_connections: usize,
    /// PEM certificate chain of the MQTT TLS listener; with `--mqtt-tls-key` it turns the
    /// listener on (MQTT over TLS beside plain MQTT).
    #[arg(long, env = "THINGLAKE_MQTT_TLS_CERT")]
    pub mqtt_tls_cert: Option<PathBuf>,
    /// PEM private key of the MQTT TLS listener's certificate.
    #[arg(long, env = "THINGLAKE_MQTT_TLS_KEY")]
    pub mqtt_tls_key: Option<PathBuf>,
    /// Port of the MQTT TLS listener (on the MQTT host; 0 picks a free port).
    #[arg(long, env = "THINGLAKE_MQTT_TLS_PORT", default_value_t = 8883)]
    pub mqtt_tls_port: u16,
}

impl MqttArgs {
    /// The TLS listener's files: both or neither.
    pub(crate) fn tls(&self) -> anyhow::Result<Option<MqttTls>> {
        MqttTls::pair(self.mqtt_tls_cert.clone(), self.mqtt_tls_key.clone(), "MQTT over TLS needs both mqtt_tls_cert and mqtt_tls_key")
    }
}
