//! Views a session gets from the entity read model (in memory), already narrowed to the calling
//! tenant by the platform: `devices`.

use std::sync::Arc;

use deltalake_core::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use deltalake_core::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake_core::datafusion::datasource::MemTable;

use crate::error::{QueryError, Result};

/// The name of the devices view.
pub const DEVICES: &str = "devices";

/// One device of the tenant, as the `devices` view shows it.
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

/// The read-model rows of one tenant a SQL session shows as views.
#[derive(Debug, Clone, Default)]
pub struct TenantViews {
    pub devices: Vec<DeviceRow>,
}

fn devices_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("type", DataType::Utf8, false),
        Field::new("label", DataType::Utf8, true),
        Field::new("customer_id", DataType::Utf8, true),
        Field::new("created_time", DataType::Int64, false),
    ]))
}

impl TenantViews {
    /// `devices` as an in-memory table.
    pub(crate) fn devices_table(&self) -> Result<MemTable> {
        let d = &self.devices;
        let text = |f: fn(&DeviceRow) -> Option<&str>| -> ArrayRef { Arc::new(d.iter().map(f).collect::<StringArray>()) };
        let columns: Vec<ArrayRef> = vec![
            text(|r| Some(&r.id)),
            text(|r| Some(&r.name)),
            text(|r| Some(&r.device_type)),
            text(|r| r.label.as_deref()),
            text(|r| r.customer_id.as_deref()),
            Arc::new(d.iter().map(|r| r.created_time).collect::<Int64Array>()),
        ];
        let schema = devices_schema();
        let batch = RecordBatch::try_new(schema.clone(), columns)
            .map_err(|e| QueryError::Task { reason: format!("building the devices view: {e}") })?;
        MemTable::try_new(schema, vec![vec![batch]]).map_err(QueryError::execution)
    }
}
