//! `telemetry_hourly`: per entity, key and UTC hour, the counts, sums and extremes of the
//! telemetry points — what an aggregated chart or a fleet-wide daily average needs, at one row
//! per series and hour instead of one per point.
//!
//! The rows are *partial* aggregates that merge by adding counts and sums and taking the extremes
//! of extremes: the projection makes one row per point, [`merge`] folds the rows of a decoded
//! chunk, of a committed batch and of compacted files into one row per (entity, key, hour). A
//! reader merges whatever partial rows it finds the same way (the `telemetry_hourly` view does),
//! so a table with unmerged rows (several commits in one hour) answers the same as a compacted one.
//!
//! Counts follow ThingsBoard's aggregation: `count` counts every value (bool, string and JSON
//! included), sums and extremes are kept apart for longs and doubles (SUM of longs stays a long,
//! MIN/MAX turn double as soon as a double is in the bucket). Each row's `seq` is the highest
//! stream sequence it covers: the hot tail's rows above the table's committed sequence are the
//! uncommitted ones, as for every other table.

use std::collections::BTreeMap;
use std::sync::Arc;

use deltalake_core::arrow::array::{
    Array, ArrayRef, AsArray, Float64Builder, Int64Builder, RecordBatch, StringBuilder,
};
use deltalake_core::arrow::compute::cast;
use deltalake_core::arrow::datatypes::{DataType, Float64Type, Int64Type};
use deltalake_core::arrow::error::ArrowError;
use thinglake_domain::telemetry::KvValue;
use thinglake_infra::subjects::LAKE_TELEMETRY_HOURLY;

use crate::lake::projection::{LogMessage, Projection, Source, each_point};
use crate::lake::table::{self, RowBuilder, TableSpec, day_of, month_of};

/// One hour in milliseconds: the rollup's bucket.
pub const HOUR_MS: i64 = 3_600_000;

/// The start of the UTC hour `ts` falls in.
pub fn hour_of(ts: i64) -> i64 {
    ts.div_euclid(HOUR_MS) * HOUR_MS
}

/// The rollup projection: one partial row per point, merged per chunk by the runner.
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
    fn decode(&mut self, message: &LogMessage, rows: &mut RowBuilder) -> Result<(), String> {
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

/// Counts, sums and extremes of a group of time-series values, longs and doubles kept apart as
/// ThingsBoard's aggregation needs them; parts of one group add up.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Aggregates {
    /// Values of any type.
    pub count: i64,
    pub long_count: i64,
    pub double_count: i64,
    pub long_sum: i64,
    pub double_sum: f64,
    pub long_min: Option<i64>,
    pub long_max: Option<i64>,
    pub double_min: Option<f64>,
    pub double_max: Option<f64>,
}

impl Aggregates {
    /// Adds another part of the same group.
    pub fn add(&mut self, other: &Aggregates) {
        self.count += other.count;
        self.long_count += other.long_count;
        self.double_count += other.double_count;
        self.long_sum = self.long_sum.wrapping_add(other.long_sum);
        self.double_sum += other.double_sum;
        self.long_min = pick(self.long_min, other.long_min, i64::min);
        self.long_max = pick(self.long_max, other.long_max, i64::max);
        self.double_min = pick(self.double_min, other.double_min, f64::min);
        self.double_max = pick(self.double_max, other.double_max, f64::max);
    }
}

/// The merged aggregate of one (tenant, entity, key, hour) and the last sequence it covers.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Partial {
    values: Aggregates,
    seq: i64,
}

impl Partial {
    fn add(&mut self, other: &Partial) {
        self.values.add(&other.values);
        self.seq = self.seq.max(other.seq);
    }
}

fn pick<T: Copy>(a: Option<T>, b: Option<T>, f: fn(T, T) -> T) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(f(a, b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// Group key: (tenant, month, entity type, entity id, key, hour), ordered so that the merged
/// rows come out sorted by tenant, entity, key and hour.
type GroupKey = (String, String, String, String, String, i64);

/// Folds partial rows of the same (tenant, entity, key, hour) into one, sorted by tenant,
/// entity, key and hour. The batches have the `telemetry_hourly` schema.
pub fn merge(batches: &[RecordBatch]) -> Result<Vec<RecordBatch>, ArrowError> {
    let spec = table::telemetry_hourly();
    let mut groups: BTreeMap<GroupKey, Partial> = BTreeMap::new();
    for batch in batches {
        let text = |name: &str| -> Result<ArrayRef, ArrowError> { cast(column(batch, name)?, &DataType::Utf8) };
        let [tenant, month, entity_type, entity_id, key] =
            ["tenant_id", "month", "entity_type", "entity_id", "key"].map(text);
        let (tenant, month, entity_type, entity_id, key) = (tenant?, month?, entity_type?, entity_id?, key?);
        let [tenant, month, entity_type, entity_id, key] =
            [&tenant, &month, &entity_type, &entity_id, &key].map(|a| a.as_string::<i32>());
        let long = |name: &str| -> Result<ArrayRef, ArrowError> { cast(column(batch, name)?, &DataType::Int64) };
        let double = |name: &str| -> Result<ArrayRef, ArrowError> { cast(column(batch, name)?, &DataType::Float64) };
        let [ts, count, long_count, double_count, long_sum, long_min, long_max, seq] =
            ["ts", "count", "long_count", "double_count", "long_sum", "long_min", "long_max", "seq"].map(long);
        let [double_sum, double_min, double_max] = ["double_sum", "double_min", "double_max"].map(double);
        let longs = [ts?, count?, long_count?, double_count?, long_sum?, long_min?, long_max?, seq?];
        let doubles = [double_sum?, double_min?, double_max?];
        let [ts, count, long_count, double_count, long_sum, long_min, long_max, seq] =
            longs.each_ref().map(|a| a.as_primitive::<Int64Type>());
        let [double_sum, double_min, double_max] = doubles.each_ref().map(|a| a.as_primitive::<Float64Type>());
        let opt_i = |a: &deltalake_core::arrow::array::Int64Array, row: usize| a.is_valid(row).then(|| a.value(row));
        let opt_f = |a: &deltalake_core::arrow::array::Float64Array, row: usize| a.is_valid(row).then(|| a.value(row));
        for row in 0..batch.num_rows() {
            let partial = Partial {
                values: Aggregates {
                    count: count.value(row),
                    long_count: long_count.value(row),
                    double_count: double_count.value(row),
                    long_sum: long_sum.value(row),
                    double_sum: double_sum.value(row),
                    long_min: opt_i(long_min, row),
                    long_max: opt_i(long_max, row),
                    double_min: opt_f(double_min, row),
                    double_max: opt_f(double_max, row),
                },
                seq: seq.value(row),
            };
            let group = (
                tenant.value(row).to_string(),
                month.value(row).to_string(),
                entity_type.value(row).to_string(),
                entity_id.value(row).to_string(),
                key.value(row).to_string(),
                ts.value(row),
            );
            match groups.get_mut(&group) {
                Some(merged) => merged.add(&partial),
                None => {
                    groups.insert(group, partial);
                }
            }
        }
    }
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    let n = groups.len();
    let mut texts: [StringBuilder; 5] = std::array::from_fn(|_| StringBuilder::with_capacity(n, n * 16));
    let mut longs: [Int64Builder; 8] = std::array::from_fn(|_| Int64Builder::with_capacity(n));
    let mut doubles: [Float64Builder; 3] = std::array::from_fn(|_| Float64Builder::with_capacity(n));
    for ((tenant, month, entity_type, entity_id, key, ts), Partial { values: p, seq }) in &groups {
        for (builder, value) in texts.iter_mut().zip([tenant, month, entity_type, entity_id, key]) {
            builder.append_value(value);
        }
        longs[0].append_value(*ts);
        longs[1].append_value(p.count);
        longs[2].append_value(p.long_count);
        longs[3].append_value(p.double_count);
        longs[4].append_value(p.long_sum);
        longs[5].append_option(p.long_min);
        longs[6].append_option(p.long_max);
        longs[7].append_value(*seq);
        doubles[0].append_value(p.double_sum);
        doubles[1].append_option(p.double_min);
        doubles[2].append_option(p.double_max);
    }
    let [tenant, month, entity_type, entity_id, key] = texts.map(|mut b| Arc::new(b.finish()) as ArrayRef);
    let [ts, count, long_count, double_count, long_sum, long_min, long_max, seq] =
        longs.map(|mut b| Arc::new(b.finish()) as ArrayRef);
    let [double_sum, double_min, double_max] = doubles.map(|mut b| Arc::new(b.finish()) as ArrayRef);
    // In the schema's column order (table::telemetry_hourly).
    let columns = vec![
        tenant,
        month,
        entity_type,
        entity_id,
        key,
        ts,
        count,
        long_count,
        double_count,
        long_sum,
        double_sum,
        long_min,
        long_max,
        double_min,
        double_max,
        seq,
    ];
    Ok(vec![RecordBatch::try_new(spec.schema, columns)?])
}

/// The rows of `telemetry` table batches (with its schema) as merged `telemetry_hourly` rows:
/// how a rebuild reads back what the log no longer holds.
pub fn from_telemetry(batches: &[RecordBatch]) -> Result<Vec<RecordBatch>, ArrowError> {
    let spec = table::telemetry_hourly();
    let mut points = Vec::with_capacity(batches.len());
    for batch in batches {
        let text = |name: &str| -> Result<ArrayRef, ArrowError> { cast(column(batch, name)?, &DataType::Utf8) };
        let long = |name: &str| -> Result<ArrayRef, ArrowError> { cast(column(batch, name)?, &DataType::Int64) };
        let (tenant, entity_type, entity_id, key) = (text("tenant_id")?, text("entity_type")?, text("entity_id")?, text("key")?);
        let (ts, long_v, seq) = (long("ts")?, long("long_v")?, long("seq")?);
        let dbl_v = cast(column(batch, "dbl_v")?, &DataType::Float64)?;
        let ts_values = ts.as_primitive::<Int64Type>();
        let (long_v, dbl_v) = (long_v.as_primitive::<Int64Type>(), dbl_v.as_primitive::<Float64Type>());
        let n = batch.num_rows();
        let mut month = StringBuilder::with_capacity(n, n * 7);
        let mut hour = Int64Builder::with_capacity(n);
        for row in 0..n {
            month.append_value(month_of(ts_values.value(row)));
            hour.append_value(hour_of(ts_values.value(row)));
        }
        let ones: ArrayRef = Arc::new(deltalake_core::arrow::array::Int64Array::from(vec![1; n]));
        let is = |valid: &dyn Array| -> ArrayRef {
            Arc::new((0..n).map(|row| i64::from(valid.is_valid(row))).collect::<deltalake_core::arrow::array::Int64Array>())
        };
        let long_sum: ArrayRef = Arc::new(long_v.iter().map(|v| v.unwrap_or(0)).collect::<deltalake_core::arrow::array::Int64Array>());
        let double_sum: ArrayRef =
            Arc::new(dbl_v.iter().map(|v| v.unwrap_or(0.0)).collect::<deltalake_core::arrow::array::Float64Array>());
        let long_v: ArrayRef = Arc::new(long_v.clone());
        let dbl_v: ArrayRef = Arc::new(dbl_v.clone());
        let columns = vec![
            tenant,
            Arc::new(month.finish()) as ArrayRef,
            entity_type,
            entity_id,
            key,
            Arc::new(hour.finish()) as ArrayRef,
            ones,
            is(long_v.as_ref()),
            is(dbl_v.as_ref()),
            long_sum,
            double_sum,
            long_v.clone(),
            long_v,
            dbl_v.clone(),
            dbl_v,
            seq,
        ];
        points.push(RecordBatch::try_new(spec.schema.clone(), columns)?);
    }
    merge(&points)
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, ArrowError> {
    batch.column_by_name(name).ok_or_else(|| ArrowError::SchemaError(format!("telemetry_hourly rows lack column {name}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use thinglake_domain::telemetry::{KvEntry, TelemetryData, TelemetryMessage, TsBatch};
    use thinglake_domain::{Actor, EntityType};
    use uuid::Uuid;

    fn message(seq: u64, entity: Uuid, points: &[(i64, &str, KvValue)]) -> LogMessage {
        let batches = points
            .iter()
            .map(|(ts, key, value)| TsBatch { ts: *ts, values: vec![KvEntry { key: (*key).to_string(), value: value.clone() }] })
            .collect();
        let message = TelemetryMessage::new(
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
    fn the_hour_of_a_timestamp_is_its_utc_hour_start() {
        assert_eq!(hour_of(0), 0);
        assert_eq!(hour_of(HOUR_MS - 1), 0);
        assert_eq!(hour_of(HOUR_MS), HOUR_MS);
        assert_eq!(hour_of(-1), -HOUR_MS);
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
