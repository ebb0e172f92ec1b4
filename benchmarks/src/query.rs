//! Suite `query`: the same telemetry points in Thinglake's lake and in PostgreSQL with
//! ThingsBoard's `ts_kv` schema, three queries timed on both, DuckDB over the same Parquet files
//! as the reference engine.
//!
//! - Thinglake: the whole platform runs in this process (`RunningApp`, on a real nats-server);
//!   the points go onto the telemetry stream through the platform's telemetry store, the lake
//!   projection commits them, the table is compacted by the upkeep code as on a running node,
//!   and the latest-values follower reads them into memory. Queries go through the platform's use
//!   cases (the calls the REST handlers make) and, timed separately, through HTTP.
//! - PostgreSQL: a private cluster of Debian's server with ThingsBoard's `ts_kv` (partitioned by
//!   month, primary key `(entity_id, key, ts)`), `ts_kv_dictionary` and `ts_kv_latest`, and a
//!   `device` table with the columns the fleet query needs; loaded with `COPY`, `VACUUM ANALYZE`.
//! - DuckDB: `benchmarks/duckdb_reference.py` over the Delta table's live files.
//!
//! Queries: (a) chart — one device, one key, 30 days, 1-hour AVG; (b) latest values of 10 keys
//! of one device; (c) fleet — daily averages per device type and key over all points. Each is run
//! after a warm-up; the median of the timed runs is reported, and every system's answer is
//! checked against the others' before any figure is printed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde_json::{Value, json};
use thinglake_domain::telemetry::{KvEntry, KvValue, TelemetryData, TelemetryMessage, TsBatch};
use thinglake_domain::user::Authority;
use thinglake_domain::{Actor, CustomerId, EntityId, EntityType, TenantId, UserId};
use thinglake_lake::table::{LAKE_TELEMETRY, LAKE_TELEMETRY_HOURLY};
use thinglake_lake::upkeep;
use thinglake_platform::{Platform, Principal};
use thinglake_queries::{Aggregation, Order, TimeseriesQuery};
use thinglake_server::{RunningApp, Settings};
use thinglake_test_support::NatsServer;
use uuid::Uuid;

use crate::postgres::{self, PgCluster};
use crate::report::emit;

#[derive(Debug, clap::Args)]
pub(crate) struct Options {
    /// Points loaded into both systems (100M: `--points 100000000`, see docs/benchmarks.md).
    #[arg(long, default_value_t = 10_000_000)]
    points: usize,
    /// Devices, spread over three device types; each reports all ten keys.
    #[arg(long, default_value_t = 50)]
    devices: usize,
    /// Days of history the points cover, evenly spaced (at least 30: the chart query's range).
    #[arg(long, default_value_t = 31)]
    days: i64,
    /// Timestamps per telemetry message (each with all ten keys), as a batching device sends them.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Warm-up runs of each query before the timed ones.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Timed runs of each query (the median is reported; the latest-values query runs 20 times as often).
    #[arg(long, default_value_t = 7)]
    runs: usize,
    /// Parts to skip: any of `postgres`, `duckdb`, `http` (comma separated).
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
    /// Keeps the scratch directory (lake, nats store, PostgreSQL cluster) and prints its path.
    #[arg(long)]
    keep: bool,
}

/// The ten keys every device reports: name, and whether its values are longs.
const KEYS: [(&str, bool); 10] = [
    ("temperature", false),
    ("humidity", false),
    ("pressure", false),
    ("voltage", false),
    ("current", false),
    ("power", false),
    ("speed", false),
    ("co2", true),
    ("rssi", true),
    ("battery", true),
];
const DEVICE_TYPES: [&str; 3] = ["thermostat", "meter", "tracker"];
/// 2025-10-01T00:00:00Z: the first day of the data.
const START: i64 = 1_759_276_800_000;
const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;
const CHART_KEY: &str = "temperature";

/// Where the points are: `series` points per (device, key), `step` ms apart.
#[derive(Debug, Clone, Copy)]
struct Layout {
    devices: usize,
    series: usize,
    step: i64,
}

impl Layout {
    fn new(o: &Options) -> anyhow::Result<Self> {
        anyhow::ensure!(o.days >= 30, "--days must be at least 30 (the chart query covers 30 days)");
        anyhow::ensure!(o.devices >= 1, "--devices must be at least 1");
        let series = o.points / (o.devices * KEYS.len());
        anyhow::ensure!(series >= 1, "--points must be at least devices × 10");
        let step = (o.days * DAY / series as i64).max(1);
        Ok(Self { devices: o.devices, series, step })
    }

    fn points(&self) -> usize {
        self.series * self.devices * KEYS.len()
    }

    /// The `i`-th timestamp of device `d` (devices slightly apart, as real ones are).
    fn ts(&self, d: usize, i: usize) -> i64 {
        START + i as i64 * self.step + (d as i64 * 7_919) % self.step
    }
}

/// A deterministic, noisy value (sensor-like: a daily cycle, noise, two decimals for doubles).
fn value(d: usize, k: usize, i: usize, ts: i64) -> KvValue {
    let mut x = (d as u64) << 40 ^ (k as u64) << 32 ^ i as u64;
    // splitmix64
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    let noise = (x >> 11) as f64 / (1u64 << 53) as f64;
    let cycle = ((ts % DAY) as f64 / DAY as f64 * std::f64::consts::TAU).sin();
    let base = 10.0 * (k + 1) as f64 + d as f64 % 7.0;
    if KEYS[k].1 {
        KvValue::Long((base * 10.0 + cycle * 50.0 + noise * 100.0) as i64)
    } else {
        KvValue::Double(((base + cycle * 5.0 + noise * 2.0) * 100.0).round() / 100.0)
    }
}

fn device_type(d: usize) -> &'static str {
    DEVICE_TYPES[d % DEVICE_TYPES.len()]
}

pub(crate) async fn run(o: Options) -> anyhow::Result<()> {
    let layout = Layout::new(&o)?;
    if !o.skip.iter().any(|s| s == "postgres") {
        postgres::ensure_installed()?;
    }
    let scratch = std::env::temp_dir().join(format!("thinglake-bench-query-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&scratch)?;
    let result = Box::pin(run_in(&o, layout, &scratch)).await;
    if o.keep {
        eprintln!("query: scratch directory kept at {}", scratch.display());
    } else {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    result
}

/// Fleet answer rows by (device type, key, day): (average, points).
type FleetRows = BTreeMap<(String, String, String), (f64, i64)>;

/// What the Thinglake side answered, for the cross-checks.
struct Answers {
    chart: Vec<f64>,
    latest: BTreeMap<String, (i64, f64)>,
    fleet: FleetRows,
}

async fn run_in(o: &Options, layout: Layout, scratch: &Path) -> anyhow::Result<()> {
    let skip = |part: &str| o.skip.iter().any(|s| s == part);
    let points = layout.points();
    eprintln!(
        "query: {points} points = {} devices × {} keys × {} timestamps, {} ms apart over {} days",
        layout.devices,
        KEYS.len(),
        layout.series,
        layout.step,
        o.days
    );

    // Thinglake: the platform in this process, its API on a local port.
    let nats = NatsServer::start().await;
    let mut settings = Settings::new(scratch.join("thinglake"));
    settings.http_host = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    settings.http_port = 0;
    settings.mqtt_host = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    settings.mqtt_port = 0;
    settings.nats_url = Some(nats.url());
    // The PostgreSQL wire protocol listener is not measured here (and 5433 may be taken).
    settings.pg_listen = None;
    settings.admin_email = "sysadmin@bench.local".into();
    settings.admin_password = Some("bench-sysadmin-password".into());
    settings.query.time_limit = Duration::from_secs(600);
    // 30 days of 1-hour buckets are 720: raised as a ThingsBoard operator raises DATABASE_TS_MAX_INTERVALS.
    settings.query.max_intervals = 720;
    let location = settings.lake_options()?.location;
    let app = RunningApp::start(settings).await?;
    let platform = app.platform.clone();
    let api = Api::new(format!("http://{}", app.http_addr));
    let (tenant, admin, token) = api.tenant_admin().await?;
    let mut devices = Vec::with_capacity(layout.devices);
    for d in 0..layout.devices {
        let created = api.post("/api/device", &token, json!({"name": format!("bench-{d:04}"), "type": device_type(d)})).await?;
        let id = created["id"]["id"].as_str().context("device id")?.parse::<Uuid>()?;
        devices.push(id);
    }

    let start = Instant::now();
    let last_seq = publish_points(&platform, tenant, &devices, layout, o.batch).await?;
    let published = start.elapsed();
    let status = app.lake.status(LAKE_TELEMETRY).context("the telemetry projection runs")?.clone();
    let rollup = app.lake.status(LAKE_TELEMETRY_HOURLY).context("the rollup projection runs")?.clone();
    while status.committed_seq() < last_seq || rollup.committed_seq() < last_seq || platform.latest().last_seq() < last_seq {
        anyhow::ensure!(start.elapsed() < Duration::from_secs(3600), "the lake projection did not catch up within an hour");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let projected = start.elapsed();
    eprintln!(
        "query: published in {:.1} s, committed to the lake and in the latest values after {:.1} s ({} commits)",
        published.as_secs_f64(),
        projected.as_secs_f64(),
        status.commits()
    );
    emit("query_load_points", points as f64, "points", None);
    emit("query_load_projected_points_per_s", points as f64 / projected.as_secs_f64(), "points/s", None);
    let files_before = live_files(&location, LAKE_TELEMETRY).await?.0;
    let started = Instant::now();
    let (removed, written) = upkeep::compact(&location, LAKE_TELEMETRY, upkeep::SMALL_FILE_BYTES, upkeep::MIN_FILES).await?;
    let (files, lake_bytes) = live_files(&location, LAKE_TELEMETRY).await?;
    eprintln!(
        "query: compaction {removed} → {written} files in {:.1} s; the table has {files} files ({files_before} before), {lake_bytes} bytes",
        started.elapsed().as_secs_f64()
    );
    let (removed, written) = upkeep::compact(&location, LAKE_TELEMETRY_HOURLY, upkeep::SMALL_FILE_BYTES, upkeep::MIN_FILES).await?;
    let (rollup_files, rollup_bytes) = live_files(&location, LAKE_TELEMETRY_HOURLY).await?;
    eprintln!("query: rollup compaction {removed} → {written} files; telemetry_hourly has {rollup_files} files, {rollup_bytes} bytes");

    // The queries, Thinglake side.
    let device = devices[0];
    let entity = EntityId { entity_type: EntityType::Device, id: device };
    let chart_end = START + o.days * DAY;
    let chart_start = chart_end - 30 * DAY;
    let chart_query = TimeseriesQuery {
        keys: vec![CHART_KEY.into()],
        start_ts: chart_start,
        end_ts: chart_end,
        interval: HOUR,
        agg: Aggregation::Avg,
        limit: thinglake_queries::timeseries::DEFAULT_LIMIT,
        order: Order::Desc,
        calendar: None,
    };
    // The same chart with buckets that do not start on whole hours: every point is read raw.
    let chart_raw_query = TimeseriesQuery { start_ts: chart_start + 1, ..chart_query.clone() };
    let keys: Vec<String> = KEYS.iter().map(|(k, _)| k.to_string()).collect();
    // The fleet query over the hourly rollup: what an analyst writes for long ranges.
    let fleet_hourly_sql = "SELECT d.type AS device_type, h.key, CAST(to_timestamp_millis(h.ts) AS DATE) AS day, \
                            sum(h.sum) / sum(h.numeric_count) AS avg_value, sum(h.count) AS points \
                            FROM telemetry_hourly h JOIN devices d ON d.id = h.entity_id GROUP BY 1, 2, 3 ORDER BY 1, 2, 3";
    let fleet_sql = "SELECT d.type AS device_type, t.key, t.day, avg(coalesce(t.dbl_v, CAST(t.long_v AS DOUBLE))) AS avg_value, \
                     count(*) AS points FROM telemetry t JOIN devices d ON d.id = t.entity_id \
                     GROUP BY d.type, t.key, t.day ORDER BY 1, 2, 3";

    let (chart_ms, chart) = {
        let (times, answer) =
            time_async(o.warmup, o.runs, || async { Ok(platform.timeseries(&admin, entity, chart_query.clone()).await?) }).await?;
        let series = answer.into_iter().next().map(|(_, points)| points).unwrap_or_default();
        let values = series.iter().map(|p| kv_f64(&p.value)).collect::<Option<Vec<f64>>>().context("chart values are numbers")?;
        (median(times), values)
    };
    let (chart_raw_ms, chart_raw) = {
        let (times, answer) =
            time_async(o.warmup, o.runs, || async { Ok(platform.timeseries(&admin, entity, chart_raw_query.clone()).await?) }).await?;
        (median(times), answer.into_iter().next().map(|(_, points)| points.len()).unwrap_or_default())
    };
    anyhow::ensure!(chart_raw == 720, "the unaligned chart has {chart_raw} buckets, expected 720");
    let latest_runs = o.runs * 20;
    let (latest_ms, latest) = {
        let (times, answer) =
            time_async(o.warmup, latest_runs, || async { Ok(platform.latest_timeseries(&admin, entity, Some(&keys))?) }).await?;
        let values = answer
            .iter()
            .map(|p| Ok((p.key.clone(), (p.ts, kv_f64(&p.value).context("latest value is a number")?))))
            .collect::<anyhow::Result<BTreeMap<_, _>>>()?;
        (median(times), values)
    };
    let (fleet_ms, fleet) = {
        let (times, answer) = time_async(o.warmup, o.runs, || async { Ok(platform.sql(&admin, fleet_sql).await?) }).await?;
        let rows = answer.rows;
        (median(times), fleet_rows(&rows)?)
    };
    let (fleet_hourly_ms, fleet_hourly) = {
        let (times, answer) = time_async(o.warmup, o.runs, || async { Ok(platform.sql(&admin, fleet_hourly_sql).await?) }).await?;
        (median(times), fleet_rows(&answer.rows)?)
    };
    check_fleet("the hourly rollup", &fleet, &fleet_lines(&fleet_hourly))?;
    let ours = Answers { chart, latest, fleet };
    anyhow::ensure!(ours.chart.len() == 720, "the chart has {} buckets, expected 720 (30 days of 1 h)", ours.chart.len());
    anyhow::ensure!(ours.latest.len() == KEYS.len(), "{} latest values, expected {}", ours.latest.len(), KEYS.len());
    let fleet_points: i64 = ours.fleet.values().map(|(_, n)| n).sum();
    anyhow::ensure!(fleet_points == points as i64, "the fleet query counted {fleet_points} points, {points} were loaded");

    // The same through HTTP (JSON rendering, auth and the network stack on top).
    let http = if skip("http") {
        None
    } else {
        let chart_path = format!(
            "/api/plugins/telemetry/DEVICE/{device}/values/timeseries?keys={CHART_KEY}&startTs={chart_start}&endTs={chart_end}&interval={HOUR}&agg=AVG"
        );
        let latest_path = format!("/api/plugins/telemetry/DEVICE/{device}/values/timeseries?keys={}", keys.join(","));
        let chart = median(time_async(o.warmup, o.runs, || api.get_checked(&chart_path, &token, CHART_KEY)).await?.0);
        let latest = median(time_async(o.warmup, latest_runs, || api.get_checked(&latest_path, &token, "battery")).await?.0);
        let fleet = median(
            time_async(o.warmup, o.runs, || async {
                let answer = api.post("/api/sql", &token, json!({"query": fleet_sql})).await?;
                anyhow::ensure!(answer["rows"].as_array().is_some_and(|r| !r.is_empty()), "SQL over HTTP answered no rows");
                Ok(())
            })
            .await?
            .0,
        );
        Some((chart, latest, fleet))
    };
    app.shutdown().await;

    // PostgreSQL with ThingsBoard's schema, the same points.
    let pg = if skip("postgres") {
        None
    } else {
        let pg = load_postgres(scratch, tenant, &devices, layout)?;
        let device_id = device.to_string();
        let chart_sql = format!(
            "SELECT (ts - {chart_start}) / {HOUR} AS bucket, avg(coalesce(dbl_v, long_v)) FROM ts_kv \
             WHERE entity_id = '{device_id}' AND key = (SELECT key_id FROM ts_kv_dictionary WHERE key = '{CHART_KEY}') \
             AND ts >= {chart_start} AND ts < {chart_end} GROUP BY 1 ORDER BY 1"
        );
        let key_list = keys.iter().map(|k| format!("'{k}'")).collect::<Vec<_>>().join(", ");
        let latest_sql = format!(
            "SELECT k.key, l.ts, coalesce(l.dbl_v, l.long_v) FROM ts_kv_latest l JOIN ts_kv_dictionary k ON k.key_id = l.key \
             WHERE l.entity_id = '{device_id}' AND k.key IN ({key_list}) ORDER BY 1"
        );
        let fleet_pg = "SELECT g.type, k.key, (date '1970-01-01' + g.day)::text, g.avg_value, g.points FROM \
                        (SELECT d.type, t.key AS key_id, (t.ts / 86400000)::int AS day, avg(coalesce(t.dbl_v, t.long_v)) AS avg_value, \
                        count(*) AS points FROM ts_kv t JOIN device d ON d.id = t.entity_id GROUP BY 1, 2, 3) g \
                        JOIN ts_kv_dictionary k ON k.key_id = g.key_id ORDER BY 1, 2, 3";
        // What ThingsBoard itself sends for the chart: one query per bucket.
        let per_bucket: String = (0..720)
            .map(|b| {
                let from = chart_start + b * HOUR;
                format!(
                    "SELECT avg(coalesce(dbl_v, long_v)), count(*) FROM ts_kv WHERE entity_id = '{device_id}' \
                     AND key = 1 AND ts >= {from} AND ts < {};\n",
                    from + HOUR
                )
            })
            .collect();
        let chart_ms = median(pg.time(&chart_sql, o.warmup, o.runs)?);
        let latest_ms = median(pg.time(&latest_sql, o.warmup, latest_runs)?);
        let fleet_ms = median(pg.time(fleet_pg, o.warmup, o.runs)?);
        let per_bucket_times = pg.timings(&per_bucket.repeat(o.warmup + o.runs))?;
        anyhow::ensure!(per_bucket_times.len() == 720 * (o.warmup + o.runs), "one timing per bucket query expected");
        let per_bucket_ms = median(per_bucket_times[720 * o.warmup..].chunks(720).map(|c| c.iter().sum()).collect());
        check_chart("PostgreSQL", &ours.chart, &pg.psql(&chart_sql)?)?;
        check_latest(&ours.latest, &pg.psql(&latest_sql)?)?;
        check_fleet("PostgreSQL", &ours.fleet, &pg.psql(fleet_pg)?)?;
        let bytes: f64 = pg.psql("SELECT sum(pg_total_relation_size(c.oid)) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'ts_kv'::regclass")?.trim().parse()?;
        Some((chart_ms, latest_ms, fleet_ms, per_bucket_ms, bytes))
    };

    // DuckDB over the live Parquet files.
    let duck = if skip("duckdb") {
        None
    } else {
        let day = |ts: i64| format!("DATE '{}'", civil_date(ts));
        let chart_duck = format!(
            "SELECT (ts - {chart_start}) // {HOUR} AS bucket, avg(coalesce(dbl_v, CAST(long_v AS DOUBLE))) FROM telemetry \
             WHERE entity_type = '{}' AND entity_id = '{device}' AND key = '{CHART_KEY}' AND day BETWEEN {} AND {} \
             AND ts >= {chart_start} AND ts < {chart_end} GROUP BY 1 ORDER BY 1",
            EntityType::Device,
            day(chart_start),
            day(chart_end - 1),
        );
        let table = location.local_dir(LAKE_TELEMETRY).context("the lake is a local directory")?;
        let hourly = location.local_dir(LAKE_TELEMETRY_HOURLY).context("the lake is a local directory")?;
        let fleet_hourly_duck = "SELECT d.type AS device_type, h.key, CAST(epoch_ms(h.ts) AS DATE) AS day, \
                                 sum(h.sum) / sum(h.numeric_count) AS avg_value, sum(h.count) AS points \
                                 FROM telemetry_hourly h JOIN devices d ON d.id = h.entity_id GROUP BY 1, 2, 3 ORDER BY 1, 2, 3";
        let queries = [("chart", chart_duck.as_str()), ("fleet", fleet_sql), ("fleet_hourly", fleet_hourly_duck)];
        let answer = duckdb(scratch, &table, &hourly, tenant, &devices, o, &queries)?;
        let rows = |name: &str| -> anyhow::Result<String> {
            Ok(answer[name]["rows"]
                .as_array()
                .context("rows")?
                .iter()
                .map(|r| r.as_array().map(|c| c.iter().map(cell).collect::<Vec<_>>().join("|")).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n"))
        };
        check_chart("DuckDB", &ours.chart, &rows("chart")?)?;
        check_fleet("DuckDB", &ours.fleet, &rows("fleet")?)?;
        check_fleet("DuckDB over the rollup", &ours.fleet, &rows("fleet_hourly")?)?;
        let times = |name: &str| -> anyhow::Result<f64> {
            Ok(median(answer[name]["times_ms"].as_array().context("times")?.iter().filter_map(Value::as_f64).collect()))
        };
        Some((times("chart")?, times("fleet")?, times("fleet_hourly")?))
    };

    // Figures: Thinglake's time, PostgreSQL's as the baseline; then DuckDB's as the baseline.
    let (pg_chart, pg_latest, pg_fleet) = pg.map_or((None, None, None), |p| (Some(p.0), Some(p.1), Some(p.2)));
    emit("query_chart_30d_1h_avg_ms", chart_ms, "ms", pg_chart);
    emit("query_chart_30d_1h_avg_raw_points_ms", chart_raw_ms, "ms", pg_chart);
    emit("query_latest_10_keys_us", latest_ms * 1000.0, "µs", pg_latest.map(|ms| ms * 1000.0));
    emit("query_fleet_daily_avg_by_type_ms", fleet_ms, "ms", pg_fleet);
    emit("query_fleet_daily_avg_by_type_hourly_rollup_ms", fleet_hourly_ms, "ms", pg_fleet);
    if let Some((chart, latest, fleet)) = http {
        emit("query_chart_30d_1h_avg_http_ms", chart, "ms", pg_chart);
        emit("query_latest_10_keys_http_us", latest * 1000.0, "µs", pg_latest.map(|ms| ms * 1000.0));
        emit("query_fleet_daily_avg_by_type_http_ms", fleet, "ms", pg_fleet);
    }
    if let Some((_, _, _, per_bucket, bytes)) = pg {
        emit("postgres_chart_thingsboard_720_queries_ms", per_bucket, "ms", None);
        emit("query_storage_bytes_per_point", lake_bytes as f64 / points as f64, "bytes", Some(bytes / points as f64));
        emit("query_rollup_storage_bytes_per_point", rollup_bytes as f64 / points as f64, "bytes", Some(bytes / points as f64));
    }
    if let Some((chart, fleet, fleet_hourly)) = duck {
        emit("query_chart_30d_1h_avg_vs_duckdb_ms", chart_ms, "ms", Some(chart));
        emit("query_chart_30d_1h_avg_raw_points_vs_duckdb_ms", chart_raw_ms, "ms", Some(chart));
        emit("query_fleet_daily_avg_by_type_vs_duckdb_ms", fleet_ms, "ms", Some(fleet));
        emit("query_fleet_daily_avg_by_type_hourly_rollup_vs_duckdb_ms", fleet_hourly_ms, "ms", Some(fleet_hourly));
    }
    Ok(())
}

/// Publishes every point through the platform's telemetry store (64 messages in flight), in
/// time order as devices would send them; returns the last stream sequence.
async fn publish_points(platform: &Platform, tenant: TenantId, devices: &[Uuid], layout: Layout, batch: usize) -> anyhow::Result<u64> {
    let store = platform.telemetry_store().clone();
    let mut in_flight = FuturesUnordered::new();
    let mut last = 0;
    let batch = batch.max(1);
    for first in (0..layout.series).step_by(batch) {
        for (d, &device) in devices.iter().enumerate() {
            let batches: Vec<TsBatch> = (first..(first + batch).min(layout.series))
                .map(|i| {
                    let ts = layout.ts(d, i);
                    let values = KEYS.iter().enumerate().map(|(k, (key, _))| KvEntry { key: key.to_string(), value: value(d, k, i, ts) }).collect();
                    TsBatch { ts, values }
                })
                .collect();
            let received_at = batches.last().map_or(START, |b| b.ts);
            let message = TelemetryMessage::new(
                Uuid::now_v7(),
                tenant.0,
                EntityType::Device,
                device,
                received_at,
                Actor::device(device),
                TelemetryData::Timeseries { batches },
            );
            let store = store.clone();
            in_flight.push(async move { store.publish(&message).await });
            if in_flight.len() >= 64
                && let Some(seq) = in_flight.next().await
            {
                last = last.max(seq?);
            }
        }
    }
    while let Some(seq) = in_flight.next().await {
        last = last.max(seq?);
    }
    Ok(last)
}

/// The live files of a lake table and their bytes.
async fn live_files(location: &thinglake_lake::LakeLocation, name: &str) -> anyhow::Result<(usize, u64)> {
    let table = location.open(name).await?.with_context(|| format!("the {name} table exists"))?;
    let state = table.snapshot()?;
    let files = state.log_data();
    Ok((files.iter().count(), files.iter().map(|f| f.size().max(0) as u64).sum()))
}

/// ThingsBoard's tables on a private PostgreSQL, with the same points.
fn load_postgres(scratch: &Path, tenant: TenantId, devices: &[Uuid], layout: Layout) -> anyhow::Result<PgCluster> {
    // Settings for a 2-core machine with 24 GiB shared with other work: the 10M-point table and
    // its index fit in shared_buffers; durability off only for the load (reads are unaffected).
    let pg = PgCluster::start(
        &scratch.join("pg"),
        &[
            ("shared_buffers", "3GB"),
            ("effective_cache_size", "8GB"),
            ("work_mem", "128MB"),
            ("maintenance_work_mem", "1GB"),
            ("max_parallel_workers_per_gather", "2"),
            ("max_wal_size", "8GB"),
            ("checkpoint_timeout", "30min"),
            ("fsync", "off"),
            ("synchronous_commit", "off"),
            ("full_page_writes", "off"),
            ("random_page_cost", "1.1"),
        ],
    )?;
    let started = Instant::now();
    // ThingsBoard 3.x/4.x schema-ts-psql.sql / schema-entities.sql (4.x names the dictionary
    // `key_dictionary`); ts_kv partitioned by month as with SQL_POSTGRES_TS_KV_PARTITIONING=MONTHS.
    let mut ddl = String::from(
        "CREATE TABLE ts_kv (entity_id uuid NOT NULL, key int NOT NULL, ts bigint NOT NULL, bool_v boolean, \
         str_v varchar(10000000), long_v bigint, dbl_v double precision, json_v json) PARTITION BY RANGE (ts);\n\
         CREATE TABLE ts_kv_dictionary (key varchar(255) NOT NULL, key_id serial UNIQUE, CONSTRAINT ts_key_id_pkey PRIMARY KEY (key));\n\
         CREATE TABLE ts_kv_latest (entity_id uuid NOT NULL, key int NOT NULL, ts bigint NOT NULL, bool_v boolean, \
         str_v varchar(10000000), long_v bigint, dbl_v double precision, json_v json, version bigint DEFAULT 0, \
         CONSTRAINT ts_kv_latest_pkey PRIMARY KEY (entity_id, key));\n\
         CREATE TABLE device (id uuid NOT NULL CONSTRAINT device_pkey PRIMARY KEY, tenant_id uuid, name varchar(255), type varchar(255));\n",
    );
    let last_ts = layout.ts(layout.devices - 1, layout.series - 1);
    let (mut year, mut month) = year_month(START);
    loop {
        let from = month_start(year, month);
        if from > last_ts {
            break;
        }
        let (ny, nm) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
        ddl.push_str(&format!(
            "CREATE TABLE ts_kv_{year:04}_{month:02} PARTITION OF ts_kv FOR VALUES FROM ({from}) TO ({});\n",
            month_start(ny, nm)
        ));
        (year, month) = (ny, nm);
    }
    for (key, _) in KEYS {
        ddl.push_str(&format!("INSERT INTO ts_kv_dictionary (key) VALUES ('{key}');\n"));
    }
    pg.psql(&ddl)?;
    pg.copy_in("device (id, tenant_id, name, type)", |out| {
        for (d, id) in devices.iter().enumerate() {
            writeln!(out, "{id}\t{}\tbench-{d:04}\t{}", tenant.0, device_type(d))?;
        }
        Ok(())
    })?;
    // Keys by dictionary id: serial from 1 in KEYS order.
    pg.copy_in("ts_kv (entity_id, key, ts, long_v, dbl_v)", |out| {
        let mut line = String::with_capacity(128);
        for i in 0..layout.series {
            for (d, device) in devices.iter().enumerate() {
                let ts = layout.ts(d, i);
                for k in 0..KEYS.len() {
                    line.clear();
                    use std::fmt::Write as _;
                    let _ = match value(d, k, i, ts) {
                        KvValue::Long(l) => writeln!(line, "{device}\t{}\t{ts}\t{l}\t\\N", k + 1),
                        KvValue::Double(v) => writeln!(line, "{device}\t{}\t{ts}\t\\N\t{v}", k + 1),
                        _ => unreachable!("the generator makes longs and doubles"),
                    };
                    out.write_all(line.as_bytes())?;
                }
            }
        }
        Ok(())
    })?;
    let loaded = started.elapsed();
    pg.psql(
        "ALTER TABLE ts_kv ADD CONSTRAINT ts_kv_pkey PRIMARY KEY (entity_id, key, ts);\n\
         INSERT INTO ts_kv_latest (entity_id, key, ts, bool_v, str_v, long_v, dbl_v, json_v) \
         SELECT DISTINCT ON (entity_id, key) entity_id, key, ts, bool_v, str_v, long_v, dbl_v, json_v FROM ts_kv \
         ORDER BY entity_id, key, ts DESC;\n\
         VACUUM ANALYZE;\n",
    )?;
    eprintln!(
        "query: PostgreSQL loaded by COPY in {:.1} s, primary key, ts_kv_latest and VACUUM ANALYZE after {:.1} s",
        loaded.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    Ok(pg)
}

/// Runs the DuckDB reference script; returns its JSON answer.
fn duckdb(scratch: &Path, table: &Path, hourly: &Path, tenant: TenantId, devices: &[Uuid], o: &Options, queries: &[(&str, &str)]) -> anyhow::Result<Value> {
    let input = scratch.join("duckdb.json");
    let spec = json!({
        "table": table,
        "hourly_table": hourly,
        "tenant": tenant.0.to_string(),
        "devices": devices.iter().enumerate().map(|(d, id)| json!([id.to_string(), device_type(d)])).collect::<Vec<_>>(),
        "queries": queries.iter().map(|(name, sql)| (name.to_string(), json!(sql))).collect::<serde_json::Map<_, _>>(),
        "warmup": o.warmup,
        "runs": o.runs,
        "threads": std::thread::available_parallelism().map_or(2, |n| n.get()),
    });
    std::fs::write(&input, serde_json::to_vec(&spec)?)?;
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = std::env::var_os("THINGLAKE_PYTHON").map_or_else(|| repo.join(".tools/venv/bin/python"), PathBuf::from);
    let script = repo.join("benchmarks/duckdb_reference.py");
    let output = std::process::Command::new(&python)
        .arg(&script)
        .arg(&input)
        .output()
        .with_context(|| format!("running {} (scripts/install-tools lake_readers installs it)", python.display()))?;
    anyhow::ensure!(output.status.success(), "the DuckDB reference failed: {}", String::from_utf8_lossy(&output.stderr));
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// A JSON cell as psql would print it.
fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn kv_f64(v: &KvValue) -> Option<f64> {
    match v {
        KvValue::Double(d) => Some(*d),
        KvValue::Long(l) => Some(*l as f64),
        _ => None,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// `bucket|avg` lines against our bucket averages (oldest first, none empty).
fn check_chart(system: &str, ours: &[f64], lines: &str) -> anyhow::Result<()> {
    let theirs: Vec<f64> = lines
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split('|').nth(1).context("bucket|avg")?.trim().parse::<f64>().context("an average"))
        .collect::<anyhow::Result<_>>()?;
    anyhow::ensure!(theirs.len() == ours.len(), "{system}'s chart has {} buckets, Thinglake's {}", theirs.len(), ours.len());
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        anyhow::ensure!(close(*a, *b), "bucket {i}: Thinglake {a}, {system} {b}");
    }
    Ok(())
}

/// `key|ts|value` lines against our latest values.
fn check_latest(ours: &BTreeMap<String, (i64, f64)>, lines: &str) -> anyhow::Result<()> {
    let mut n = 0;
    for line in lines.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split('|').collect();
        anyhow::ensure!(f.len() == 3, "key|ts|value, got {line}");
        let (ts, v): (i64, f64) = (f[1].parse()?, f[2].parse()?);
        let mine = ours.get(f[0]).with_context(|| format!("Thinglake has no latest value of {}", f[0]))?;
        anyhow::ensure!(mine.0 == ts && close(mine.1, v), "latest {}: Thinglake {mine:?}, PostgreSQL ({ts}, {v})", f[0]);
        n += 1;
    }
    anyhow::ensure!(n == ours.len(), "PostgreSQL has {n} latest values, Thinglake {}", ours.len());
    Ok(())
}

/// SQL result rows `[type, key, day, avg, points]` by (type, key, day).
fn fleet_rows(rows: &[Vec<Value>]) -> anyhow::Result<FleetRows> {
    rows.iter()
        .map(|r| {
            anyhow::ensure!(r.len() == 5, "five columns, got {r:?}");
            Ok(((cell(&r[0]), cell(&r[1]), cell(&r[2])), (r[3].as_f64().context("avg")?, r[4].as_i64().context("count")?)))
        })
        .collect()
}

/// Fleet rows as the `type|key|day|avg|points` lines the other systems answer.
fn fleet_lines(rows: &FleetRows) -> String {
    rows.iter().map(|((t, k, d), (avg, n))| format!("{t}|{k}|{d}|{avg}|{n}\n")).collect()
}

fn check_fleet(system: &str, ours: &FleetRows, lines: &str) -> anyhow::Result<()> {
    let mut n = 0;
    for line in lines.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split('|').collect();
        anyhow::ensure!(f.len() == 5, "five columns, got {line}");
        let key = (f[0].to_string(), f[1].to_string(), f[2].to_string());
        let (avg, count): (f64, i64) = (f[3].parse()?, f[4].parse()?);
        let mine = ours.get(&key).with_context(|| format!("Thinglake has no fleet row {key:?} ({system} has)"))?;
        anyhow::ensure!(mine.1 == count && close(mine.0, avg), "fleet {key:?}: Thinglake {mine:?}, {system} ({avg}, {count})");
        n += 1;
    }
    anyhow::ensure!(n == ours.len(), "{system}'s fleet answer has {n} rows, Thinglake's {}", ours.len());
    Ok(())
}

/// Runs `f` `warmup` times, then `runs` times timed; the timed durations in ms and the last answer.
async fn time_async<T, F, Fut>(warmup: usize, runs: usize, mut f: F) -> anyhow::Result<(Vec<f64>, T)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    for _ in 0..warmup {
        f().await?;
    }
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        last = Some(f().await?);
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    Ok((times, last.expect("at least one run")))
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// (year, month) of a UTC millisecond timestamp.
fn year_month(ts: i64) -> (i64, i64) {
    let date = civil_date(ts);
    (date[0..4].parse().expect("year digits"), date[5..7].parse().expect("month digits"))
}

/// `YYYY-MM-DD` (UTC) of a millisecond timestamp (Howard Hinnant's civil-from-days).
fn civil_date(ts: i64) -> String {
    let z = ts.div_euclid(DAY) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Milliseconds at the first day of a month (UTC), days-from-civil.
fn month_start(year: i64, month: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe - 719_468) * DAY
}

/// The platform's REST API, as a ThingsBoard client script uses it.
struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(base: String) -> Self {
        Self { base, http: reqwest::Client::new() }
    }

    async fn call(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        anyhow::ensure!(status.is_success(), "HTTP {status}: {text}");
        Ok(if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) })
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> anyhow::Result<Value> {
        self.call(self.http.post(format!("{}{path}", self.base)).header("X-Authorization", format!("Bearer {token}")).json(&body))
            .await
    }

    /// A GET whose JSON answer must hold `key`.
    async fn get_checked(&self, path: &str, token: &str, key: &str) -> anyhow::Result<()> {
        let answer =
            self.call(self.http.get(format!("{}{path}", self.base)).header("X-Authorization", format!("Bearer {token}"))).await?;
        anyhow::ensure!(answer.get(key).is_some(), "GET {path} answered without {key}: {answer}");
        Ok(())
    }

    async fn login(&self, email: &str, password: &str) -> anyhow::Result<String> {
        let answer = self
            .call(self.http.post(format!("{}/api/auth/login", self.base)).json(&json!({"username": email, "password": password})))
            .await?;
        Ok(answer["token"].as_str().context("token in the login answer")?.to_string())
    }

    /// A tenant and its administrator, created the way ThingsBoard client scripts do it; returns
    /// the tenant, the administrator as the platform sees them, and their access token.
    async fn tenant_admin(&self) -> anyhow::Result<(TenantId, Principal, String)> {
        let sys = self.login("sysadmin@bench.local", "bench-sysadmin-password").await?;
        let tenant = self.post("/api/tenant", &sys, json!({"title": "Benchmark"})).await?;
        let tenant_id: Uuid = tenant["id"]["id"].as_str().context("tenant id")?.parse()?;
        let email = "admin@bench.local";
        let user = self
            .post(
                "/api/user?sendActivationMail=false",
                &sys,
                json!({"email": email, "authority": "TENANT_ADMIN", "tenantId": {"entityType": "TENANT", "id": tenant_id}}),
            )
            .await?;
        let user_id: Uuid = user["id"]["id"].as_str().context("user id")?.parse()?;
        let link = self
            .http
            .get(format!("{}/api/user/{user_id}/activationLink", self.base))
            .header("X-Authorization", format!("Bearer {sys}"))
            .send()
            .await?
            .text()
            .await?;
        let activate = link.rsplit("activateToken=").next().context("token in the activation link")?.trim_matches('"');
        let password = "bench-admin-password";
        self.call(
            self.http
                .post(format!("{}/api/noauth/activate?sendActivationMail=false", self.base))
                .json(&json!({"activateToken": activate, "password": password})),
        )
        .await?;
        let token = self.login(email, password).await?;
        let principal = Principal {
            user_id: UserId(user_id),
            email: email.into(),
            authority: Authority::TenantAdmin,
            tenant_id: TenantId(tenant_id),
            customer_id: CustomerId::NULL,
            token_version: 0,
        };
        Ok((TenantId(tenant_id), principal, token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_helpers_agree() {
        assert_eq!(civil_date(START), "2025-10-01");
        assert_eq!(month_start(2025, 10), START);
        assert_eq!(year_month(START + 31 * DAY), (2025, 11));
        assert_eq!(civil_date(month_start(2026, 1)), "2026-01-01");
    }
}
