//! The hourly rollup (`telemetry_hourly`): aggregated ThingsBoard queries whose buckets start on
//! whole hours are answered from it (plus the raw points of a last partial hour), and must agree
//! with the values computed here from the published points — from the hot tail, after the
//! commit, after more points of the same hours came in a second commit, after compaction merged
//! the partial rows, and after a rebuild. The `telemetry_hourly` SQL view agrees too.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use thinglake_projections::lake::projection::ProjectionKind;
use thinglake_projections::lake::rebuild;
use thinglake_lake::{LakeLocation, scan, upkeep};

use crate::harness::{TestApp, id_of};
use crate::telemetry::eventually;
use crate::timeseries::{T0, V, assert_series, expected_agg, path, save};

const HOUR: i64 = 3_600_000;
/// The first whole hour of the data.
const H0: i64 = T0 / HOUR * HOUR;
const HOURS: i64 = 5;

/// Points over five hours and a partial sixth: `temp` mixes longs and doubles (some negative),
/// `label` is text; every 7 minutes and a bit, so hours hold different counts.
fn dataset(round: i64) -> Vec<(String, i64, V)> {
    let mut points = Vec::new();
    let mut ts = H0 + 11_000 + round * 1_000;
    let mut i = 0;
    while ts < H0 + HOURS * HOUR + 40 * 60_000 {
        let value = if i % 4 == 0 { V::Long(i * 3 - 40 + round) } else { V::Double(i as f64 * 0.5 - 7.25 + round as f64) };
        points.push(("temp".to_string(), ts, value));
        if i % 3 == 0 {
            points.push(("label".to_string(), ts, V::Str(format!("l{i}"))));
        }
        ts += 7 * 60_000 + (i % 5) * 9_000;
        i += 1;
    }
    points
}

/// Every aggregation over whole-hour buckets (rollup), with and without a partial last hour, and
/// over buckets not on whole hours (raw points only).
async fn check(t: &TestApp, admin: &str, device: &str, points: &[(String, i64, V)]) {
    let aligned_end = H0 + HOURS * HOUR;
    let ranges = [
        (H0, aligned_end, HOUR),
        (H0, aligned_end + 35 * 60_000, HOUR),
        (H0, aligned_end + 35 * 60_000, 2 * HOUR),
        (H0 + 90_000, aligned_end, HOUR),
    ];
    for (start, end, interval) in ranges {
        for agg in ["AVG", "MIN", "MAX", "SUM", "COUNT"] {
            let query = format!("keys=temp,label&startTs={start}&endTs={end}&interval={interval}&agg={agg}&useStrictDataTypes=true");
            let answer = t.get(&path(device, &query), admin).await.ok();
            let expected = expected_agg(points, "temp", start, end, interval, agg);
            assert!(expected.len() >= 3, "the data fills several buckets");
            assert_series(&answer, "temp", &expected, true);
            assert_series(&answer, "label", &expected_agg(points, "label", start, end, interval, agg), true);
        }
    }
}

/// Per hour of `temp`: (count, numeric average), computed here.
fn hourly_expected(points: &[(String, i64, V)]) -> BTreeMap<i64, (i64, f64)> {
    let mut hours: BTreeMap<i64, (i64, f64, i64)> = BTreeMap::new();
    for (_, ts, v) in points.iter().filter(|(k, _, _)| k == "temp") {
        let entry = hours.entry(ts / HOUR * HOUR).or_default();
        entry.0 += 1;
        if let V::Long(l) = v {
            entry.1 += *l as f64;
            entry.2 += 1;
        } else if let V::Double(d) = v {
            entry.1 += d;
            entry.2 += 1;
        }
    }
    hours.into_iter().map(|(h, (n, sum, numeric))| (h, (n, sum / numeric as f64))).collect()
}

/// The `telemetry_hourly` view's rows of `temp`, by hour: (count, avg).
async fn hourly_view(t: &TestApp, admin: &str, device: &str) -> BTreeMap<i64, (i64, f64)> {
    let query = format!(
        "SELECT ts, count, avg FROM telemetry_hourly WHERE entity_id = '{device}' AND key = 'temp' ORDER BY ts"
    );
    let answer = t.post("/api/sql", admin, json!({"query": query})).await.ok();
    let rows = answer["rows"].as_array().cloned().unwrap_or_default();
    rows.iter().map(|r: &Value| (r[0].as_i64().expect("ts"), (r[1].as_i64().expect("count"), r[2].as_f64().expect("avg")))).collect()
}

fn assert_hours(got: &BTreeMap<i64, (i64, f64)>, expected: &BTreeMap<i64, (i64, f64)>) {
    assert_eq!(got.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>());
    for (hour, (n, avg)) in expected {
        let (got_n, got_avg) = got[hour];
        assert_eq!(got_n, *n, "count of hour {hour}");
        assert!((got_avg - avg).abs() < 1e-9, "avg of hour {hour}: {got_avg} vs {avg}");
    }
}

/// The rollup table's rows as (entity, key, hour, count), sorted.
async fn rollup_rows(location: &LakeLocation) -> Vec<(String, String, i64, i64)> {
    use deltalake_core::arrow::array::AsArray;
    use deltalake_core::arrow::datatypes::Int64Type;
    let mut rows = Vec::new();
    for batch in scan::read_table(location, "telemetry_hourly").await.expect("readable rollup") {
        let text = |name: &str| batch.column_by_name(name).expect("column").as_string::<i32>().clone();
        let long = |name: &str| batch.column_by_name(name).expect("column").as_primitive::<Int64Type>().clone();
        let (entity, key, ts, count) = (text("entity_id"), text("key"), long("ts"), long("count"));
        for i in 0..batch.num_rows() {
            rows.push((entity.value(i).to_string(), key.value(i).to_string(), ts.value(i), count.value(i)));
        }
    }
    rows.sort();
    rows
}

#[tokio::test]
async fn hourly_rollup_answers_whole_hour_buckets_like_the_raw_points() {
    // Commits only at shutdown: first everything is in the hot tails.
    let mut t = TestApp::start_with(|s| s.lake_commit_interval = Duration::from_secs(3600)).await;
    let (_, admin) = t.tenant("rollup tenant").await;
    let device = id_of(&t.device(&admin, "rollup device").await);
    let (_, other_admin) = t.tenant("other rollup tenant").await;
    let other_device = id_of(&t.device(&other_admin, "other rollup device").await);
    let first = dataset(0);
    save(&t, &admin, &device, &first).await;
    save(&t, &other_admin, &other_device, &dataset(100)).await;
    let app = t.app.as_ref().expect("running");
    let tail = app.lake.hot_tail("telemetry_hourly").expect("rollup tail").clone();
    eventually(Duration::from_secs(10), || {
        let tail = tail.clone();
        async move { (tail.rows() > 0).then_some(()) }
    })
    .await;
    // The tail holds partial aggregates already: fewer rows than points.
    assert!(tail.rows() < first.len(), "{} rollup rows for {} points", tail.rows(), first.len());
    check(&t, &admin, &device, &first).await;
    assert_hours(&hourly_view(&t, &admin, &device).await, &hourly_expected(&first));
    // Another tenant's rollup rows are not in this tenant's view.
    assert!(hourly_view(&t, &admin, &other_device).await.is_empty());

    // Committed: one row per (entity, key, hour).
    t.restart().await;
    let location = LakeLocation::local(&t.data_dir.path().join("lake")).expect("lake");
    let rows = rollup_rows(&location).await;
    let hours_of_device = rows.iter().filter(|r| r.0 == device).count();
    assert_eq!(hours_of_device, hourly_expected(&first).len() + first.iter().filter(|p| p.0 == "label").map(|p| p.1 / HOUR).collect::<std::collections::BTreeSet<_>>().len());
    check(&t, &admin, &device, &first).await;

    // More points in the same hours, committed apart: partial rows of one hour in two files.
    let second = dataset(1);
    save(&t, &admin, &device, &second).await;
    let all: Vec<_> = first.iter().chain(second.iter()).cloned().collect();
    // Taken by the rollup projection (in its tail) before the restart commits it.
    let counts = |hours: &BTreeMap<i64, (i64, f64)>| hours.values().map(|(n, _)| *n).collect::<Vec<_>>();
    let want = counts(&hourly_expected(&all));
    eventually(Duration::from_secs(10), || {
        let (t, admin, device, want) = (&t, &admin, &device, &want);
        async move { (counts(&hourly_view(t, admin, device).await) == *want).then_some(()) }
    })
    .await;
    t.restart().await;
    assert!(rollup_rows(&location).await.len() > rows.len(), "the second commit added partial rows");
    check(&t, &admin, &device, &all).await;
    assert_hours(&hourly_view(&t, &admin, &device).await, &hourly_expected(&all));

    // Compaction merges the partial rows of each hour into one.
    let (removed, written) = upkeep::compact(&location, "telemetry_hourly", upkeep::SMALL_FILE_BYTES, 2).await.expect("compacts");
    assert!(removed >= 2 && written >= 1, "compacted {removed} files into {written}");
    let compacted = rollup_rows(&location).await;
    assert_eq!(compacted.len(), rows.len(), "one row per entity, key and hour again");
    check(&t, &admin, &device, &all).await;

    // A rebuild from the log gives the same rows.
    let nats = t.nats.client().await;
    let js = async_nats::jetstream::new(nats);
    let subjects = thinglake_infra::subjects::Subjects::default();
    let report = rebuild::rebuild(&js, &subjects, &location, ProjectionKind::TelemetryHourly, |_| {}).await.expect("rebuilds");
    assert!(report.rows > 0);
    assert_eq!(rollup_rows(&location).await, compacted);
    check(&t, &admin, &device, &all).await;
}
