//! ThingsBoard time-series range queries through the query engine: every query shape compared
//! with values computed here from the published points, first while the points are only in the
//! hot tail, then after they were committed to the lake; another tenant's points never show.

use std::time::Duration;

use serde_json::{Value, json};
use thinglake_server::{RunningApp, Settings};
use thinglake_test_support::NatsServer;

use crate::harness::{Api, TestApp, id_of, test_settings};
use crate::telemetry::eventually;

/// Starts a platform on free ports with adjusted settings.
pub(crate) async fn start(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let nats = NatsServer::start().await;
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut settings = test_settings(&nats, data_dir.path());
    adjust(&mut settings);
    let app = Box::pin(RunningApp::start(settings)).await.expect("platform starts");
    let api = Api::new(format!("http://{}", app.http_addr));
    TestApp { api, app: Some(app), nats, data_dir }
}

/// 2023-11-14T22:13:20Z.
pub(crate) const T0: i64 = 1_700_000_000_000;

/// A published point, as the test knows it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum V {
    Long(i64),
    Double(f64),
    Str(String),
    Bool(bool),
}

impl V {
    fn json(&self) -> Value {
        match self {
            V::Long(l) => json!(l),
            V::Double(d) => json!(d),
            V::Str(s) => json!(s),
            V::Bool(b) => json!(b),
        }
    }
}

/// The points of one device: `temp` mixes longs and doubles, `label` is text, `on` boolean;
/// nothing between the 20th and 30th second (empty buckets).
pub(crate) fn dataset(offset: i64) -> Vec<(String, i64, V)> {
    let mut points = Vec::new();
    for i in (0..50).filter(|i| !(20..30).contains(i)) {
        let ts = T0 + i * 1000 + (i % 7) * 13;
        let temp = if i % 3 == 0 { V::Long(i + offset) } else { V::Double(i as f64 + offset as f64 + 0.25) };
        points.push(("temp".to_string(), ts, temp));
        if i % 5 == 0 {
            points.push(("label".to_string(), ts, V::Str(format!("s{i}"))));
        }
        if i % 10 == 0 {
            points.push(("on".to_string(), ts, V::Bool(i % 20 == 0)));
        }
    }
    points
}

/// Saves points over REST as `[{"ts", "values"}]` in one request.
pub(crate) async fn save(t: &Api, admin: &str, device: &str, points: &[(String, i64, V)]) {
    let body: Vec<Value> = points.iter().map(|(k, ts, v)| json!({"ts": ts, "values": {k: v.json()}})).collect();
    t.post(&format!("/api/plugins/telemetry/DEVICE/{device}/timeseries/ANY"), admin, json!(body)).await.ok();
}

fn of_key<'a>(points: &'a [(String, i64, V)], key: &str) -> Vec<&'a (String, i64, V)> {
    points.iter().filter(|(k, _, _)| k == key).collect()
}

/// What ThingsBoard answers for a raw query, computed from the points.
fn expected_raw(points: &[(String, i64, V)], key: &str, start: i64, end: i64, limit: usize, asc: bool) -> Vec<(i64, V)> {
    let mut selected: Vec<(i64, V)> =
        of_key(points, key).into_iter().filter(|(_, ts, _)| *ts >= start && *ts < end).map(|(_, ts, v)| (*ts, v.clone())).collect();
    selected.sort_by_key(|(ts, _)| *ts);
    if !asc {
        selected.reverse();
    }
    selected.truncate(limit);
    selected
}

/// What ThingsBoard answers for an aggregated query, computed bucket by bucket.
pub(crate) fn expected_agg(points: &[(String, i64, V)], key: &str, start: i64, end: i64, interval: i64, agg: &str) -> Vec<(i64, V)> {
    let mut out = Vec::new();
    let mut bucket = start;
    while bucket < end {
        let bucket_end = (bucket + interval).min(end);
        let inside: Vec<&V> =
            of_key(points, key).into_iter().filter(|(_, ts, _)| *ts >= bucket && *ts < bucket_end).map(|(_, _, v)| v).collect();
        let longs: Vec<i64> = inside.iter().filter_map(|v| if let V::Long(l) = v { Some(*l) } else { None }).collect();
        let doubles: Vec<f64> = inside.iter().filter_map(|v| if let V::Double(d) = v { Some(*d) } else { None }).collect();
        let all: Vec<f64> = longs.iter().map(|l| *l as f64).chain(doubles.iter().copied()).collect();
        let value = match agg {
            "COUNT" => (!inside.is_empty()).then_some(V::Long(inside.len() as i64)),
            _ if all.is_empty() => None,
            "AVG" => Some(V::Double(all.iter().sum::<f64>() / all.len() as f64)),
            "SUM" if doubles.is_empty() => Some(V::Long(longs.iter().sum())),
            "SUM" => Some(V::Double(all.iter().sum())),
            "MIN" if doubles.is_empty() => longs.iter().min().map(|l| V::Long(*l)),
            "MIN" => Some(V::Double(all.iter().copied().fold(f64::INFINITY, f64::min))),
            "MAX" if doubles.is_empty() => longs.iter().max().map(|l| V::Long(*l)),
            "MAX" => Some(V::Double(all.iter().copied().fold(f64::NEG_INFINITY, f64::max))),
            other => panic!("unknown aggregation {other}"),
        };
        if let Some(value) = value {
            out.push((bucket + (bucket_end - bucket) / 2, value));
        }
        bucket += interval;
    }
    out
}

/// Compares an answer's series (strict types or strings) with the expected points.
#[track_caller]
pub(crate) fn assert_series(answer: &Value, key: &str, expected: &[(i64, V)], strict: bool) {
    let got = answer[key].as_array().cloned().unwrap_or_default();
    assert_eq!(got.len(), expected.len(), "{key}: {answer} vs {expected:?}");
    for (point, (ts, value)) in got.iter().zip(expected) {
        assert_eq!(point["ts"].as_i64(), Some(*ts), "{key}: {point} vs {expected:?}");
        let v = &point["value"];
        if strict {
            match value {
                V::Long(l) => assert_eq!(v.as_i64(), Some(*l), "{key} at {ts}: {v}"),
                V::Double(d) => {
                    assert!(v.is_f64(), "{key} at {ts}: {v} is not a double");
                    assert!((v.as_f64().expect("number") - d).abs() < 1e-9, "{key} at {ts}: {v} vs {d}");
                }
                V::Str(s) => assert_eq!(v.as_str(), Some(s.as_str())),
                V::Bool(b) => assert_eq!(v.as_bool(), Some(*b)),
            }
        } else {
            let text = v.as_str().unwrap_or_else(|| panic!("{key} at {ts}: {v} is not a string"));
            match value {
                V::Long(l) => assert_eq!(text, l.to_string()),
                V::Double(d) => {
                    assert!(text.contains('.') || text.contains('e'), "{key} at {ts}: {text} is not a double");
                    assert!((text.parse::<f64>().expect("number") - d).abs() < 1e-9, "{key} at {ts}: {text} vs {d}");
                }
                V::Str(s) => assert_eq!(text, s),
                V::Bool(b) => assert_eq!(text, b.to_string()),
            }
        }
    }
}

pub(crate) fn path(device: &str, query: &str) -> String {
    format!("/api/plugins/telemetry/DEVICE/{device}/values/timeseries?{query}")
}

/// Every query shape over `points` (saved on `device`) against the computed answers.
pub(crate) async fn check_all_shapes(t: &Api, admin: &str, device: &str, points: &[(String, i64, V)]) {
    let end = T0 + 50_003;
    // Raw: newest first with the default limit, both the plain and the /history path.
    for base in ["values/timeseries", "values/timeseries/history"] {
        let answer = t
            .get(&format!("/api/plugins/telemetry/DEVICE/{device}/{base}?keys=temp,label,on&startTs={T0}&endTs={end}"), admin)
            .await
            .ok();
        for key in ["temp", "label", "on"] {
            assert_series(&answer, key, &expected_raw(points, key, T0, end, 100, false), false);
        }
    }
    // Raw, strict types, a limit, both orders, the range's end excluded.
    let cut = T0 + 15 * 1000 + 13;
    for (order, asc) in [("DESC", false), ("ASC", true)] {
        let answer =
            t.get(&path(device, &format!("keys=temp&startTs={}&endTs={cut}&limit=7&orderBy={order}&useStrictDataTypes=true", T0 + 5000)), admin).await.ok();
        assert_series(&answer, "temp", &expected_raw(points, "temp", T0 + 5000, cut, 7, asc), true);
    }
    // Aggregates over 7 s buckets, the last one clipped; strings and strict types.
    for agg in ["AVG", "MIN", "MAX", "SUM", "COUNT"] {
        for strict in [false, true] {
            let answer = t
                .get(&path(device, &format!("keys=temp,label&startTs={T0}&endTs={end}&interval=7000&agg={agg}&useStrictDataTypes={strict}")), admin)
                .await
                .ok();
            let expected = expected_agg(points, "temp", T0, end, 7000, agg);
            assert!(expected.len() < 50_003 / 7000 + 1, "some bucket is empty");
            assert_series(&answer, "temp", &expected, strict);
            assert_series(&answer, "label", &expected_agg(points, "label", T0, end, 7000, agg), strict);
        }
    }
    // interval=0 means NONE; limit and orderBy are ignored by aggregates.
    let answer = t.get(&path(device, &format!("keys=temp&startTs={T0}&endTs={end}&interval=0&agg=AVG&limit=3")), admin).await.ok();
    assert_series(&answer, "temp", &expected_raw(points, "temp", T0, end, 3, false), false);
    let answer = t
        .get(&path(device, &format!("keys=temp&startTs={T0}&endTs={end}&interval=10000&agg=MAX&limit=1&orderBy=DESC")), admin)
        .await
        .ok();
    assert_series(&answer, "temp", &expected_agg(points, "temp", T0, end, 10_000, "MAX"), false);
    // Without keys: every key of the device.
    let answer = t.get(&path(device, &format!("startTs={T0}&endTs={end}&interval=60000&agg=COUNT")), admin).await.ok();
    for key in ["temp", "label", "on"] {
        assert_series(&answer, key, &expected_agg(points, key, T0, end, 60_000, "COUNT"), false);
    }
    // Refused: more than 700 buckets, a negative interval, unknown agg, interval type or zone.
    for bad in [
        format!("keys=temp&startTs={T0}&endTs={}&interval=1&agg=AVG", T0 + 701),
        format!("keys=temp&startTs={T0}&endTs={end}&interval=-5&agg=AVG"),
        format!("keys=temp&startTs={T0}&endTs={end}&interval=1000&intervalType=FORTNIGHT&agg=AVG"),
        format!("keys=temp&startTs={T0}&endTs={end}&intervalType=MONTH&timeZone=Mars/Olympus&agg=AVG"),
        format!("keys=temp&startTs={T0}&endTs={end}&interval=1000&agg=MEDIAN"),
    ] {
        t.get(&path(device, &bad), admin).await.expect(400);
    }
    // Exactly 700 buckets is fine.
    t.get(&path(device, &format!("keys=temp&startTs={T0}&endTs={}&interval=1&agg=AVG", T0 + 700)), admin).await.ok();
}

#[tokio::test]
async fn every_query_shape_matches_before_and_after_the_lake_commit_and_tenants_stay_apart() {
    // Commits only at shutdown: the points are in the hot tail until the restart.
    let mut t = start(|s| s.lake_commit_interval = Duration::from_secs(3600)).await;
    let (_, admin) = t.tenant("timeseries tenant").await;
    let device = id_of(&t.device(&admin, "chart device").await);
    let (_, other_admin) = t.tenant("other timeseries tenant").await;
    let other_device = id_of(&t.device(&other_admin, "other chart device").await);
    let points = dataset(0);
    save(&t, &admin, &device, &points).await;
    save(&t, &other_admin, &other_device, &dataset(1000)).await;

    // Hot tail only: nothing committed yet.
    let app = t.app.as_ref().expect("running");
    let tail = app.lake.hot_tail("telemetry").expect("telemetry tail").clone();
    let total = points.len() * 2;
    eventually(Duration::from_secs(10), || {
        let tail = tail.clone();
        async move { (tail.rows() >= total).then_some(()) }
    })
    .await;
    assert_eq!(app.lake.status("telemetry").expect("status").committed_seq(), 0);
    check_all_shapes(&t, &admin, &device, &points).await;
    check_all_shapes(&t, &other_admin, &other_device, &dataset(1000)).await;
    // Another tenant's device is out of reach.
    t.get(&path(&other_device, &format!("keys=temp&startTs={T0}&endTs={}", T0 + 60_000)), &admin).await.expect(403);

    // After the restart every point is in the lake and the tail is empty.
    t.restart().await;
    let app = t.app.as_ref().expect("running");
    assert!(app.lake.status("telemetry").expect("status").committed_seq() > 0);
    assert_eq!(app.lake.hot_tail("telemetry").expect("telemetry tail").rows(), 0);
    // The signing key is kept in NATS: the token is still valid.
    check_all_shapes(&t, &admin, &device, &points).await;

    // New points go to the tail and are answered together with the committed ones.
    let more: Vec<(String, i64, V)> = (50..60).map(|i| ("temp".to_string(), T0 + i * 1000, V::Long(i))).collect();
    save(&t, &admin, &device, &more).await;
    let all: Vec<(String, i64, V)> = points.iter().cloned().chain(more.iter().cloned()).collect();
    let end = T0 + 70_000;
    eventually(Duration::from_secs(10), || {
        let (t, admin, device) = (&t, &admin, &device);
        async move {
            let answer = t.get(&path(device, &format!("keys=temp&startTs={T0}&endTs={end}&interval=70000&agg=COUNT")), admin).await.ok();
            (answer["temp"][0]["value"] == json!("50")).then_some(())
        }
    })
    .await;
    let answer = t.get(&path(&device, &format!("keys=temp&startTs={T0}&endTs={end}&interval=5000&agg=SUM")), &admin).await.ok();
    assert_series(&answer, "temp", &expected_agg(&all, "temp", T0, end, 5000, "SUM"), false);
}

// Calendar boundaries from `TZ=Europe/Berlin date -d '2024-… 00:00' +%s` (GNU date's tz database).
const JAN_10_UTC: i64 = 1_704_844_800_000;
const MAY_20_UTC: i64 = 1_716_163_200_000;
const BERLIN_MONTHS: [i64; 4] = [1_706_742_000_000, 1_709_247_600_000, 1_711_922_400_000, 1_714_514_400_000];
const BERLIN_ISO_WEEKS: [i64; 3] = [1_705_273_200_000, 1_705_878_000_000, 1_706_482_800_000];
const BERLIN_SUNDAY_WEEKS: [i64; 3] = [1_705_186_800_000, 1_705_791_600_000, 1_706_396_400_000];

/// Aggregates over `[start, end)` cut at `boundaries`, at the middle of each bucket, computed here.
fn calendar_expected(points: &[(i64, i64)], start: i64, end: i64, boundaries: &[i64], agg: &str) -> Value {
    let mut edges = vec![start];
    edges.extend(boundaries.iter().copied().filter(|b| *b > start && *b < end));
    edges.push(end);
    let mut out = Vec::new();
    for w in edges.windows(2) {
        let values: Vec<i64> = points.iter().filter(|(ts, _)| *ts >= w[0] && *ts < w[1]).map(|(_, v)| *v).collect();
        if values.is_empty() {
            continue;
        }
        let value = match agg {
            "AVG" => json!(values.iter().sum::<i64>() as f64 / values.len() as f64),
            "SUM" => json!(values.iter().sum::<i64>()),
            "COUNT" => json!(values.len()),
            _ => unreachable!("aggregations of this test"),
        };
        out.push(json!({"ts": w[0] + (w[1] - w[0]) / 2, "value": value}));
    }
    Value::Array(out)
}

#[tokio::test]
async fn calendar_intervals_bucket_by_local_weeks_months_and_quarters() {
    let t = start(|_| {}).await;
    let (_, admin) = t.tenant("calendar tenant").await;
    let device = id_of(&t.device(&admin, "calendar device").await);
    // One point a day at 12:00 UTC from 2024-01-10 to 2024-05-19, the value its day number.
    let points: Vec<(i64, i64)> = (0..131).map(|day| (JAN_10_UTC + day * 86_400_000 + 43_200_000, day)).collect();
    let saved: Vec<(String, i64, V)> = points.iter().map(|(ts, v)| ("temp".to_string(), *ts, V::Long(*v))).collect();
    save(&t, &admin, &device, &saved).await;

    let feb_1 = BERLIN_MONTHS[0];
    let apr_1 = BERLIN_MONTHS[2];
    for (interval_type, start, end, boundaries, agg) in [
        ("MONTH", JAN_10_UTC, MAY_20_UTC, &BERLIN_MONTHS[..], "AVG"),
        ("QUARTER", JAN_10_UTC, MAY_20_UTC, &[apr_1][..], "SUM"),
        ("WEEK_ISO", JAN_10_UTC, feb_1, &BERLIN_ISO_WEEKS[..], "COUNT"),
        ("WEEK", JAN_10_UTC, feb_1, &BERLIN_SUNDAY_WEEKS[..], "AVG"),
    ] {
        let query = format!(
            "keys=temp&startTs={start}&endTs={end}&intervalType={interval_type}&timeZone=Europe/Berlin&agg={agg}&useStrictDataTypes=true"
        );
        let expected = calendar_expected(&points, start, end, boundaries, agg);
        let answer = eventually(Duration::from_secs(10), || async {
            let answer = t.get(&path(&device, &query), &admin).await.ok();
            (answer["temp"] == expected).then_some(answer)
        })
        .await;
        assert_eq!(answer["temp"].as_array().map(Vec::len), Some(boundaries.len() + 1), "{interval_type}: {answer}");
    }
    // Without timeZone the months are UTC ones, beginning an hour or two after Berlin's: the
    // noon points fall in the same months, the bucket times differ.
    let query = format!("keys=temp&startTs={JAN_10_UTC}&endTs={MAY_20_UTC}&intervalType=MONTH&agg=COUNT&useStrictDataTypes=true");
    let utc_months = [1_706_745_600_000, 1_709_251_200_000, 1_711_929_600_000, 1_714_521_600_000];
    let answer = t.get(&path(&device, &query), &admin).await.ok();
    assert_eq!(answer["temp"], calendar_expected(&points, JAN_10_UTC, MAY_20_UTC, &utc_months, "COUNT"));
}
