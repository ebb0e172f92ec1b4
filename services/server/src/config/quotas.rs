//! The quota options of `thinglake run`: device and tenant message rates, and per-tenant
//! entity caps ([`thinglake_platform::QuotaConfig`]), with the defaults `docs/operations.md`
//! documents. [`crate::Settings::new`] (tests, embedding) limits nothing; `thinglake run`
//! starts from the defaults below.

use clap::Args;
use thinglake_platform::{EntityLimits, QuotaConfig, RateLimit};

/// Messages of one device, ThingsBoard's `count:seconds` pairs: 1000 in a second, 30000 a minute.
pub const DEVICE_MESSAGES: &str = "1000:1,30000:60";
/// Time-series data points of one device.
pub const DEVICE_DATA_POINTS: &str = "100000:1,3000000:60";
/// Messages of all devices of one tenant.
pub const TENANT_MESSAGES: &str = "10000:1,300000:60";
/// Time-series data points of all devices of one tenant.
pub const TENANT_DATA_POINTS: &str = "1000000:1,30000000:60";
/// Entity caps per tenant.
pub const ENTITY_LIMITS: EntityLimits =
    EntityLimits { max_devices: 100_000, max_assets: 100_000, max_customers: 10_000, max_dashboards: 10_000, max_profiles: 1_000 };

/// Help heading of the quotas, and the config file's table of them is `[quotas]`.
pub(crate) const HEADING: &str = "Quotas";

/// The quota options (in the config file's `[quotas]` table).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = HEADING)]
pub struct QuotaArgs {
    /// Message rate of one device over MQTT, HTTP and NATS (a gateway's messages for its
    /// sub-devices count as its own), as ThingsBoard's `count:seconds` pairs; empty: none.
    /// Answered to `getSessionLimits`.
    #[arg(long, env = "THINGLAKE_DEVICE_MESSAGE_RATE", default_value = DEVICE_MESSAGES)]
    pub device_message_rate: RateLimit,
    /// Time-series data-point rate of one device.
    #[arg(long, env = "THINGLAKE_DEVICE_DATA_POINT_RATE", default_value = DEVICE_DATA_POINTS)]
    pub device_data_point_rate: RateLimit,
    /// Message rate of all devices of one tenant.
    #[arg(long, env = "THINGLAKE_TENANT_MESSAGE_RATE", default_value = TENANT_MESSAGES)]
    pub tenant_message_rate: RateLimit,
    /// Time-series data-point rate of all devices of one tenant.
    #[arg(long, env = "THINGLAKE_TENANT_DATA_POINT_RATE", default_value = TENANT_DATA_POINTS)]
    pub tenant_data_point_rate: RateLimit,
    /// Most devices of one tenant, gateway sub-devices included; 0: no limit.
    #[arg(long, env = "THINGLAKE_MAX_DEVICES_PER_TENANT", default_value_t = ENTITY_LIMITS.max_devices)]
    pub max_devices_per_tenant: usize,
    /// Most assets of one tenant; 0: no limit.
    #[arg(long, env = "THINGLAKE_MAX_ASSETS_PER_TENANT", default_value_t = ENTITY_LIMITS.max_assets)]
    pub max_assets_per_tenant: usize,
    /// Most customers of one tenant; 0: no limit.
    #[arg(long, env = "THINGLAKE_MAX_CUSTOMERS_PER_TENANT", default_value_t = ENTITY_LIMITS.max_customers)]
    pub max_customers_per_tenant: usize,
    /// Most dashboards of one tenant; 0: no limit.
    #[arg(long, env = "THINGLAKE_MAX_DASHBOARDS_PER_TENANT", default_value_t = ENTITY_LIMITS.max_dashboards)]
    pub max_dashboards_per_tenant: usize,
    /// Most device and asset profiles of one tenant together (a gateway's new device types
    /// included); 0: no limit.
    #[arg(long, env = "THINGLAKE_MAX_PROFILES_PER_TENANT", default_value_t = ENTITY_LIMITS.max_profiles)]
    pub max_profiles_per_tenant: usize,
}

impl QuotaArgs {
    /// The quotas these options set.
    pub fn config(&self) -> QuotaConfig {
        QuotaConfig {
            device_messages: self.device_message_rate.clone(),
            device_data_points: self.device_data_point_rate.clone(),
            tenant_messages: self.tenant_message_rate.clone(),
            tenant_data_points: self.tenant_data_point_rate.clone(),
            entities: EntityLimits {
                max_devices: self.max_devices_per_tenant,
                max_assets: self.max_assets_per_tenant,
                max_customers: self.max_customers_per_tenant,
                max_dashboards: self.max_dashboards_per_tenant,
                max_profiles: self.max_profiles_per_tenant,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RunArgs;

    #[test]
    fn run_limits_by_default_and_options_override_or_lift_limits() {
        let q = RunArgs::try_parse_from::<_, &str>([]).expect("valid").quotas.config();
        assert_eq!(q.device_messages.to_string(), DEVICE_MESSAGES);
        assert_eq!(q.entities, ENTITY_LIMITS);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("thinglake.toml");
        std::fs::write(&path, "[quotas]\ndevice_message_rate = \"5:1\"\nmax_assets_per_tenant = 3\n").expect("write");
        let config = path.to_str().expect("a UTF-8 path");
        let flags = ["--config", config, "--device-message-rate=", "--max-devices-per-tenant=0"];
        let q = RunArgs::try_parse_from(flags).expect("valid").quotas.config();
        assert!(q.device_messages.is_unlimited(), "the flag wins over the file");
        assert_eq!((q.entities.max_devices, q.entities.max_assets), (0, 3));
    }
}
