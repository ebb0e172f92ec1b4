//! The quota options of `thinglake run`: device and tenant message rates, and per-tenant
//! entity caps ([`thinglake_platform::QuotaConfig`]), with the defaults `docs/operations.md`
//! documents. [`crate::Settings::new`] (tests, embedding) limits nothing; `thinglake run`
//! starts from [`defaults`].

use clap::Args;
use serde::Deserialize;
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

/// The quotas of `thinglake run` unless configured.
pub fn defaults() -> QuotaConfig {
    let rate = |text: &str| text.parse::<RateLimit>().expect("the default rates are valid");
    QuotaConfig {
        device_messages: rate(DEVICE_MESSAGES),
        device_data_points: rate(DEVICE_DATA_POINTS),
        tenant_messages: rate(TENANT_MESSAGES),
        tenant_data_points: rate(TENANT_DATA_POINTS),
        entities: ENTITY_LIMITS,
    }
}

/// Flags and environment variables of the quotas; the same keys in the config file.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaArgs {
    /// Message rate of one device over MQTT, HTTP and NATS (a gateway's messages for its
    /// sub-devices count as its own), as ThingsBoard's `count:seconds` pairs; empty: none
    /// (default 1000:1,30000:60). Answered to `getSessionLimits`.
    #[arg(long, env = "THINGLAKE_DEVICE_MESSAGE_RATE")]
    pub device_message_rate: Option<RateLimit>,
    /// Time-series data-point rate of one device (default 100000:1,3000000:60).
    #[arg(long, env = "THINGLAKE_DEVICE_DATA_POINT_RATE")]
    pub device_data_point_rate: Option<RateLimit>,
    /// Message rate of all devices of one tenant (default 10000:1,300000:60).
    #[arg(long, env = "THINGLAKE_TENANT_MESSAGE_RATE")]
    pub tenant_message_rate: Option<RateLimit>,
    /// Time-series data-point rate of all devices of one tenant (default 1000000:1,30000000:60).
    #[arg(long, env = "THINGLAKE_TENANT_DATA_POINT_RATE")]
    pub tenant_data_point_rate: Option<RateLimit>,
    /// Most devices of one tenant, gateway sub-devices included; 0: no limit (default 100000).
    #[arg(long, env = "THINGLAKE_MAX_DEVICES_PER_TENANT")]
    pub max_devices_per_tenant: Option<usize>,
    /// Most assets of one tenant; 0: no limit (default 100000).
    #[arg(long, env = "THINGLAKE_MAX_ASSETS_PER_TENANT")]
    pub max_assets_per_tenant: Option<usize>,
    /// Most customers of one tenant; 0: no limit (default 10000).
    #[arg(long, env = "THINGLAKE_MAX_CUSTOMERS_PER_TENANT")]
    pub max_customers_per_tenant: Option<usize>,
    /// Most dashboards of one tenant; 0: no limit (default 10000).
    #[arg(long, env = "THINGLAKE_MAX_DASHBOARDS_PER_TENANT")]
    pub max_dashboards_per_tenant: Option<usize>,
    /// Most device and asset profiles of one tenant together (a gateway's new device types
    /// included); 0: no limit (default 1000).
    #[arg(long, env = "THINGLAKE_MAX_PROFILES_PER_TENANT")]
    pub max_profiles_per_tenant: Option<usize>,
}

impl QuotaArgs {
    /// These options over `file`'s over [`defaults`].
    pub fn resolve(self, file: QuotaArgs) -> QuotaConfig {
        let mut q = defaults();
        let rate = |flag: Option<RateLimit>, file: Option<RateLimit>, default: &mut RateLimit| {
            if let Some(limit) = flag.or(file) {
                *default = limit;
            }
        };
        rate(self.device_message_rate, file.device_message_rate, &mut q.device_messages);
        rate(self.device_data_point_rate, file.device_data_point_rate, &mut q.device_data_points);
        rate(self.tenant_message_rate, file.tenant_message_rate, &mut q.tenant_messages);
        rate(self.tenant_data_point_rate, file.tenant_data_point_rate, &mut q.tenant_data_points);
        let e = &mut q.entities;
        e.max_devices = self.max_devices_per_tenant.or(file.max_devices_per_tenant).unwrap_or(e.max_devices);
        e.max_assets = self.max_assets_per_tenant.or(file.max_assets_per_tenant).unwrap_or(e.max_assets);
        e.max_customers = self.max_customers_per_tenant.or(file.max_customers_per_tenant).unwrap_or(e.max_customers);
        e.max_dashboards = self.max_dashboards_per_tenant.or(file.max_dashboards_per_tenant).unwrap_or(e.max_dashboards);
        e.max_profiles = self.max_profiles_per_tenant.or(file.max_profiles_per_tenant).unwrap_or(e.max_profiles);
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_limits_by_default_and_options_override_or_lift_limits() {
        let q = QuotaArgs::default().resolve(QuotaArgs::default());
        assert_eq!(q.device_messages.to_string(), DEVICE_MESSAGES);
        assert_eq!(q.entities, ENTITY_LIMITS);
        let flags = QuotaArgs { device_message_rate: Some("".parse().expect("empty")), max_devices_per_tenant: Some(0), ..QuotaArgs::default() };
        let file = QuotaArgs { device_message_rate: Some("5:1".parse().expect("valid")), max_assets_per_tenant: Some(3), ..QuotaArgs::default() };
        let q = flags.resolve(file);
        assert!(q.device_messages.is_unlimited(), "the flag wins over the file");
        assert_eq!((q.entities.max_devices, q.entities.max_assets), (0, 3));
    }
}
