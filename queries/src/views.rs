//! Views a session gets from the in-memory read models (the entity view and the latest values),
//! already narrowed by the platform to what the caller may see: `devices`, `assets`,
//! `customers`, `relations`, `attributes` (current values by scope) and `latest` (the latest
//! time-series value per entity and key). They are as fresh as the read models, which apply a
//! caller's own writes at once.

use std::sync::Arc;

use deltalake_core::arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use deltalake_core::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake_core::datafusion::datasource::MemTable;
use thinglake_domain::telemetry::KvValue;

use crate::error::{QueryError, Result};

/// The name of the devices view.
pub const DEVICES: &str = "devices";
/// The name of the assets view.
pub const ASSETS: &str = "assets";
/// The name of the customers view.
pub const CUSTOMERS: &str = "customers";
/// The name of the relations view.
pub const RELATIONS: &str = "relations";
/// The name of the current-attributes view.
pub const ATTRIBUTES: &str = "attributes";
/// The name of the latest time-series values view (ThingsBoard's `ts_kv_latest`).
pub const LATEST: &str = "latest";

/// One device, as the `devices` view shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    pub id: String,
    pub name: String,
    /// The device profile's name (ThingsBoard's device `type`).
    pub device_type: String,
    pub label: Option<String>,
    /// `None` when not assigned to a customer.
    pub customer_id: Option<String>,
    pub created_time: i64,
}

/// One asset, as the `assets` view shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetRow {
    pub id: String,
    pub name: String,
    /// The asset profile's name (ThingsBoard's asset `type`).
    pub asset_type: String,
    pub label: Option<String>,
    /// `None` when not assigned to a customer.
    pub customer_id: Option<String>,
    pub created_time: i64,
}

/// One customer, as the `customers` view shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CustomerRow {
    pub id: String,
    pub title: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub country: Option<String>,
    pub state: Option<String>,
    pub city: Option<String>,
    pub address: Option<String>,
    pub zip: Option<String>,
    pub created_time: i64,
}

/// One relation, as the `relations` view shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationRow {
    pub from_type: String,
    pub from_id: String,
    pub to_type: String,
    pub to_id: String,
    pub relation_type: String,
    pub type_group: String,
    /// `additionalInfo` as JSON text; `None` when empty.
    pub additional_info: Option<String>,
    pub created_time: i64,
}

/// One attribute's current value, as the `attributes` view shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeRow {
    pub entity_type: String,
    pub entity_id: String,
    /// `CLIENT_SCOPE`, `SHARED_SCOPE` or `SERVER_SCOPE`.
    pub scope: String,
    pub key: String,
    pub value: KvValue,
    pub last_update_ts: i64,
}

/// One key's latest time-series value, as the `latest` view shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct LatestRow {
    pub entity_type: String,
    pub entity_id: String,
    pub key: String,
    pub ts: i64,
    pub value: KvValue,
}

/// The read-model rows a SQL session shows as views, and how far the lake views (`telemetry`,
/// `events`) are narrowed below the tenant.
#[derive(Debug, Clone, Default)]
pub struct TenantViews {
    pub devices: Vec<DeviceRow>,
    pub assets: Vec<AssetRow>,
    pub customers: Vec<CustomerRow>,
    pub relations: Vec<RelationRow>,
    pub attributes: Vec<AttributeRow>,
    pub latest: Vec<LatestRow>,
    /// The ids of the only entities whose telemetry and events the caller may see (a customer
    /// user: its customer and the devices and assets assigned to it); `None` for the whole
    /// tenant (a tenant administrator).
    pub visible_entities: Option<Vec<String>>,
    /// Whether the session has the `events` view, the audit trail (staff e-mails, every
    /// change): tenant administrators only, as the history REST API. Off by default.
    pub audit_trail: bool,
}

fn text(name: &str) -> Field {
    Field::new(name, DataType::Utf8, false)
}

fn optional_text(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}

fn long(name: &str) -> Field {
    Field::new(name, DataType::Int64, false)
}

/// ThingsBoard's typed value columns (as in `telemetry`); exactly one is set per row.
fn value_fields() -> [Field; 5] {
    [
        Field::new("bool_v", DataType::Boolean, true),
        Field::new("long_v", DataType::Int64, true),
        Field::new("dbl_v", DataType::Float64, true),
        optional_text("str_v"),
        optional_text("json_v"),
    ]
}

fn strings<R>(rows: &[R], f: impl Fn(&R) -> Option<&str>) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<StringArray>())
}

fn longs<R>(rows: &[R], f: impl Fn(&R) -> i64) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<Int64Array>())
}

/// The five value columns of `rows`.
fn value_columns<R>(rows: &[R], value: impl Fn(&R) -> &KvValue) -> [ArrayRef; 5] {
    let bools: BooleanArray = rows.iter().map(|r| if let KvValue::Bool(b) = value(r) { Some(*b) } else { None }).collect();
    let longs: Int64Array = rows.iter().map(|r| if let KvValue::Long(l) = value(r) { Some(*l) } else { None }).collect();
    let doubles: Float64Array =
        rows.iter().map(|r| if let KvValue::Double(d) = value(r) { Some(*d) } else { None }).collect();
    let texts: StringArray =
        rows.iter().map(|r| if let KvValue::String(s) = value(r) { Some(s.as_str()) } else { None }).collect();
    let jsons: StringArray =
        rows.iter().map(|r| if let KvValue::Json(j) = value(r) { Some(j.to_string()) } else { None }).collect();
    [Arc::new(bools), Arc::new(longs), Arc::new(doubles), Arc::new(texts), Arc::new(jsons)]
}

fn mem_table(view: &str, fields: Vec<Field>, columns: Vec<ArrayRef>) -> Result<MemTable> {
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns)
        .map_err(QueryError::arrow(format!("building the {view} view")))?;
    MemTable::try_new(schema, vec![vec![batch]]).map_err(QueryError::execution)
}

impl TenantViews {
    /// Every read-model view as an in-memory table, by name.
    pub(crate) fn tables(&self) -> Result<Vec<(&'static str, MemTable)>> {
        Ok(vec![
            (DEVICES, self.devices_table()?),
            (ASSETS, self.assets_table()?),
            (CUSTOMERS, self.customers_table()?),
            (RELATIONS, self.relations_table()?),
            (ATTRIBUTES, self.attributes_table()?),
            (LATEST, self.latest_table()?),
        ])
    }

    fn devices_table(&self) -> Result<MemTable> {
        let d = &self.devices;
        let fields =
            vec![text("id"), text("name"), text("type"), optional_text("label"), optional_text("customer_id"), long("created_time")];
        let columns = vec![
            strings(d, |r| Some(&r.id)),
            strings(d, |r| Some(&r.name)),
            strings(d, |r| Some(&r.device_type)),
            strings(d, |r| r.label.as_deref()),
            strings(d, |r| r.customer_id.as_deref()),
            longs(d, |r| r.created_time),
        ];
        mem_table(DEVICES, fields, columns)
    }

    fn assets_table(&self) -> Result<MemTable> {
        let a = &self.assets;
        let fields =
            vec![text("id"), text("name"), text("type"), optional_text("label"), optional_text("customer_id"), long("created_time")];
        let columns = vec![
            strings(a, |r| Some(&r.id)),
            strings(a, |r| Some(&r.name)),
            strings(a, |r| Some(&r.asset_type)),
            strings(a, |r| r.label.as_deref()),
            strings(a, |r| r.customer_id.as_deref()),
            longs(a, |r| r.created_time),
        ];
        mem_table(ASSETS, fields, columns)
    }

    fn customers_table(&self) -> Result<MemTable> {
        let c = &self.customers;
        let fields = vec![
            text("id"),
            text("title"),
            optional_text("email"),
            optional_text("phone"),
            optional_text("country"),
            optional_text("state"),
            optional_text("city"),
            optional_text("address"),
            optional_text("zip"),
            long("created_time"),
        ];
        let columns = vec![
            strings(c, |r| Some(&r.id)),
            strings(c, |r| Some(&r.title)),
            strings(c, |r| r.email.as_deref()),
            strings(c, |r| r.phone.as_deref()),
            strings(c, |r| r.country.as_deref()),
            strings(c, |r| r.state.as_deref()),
            strings(c, |r| r.city.as_deref()),
            strings(c, |r| r.address.as_deref()),
            strings(c, |r| r.zip.as_deref()),
            longs(c, |r| r.created_time),
        ];
        mem_table(CUSTOMERS, fields, columns)
    }

    fn relations_table(&self) -> Result<MemTable> {
        let r = &self.relations;
        let fields = vec![
            text("from_type"),
            text("from_id"),
            text("to_type"),
            text("to_id"),
            text("relation_type"),
            text("type_group"),
            optional_text("additional_info"),
            long("created_time"),
        ];
        let columns = vec![
            strings(r, |r| Some(&r.from_type)),
            strings(r, |r| Some(&r.from_id)),
            strings(r, |r| Some(&r.to_type)),
            strings(r, |r| Some(&r.to_id)),
            strings(r, |r| Some(&r.relation_type)),
            strings(r, |r| Some(&r.type_group)),
            strings(r, |r| r.additional_info.as_deref()),
            longs(r, |r| r.created_time),
        ];
        mem_table(RELATIONS, fields, columns)
    }

    fn attributes_table(&self) -> Result<MemTable> {
        let a = &self.attributes;
        let mut fields = vec![text("entity_type"), text("entity_id"), text("scope"), text("key")];
        fields.extend(value_fields());
        fields.push(long("last_update_ts"));
        let mut columns =
            vec![strings(a, |r| Some(&r.entity_type)), strings(a, |r| Some(&r.entity_id)), strings(a, |r| Some(&r.scope)), strings(a, |r| Some(&r.key))];
        columns.extend(value_columns(a, |r| &r.value));
        columns.push(longs(a, |r| r.last_update_ts));
        mem_table(ATTRIBUTES, fields, columns)
    }

    fn latest_table(&self) -> Result<MemTable> {
        let l = &self.latest;
        let mut fields = vec![text("entity_type"), text("entity_id"), text("key"), long("ts")];
        fields.extend(value_fields());
        let mut columns =
            vec![strings(l, |r| Some(&r.entity_type)), strings(l, |r| Some(&r.entity_id)), strings(l, |r| Some(&r.key)), longs(l, |r| r.ts)];
        columns.extend(value_columns(l, |r| &r.value));
        mem_table(LATEST, fields, columns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_value_lands_in_its_typed_column_only() {
        let row = |value: KvValue| LatestRow { entity_type: "DEVICE".into(), entity_id: "d".into(), key: "k".into(), ts: 1, value };
        let rows = vec![
            row(KvValue::Bool(true)),
            row(KvValue::Long(7)),
            row(KvValue::Double(1.5)),
            row(KvValue::String("s".into())),
            row(KvValue::Json(serde_json::json!({"a": 1}))),
        ];
        let columns = value_columns(&rows, |r| &r.value);
        for (i, column) in columns.iter().enumerate() {
            assert_eq!(column.null_count(), 4, "column {i}");
            assert!(column.is_valid(i), "row {i} sets column {i}");
        }
        let views = TenantViews { latest: rows, ..TenantViews::default() };
        assert_eq!(views.tables().expect("valid tables").len(), 6);
    }
}
