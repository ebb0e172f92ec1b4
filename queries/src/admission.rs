//! How many queries run at once: an analyst's SQL holds permits of its user, its tenant and the
//! node, and is refused (never queued) when one of them is taken up, so a client sees at once that
//! it must wait; a dashboard's time-series query holds a permit of its tenant only, from a pool of
//! its own, and waits for one within the time limit. SQL therefore never holds what a dashboard
//! needs, and one tenant's dashboards cannot take every dashboard permit.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thinglake_domain::{TenantId, UserId};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{QueryError, Result};

/// Concurrency limits of the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConcurrencyLimits {
    /// SQL statements one user may run at once.
    pub sql_per_user: usize,
    /// SQL statements one tenant's users may run at once.
    pub sql_per_tenant: usize,
    /// SQL statements the node runs at once.
    pub sql_per_node: usize,
    /// Dashboard queries (time-series REST and WebSocket) one tenant may run at once; more wait.
    pub dashboard_per_tenant: usize,
}

impl Default for ConcurrencyLimits {
    fn default() -> Self {
        Self { sql_per_user: 2, sql_per_tenant: 4, sql_per_node: 8, dashboard_per_tenant: 16 }
    }
}

/// Permits held while a query runs; dropping it frees them.
#[derive(Debug)]
pub struct QueryPermit {
    _held: Vec<OwnedSemaphorePermit>,
}

/// The permit pools.
#[derive(Debug)]
pub(crate) struct Admission {
    limits: ConcurrencyLimits,
    sql_node: Arc<Semaphore>,
    sql_users: Pools<UserId>,
    sql_tenants: Pools<TenantId>,
    dashboard_tenants: Pools<TenantId>,
}

/// Semaphores by key, made on first use and forgotten when idle.
#[derive(Debug)]
struct Pools<K>(Mutex<HashMap<K, Arc<Semaphore>>>);

impl<K> Default for Pools<K> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

/// Keys kept before idle pools are forgotten.
const IDLE_POOLS_KEPT: usize = 1024;

impl<K: Eq + Hash> Pools<K> {
    fn of(&self, key: K, permits: usize) -> Arc<Semaphore> {
        let mut pools = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if pools.len() > IDLE_POOLS_KEPT {
            pools.retain(|_, pool| Arc::strong_count(pool) > 1 || pool.available_permits() < permits);
        }
        pools.entry(key).or_insert_with(|| Arc::new(Semaphore::new(permits))).clone()
    }
}

impl Admission {
    pub(crate) fn new(limits: ConcurrencyLimits) -> Self {
        let sql_node = Arc::new(Semaphore::new(limits.sql_per_node.max(1)));
        Self { limits, sql_node, sql_users: Pools::default(), sql_tenants: Pools::default(), dashboard_tenants: Pools::default() }
    }

    /// Permits for one SQL statement of `user` of `tenant`, or [`QueryError::Busy`] at once.
    pub(crate) fn admit_sql(&self, tenant: TenantId, user: UserId) -> Result<QueryPermit> {
        let limits = &self.limits;
        let user_pool = self.sql_users.of(user, limits.sql_per_user.max(1));
        let tenant_pool = self.sql_tenants.of(tenant, limits.sql_per_tenant.max(1));
        let busy = |scope: &'static str, limit: usize| QueryError::Busy { scope, limit };
        let held = vec![
            user_pool.try_acquire_owned().map_err(|_| busy("your user", limits.sql_per_user))?,
            tenant_pool.try_acquire_owned().map_err(|_| busy("your tenant", limits.sql_per_tenant))?,
            self.sql_node.clone().try_acquire_owned().map_err(|_| busy("this node", limits.sql_per_node))?,
        ];
        Ok(QueryPermit { _held: held })
    }

    /// A permit for one dashboard query of `tenant`, waiting up to `wait` for one.
    pub(crate) async fn admit_dashboard(&self, tenant: TenantId, wait: Duration) -> Result<QueryPermit> {
        let limit = self.limits.dashboard_per_tenant.max(1);
        let pool = self.dashboard_tenants.of(tenant, limit);
        match tokio::time::timeout(wait, pool.acquire_owned()).await {
            Ok(Ok(permit)) => Ok(QueryPermit { _held: vec![permit] }),
            _ => Err(QueryError::Busy { scope: "your tenant's dashboards", limit }),
        }
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn tenant(n: u128) -> TenantId {
        TenantId(Uuid::from_u128(n))
    }

    fn user(n: u128) -> UserId {
        UserId(Uuid::from_u128(n))
    }

    #[test]
    fn sql_past_a_users_limit_is_refused_and_freed_permits_admit_again() {
        let admission = Admission::new(ConcurrencyLimits { sql_per_user: 1, sql_per_tenant: 2, sql_per_node: 3, dashboard_per_tenant: 1 });
        let first = admission.admit_sql(tenant(1), user(1)).expect("first");
        assert!(matches!(admission.admit_sql(tenant(1), user(1)), Err(QueryError::Busy { scope: "your user", limit: 1 })));
        let other = admission.admit_sql(tenant(1), user(2)).expect("another user");
        assert!(matches!(admission.admit_sql(tenant(1), user(3)), Err(QueryError::Busy { scope: "your tenant", limit: 2 })));
        let third = admission.admit_sql(tenant(2), user(4)).expect("another tenant");
        assert!(matches!(admission.admit_sql(tenant(3), user(5)), Err(QueryError::Busy { scope: "this node", limit: 3 })));
        drop((first, other, third));
        admission.admit_sql(tenant(1), user(1)).expect("freed");
    }
}
