//! Time-series history and SQL through the query engine: ThingsBoard's range queries (raw and
//! aggregated) with the same access rules as the other telemetry reads, and read-only SQL for
//! tenant administrators over their tenant's views (`telemetry`, `devices`).

use thinglake_domain::EntityId;
use thinglake_queries::{DeviceRow, QueryEngine, SqlBatches, SqlFormat, SqlResult, TenantViews, TimeseriesQuery, TimeseriesResult};

use crate::error::{Error, Result};
use crate::{Platform, Principal};

impl Platform {
    /// Attaches the query engine (the server does it once the lake projections run). Returns
    /// `false` if one was attached already.
    pub fn attach_query_engine(&self, engine: QueryEngine) -> bool {
        self.inner.queries.set(engine).is_ok()
    }

    /// The query engine, once attached.
    pub fn query_engine(&self) -> Result<&QueryEngine> {
        self.inner.queries.get().ok_or(Error::QueryEngineUnavailable)
    }

    /// An entity's time series in `[startTs, endTs)`, raw or aggregated; every time-series key of
    /// the entity when `query.keys` is empty. Readable by whoever may read the entity.
    pub async fn timeseries(&self, p: &Principal, entity: EntityId, mut query: TimeseriesQuery) -> Result<TimeseriesResult> {
        let (tenant, customer) = self.telemetry_owner(entity)?;
        p.check_read(tenant, customer)?;
        query.validate()?;
        if query.keys.is_empty() {
            query.keys = self.latest().timeseries_keys(entity.id);
        }
        let engine = self.query_engine()?;
        Ok(engine.timeseries(&tenant.0.to_string(), entity.entity_type.as_str(), &entity.id.to_string(), query).await?)
    }

    /// A read-only SQL statement over the caller's tenant views (tenant administrators):
    /// `telemetry` and `devices`; rows of JSON values.
    pub async fn sql(&self, p: &Principal, text: &str) -> Result<SqlResult> {
        let (tenant, views) = self.sql_scope(p)?;
        Ok(self.query_engine()?.sql(&tenant, text, views).await?)
    }

    /// The same statement's answer as Arrow schema and batches (the PostgreSQL wire protocol).
    pub async fn sql_batches(&self, p: &Principal, text: &str) -> Result<SqlBatches> {
        let (tenant, views) = self.sql_scope(p)?;
        Ok(self.query_engine()?.sql_batches(&tenant, text, views).await?)
    }

    /// The same statement's answer encoded as `format` (Arrow IPC, Parquet, JSON).
    pub async fn sql_encoded(&self, p: &Principal, text: &str, format: SqlFormat) -> Result<Vec<u8>> {
        let (tenant, views) = self.sql_scope(p)?;
        Ok(self.query_engine()?.sql_encoded(&tenant, text, views, format).await?)
    }

    /// Whose rows a SQL statement of `p` sees: the tenant and its read-model views.
    fn sql_scope(&self, p: &Principal) -> Result<(String, TenantViews)> {
        let tenant = p.require_tenant_admin()?;
        let devices = self
            .devices(p, None, None)?
            .into_iter()
            .map(|v| DeviceRow {
                id: v.device.id.0.to_string(),
                name: v.device.fields.name,
                device_type: v.profile_name,
                label: v.device.fields.label,
                customer_id: (!v.device.customer_id.is_null()).then(|| v.device.customer_id.0.to_string()),
                created_time: v.device.created_time,
            })
            .collect();
        Ok((tenant.0.to_string(), TenantViews { devices }))
    }
}
