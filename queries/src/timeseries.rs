//! ThingsBoard's time-series queries (`…/values/timeseries?keys&startTs&endTs&interval&intervalType&timeZone&agg&limit&orderBy`)
//! answered through the engine: raw points, or aggregates per fixed-length or calendar bucket.
//!
//! Semantics as ThingsBoard's: the range is `[startTs, endTs)`; without aggregation the newest
//! (or oldest) `limit` points per key; with one, buckets of `interval` ms from `startTs` — or, with
//! a calendar `intervalType`, from `startTs` to the next start of a week (Sunday), ISO week
//! (Monday), month or quarter in `timeZone`, then whole ones ([`Calendar`]) — the last one clipped
//! at `endTs`, each answered at the middle of its clipped bucket, oldest first, empty buckets
//! omitted. AVG, SUM, MIN and MAX take long and double values (AVG is always a double;
//! SUM, MIN and MAX are a long while the bucket has only longs); COUNT counts points of any type.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{Datelike, Days, LocalResult, Months, NaiveDate, Offset, TimeZone};
use chrono_tz::Tz;

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

/// `intervalType`: what a bucket of an aggregated query is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IntervalType {
    /// `interval` milliseconds (the default).
    #[default]
    Milliseconds,
    /// A week from Sunday.
    Week,
    /// An ISO week, from Monday.
    WeekIso,
    Month,
    Quarter,
}

impl FromStr for IntervalType {
    type Err = QueryError;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_uppercase().as_str() {
            "MILLISECONDS" => Ok(IntervalType::Milliseconds),
            "WEEK" => Ok(IntervalType::Week),
            "WEEK_ISO" => Ok(IntervalType::WeekIso),
            "MONTH" => Ok(IntervalType::Month),
            "QUARTER" => Ok(IntervalType::Quarter),
            _ => Err(QueryError::invalid_timeseries(format!(
                "unknown intervalType {s} (MILLISECONDS, WEEK, WEEK_ISO, MONTH or QUARTER)"
            ))),
        }
    }
}

/// Calendar buckets: weeks, months or quarters whose boundaries are local midnights in `zone`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Calendar {
    /// Not [`IntervalType::Milliseconds`].
    pub interval_type: IntervalType,
    pub zone: Tz,
}

impl Calendar {
    /// `intervalType` and `timeZone` (an IANA name; UTC when absent) as calendar buckets, or
    /// `None` for fixed-length ones.
    pub fn parse(interval_type: Option<&str>, time_zone: Option<&str>) -> Result<Option<Self>> {
        let interval_type = interval_type.filter(|t| !t.is_empty()).map(str::parse).transpose()?.unwrap_or_default();
        if interval_type == IntervalType::Milliseconds {
            return Ok(None);
        }
        let zone = match time_zone.filter(|z| !z.is_empty()) {
            None => Tz::UTC,
            Some(name) => name
                .parse::<Tz>()
                .map_err(|_| QueryError::invalid_timeseries(format!("unknown timeZone {name} (an IANA name such as Europe/Berlin)")))?,
        };
        Ok(Some(Calendar { interval_type, zone }))
    }

    /// The start of the calendar period after the one holding `ts` (ms).
    pub fn next_start(&self, ts: i64) -> i64 {
        let Some(local) = self.zone.timestamp_millis_opt(ts).earliest() else { return i64::MAX };
        let date = local.date_naive();
        let next = match self.interval_type {
            IntervalType::Week => date.checked_sub_days(Days::new(u64::from(date.weekday().num_days_from_sunday())))
                .and_then(|d| d.checked_add_days(Days::new(7))),
            IntervalType::WeekIso | IntervalType::Milliseconds => date
                .checked_sub_days(Days::new(u64::from(date.weekday().num_days_from_monday())))
                .and_then(|d| d.checked_add_days(Days::new(7))),
            IntervalType::Month => date.with_day(1).and_then(|d| d.checked_add_months(Months::new(1))),
            IntervalType::Quarter => NaiveDate::from_ymd_opt(date.year(), (date.month0() / 3) * 3 + 1, 1)
                .and_then(|d| d.checked_add_months(Months::new(3))),
        };
        next.map_or(i64::MAX, |d| self.midnight(d))
    }

    /// The instant local midnight begins `date` in the zone: the earlier one when the clock
    /// goes back over midnight; when midnight is skipped (the clock jumps forward over it), the
    /// instant of the jump, as java.time resolves it.
    fn midnight(&self, date: NaiveDate) -> i64 {
        let midnight = date.and_hms_opt(0, 0, 0).expect("midnight exists");
        match self.zone.from_local_datetime(&midnight) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.timestamp_millis(),
            LocalResult::None => {
                // The offset in force just before the gap applies to the skipped local time.
                let before = self.zone.from_utc_datetime(&(midnight - chrono::Duration::hours(12)));
                (midnight - before.offset().fix()).and_utc().timestamp_millis()
            }
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
    /// Calendar buckets instead of `interval` (then `interval` is ignored).
    pub calendar: Option<Calendar>,
}

impl TimeseriesQuery {
    /// The aggregation actually applied: `interval=0` means NONE, unless buckets are calendar ones.
    pub fn effective_agg(&self) -> Aggregation {
        if self.interval == 0 && self.calendar.is_none() { Aggregation::None } else { self.agg }
    }

    /// The starts of the calendar buckets in `[startTs, endTs)`, at most `MAX_BUCKETS + 1` of
    /// them (enough to refuse more); the first is `startTs`.
    pub fn calendar_starts(&self) -> Vec<i64> {
        self.calendar_starts_within(MAX_BUCKETS)
    }

    /// [`TimeseriesQuery::calendar_starts`], at most `max_buckets + 1` of them.
    fn calendar_starts_within(&self, max_buckets: i64) -> Vec<i64> {
        let Some(calendar) = self.calendar else { return Vec::new() };
        let mut starts = Vec::new();
        let mut start = self.start_ts;
        while start < self.end_ts && starts.len() as i64 <= max_buckets {
            starts.push(start);
            start = calendar.next_start(start);
        }
        starts
    }

    /// Number of buckets of an aggregated query (0 for an empty range).
    pub fn buckets(&self) -> i64 {
        if self.calendar.is_some() {
            return self.calendar_starts().len() as i64;
        }
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
        if self.effective_agg() == Aggregation::None {
            return Ok(());
        }
        if let Some(calendar) = self.calendar {
            if self.calendar_starts_within(max_buckets).len() as i64 > max_buckets {
                return Err(QueryError::invalid_timeseries(format!(
                    "more than {max_buckets} {:?} intervals between startTs and endTs",
                    calendar.interval_type
                )));
            }
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

/// The middle of bucket `index`, clipped at `endTs`.
pub fn bucket_ts(q: &TimeseriesQuery, index: i64) -> i64 {
    bucket_middle(q, &q.calendar_starts(), index)
}

/// [`bucket_ts`] with the calendar bucket starts computed once.
fn bucket_middle(q: &TimeseriesQuery, starts: &[i64], index: i64) -> i64 {
    let (start, end) = if q.calendar.is_some() {
        let at = |i: i64| usize::try_from(i).ok().and_then(|i| starts.get(i).copied());
        (at(index).unwrap_or(q.end_ts), at(index + 1).unwrap_or(q.end_ts))
    } else {
        let start = q.start_ts + index * q.interval;
        (start, (start + q.interval).min(q.end_ts))
    };
    start + (end - start) / 2
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
        .ok_or_else(|| QueryError::Task { reason: format!("column {name} missing from a result") })?;
    cast(array, to).map_err(|e| QueryError::Task { reason: format!("reading column {name}: {e}") })
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

    fn query(start_ts: i64, end_ts: i64, interval: i64, agg: Aggregation) -> TimeseriesQuery {
        TimeseriesQuery {
            keys: vec!["t".into()],
            start_ts,
            end_ts,
            interval,
            agg,
            limit: DEFAULT_LIMIT,
            order: Order::Desc,
            calendar: None,
        }
    }

    fn calendar(interval_type: &str, zone: &str) -> Calendar {
        Calendar::parse(Some(interval_type), Some(zone)).expect("valid").expect("a calendar interval")
    }

    // Instants from `TZ=… date -d '… 00:00' +%s` (GNU date, the system's tz database).
    const JAN_10_UTC: i64 = 1_704_844_800_000; // 2024-01-10T00:00Z, a Wednesday
    const BERLIN_FEB_1: i64 = 1_706_742_000_000;
    const BERLIN_MAR_1: i64 = 1_709_247_600_000;
    const BERLIN_APR_1: i64 = 1_711_922_400_000; // summer time (UTC+2) by then
    const BERLIN_MAY_1: i64 = 1_714_514_400_000;
    const BERLIN_SUN_JAN_14: i64 = 1_705_186_800_000;
    const BERLIN_MON_JAN_15: i64 = 1_705_273_200_000;

    #[test]
    fn calendar_periods_end_at_local_midnights_across_summer_time() {
        let month = calendar("MONTH", "Europe/Berlin");
        assert_eq!(month.next_start(JAN_10_UTC), BERLIN_FEB_1);
        assert_eq!(month.next_start(BERLIN_FEB_1), BERLIN_MAR_1);
        assert_eq!(month.next_start(BERLIN_MAR_1), BERLIN_APR_1);
        assert_eq!(month.next_start(BERLIN_APR_1), BERLIN_MAY_1);
        assert_eq!(month.next_start(BERLIN_FEB_1 - 1), BERLIN_FEB_1, "the last instant of January");
        assert_eq!(calendar("QUARTER", "Europe/Berlin").next_start(JAN_10_UTC), BERLIN_APR_1);
        assert_eq!(calendar("WEEK", "Europe/Berlin").next_start(JAN_10_UTC), BERLIN_SUN_JAN_14);
        assert_eq!(calendar("week_iso", "Europe/Berlin").next_start(JAN_10_UTC), BERLIN_MON_JAN_15);
        // UTC when no zone is given.
        let utc = Calendar::parse(Some("MONTH"), None).expect("valid").expect("calendar");
        assert_eq!(utc.next_start(JAN_10_UTC), 1_706_745_600_000);
        // São Paulo skipped midnight on 2018-11-04 (summer time began at 00:00): the week starts
        // at the jump, 01:00 local.
        let week = calendar("WEEK", "America/Sao_Paulo");
        assert_eq!(week.next_start(1_541_073_600_000), 1_541_300_400_000);
    }

    #[test]
    fn calendar_buckets_start_at_start_ts_and_are_clipped_at_end_ts() {
        let q = TimeseriesQuery { calendar: Some(calendar("MONTH", "Europe/Berlin")), ..query(JAN_10_UTC, BERLIN_APR_1 + 5, 0, Aggregation::Avg) };
        assert_eq!(q.calendar_starts(), vec![JAN_10_UTC, BERLIN_FEB_1, BERLIN_MAR_1, BERLIN_APR_1]);
        assert_eq!(q.effective_agg(), Aggregation::Avg, "interval 0 does not turn calendar buckets off");
        assert_eq!(bucket_ts(&q, 0), JAN_10_UTC + (BERLIN_FEB_1 - JAN_10_UTC) / 2);
        assert_eq!(bucket_ts(&q, 3), BERLIN_APR_1 + 2);
        assert!(q.validate().is_ok());
        let years = TimeseriesQuery { calendar: Some(calendar("WEEK", "UTC")), ..query(0, 800 * 7 * 86_400_000, 0, Aggregation::Avg) };
        assert!(years.validate().is_err(), "more than 700 weeks");
        assert!(years.validate_within(801).is_ok(), "a raised limit counts calendar buckets too");
        assert!(Calendar::parse(Some("FORTNIGHT"), None).is_err());
        assert!(Calendar::parse(Some("MONTH"), Some("Mars/Olympus")).is_err());
        assert_eq!(Calendar::parse(Some("MILLISECONDS"), Some("Mars/Olympus")).expect("valid"), None);
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
