//! How the engine answers a time-series query ([`TimeseriesQuery`], its semantics in
//! [`crate::timeseries`]): raw points through a session over the `telemetry` view; aggregates
//! added up per bucket by hand over the rows [`QueryEngine::rows_where`] hands out — the whole
//! hours from the `telemetry_hourly` rollup when the buckets allow, the rest from raw points.

use std::collections::BTreeMap;

use deltalake_core::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use deltalake_core::arrow::compute::cast;
use deltalake_core::arrow::datatypes::{DataType, Float64Type, Int64Type};
use deltalake_core::datafusion::common::ScalarValue;
use deltalake_core::datafusion::prelude::{DataFrame, Expr, SessionContext, ident, lit};
use thinglake_domain::telemetry::KvValue;
use thinglake_domain::{EntityId, TenantId};
use thinglake_lake::partition::{day_of, month_of};
use thinglake_lake::rollup::{Aggregates, HOUR_MS, hour_of};
use thinglake_lake::table::{telemetry, telemetry_hourly};

use crate::engine::{Lane, QueryEngine, TELEMETRY};
use crate::error::{QueryError, Result};
use crate::timeseries::{Aggregation, Order, TimeseriesQuery, TimeseriesResult, TsPoint, bucket_middle};

impl QueryEngine {
    /// Answers `query` over one entity of `tenant` (the caller has checked access).
    pub async fn timeseries(
        &self,
        tenant: TenantId,
        entity: EntityId,
        query: TimeseriesQuery,
    ) -> Result<TimeseriesResult> {
        query.validate_within(self.config().max_intervals)?;
        if query.keys.is_empty() || query.end_ts <= query.start_ts {
            return Ok(Vec::new());
        }
        let _permit = self.admit_dashboard(tenant).await?;
        let engine = self.clone();
        self.run(Lane::Dashboard, async move {
            match query.effective_agg() {
                Aggregation::None => {
                    let ctx = engine.timeseries_session(tenant).await?;
                    raw(&ctx, entity, &query).await
                }
                agg => {
                    // Validated against the engine's bucket limit before: every start, however many it allows.
                    let starts = query.calendar_starts_within(i64::MAX);
                    let hours_end = rollup_end(&query, &starts);
                    aggregated(&engine, tenant, entity, &query, agg, &starts, hours_end).await
                }
            }
        })
        .await
    }
}

/// The entity's rows of `keys` in `[from, to)` (the day partitions pruned too).
async fn points(ctx: &SessionContext, entity: EntityId, keys: &[String], (from, to): (i64, i64)) -> Result<DataFrame> {
    let keys: Vec<Expr> = keys.iter().map(|k| lit(k.as_str())).collect();
    let first_day = lit(ScalarValue::Date32(Some(day_of(from))));
    let last_day = lit(ScalarValue::Date32(Some(day_of(to.saturating_sub(1)))));
    let filter = ident("entity_type")
        .eq(lit(entity.entity_type.as_str()))
        .and(ident("entity_id").eq(lit(entity.id.to_string())))
        .and(ident("key").in_list(keys, false))
        .and(ident("day").gt_eq(first_day))
        .and(ident("day").lt_eq(last_day))
        .and(ident("ts").gt_eq(lit(from)))
        .and(ident("ts").lt(lit(to)));
    ctx.table(TELEMETRY).await.map_err(QueryError::from_datafusion)?.filter(filter).map_err(QueryError::from_datafusion)
}

/// Raw points: per key the first `limit` in the requested order.
async fn raw(ctx: &SessionContext, entity: EntityId, q: &TimeseriesQuery) -> Result<TimeseriesResult> {
    let mut out = Vec::new();
    for key in &q.keys {
        let df = points(ctx, entity, std::slice::from_ref(key), (q.start_ts, q.end_ts))
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
/// combines them. When every bucket starts on a whole UTC hour (dashboards align aggregated
/// windows so), the whole hours come from the `telemetry_hourly` rollup and only the points of
/// a last partial hour from `telemetry` ([`rollup_end`] gives where the whole hours end).
///
/// The rows are read without a session ([`QueryEngine::rows_where`]: a dashboard's series is a
/// few pages of one file per month, and planning them through a session cost more than reading
/// them) and added up per bucket here batch by batch, in the order they come: a long range of raw
/// points is never held whole.
async fn aggregated(
    engine: &QueryEngine,
    tenant: TenantId,
    entity: EntityId,
    q: &TimeseriesQuery,
    agg: Aggregation,
    starts: &[i64],
    hours_end: Option<i64>,
) -> Result<TimeseriesResult> {
    let mut buckets = Buckets::new(q, starts);
    let raw_from = if let Some(hours_end) = hours_end {
        let (from, to) = (q.start_ts, hours_end);
        let months = [ident("month").gt_eq(lit(month_of(from))), ident("month").lt_eq(lit(month_of(to - 1)))];
        let filter = series(entity, &q.keys, (from, to));
        engine.rows_where(&telemetry_hourly(), tenant, &months, &filter, &HOURLY_COLUMNS, |batch| buckets.add_hours(batch)).await?;
        hours_end
    } else {
        q.start_ts
    };
    if raw_from < q.end_ts {
        let (from, to) = (raw_from, q.end_ts);
        let days = [
            ident("day").gt_eq(lit(ScalarValue::Date32(Some(day_of(from))))),
            ident("day").lt_eq(lit(ScalarValue::Date32(Some(day_of(to.saturating_sub(1)))))),
        ];
        let filter = series(entity, &q.keys, (from, to));
        engine.rows_where(&telemetry(), tenant, &days, &filter, &POINT_COLUMNS, |batch| buckets.add_points(batch)).await?;
    }
    Ok(buckets.answer(q, starts, agg))
}

/// The rows of one entity's `keys` with `ts` in `[from, to)`.
fn series(entity: EntityId, keys: &[String], (from, to): (i64, i64)) -> Expr {
    let keys: Vec<Expr> = keys.iter().map(|k| lit(k.as_str())).collect();
    ident("entity_type")
        .eq(lit(entity.entity_type.as_str()))
        .and(ident("entity_id").eq(lit(entity.id.to_string())))
        .and(ident("key").in_list(keys, false))
        .and(ident("ts").gt_eq(lit(from)))
        .and(ident("ts").lt(lit(to)))
}

/// What an aggregated query reads of the rollup's partial rows.
const HOURLY_COLUMNS: [&str; 11] =
    ["key", "ts", "count", "long_count", "double_count", "long_sum", "double_sum", "long_min", "long_max", "double_min", "double_max"];

/// What an aggregated query reads of raw points.
const POINT_COLUMNS: [&str; 4] = ["key", "ts", "long_v", "dbl_v"];

/// An aggregated query's buckets as rows are added: per key of the query (by position), the
/// aggregates of each bucket that has rows. Rows come in runs of one key and bucket (the lake is
/// sorted by entity, key and time), so a run is added up before it is looked up.
struct Buckets<'q> {
    keys: &'q [String],
    /// Fixed-length buckets from `start`, or the calendar buckets' starts.
    start: i64,
    interval: i64,
    starts: Option<&'q [i64]>,
    per_key: Vec<BTreeMap<i64, Aggregates>>,
    /// The run being added up: key position, bucket, aggregates.
    run: Option<(usize, i64, Aggregates)>,
}

impl<'q> Buckets<'q> {
    fn new(q: &'q TimeseriesQuery, starts: &'q [i64]) -> Self {
        Self {
            keys: &q.keys,
            start: q.start_ts,
            interval: q.interval.max(1),
            starts: q.calendar.is_some().then_some(starts),
            per_key: vec![BTreeMap::new(); q.keys.len()],
            run: None,
        }
    }

    /// The bucket of a row's `ts` (rows are in `[startTs, endTs)`): fixed-length ones count from
    /// `startTs`; a calendar one is the last start at or before `ts`.
    fn bucket(&self, ts: i64) -> i64 {
        match self.starts {
            None => (ts - self.start).div_euclid(self.interval),
            Some(starts) => starts.partition_point(|s| *s <= ts) as i64 - 1,
        }
    }

    fn add(&mut self, key: &str, ts: i64, part: Aggregates) {
        let Some(k) = self.keys.iter().position(|wanted| wanted == key) else { return };
        let bucket = self.bucket(ts);
        match &mut self.run {
            Some((run_key, run_bucket, sum)) if *run_key == k && *run_bucket == bucket => sum.add(&part),
            run => {
                let ended = run.replace((k, bucket, part));
                self.settle(ended);
            }
        }
    }

    /// Adds a run that ended to its bucket.
    fn settle(&mut self, run: Option<(usize, i64, Aggregates)>) {
        if let Some((k, bucket, sum)) = run {
            self.per_key[k].entry(bucket).and_modify(|s| s.add(&sum)).or_insert(sum);
        }
    }

    /// Adds rollup rows (columns [`HOURLY_COLUMNS`]).
    fn add_hours(&mut self, batch: &RecordBatch) -> Result<()> {
        let keys = string_views(batch, "key")?;
        let [ts, n, nl, nd, sl, minl, maxl] = ["ts", "count", "long_count", "double_count", "long_sum", "long_min", "long_max"].map(|c| column(batch, c, &DataType::Int64));
        let [sd, mind, maxd] = ["double_sum", "double_min", "double_max"].map(|c| column(batch, c, &DataType::Float64));
        let [ts, n, nl, nd, sl, minl, maxl] = [ts?, n?, nl?, nd?, sl?, minl?, maxl?];
        let [sd, mind, maxd] = [sd?, mind?, maxd?];
        let [ts, n, nl, nd, sl, minl, maxl] = [&ts, &n, &nl, &nd, &sl, &minl, &maxl].map(|c| c.as_primitive::<Int64Type>());
        let [sd, mind, maxd] = [&sd, &mind, &maxd].map(|c| c.as_primitive::<Float64Type>());
        let long = |c: &deltalake_core::arrow::array::Int64Array, row: usize| c.is_valid(row).then(|| c.value(row));
        let double = |c: &deltalake_core::arrow::array::Float64Array, row: usize| c.is_valid(row).then(|| c.value(row));
        for row in 0..batch.num_rows() {
            let (Some(key), Some(at)) = (keys.is_valid(row).then(|| keys.value(row)), long(ts, row)) else { continue };
            let part = Aggregates {
                count: long(n, row).unwrap_or(0),
                long_count: long(nl, row).unwrap_or(0),
                double_count: long(nd, row).unwrap_or(0),
                long_sum: long(sl, row).unwrap_or(0),
                double_sum: double(sd, row).unwrap_or(0.0),
                long_min: long(minl, row),
                long_max: long(maxl, row),
                double_min: double(mind, row),
                double_max: double(maxd, row),
            };
            self.add(key, at, part);
        }
        Ok(())
    }

    /// Adds raw points (columns [`POINT_COLUMNS`]): each counts once, and as a long or a double
    /// when it is one.
    fn add_points(&mut self, batch: &RecordBatch) -> Result<()> {
        let keys = string_views(batch, "key")?;
        let (ts, longs, doubles) = (column(batch, "ts", &DataType::Int64)?, column(batch, "long_v", &DataType::Int64)?, column(batch, "dbl_v", &DataType::Float64)?);
        let (ts, longs, doubles) = (ts.as_primitive::<Int64Type>(), longs.as_primitive::<Int64Type>(), doubles.as_primitive::<Float64Type>());
        for row in 0..batch.num_rows() {
            if !keys.is_valid(row) || !ts.is_valid(row) {
                continue;
            }
            let long = longs.is_valid(row).then(|| longs.value(row));
            let double = doubles.is_valid(row).then(|| doubles.value(row));
            let part = Aggregates {
                count: 1,
                long_count: i64::from(long.is_some()),
                double_count: i64::from(double.is_some()),
                long_sum: long.unwrap_or(0),
                double_sum: double.unwrap_or(0.0),
                long_min: long,
                long_max: long,
                double_min: double,
                double_max: double,
            };
            self.add(keys.value(row), ts.value(row), part);
        }
        Ok(())
    }

    /// Per key with values, ThingsBoard's `agg` of each bucket at the bucket's middle, oldest
    /// first; buckets without a value `agg` applies to are left out.
    fn answer(mut self, q: &TimeseriesQuery, starts: &[i64], agg: Aggregation) -> TimeseriesResult {
        let last = self.run.take();
        self.settle(last);
        let mut out = Vec::new();
        for (key, buckets) in q.keys.iter().zip(self.per_key) {
            let series: Vec<TsPoint> = buckets
                .into_iter()
                .filter_map(|(bucket, stats)| bucket_value(&stats, agg).map(|value| TsPoint { ts: bucket_middle(q, starts, bucket), value }))
                .collect();
            if !series.is_empty() {
                out.push((key.clone(), series));
            }
        }
        out
    }
}

/// Where the rollup's whole hours of the query end, when it is used: every bucket starts on a
/// whole UTC hour (so each hour of the rollup falls into one bucket) and at least one whole hour
/// is in the range. Points from there to `endTs` are read raw.
fn rollup_end(q: &TimeseriesQuery, starts: &[i64]) -> Option<i64> {
    let aligned = match q.calendar {
        None => q.start_ts % HOUR_MS == 0 && q.interval % HOUR_MS == 0,
        Some(_) => starts.iter().all(|s| s % HOUR_MS == 0),
    };
    let hours_end = hour_of(q.end_ts);
    (aligned && hours_end > q.start_ts).then_some(hours_end)
}

/// ThingsBoard's aggregate of one bucket; `None` when the bucket has no value it applies to (left
/// out).
fn bucket_value(stats: &Aggregates, agg: Aggregation) -> Option<KvValue> {
    let numeric = stats.long_count + stats.double_count;
    match agg {
        Aggregation::Count => (stats.count > 0).then_some(KvValue::Long(stats.count)),
        Aggregation::Avg => (numeric > 0).then(|| KvValue::Double((stats.long_sum as f64 + stats.double_sum) / numeric as f64)),
        Aggregation::Sum if stats.double_count > 0 => Some(KvValue::Double(stats.double_sum + stats.long_sum as f64)),
        Aggregation::Sum => (stats.long_count > 0).then_some(KvValue::Long(stats.long_sum)),
        Aggregation::Min => extreme(stats.long_min, stats.double_min, f64::min),
        Aggregation::Max => extreme(stats.long_max, stats.double_max, f64::max),
        Aggregation::None => None,
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
        .ok_or_else(|| QueryError::ColumnMissing { name: name.to_string() })?;
    cast(array, to).map_err(QueryError::arrow(format!("reading column {name}")))
}

fn int_column(batch: &RecordBatch, name: &str) -> Result<Vec<Option<i64>>> {
    Ok(column(batch, name, &DataType::Int64)?.as_primitive::<Int64Type>().iter().collect())
}

fn float_column(batch: &RecordBatch, name: &str) -> Result<Vec<Option<f64>>> {
    Ok(column(batch, name, &DataType::Float64)?.as_primitive::<Float64Type>().iter().collect())
}

/// A string column as string views (the lake's strings are views already; the hot tail's are
/// cast).
fn string_views(batch: &RecordBatch, name: &str) -> Result<deltalake_core::arrow::array::StringViewArray> {
    Ok(column(batch, name, &DataType::Utf8View)?.as_string_view().clone())
}

fn text_column(batch: &RecordBatch, name: &str) -> Result<Vec<Option<String>>> {
    Ok(column(batch, name, &DataType::Utf8)?.as_string::<i32>().iter().map(|s| s.map(str::to_string)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longs_and_doubles_combine_as_in_thingsboard() {
        let longs = Aggregates {
            count: 3,
            long_count: 2,
            double_count: 0,
            long_sum: 5,
            double_sum: 0.0,
            long_min: Some(2),
            long_max: Some(3),
            double_min: None,
            double_max: None,
        };
        assert_eq!(bucket_value(&longs, Aggregation::Avg), Some(KvValue::Double(2.5)));
        assert_eq!(bucket_value(&longs, Aggregation::Sum), Some(KvValue::Long(5)));
        assert_eq!(bucket_value(&longs, Aggregation::Max), Some(KvValue::Long(3)));
        assert_eq!(bucket_value(&longs, Aggregation::Count), Some(KvValue::Long(3)));
        let mixed = Aggregates { double_count: 1, double_sum: 0.5, double_min: Some(0.5), double_max: Some(0.5), ..longs };
        assert_eq!(bucket_value(&mixed, Aggregation::Sum), Some(KvValue::Double(5.5)));
        assert_eq!(bucket_value(&mixed, Aggregation::Min), Some(KvValue::Double(0.5)));
        assert_eq!(bucket_value(&mixed, Aggregation::Max), Some(KvValue::Double(3.0)));
        let text = Aggregates { long_count: 0, long_sum: 0, long_min: None, long_max: None, ..longs };
        assert_eq!(bucket_value(&text, Aggregation::Avg), None);
        assert_eq!(bucket_value(&text, Aggregation::Count), Some(KvValue::Long(3)));
    }
}
