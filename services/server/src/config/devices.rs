//! The device options: payload size and the activity lifecycle, over every transport.

use std::time::Duration;

use clap::Args;
use thinglake_platform::TelemetryConfig;

use crate::config::duration;

/// What a device may send and when it counts as inactive.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Devices")]
pub struct DeviceArgs {
    /// Largest device payload accepted (MQTT, HTTP device API, NATS ingress), in bytes.
    #[arg(long, env = "THINGLAKE_MAX_PAYLOAD_BYTES", default_value_t = TelemetryConfig::default().max_payload_bytes)]
    pub max_payload_bytes: usize,
    /// A device with no activity for this long becomes inactive (`active = false`); seconds, or
    /// a duration (`10m`).
    #[arg(long, env = "THINGLAKE_INACTIVITY_TIMEOUT_SECS", default_value = "600", value_parser = duration::seconds)]
    pub inactivity_timeout_secs: Duration,
    /// At most one `lastActivityTime` update per device this often; seconds, or a duration.
    #[arg(long, env = "THINGLAKE_ACTIVITY_REPORT_SECS", default_value = "60", value_parser = duration::seconds)]
    pub activity_report_secs: Duration,
    /// How long a telemetry publish waits for JetStream's acknowledgement; milliseconds, or a
    /// duration (`5s`).
    #[arg(long, env = "THINGLAKE_PUBLISH_TIMEOUT_MS", default_value = "5000", value_parser = duration::milliseconds)]
    pub publish_timeout_ms: Duration,
}

impl DeviceArgs {
    pub(crate) fn telemetry(&self) -> TelemetryConfig {
        TelemetryConfig {
            max_payload_bytes: self.max_payload_bytes,
            inactivity_timeout: self.inactivity_timeout_secs,
            activity_report_interval: self.activity_report_secs,
            publish_timeout: self.publish_timeout_ms,
            ..TelemetryConfig::default()
        }
    }
}
