//! Quotas, in the spirit of ThingsBoard's tenant profile: how fast a device and a tenant may
//! send (messages and time-series data points, enforced on every device transport: MQTT, the HTTP
//! device API, the NATS ingress, a gateway's messages), and how many devices, assets, customers,
//! dashboards and profiles a tenant may hold (enforced on every creation: REST and a gateway's
//! sub-devices and their profiles).
//!
//! A message over its rate is refused at once with how long to wait ([`Error::RateLimited`]);
//! nothing waits, so a tenant at its rate slows no other. A creation over a cap is refused with
//! [`Error::EntityLimit`]. The defaults of `thinglake run` are in `docs/operations.md`;
//! [`QuotaConfig::default`] (embedding, tests) limits nothing.

use thinglake_domain::TenantId;
use thinglake_domain::device::Device;

pub use crate::error::{LimitScope, LimitedEntity};
use crate::error::{Error, Result};
use crate::rate_limit::{RateLimit, RateLimiter};
use crate::Platform;
use thinglake_projections::entities::live_of_tenant;

/// Rates and entity caps.
#[derive(Debug, Clone, Default)]
pub struct QuotaConfig {
    /// Messages of one device (a gateway's own, sub-devices' included); also the `messages`
    /// and `telemetryMessages` limits answered to `getSessionLimits`.
    pub device_messages: RateLimit,
    /// Time-series data points of one device; also `telemetryDataPoints`.
    pub device_data_points: RateLimit,
    /// Messages of all devices of one tenant.
    pub tenant_messages: RateLimit,
    /// Time-series data points of all devices of one tenant.
    pub tenant_data_points: RateLimit,
    pub entities: EntityLimits,
}

/// Most entities of each type per tenant; 0: no limit (ThingsBoard's tenant profile fields
/// `maxDevices`, `maxAssets`, `maxCustomers`, `maxDashboards`; profiles are counted together).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EntityLimits {
    pub max_devices: usize,
    pub max_assets: usize,
    pub max_customers: usize,
    pub max_dashboards: usize,
    /// Device and asset profiles together.
    pub max_profiles: usize,
}

/// The rate limiters of a platform, one per configured rate.
#[derive(Debug)]
pub(crate) struct Quotas {
    device_messages: RateLimiter,
    device_data_points: RateLimiter,
    tenant_messages: RateLimiter,
    tenant_data_points: RateLimiter,
}

impl Quotas {
    pub(crate) fn new(config: &QuotaConfig) -> Self {
        Self {
            device_messages: RateLimiter::new(config.device_messages.clone()),
            device_data_points: RateLimiter::new(config.device_data_points.clone()),
            tenant_messages: RateLimiter::new(config.tenant_messages.clone()),
            tenant_data_points: RateLimiter::new(config.tenant_data_points.clone()),
        }
    }
}

impl Platform {
    /// Admits one message of `device` carrying `points` time-series data points against the
    /// device's and its tenant's rates; a refused message takes nothing from any of them.
    pub fn admit_device_message(&self, device: &Device, points: usize) -> Result<()> {
        let q = &self.inner.quotas;
        let (d, t) = (device.id.0, device.tenant_id.0);
        let points = points as u64;
        let checks: [(&RateLimiter, uuid::Uuid, u64, LimitScope); 4] = [
            (&q.device_messages, d, 1, LimitScope::Device),
            (&q.device_data_points, d, points, LimitScope::Device),
            (&q.tenant_messages, t, 1, LimitScope::Tenant),
            (&q.tenant_data_points, t, points, LimitScope::Tenant),
        ];
        for (i, (limiter, key, n, scope)) in checks.iter().enumerate() {
            if let Err(retry_after) = limiter.try_take(*key, *n) {
                for (limiter, key, n, _) in &checks[..i] {
                    limiter.give_back(*key, *n);
                }
                return Err(Error::RateLimited { scope: *scope, retry_after });
            }
        }
        Ok(())
    }

    /// Refuses the creation of one more `entity` of `tenant` when the tenant is at its cap.
    /// Counted from the read model: creations racing each other may pass the cap by a few.
    pub(crate) fn check_entity_limit(&self, tenant: TenantId, entity: LimitedEntity) -> Result<()> {
        let limits = &self.config().quotas.entities;
        let limit = match entity {
            LimitedEntity::Device => limits.max_devices,
            LimitedEntity::Asset => limits.max_assets,
            LimitedEntity::Customer => limits.max_customers,
            LimitedEntity::Dashboard => limits.max_dashboards,
            LimitedEntity::Profile => limits.max_profiles,
        };
        if limit == 0 {
            return Ok(());
        }
        let e = self.view().read();
        let t = tenant.0;
        let count = match entity {
            LimitedEntity::Device => live_of_tenant(&e.devices, t).count(),
            LimitedEntity::Asset => live_of_tenant(&e.assets, t).count(),
            LimitedEntity::Customer => live_of_tenant(&e.customers, t).count(),
            LimitedEntity::Dashboard => live_of_tenant(&e.dashboards, t).count(),
            LimitedEntity::Profile => live_of_tenant(&e.device_profiles, t).count() + live_of_tenant(&e.asset_profiles, t).count(),
        };
        if count >= limit {
            return Err(Error::EntityLimit { entity, limit });
        }
        Ok(())
    }
}
