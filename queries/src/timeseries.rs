//! ThingsBoard's time-series queries (`…/values/timeseries?keys&startTs&endTs&interval&intervalType&timeZone&agg&limit&orderBy`)
//! as asked: raw points, or aggregates per fixed-length or calendar bucket; the engine answers them
//! in `timeseries_read`.
//!
//! Semantics as ThingsBoard's: the range is `[startTs, endTs)`; without aggregation the newest
//! (or oldest) `limit` points per key; with one, buckets of `interval` ms from `startTs` — or, with
//! a calendar `intervalType`, from `startTs` to the next start of a week (Sunday), ISO week
//! (Monday), month or quarter in `timeZone`, then whole ones ([`Calendar`]) — the last one clipped
//! at `endTs`, each answered at the middle of its clipped bucket, oldest first, empty buckets
//! omitted. AVG, SUM, MIN and MAX take long and double values (AVG is always a double;
//! SUM, MIN and MAX are a long while the bucket has only longs); COUNT counts points of any type.

use std::str::FromStr;

use chrono::{Datelike, Days, LocalResult, Months, NaiveDate, Offset, TimeZone};
use chrono_tz::Tz;
use thinglake_domain::telemetry::KvValue;

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
    pub(crate) fn calendar_starts_within(&self, max_buckets: i64) -> Vec<i64> {
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

/// The middle of bucket `index`, clipped at `endTs`.
pub fn bucket_ts(q: &TimeseriesQuery, index: i64) -> i64 {
    bucket_middle(q, &q.calendar_starts(), index)
}

/// [`bucket_ts`] with the calendar bucket starts computed once.
pub(crate) fn bucket_middle(q: &TimeseriesQuery, starts: &[i64], index: i64) -> i64 {
    let (start, end) = if q.calendar.is_some() {
        let at = |i: i64| usize::try_from(i).ok().and_then(|i| starts.get(i).copied());
        (at(index).unwrap_or(q.end_ts), at(index + 1).unwrap_or(q.end_ts))
    } else {
        let start = q.start_ts + index * q.interval;
        (start, (start + q.interval).min(q.end_ts))
    };
    start + (end - start) / 2
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
}
