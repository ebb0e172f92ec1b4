//! The `attribute_versions` table's decoder: every attribute set or deleted on the telemetry
//! stream.

use thinglake_domain::telemetry::{KvValue, TelemetryData};
use thinglake_lake::table::{self, LAKE_ATTRIBUTE_VERSIONS, RowBuilder, TableSpec};

use super::contract::{LogMessage, Projection, Source, seq};
use super::points::{push_value, telemetry_message};
use crate::error::DecodeError;

/// `attribute_versions`: every attribute set or deleted on the telemetry stream.
#[derive(Debug)]
pub struct AttributeVersionsProjection;

impl Projection for AttributeVersionsProjection {
    fn name(&self) -> &'static str {
        LAKE_ATTRIBUTE_VERSIONS
    }
    fn spec(&self) -> TableSpec {
        table::attribute_versions()
    }
    fn source(&self) -> Source {
        Source::Telemetry
    }
    fn decode(&mut self, message: &LogMessage, rows: &mut RowBuilder) -> Result<(), DecodeError> {
        let parsed = telemetry_message(message)?;
        let tenant = parsed.tenant_id.to_string();
        let entity_id = parsed.entity_id.to_string();
        let entity_type = parsed.entity_type.to_string();
        let mut row = |scope: &str, key: &str, ts: i64, value: Option<&KvValue>| {
            rows.str(Some(&tenant)).str(Some(&entity_type)).str(Some(&entity_id)).str(Some(scope)).str(Some(key)).i64(Some(ts));
            push_value(rows, value);
            rows.bool(Some(value.is_none())).i64(Some(parsed.received_at)).i64(Some(seq(message)));
            rows.end_row();
        };
        match &parsed.data {
            TelemetryData::Timeseries { .. } => {}
            TelemetryData::Attributes { scope, ts, values } => {
                for kv in values {
                    row(scope.as_str(), &kv.key, *ts, Some(&kv.value));
                }
            }
            TelemetryData::AttributesDeleted { scope, keys } => {
                for key in keys {
                    row(scope.as_str(), key, parsed.received_at, None);
                }
            }
        }
        Ok(())
    }
}
