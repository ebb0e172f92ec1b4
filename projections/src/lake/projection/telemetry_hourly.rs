//! The `telemetry_hourly` table's decoder: one partial rollup row per time-series point, merged
//! per chunk by the runner.

use thinglake_domain::telemetry::KvValue;
use thinglake_lake::partition::{day_of, month_of};
use thinglake_lake::rollup::hour_of;
use thinglake_lake::table::{self, LAKE_TELEMETRY_HOURLY, RowBuilder, TableSpec};

use super::contract::{LogMessage, Projection, Source};
use super::points::each_point;
use crate::error::DecodeError;

/// `telemetry_hourly`: the rollup projection, one partial row per point (see
/// [`thinglake_lake::rollup`]), merged per chunk by the runner.
#[derive(Debug, Default)]
pub struct TelemetryHourlyProjection;

impl Projection for TelemetryHourlyProjection {
    fn name(&self) -> &'static str {
        LAKE_TELEMETRY_HOURLY
    }
    fn spec(&self) -> TableSpec {
        table::telemetry_hourly()
    }
    fn source(&self) -> Source {
        Source::Telemetry
    }
    fn decode(&mut self, message: &LogMessage, rows: &mut RowBuilder) -> Result<(), DecodeError> {
        // The month partition, formatted once per day met.
        let mut month: Option<(i32, String)> = None;
        each_point(message, |source, ts, kv| {
            let day = day_of(ts);
            if month.as_ref().is_none_or(|(d, _)| *d != day) {
                month = Some((day, month_of(ts)));
            }
            let month = month.as_ref().map_or("", |(_, m)| m.as_str());
            let (long, double) = match &kv.value {
                KvValue::Long(l) => (Some(*l), None),
                KvValue::Double(d) => (None, Some(*d)),
                _ => (None, None),
            };
            rows.str(Some(&source.tenant))
                .str(Some(month))
                .str(Some(&source.entity_type))
                .str(Some(&source.entity_id))
                .str(Some(&kv.key))
                .i64(Some(hour_of(ts)))
                .i64(Some(1))
                .i64(Some(i64::from(long.is_some())))
                .i64(Some(i64::from(double.is_some())))
                .i64(Some(long.unwrap_or(0)))
                .f64(Some(double.unwrap_or(0.0)))
                .i64(long)
                .i64(long)
                .f64(double)
                .f64(double)
                .i64(Some(source.seq));
            rows.end_row();
        })
    }
}

#[cfg(test)]
mod tests {
    use deltalake_core::arrow::array::{AsArray as _, RecordBatch};
    use deltalake_core::arrow::datatypes::{Float64Type, Int64Type};

    use super::*;
    use thinglake_lake::rollup::{HOUR_MS, merge};
    use thinglake_domain::telemetry::{KvEntry, TelemetryData, TelemetryMessage, TsBatch};
    use thinglake_domain::{Actor, EntityType};
    use uuid::Uuid;

    fn message(seq: u64, entity: Uuid, points: &[(i64, &str, KvValue)]) -> LogMessage {
        let batches = points
            .iter()
            .map(|(ts, key, value)| TsBatch { ts: *ts, values: vec![KvEntry { key: (*key).to_string(), value: value.clone() }] })
            .collect();
        let message = TelemetryMessage::new(
            Uuid::now_v7(),
            Uuid::nil(),
            EntityType::Device,
            entity,
            0,
            Actor::system(),
            TelemetryData::Timeseries { batches },
        );
        LogMessage { seq, subject: "tel".to_string(), payload: serde_json::to_vec(&message).expect("json").into() }
    }

    fn decode(messages: &[LogMessage]) -> RecordBatch {
        let mut projection = TelemetryHourlyProjection;
        let mut rows = RowBuilder::new(table::telemetry_hourly().schema);
        for m in messages {
            projection.decode(m, &mut rows).expect("readable");
        }
        rows.finish().expect("batch")
    }

    fn longs(batch: &RecordBatch, name: &str) -> Vec<Option<i64>> {
        batch.column_by_name(name).expect("column").as_primitive::<Int64Type>().iter().collect()
    }

    fn doubles(batch: &RecordBatch, name: &str) -> Vec<Option<f64>> {
        batch.column_by_name(name).expect("column").as_primitive::<Float64Type>().iter().collect()
    }

    #[test]
    fn points_of_one_series_and_hour_merge_into_one_row_whatever_the_split() {
        let (a, b) = (Uuid::from_u128(2), Uuid::from_u128(1));
        let h = 1_700_000_000_000 / HOUR_MS * HOUR_MS;
        let messages = [
            message(1, a, &[(h + 1, "t", KvValue::Long(5)), (h + 2, "t", KvValue::Double(1.5))]),
            message(2, a, &[(h + 3, "t", KvValue::String("x".into())), (h + HOUR_MS, "t", KvValue::Long(7))]),
            message(3, b, &[(h + 10, "t", KvValue::Long(-3))]),
            message(4, a, &[(h + 20, "t", KvValue::Long(9)), (h + 30, "u", KvValue::Bool(true))]),
        ];
        let all = merge(&[decode(&messages)]).expect("merged");
        // Merging merged parts gives the same rows as merging every point at once.
        let parts = merge(&[decode(&messages[..2]), decode(&messages[2..])]).expect("merged");
        let twice = merge(&[merge(&[decode(&messages[..1])]).expect("m")[0].clone(), decode(&messages[1..])]).expect("m");
        assert_eq!(all, parts);
        assert_eq!(all, twice);
        let rows = &all[0];
        // Sorted by entity: b (…01) first, then a's t@h, t@h+1h, u@h.
        let ids: Vec<String> = rows.column_by_name("entity_id").expect("c").as_string::<i32>().iter().map(|s| s.unwrap_or_default().to_string()).collect();
        assert_eq!(ids, [b.to_string(), a.to_string(), a.to_string(), a.to_string()]);
        assert_eq!(longs(rows, "ts"), [Some(h), Some(h), Some(h + HOUR_MS), Some(h)]);
        assert_eq!(longs(rows, "count"), [Some(1), Some(4), Some(1), Some(1)]);
        assert_eq!(longs(rows, "long_count"), [Some(1), Some(2), Some(1), Some(0)]);
        assert_eq!(longs(rows, "double_count"), [Some(0), Some(1), Some(0), Some(0)]);
        assert_eq!(longs(rows, "long_sum"), [Some(-3), Some(14), Some(7), Some(0)]);
        assert_eq!(longs(rows, "long_min"), [Some(-3), Some(5), Some(7), None]);
        assert_eq!(longs(rows, "long_max"), [Some(-3), Some(9), Some(7), None]);
        assert_eq!(doubles(rows, "double_sum"), [Some(0.0), Some(1.5), Some(0.0), Some(0.0)]);
        assert_eq!(doubles(rows, "double_min"), [None, Some(1.5), None, None]);
        assert_eq!(longs(rows, "seq"), [Some(3), Some(4), Some(2), Some(4)]);
    }
}
