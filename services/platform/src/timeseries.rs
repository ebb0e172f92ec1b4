//! Time-series history and SQL through the query engine: ThingsBoard's range queries (raw and
//! aggregated) with the same access rules as the other telemetry reads, and read-only SQL over
//! the caller's views (`telemetry`, `events`, `devices`, `assets`, `customers`, `relations`,
//! `attributes`, `latest`), narrowed to a customer user's customer as its REST reads are.

use std::collections::HashSet;

use thinglake_domain::customer::Customer;
use thinglake_domain::user::Authority;
use thinglake_domain::{CustomerId, EntityId, EntityType, TenantEntityId, TenantId};
use thinglake_queries::{
    AssetRow, AttributeRow, CustomerRow, DeviceRow, LatestRow, QueryEngine, RelationRow, ScalarValue, SqlBatches, SqlDescription,
    SqlFormat, SqlResult, TenantViews, TimeseriesQuery, TimeseriesResult,
};
use uuid::Uuid;

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
        let engine = self.query_engine()?;
        query.validate_within(engine.config().max_intervals)?;
        if query.keys.is_empty() {
            query.keys = self.latest().timeseries_keys(TenantEntityId::new(tenant, entity));
        }
        Ok(engine.timeseries(tenant, entity, query).await?)
    }

    /// A read-only SQL statement over the caller's views, rows of JSON values: tenant
    /// administrators see their tenant's rows and its audit trail (`events`), customer users only
    /// their customer, its devices and assets, and those entities' telemetry and attributes; the
    /// system administrator is refused. Each statement holds SQL permits of its user, tenant and
    /// node while it runs ([`QueryEngine::admit_sql`]); past one of their limits it is refused.
    pub async fn sql(&self, p: &Principal, text: &str) -> Result<SqlResult> {
        let (tenant, views) = self.sql_scope(p)?;
        let engine = self.query_engine()?;
        let _permit = engine.admit_sql(tenant, p.user_id)?;
        Ok(engine.sql(tenant, text, views).await?)
    }

    /// The same statement's answer as Arrow schema and batches, with the values of its `$n`
    /// placeholders (the PostgreSQL wire protocol).
    pub async fn sql_batches(&self, p: &Principal, text: &str, params: Vec<ScalarValue>) -> Result<SqlBatches> {
        let (tenant, views) = self.sql_scope(p)?;
        let engine = self.query_engine()?;
        let _permit = engine.admit_sql(tenant, p.user_id)?;
        Ok(engine.sql_batches(tenant, text, views, params).await?)
    }

    /// The statement's placeholder types and result columns, planned but not run.
    pub async fn sql_describe(&self, p: &Principal, text: &str) -> Result<SqlDescription> {
        let (tenant, views) = self.sql_scope(p)?;
        Ok(self.query_engine()?.sql_describe(tenant, text, views).await?)
    }

    /// The same statement's answer encoded as `format` (Arrow IPC, Parquet, JSON).
    pub async fn sql_encoded(&self, p: &Principal, text: &str, format: SqlFormat) -> Result<Vec<u8>> {
        let (tenant, views) = self.sql_scope(p)?;
        let engine = self.query_engine()?;
        let _permit = engine.admit_sql(tenant, p.user_id)?;
        Ok(engine.sql_encoded(tenant, text, views, format).await?)
    }

    /// Whose rows a SQL statement of `p` sees: the tenant and the views narrowed to the caller.
    fn sql_scope(&self, p: &Principal) -> Result<(TenantId, TenantViews)> {
        let tenant = p.require_tenant_user()?;
        Ok((tenant, self.sql_views(p, tenant)?))
    }

    /// The read-model rows the caller may see, and (for a customer user) the entities its lake
    /// views are narrowed to.
    fn sql_views(&self, p: &Principal, tenant: TenantId) -> Result<TenantViews> {
        let text = |id: Uuid| id.to_string();
        let customer_of = |c: CustomerId| (!c.is_null()).then(|| text(c.0));
        let devices: Vec<DeviceRow> = self
            .devices(p, None, None)?
            .into_iter()
            .map(|v| DeviceRow {
                id: text(v.device.id.0),
                name: v.device.fields.name,
                device_type: v.profile_name,
                label: v.device.fields.label,
                customer_id: customer_of(v.device.customer_id),
                created_time: v.device.created_time,
            })
            .collect();
        let assets: Vec<AssetRow> = self
            .assets(p, None, None)?
            .into_iter()
            .map(|v| AssetRow {
                id: text(v.asset.id.0),
                name: v.asset.fields.name,
                asset_type: v.profile_name,
                label: v.asset.fields.label,
                customer_id: customer_of(v.asset.customer_id),
                created_time: v.asset.created_time,
            })
            .collect();
        let entities = self.view().read();
        let customers: Vec<&Customer> = entities
            .customers
            .values()
            .filter_map(|v| v.state.as_live())
            .filter(|c| c.tenant_id == tenant && p.customer_scope().is_none_or(|mine| c.id == mine))
            .collect();
        // Every entity whose attributes and time series the caller may read (as the REST reads
        // decide it): devices, assets, customers, and the tenant itself for its administrator.
        let mut visible: Vec<EntityId> = Vec::new();
        if p.customer_scope().is_none() {
            visible.push(tenant.entity_id());
        }
        visible.extend(customers.iter().map(|c| c.id.entity_id()));
        visible.extend(devices.iter().filter_map(|d| d.id.parse().ok().map(|id| EntityId::new(EntityType::Device, id))));
        visible.extend(assets.iter().filter_map(|a| a.id.parse().ok().map(|id| EntityId::new(EntityType::Asset, id))));
        let visible_set: HashSet<EntityId> = visible.iter().copied().collect();
        let relations = entities
            .relations
            .values()
            .filter(|v| v.tenant_id == tenant.0)
            .filter_map(|v| v.state.as_live())
            .filter(|r| p.customer_scope().is_none() || (visible_set.contains(&r.key.from) && visible_set.contains(&r.key.to)))
            .map(|r| RelationRow {
                from_type: r.key.from.entity_type.as_str().to_string(),
                from_id: text(r.key.from.id),
                to_type: r.key.to.entity_type.as_str().to_string(),
                to_id: text(r.key.to.id),
                relation_type: r.key.relation_type.clone(),
                type_group: r.key.type_group.as_str().to_string(),
                additional_info: (!r.additional_info.is_null()).then(|| r.additional_info.to_string()),
                created_time: r.created_time,
            })
            .collect();
        let customers = customers
            .into_iter()
            .map(|c| {
                let contact = &c.fields.contact;
                CustomerRow {
                    id: text(c.id.0),
                    title: c.fields.title.clone(),
                    email: contact.email.clone(),
                    phone: contact.phone.clone(),
                    country: contact.country.clone(),
                    state: contact.state.clone(),
                    city: contact.city.clone(),
                    address: contact.address.clone(),
                    zip: contact.zip.clone(),
                    created_time: c.created_time,
                }
            })
            .collect();
        drop(entities);
        let latest = self.latest();
        let mut attributes = Vec::new();
        let mut latest_rows = Vec::new();
        // Read by the caller's tenant: never another tenant's entity that carries the same id.
        for entity in &visible {
            let (key, entity_type, id) = (TenantEntityId::new(tenant, *entity), entity.entity_type.as_str(), entity.id);
            attributes.extend(latest.attributes(key, None, None).into_iter().map(|a| AttributeRow {
                entity_type: entity_type.to_string(),
                entity_id: text(id),
                scope: a.scope.as_str().to_string(),
                key: a.key,
                value: a.value,
                last_update_ts: a.last_update_ts,
            }));
            latest_rows.extend(latest.latest_timeseries(key, None).into_iter().map(|l| LatestRow {
                entity_type: entity_type.to_string(),
                entity_id: text(id),
                key: l.key,
                ts: l.ts,
                value: l.value,
            }));
        }
        let visible_entities = p.customer_scope().map(|_| visible.iter().map(|e| text(e.id)).collect());
        // The audit trail is the tenant administrator's, as the history REST API: a customer
        // user's session has no `events` view.
        let audit_trail = p.authority == Authority::TenantAdmin;
        Ok(TenantViews { devices, assets, customers, relations, attributes, latest: latest_rows, visible_entities, audit_trail })
    }
}
