//! The `telemetry` table's decoder: every time-series point of the telemetry stream.

use thinglake_lake::partition::day_of;
use thinglake_lake::table::{self, LAKE_TELEMETRY, RowBuilder, TableSpec};

use super::contract::{LogMessage, Projection, Source};
use super::points::{each_point, push_value};
use crate::error::DecodeError;

/// `telemetry`: every time-series point of the telemetry stream.
#[derive(Debug)]
pub struct TelemetryProjection;

impl Projection for TelemetryProjection {
    fn name(&self) -> &'static str {
        LAKE_TELEMETRY
    }
    fn spec(&self) -> TableSpec {
        table::telemetry()
    }
    fn source(&self) -> Source {
        Source::Telemetry
    }
    fn decode(&mut self, message: &LogMessage, rows: &mut RowBuilder) -> Result<(), DecodeError> {
        each_point(message, |source, ts, kv| {
            rows.str(Some(&source.tenant))
                .date32(Some(day_of(ts)))
                .str(Some(&source.entity_type))
                .str(Some(&source.entity_id))
                .str(Some(&kv.key))
                .i64(Some(ts));
            push_value(rows, Some(&kv.value));
            rows.i64(Some(source.received_at)).i64(Some(source.seq));
            rows.end_row();
        })
    }
}
