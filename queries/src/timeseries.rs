//! ThingsBoard's time-series queries (`…/values/timeseries?keys&startTs&endTs&interval&agg&limit&orderBy`)
//! answered through the engine: raw points, or aggregates per fixed-length bucket.
//!
//! Semantics as ThingsBoard's: the range is `[startTs, endTs)`; without aggregation the newest
//! (or oldest) `limit` points per key; with one, buckets of `interval` ms from `startTs`, the last
//! one clipped at `endTs`, each answered at the middle of its clipped bucket, oldest first, empty
//! buckets omitted. AVG, SUM, MIN and MAX take long and double values (AVG is always a double;
//! SUM, MIN and MAX are a long while the bucket has only longs); COUNT counts points of any type.

use std::collections::BTreeMap;
use std::str::FromStr;

use deltalake_core::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use deltalake_core::arrow::compute::cast;
use deltalake_core::arrow::datatypes::{DataType, Float64Type, Int64Type};
use deltalake_core::datafusion::common::ScalarValue;
use deltalake_core::datafusion::functions_aggregate::expr_fn::{count, max, min, sum};
use deltalake_core::datafusion::prelude::{DataFrame, Expr, SessionContext, ident, lit};
use thinglake_domain::telemetry::KvValue;
use thinglake_projections::lake::table::day_of;

use crate::engine::{QueryEngine, TELEMETRY};
use crate::error::{QueryError, Result};

/// ThingsBoard's default limit on the number of buckets of one aggregated query (its
/// `database.ts_max_intervals`); [`QueryConfig::max_intervals`](crate::QueryConfig) sets the
/// engine's.
pub const MAX_BUCKETS: i64 = 700;

/// ThingsBoard's default `limit` of raw queries.
pub const DEFAULT_LIMIT: usize = 100;

/// `agg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Aggregation {
    #[default]
    None,
    Avg,
    Min,
    Max,
    Sum,
    Count,
}

impl FromStr for Aggregation {
    type Err = QueryError;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_uppercase().as_str() {
            "NONE" => Ok(Aggregation::None),
            "AVG" => Ok(Aggregation::Avg),
            "MIN" => Ok(Aggregation::Min),
            "MAX" => Ok(Aggregation::Max),
            "SUM" => Ok(Aggregation::Sum),
            "COUNT" => Ok(Aggregation::Count),
            _ => Err(QueryError::invalid_timeseries(format!("unknown aggregation {s}"))),
        }
    }
}

/// `orderBy` of raw queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    Asc,
    #[default]
    Desc,
}

impl FromStr for Order {
    type Err = QueryError;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_uppercase().as_str() {
            "ASC" => Ok(Order::Asc),
            "DESC" => Ok(Order::Desc),
            _ => Err(QueryError::invalid_timeseries(format!("unknown order {s}"))),
        }
    }
}

/// One time-series query over one entity.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeseriesQuery {
    pub keys: Vec<String>,
    pub start_ts: i64,
    pub end_ts: i64,
    /// Bucket length in ms; 0 means no aggregation.
    pub interval: i64,
    pub agg: Aggregation,
    /// Points per key of a raw query.
    pub limit: usize,
    pub order: Order,
}

impl TimeseriesQuery {
    /// The aggregation actually applied: `interval=0` means NONE.
    pub fn effective_agg(&self) -> Aggregation {
        if self.interval == 0 { Aggregation::None } else { self.agg }
    }

    /// Number of buckets of an aggregated query (0 for an empty range).
    pub fn buckets(&self) -> i64 {
        if self.end_ts <= self.start_ts || self.interval < 1 {
            return 0;
        }
        let span = i128::from(self.end_ts) - i128::from(self.start_ts);
        i64::try_from(span.div_euclid(i128::from(self.interval)) + i128::from(span % i128::from(self.interval) != 0))
            .unwrap_or(i64::MAX)
    }

    /// Refuses what ThingsBoard refuses by default: an aggregation with `interval` < 1 or more
    /// than [`MAX_BUCKETS`] buckets.
    pub fn validate(&self) -> Result<()> {
        self.validate_within(MAX_BUCKETS)
    }

    /// [`TimeseriesQuery::validate`] with another limit on the number of buckets.
    pub fn validate_within(&self, max_buckets: i64) -> Result<()> {
        if self.agg == Aggregation::None || self.interval == 0 {
            return Ok(());
        }
        if self.interval < 1 {
            return Err(QueryError::invalid_timeseries(format!("interval must be at least 1 ms, got {}", self.interval)));
        }
        let buckets = self.buckets();
        if buckets > max_buckets {
            return Err(QueryError::invalid_timeseries(format!(
                "{buckets} intervals of {} ms between startTs and endTs exceed the limit of {max_buckets}",
                self.interval
            )));
        }
        Ok(())
    }
}

/// One answered point: a raw value, or an aggregate at the middle of its bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct TsPoint {
    pub ts: i64,
    pub value: KvValue,
}

/// Points per key, in the order of the query's keys; keys without points are left out.
pub type TimeseriesResult = Vec<(String, Vec<TsPoint>)>;

impl QueryEngine {
    /// Answers `query` over one entity of `tenant` (the caller has checked access).
    pub async fn timeseries(
        &self,
        tenant: &str,
        entity_type: &str,
        entity_id: &str,
        query: TimeseriesQuery,
    ) -> Result<TimeseriesResult> {
        query.validate_within(self.config().max_intervals)?;
        if query.keys.is_empty() || query.end_ts <= query.start_ts {
            return Ok(Vec::new());
        }
        let engine = self.clone();
        let (tenant, entity_type, entity_id) = (tenant.to_string(), entity_type.to_string(), entity_id.to_string());
        self.run(async move {
            let ctx = engine.tenant_session(&tenant, None).await?;
            match query.effective_agg() {
                Aggregation::None => raw(&ctx, &entity_type, &entity_id, &query).await,
                agg => aggregated(&ctx, &entity_type, &entity_id, &query, agg).await,
            }
        })
        .await
    }
}

/// The entity's rows of `keys` in the query's range (the day partitions pruned too).
async fn points(ctx: &SessionContext, entity_type: &str, entity_id: &str, keys: &[String], q: &TimeseriesQuery) -> Result<DataFrame> {
    let keys: Vec<Expr> = keys.iter().map(|k| lit(k.as_str())).collect();
    let first_day = lit(ScalarValue::Date32(Some(day_of(q.start_ts))));
    let last_day = lit(ScalarValue::Date32(Some(day_of(q.end_ts.saturating_sub(1)))));
    let filter = ident("entity_type")
        .eq(lit(entity_type))
        .and(ident("entity_id").eq(lit(entity_id)))
        .and(ident("key").in_list(keys, false))
        .and(ident("day").gt_eq(first_day))
        .and(ident("day").lt_eq(last_day))
        .and(ident("ts").gt_eq(lit(q.start_ts)))
        .and(ident("ts").lt(lit(q.end_ts)));
    ctx.table(TELEMETRY).await.map_err(QueryError::from_datafusion)?.filter(filter).map_err(QueryError::from_datafusion)
}

/// Raw points: per key the first `limit` in the requested order.
async fn raw(ctx: &SessionContext, entity_type: &str, entity_id: &str, q: &TimeseriesQuery) -> Result<TimeseriesResult> {
    let mut out = Vec::new();
    for key in &q.keys {
        let df = points(ctx, entity_type, entity_id, std::slice::from_ref(key), q)
            .await?
            .sort(vec![ident("ts").sort(q.order == Order::Asc, false), ident("seq").sort(q.order == Order::Asc, false)])
            .and_then(|df| df.limit(0, Some(q.limit)))
            .and_then(|df| df.select_columns(&["ts", "bool_v", "long_v", "dbl_v", "str_v", "json_v"]))
            .map_err(QueryError::from_datafusion)?;
        let batches = df.collect().await.map_err(QueryError::from_datafusion)?;
        let mut series = Vec::new();
        for batch in &batches {
            let ts = int_column(batch, "ts")?;
            let bools = batch.column_by_name("bool_v").map(|c| c.as_boolean().clone());
            let longs = int_column(batch, "long_v")?;
            let doubles = float_column(batch, "dbl_v")?;
            let strings = text_column(batch, "str_v")?;
            let jsons = text_column(batch, "json_v")?;
            for row in 0..batch.num_rows() {
                let value = if let Some(b) = bools.as_ref().filter(|b| b.is_valid(row)) {
                    KvValue::Bool(b.value(row))
                } else if let Some(l) = longs[row] {
                    KvValue::Long(l)
                } else if let Some(d) = doubles[row] {
                    KvValue::Double(d)
                } else if let Some(s) = &strings[row] {
                    KvValue::String(s.clone())
                } else if let Some(j) = &jsons[row] {
                    KvValue::Json(serde_json::from_str(j).unwrap_or_else(|_| serde_json::Value::String(j.clone())))
                } else {
                    continue;
                };
                if let Some(ts) = ts[row] {
                    series.push(TsPoint { ts, value });
                }
            }
        }
        if !series.is_empty() {
            out.push((key.clone(), series));
        }
    }
    Ok(out)
}

/// Per key and bucket: counts, sums and extremes of longs and doubles, combined as ThingsBoard
/// combines them.
async fn aggregated(
    ctx: &SessionContext,
    entity_type: &str,
    entity_id: &str,
    q: &TimeseriesQuery,
    agg: Aggregation,
) -> Result<TimeseriesResult> {
    let bucket = ((ident("ts") - lit(q.start_ts)) / lit(q.interval)).alias("bucket");
    let df = points(ctx, entity_type, entity_id, &q.keys, q)
        .await?
        .aggregate(
            vec![ident("key"), bucket],
            vec![
                count(ident("ts")).alias("n"),
                count(ident("long_v")).alias("nl"),
                count(ident("dbl_v")).alias("nd"),
                sum(ident("long_v")).alias("sl"),
                sum(ident("dbl_v")).alias("sd"),
                min(ident("long_v")).alias("minl"),
                max(ident("long_v")).alias("maxl"),
                min(ident("dbl_v")).alias("mind"),
                max(ident("dbl_v")).alias("maxd"),
            ],
        )
        .map_err(QueryError::from_datafusion)?;
    let batches = df.collect().await.map_err(QueryError::from_datafusion)?;
    let mut by_key: BTreeMap<String, BTreeMap<i64, KvValue>> = BTreeMap::new();
    for batch in &batches {
        let keys = text_column(batch, "key")?;
        let buckets = int_column(batch, "bucket")?;
        let [n, nl, nd, sl, minl, maxl] = ["n", "nl", "nd", "sl", "minl", "maxl"].map(|c| int_column(batch, c));
        let [sd, mind, maxd] = ["sd", "mind", "maxd"].map(|c| float_column(batch, c));
        let (n, nl, nd, sl, minl, maxl) = (n?, nl?, nd?, sl?, minl?, maxl?);
        let (sd, mind, maxd) = (sd?, mind?, maxd?);
        for row in 0..batch.num_rows() {
            let (Some(key), Some(bucket)) = (keys[row].clone(), buckets[row]) else { continue };
            let stats = BucketStats {
                count: n[row].unwrap_or(0),
                longs: nl[row].unwrap_or(0),
                doubles: nd[row].unwrap_or(0),
                long_sum: sl[row].unwrap_or(0),
                double_sum: sd[row].unwrap_or(0.0),
                long_min: minl[row],
                long_max: maxl[row],
                double_min: mind[row],
                double_max: maxd[row],
            };
            if let Some(value) = stats.value(agg) {
                by_key.entry(key).or_default().insert(bucket, value);
            }
        }
    }
    let mut out = Vec::new();
    for key in &q.keys {
        let Some(buckets) = by_key.remove(key) else { continue };
        let series = buckets.into_iter().map(|(bucket, value)| TsPoint { ts: bucket_ts(q, bucket), value }).collect();
        out.push((key.clone(), series));
    }
    Ok(out)
}

/// The middle of bucket `index`, clipped at `endTs`.
pub fn bucket_ts(q: &TimeseriesQuery, index: i64) -> i64 {
    let start = q.start_ts + index * q.interval;
    let end = (start + q.interval).min(q.end_ts);
    start + (end - start) / 2
}

/// What one bucket holds, by value type.
#[derive(Debug, Clone, Copy, PartialEq)]
struct BucketStats {
    count: i64,
    longs: i64,
    doubles: i64,
    long_sum: i64,
    double_sum: f64,
    long_min: Option<i64>,
    long_max: Option<i64>,
    double_min: Option<f64>,
    double_max: Option<f64>,
}

impl BucketStats {
    /// The aggregate; `None` when the bucket has no value it applies to (left out).
    fn value(&self, agg: Aggregation) -> Option<KvValue> {
        let numeric = self.longs + self.doubles;
        match agg {
            Aggregation::Count => (self.count > 0).then_some(KvValue::Long(self.count)),
            Aggregation::Avg => {
                (numeric > 0).then(|| KvValue::Double((self.long_sum as f64 + self.double_sum) / numeric as f64))
            }
            Aggregation::Sum if self.doubles > 0 => Some(KvValue::Double(self.double_sum + self.long_sum as f64)),
            Aggregation::Sum => (self.longs > 0).then_some(KvValue::Long(self.long_sum)),
            Aggregation::Min => extreme(self.long_min, self.double_min, f64::min),
            Aggregation::Max => extreme(self.long_max, self.double_max, f64::max),
            Aggregation::None => None,
        }
    }
}

/// MIN or MAX over a bucket's longs and doubles: a double as soon as there is one.
fn extreme(long: Option<i64>, double: Option<f64>, pick: fn(f64, f64) -> f64) -> Option<KvValue> {
    match (long, double) {
        (Some(l), Some(d)) => Some(KvValue::Double(pick(l as f64, d))),
        (None, Some(d)) => Some(KvValue::Double(d)),
        (Some(l), None) => Some(KvValue::Long(l)),
        (None, None) => None,
    }
}

fn column(batch: &RecordBatch, name: &str, to: &DataType) -> Result<ArrayRef> {
    let array = batch
        .column_by_name(name)
        .ok_or_else(|| QueryError::Task { reason: format!("column {name} missing from a result") })?;
    cast(array, to).map_err(|e| QueryError::Task { reason: format!("reading column {name}: {e}") })
}

fn int_column(batch: &RecordBatch, name: &str) -> Result<Vec<Option<i64>>> {
    Ok(column(batch, name, &DataType::Int64)?.as_primitive::<Int64Type>().iter().collect())
}

fn float_column(batch: &RecordBatch, name: &str) -> Result<Vec<Option<f64>>> {
    Ok(column(batch, name, &DataType::Float64)?.as_primitive::<Float64Type>().iter().collect())
}

fn text_column(batch: &RecordBatch, name: &str) -> Result<Vec<Option<String>>> {
    Ok(column(batch, name, &DataType::Utf8)?.as_string::<i32>().iter().map(|s| s.map(str::to_string)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(start_ts: i64, end_ts: i64, interval: i64, agg: Aggregation) -> TimeseriesQuery {
        TimeseriesQuery {
            keys: vec!["t".into()],
            start_ts,
            end_ts,
            interval,
            agg,
            limit: DEFAULT_LIMIT,
            order: Order::Desc,
        }
    }

    #[test]
    fn the_last_bucket_is_clipped_at_the_end() {
        let q = query(1000, 1250, 100, Aggregation::Avg);
        assert_eq!(q.buckets(), 3);
        assert_eq!(bucket_ts(&q, 0), 1050);
        assert_eq!(bucket_ts(&q, 2), 1225);
    }

    #[test]
    fn more_than_700_buckets_or_a_negative_interval_are_refused() {
        assert!(query(0, 700, 1, Aggregation::Sum).validate().is_ok());
        assert!(query(0, 701, 1, Aggregation::Sum).validate().is_err());
        assert!(query(0, 10, -1, Aggregation::Sum).validate().is_err());
        assert!(query(0, 1_000_000, 0, Aggregation::Sum).validate().is_ok());
        assert_eq!(query(0, 10, 0, Aggregation::Max).effective_agg(), Aggregation::None);
    }

    #[test]
    fn the_bucket_limit_can_be_raised_as_thingsboards_ts_max_intervals() {
        let month_of_hours = query(0, 30 * 24 * 3_600_000, 3_600_000, Aggregation::Avg);
        assert!(month_of_hours.validate().is_err(), "720 buckets exceed the default 700");
        assert!(month_of_hours.validate_within(720).is_ok());
        assert!(month_of_hours.validate_within(719).is_err());
    }

    #[test]
    fn longs_and_doubles_combine_as_in_thingsboard() {
        let longs = BucketStats {
            count: 3,
            longs: 2,
            doubles: 0,
            long_sum: 5,
            double_sum: 0.0,
            long_min: Some(2),
            long_max: Some(3),
            double_min: None,
            double_max: None,
        };
        assert_eq!(longs.value(Aggregation::Avg), Some(KvValue::Double(2.5)));
        assert_eq!(longs.value(Aggregation::Sum), Some(KvValue::Long(5)));
        assert_eq!(longs.value(Aggregation::Max), Some(KvValue::Long(3)));
        assert_eq!(longs.value(Aggregation::Count), Some(KvValue::Long(3)));
        let mixed = BucketStats { doubles: 1, double_sum: 0.5, double_min: Some(0.5), double_max: Some(0.5), ..longs };
        assert_eq!(mixed.value(Aggregation::Sum), Some(KvValue::Double(5.5)));
        assert_eq!(mixed.value(Aggregation::Min), Some(KvValue::Double(0.5)));
        assert_eq!(mixed.value(Aggregation::Max), Some(KvValue::Double(3.0)));
        let text = BucketStats { longs: 0, long_sum: 0, long_min: None, long_max: None, ..longs };
        assert_eq!(text.value(Aggregation::Avg), None);
        assert_eq!(text.value(Aggregation::Count), Some(KvValue::Long(3)));
    }
}
