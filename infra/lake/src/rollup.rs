//! `telemetry_hourly`: per entity, key and UTC hour, the counts, sums and extremes of the
//! telemetry points — what an aggregated chart or a fleet-wide daily average needs, at one row
//! per series and hour instead of one per point.
//!
//! The rows are *partial* aggregates that merge by adding counts and sums and taking the extremes
//! of extremes: the projection (`TelemetryHourlyProjection` of `thinglake-projections`) makes one
//! row per point, [`merge`] folds the rows of a decoded chunk, of a committed batch and of
//! compacted files into one row per (entity, key, hour). A reader merges whatever partial rows it
//! finds the same way (the `telemetry_hourly` view does), so a table with unmerged rows (several
//! commits in one hour) answers the same as a compacted one.
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
use deltalake_core::arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, SchemaRef};
use deltalake_core::arrow::error::ArrowError;

use crate::partition::month_of;

/// One hour in milliseconds: the rollup's bucket.
pub const HOUR_MS: i64 = 3_600_000;

/// The start of the UTC hour `ts` falls in.
pub fn hour_of(ts: i64) -> i64 {
    ts.div_euclid(HOUR_MS) * HOUR_MS
}

/// The columns of `telemetry_hourly` rows, in the order [`merge`] and [`from_telemetry`] build
/// them (the table's spec is `table::telemetry_hourly`).
pub fn fields() -> Vec<Field> {
    let col = |name: &str, data_type: DataType, nullable: bool| Field::new(name, data_type, nullable);
    vec![
        col("tenant_id", DataType::Utf8, false),
        col("month", DataType::Utf8, false),
        col("entity_type", DataType::Utf8, false),
        col("entity_id", DataType::Utf8, false),
        col("key", DataType::Utf8, false),
        col("ts", DataType::Int64, false),
        col("count", DataType::Int64, false),
        col("long_count", DataType::Int64, false),
        col("double_count", DataType::Int64, false),
        col("long_sum", DataType::Int64, false),
        col("double_sum", DataType::Float64, false),
        col("long_min", DataType::Int64, true),
        col("long_max", DataType::Int64, true),
        col("double_min", DataType::Float64, true),
        col("double_max", DataType::Float64, true),
        col("seq", DataType::Int64, false),
    ]
}

/// The schema of `telemetry_hourly` rows: [`fields`].
fn schema() -> SchemaRef {
    Arc::new(Schema::new(fields()))
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
    let schema = schema();
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
    // In the schema's column order ([`fields`]).
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
    Ok(vec![RecordBatch::try_new(schema, columns)?])
}

/// The rows of `telemetry` table batches (with its schema) as merged `telemetry_hourly` rows:
/// how a rebuild reads back what the log no longer holds.
pub fn from_telemetry(batches: &[RecordBatch]) -> Result<Vec<RecordBatch>, ArrowError> {
    let schema = schema();
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
        points.push(RecordBatch::try_new(schema.clone(), columns)?);
    }
    merge(&points)
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, ArrowError> {
    batch.column_by_name(name).ok_or_else(|| ArrowError::SchemaError(format!("telemetry_hourly rows lack column {name}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hour_of_a_timestamp_is_its_utc_hour_start() {
        assert_eq!(hour_of(0), 0);
        assert_eq!(hour_of(HOUR_MS - 1), 0);
        assert_eq!(hour_of(HOUR_MS), HOUR_MS);
        assert_eq!(hour_of(-1), -HOUR_MS);
    }
}
