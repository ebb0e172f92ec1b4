//! The engine over a Delta `telemetry` table written like the projection writes it (with its
//! `txn` sequence) plus a hot tail: rows counted once when tail and table overlap, tenants apart.

use deltalake_core::arrow::array::RecordBatch;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake_core::kernel::{Action, Transaction};
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::writer::{DeltaWriter as _, RecordBatchWriter};
use serde_json::json;
use thinglake_domain::telemetry::KvValue;
use thinglake_domain::{EntityId, EntityType, TenantId};
use thinglake_lake::partition::day_of;
use thinglake_lake::table::{RowBuilder, TableSpec, telemetry};
use thinglake_lake::{HotTail, LakeLocation};
use thinglake_queries::{Aggregation, Order, QueryConfig, QueryEngine, QueryError, TenantViews, TimeseriesQuery};

const A: &str = "00000000-0000-0000-0000-00000000000a";
const B: &str = "00000000-0000-0000-0000-00000000000b";
const DEVICE_A: &str = "00000000-0000-0000-0000-0000000000d1";
const DEVICE_B: &str = "00000000-0000-0000-0000-0000000000d2";
const T0: i64 = 1_700_000_000_000;

/// The tenant of one of the ids above, as the engine takes it.
pub(crate) fn tenant(id: &str) -> TenantId {
    TenantId(id.parse().expect("a tenant's uuid"))
}

/// The device of one of the ids above.
fn device(id: &str) -> EntityId {
    EntityId::new(EntityType::Device, id.parse().expect("a device's uuid"))
}

/// One `temp` long per second for `seqs`, `value = seq`.
fn rows(tenant: &str, device: &str, seqs: std::ops::RangeInclusive<i64>) -> RecordBatch {
    let mut b = RowBuilder::new(telemetry().schema);
    for seq in seqs {
        let ts = T0 + seq * 1000;
        b.str(Some(tenant)).date32(Some(day_of(ts))).str(Some("DEVICE")).str(Some(device)).str(Some("temp")).i64(Some(ts));
        b.bool(None).i64(Some(seq)).f64(None).str(None).str(None).i64(Some(ts)).i64(Some(seq));
        b.end_row();
    }
    b.finish().expect("valid batch")
}

async fn commit(location: &LakeLocation, batches: Vec<RecordBatch>, seq: i64) -> anyhow::Result<()> {
    commit_to(location, &telemetry(), batches, seq).await
}

/// A lake in a fresh directory, `spec`'s hot tail, and an engine over both.
pub(crate) struct Lake {
    /// Kept for the lake's lifetime (the directory goes with it).
    _dir: tempfile::TempDir,
    pub(crate) location: LakeLocation,
    pub(crate) tail: HotTail,
    pub(crate) engine: QueryEngine,
}

impl Lake {
    pub(crate) fn with_tail(spec: &TableSpec) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let location = LakeLocation::local(dir.path())?;
        let tail = HotTail::new(spec.schema.clone());
        let engine = QueryEngine::new(location.clone(), [(spec.name, tail.clone())].into(), QueryConfig::default())?;
        Ok(Self { _dir: dir, location, tail, engine })
    }
}

/// Commits `batches` to `spec`'s table as its projection does: with the `txn` sequence they cover.
pub(crate) async fn commit_to(location: &LakeLocation, spec: &TableSpec, batches: Vec<RecordBatch>, seq: i64) -> anyhow::Result<()> {
    let table = location.open_or_create(spec).await?;
    let mut writer = RecordBatchWriter::for_table(&table)?;
    for batch in batches {
        writer.write(batch).await?;
    }
    let adds = writer.flush().await?;
    let operation = DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by: Some(spec.partition_columns.iter().map(|c| c.to_string()).collect()),
        predicate: None,
    };
    CommitBuilder::from(CommitProperties::default().with_application_transaction(Transaction::new(spec.name, seq)))
        .with_actions(adds.into_iter().map(Action::Add).collect())
        .build(Some(table.snapshot()?), table.log_store(), operation)
        .await?;
    Ok(())
}

fn count_query() -> TimeseriesQuery {
    TimeseriesQuery {
        keys: vec!["temp".into()],
        start_ts: T0,
        end_ts: T0 + 100_000,
        interval: 100_000,
        agg: Aggregation::Count,
        limit: 100,
        order: Order::Desc,
        calendar: None,
    }
}

#[tokio::test]
async fn tail_rows_the_table_covers_count_once_and_tenants_stay_apart() -> anyhow::Result<()> {
    let Lake { location, tail, engine, .. } = Lake::with_tail(&telemetry())?;

    // No table yet: the tail alone.
    tail.push(10, rows(A, DEVICE_A, 1..=10));
    tail.push(12, rows(B, DEVICE_B, 11..=12));
    let answer = engine.timeseries(tenant(A), device(DEVICE_A), count_query()).await?;
    assert_eq!(answer[0].1[0].value, KvValue::Long(10));

    // Sequences 1..=12 committed while the tail still holds them (a query racing the trim),
    // and 13..=20 only in the tail.
    commit(&location, vec![rows(A, DEVICE_A, 1..=10), rows(B, DEVICE_B, 11..=12)], 12).await?;
    tail.push(20, rows(A, DEVICE_A, 13..=20));
    let answer = engine.timeseries(tenant(A), device(DEVICE_A), count_query()).await?;
    assert_eq!(answer[0].1[0].value, KvValue::Long(18));
    let sum = engine.timeseries(tenant(A), device(DEVICE_A), TimeseriesQuery { agg: Aggregation::Sum, ..count_query() }).await?;
    assert_eq!(sum[0].1[0].value, KvValue::Long((1..=10).sum::<i64>() + (13..=20).sum::<i64>()));

    // Raw, newest first.
    let raw = engine.timeseries(tenant(A), device(DEVICE_A), TimeseriesQuery { interval: 0, limit: 3, ..count_query() }).await?;
    let values: Vec<KvValue> = raw[0].1.iter().map(|p| p.value.clone()).collect();
    assert_eq!(values, vec![KvValue::Long(20), KvValue::Long(19), KvValue::Long(18)]);

    // Tenant A's session never sees B's device, even when asked for it.
    assert!(engine.timeseries(tenant(A), device(DEVICE_B), count_query()).await?.is_empty());
    let b = engine.timeseries(tenant(B), device(DEVICE_B), count_query()).await?;
    assert_eq!(b[0].1[0].value, KvValue::Long(2));
    let sql = engine.sql(tenant(A), "SELECT tenant_id, count(*) AS n, sum(long_v) AS s FROM telemetry GROUP BY tenant_id", TenantViews::default()).await?;
    assert_eq!(sql.columns, vec!["tenant_id", "n", "s"]);
    assert_eq!(sql.rows, vec![vec![json!(A), json!(18), json!(187)]]);

    // Refusals before anything runs.
    for statement in ["DROP TABLE telemetry", "COPY telemetry TO '/tmp/x.csv'", "SELECT * FROM read_parquet('/etc/passwd')"] {
        let refused = engine.sql(tenant(A), statement, TenantViews::default()).await.expect_err(statement);
        assert!(matches!(refused, QueryError::Refused { .. } | QueryError::Invalid { .. }), "{statement}: {refused}");
    }
    Ok(())
}

/// The engine keeps the table version it holds between queries; a commit of the projection in
/// this process (its tail trimmed) shows at the next query, another process's commit (a
/// rebuild: the tail never held its rows) within a second.
#[tokio::test]
async fn the_projections_commits_show_at_once_and_another_writers_within_a_second() -> anyhow::Result<()> {
    let Lake { location, tail, engine, .. } = Lake::with_tail(&telemetry())?;
    let count = || async {
        let answer = engine.timeseries(tenant(A), device(DEVICE_A), count_query()).await?;
        anyhow::Ok(answer.first().map(|(_, points)| points[0].value.clone()))
    };
    commit(&location, vec![rows(A, DEVICE_A, 1..=10)], 10).await?;
    assert_eq!(count().await?, Some(KvValue::Long(10)));

    // The projection: rows in the tail, committed, then trimmed from the tail.
    for (upto, seqs) in [(12, 11..=12), (15, 13..=15)] {
        tail.push(upto, rows(A, DEVICE_A, seqs.clone()));
        commit(&location, vec![rows(A, DEVICE_A, seqs)], upto as i64).await?;
        tail.trim(upto);
        assert_eq!(count().await?, Some(KvValue::Long(upto as i64)), "committed up to {upto}");
    }

    // Another writer: nothing in this process's tail tells of it.
    commit(&location, vec![rows(A, DEVICE_A, 16..=20)], 20).await?;
    let started = std::time::Instant::now();
    while count().await? != Some(KvValue::Long(20)) {
        assert!(started.elapsed() < std::time::Duration::from_secs(3), "another writer's commit not seen after {:?}", started.elapsed());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Telemetry of `devices` devices × 3 keys × 4 days (a long key, a double key with some points
/// missing, a key of both types), committed unsorted in two commits and then compacted (sorted).
async fn fleet_table(location: &LakeLocation, devices: usize) -> anyhow::Result<Vec<(String, String, i32, Option<i64>, Option<f64>)>> {
    let mut points = Vec::new();
    let mut seq = 0;
    for part in 0..2 {
        let mut b = RowBuilder::new(telemetry().schema);
        for i in 0..200i64 {
            for d in 0..devices {
                for k in ["count", "temp", "mixed"] {
                    seq += 1;
                    let ts = T0 + (i * 2 + part) * 864_000; // 400 points over 4 days, each commit all of them
                    let (long, double) = match k {
                        "count" => (Some(i * d as i64), None),
                        "temp" if i % 7 == 0 => continue,
                        "temp" => (None, Some(i as f64 / 4.0 - d as f64)),
                        _ if i % 2 == 0 => (Some(i), None),
                        _ => (None, Some(i as f64 + 0.5)),
                    };
                    let device = format!("00000000-0000-0000-0000-{:012x}", d + 1);
                    b.str(Some(A)).date32(Some(day_of(ts))).str(Some("DEVICE")).str(Some(&device)).str(Some(k)).i64(Some(ts));
                    b.bool(None).i64(long).f64(double).str(None).str(None).i64(Some(ts)).i64(Some(seq));
                    b.end_row();
                    points.push((device, k.to_string(), day_of(ts), long, double));
                }
            }
        }
        commit(location, vec![b.finish()?], seq).await?;
    }
    thinglake_lake::upkeep::compact(
        location,
        "telemetry",
        thinglake_lake::upkeep::SMALL_FILE_BYTES,
        thinglake_lake::upkeep::MIN_FILES,
    )
    .await?;
    Ok(points)
}

#[tokio::test]
async fn fleet_aggregates_over_a_join_with_devices_match_values_computed_here() -> anyhow::Result<()> {
    use std::collections::BTreeMap;
    use thinglake_queries::DeviceRow;

    let dir = tempfile::tempdir()?;
    let location = LakeLocation::local(dir.path())?;
    let points = fleet_table(&location, 7).await?;
    let engine = QueryEngine::new(location, Default::default(), QueryConfig::default())?;
    // Device 7 is not in the view (deleted, or another customer's): its points join nothing.
    let type_of = |d: usize| ["meter", "thermostat", "tracker"][d % 3];
    let devices: Vec<DeviceRow> = (0..6)
        .map(|d| DeviceRow {
            id: format!("00000000-0000-0000-0000-{:012x}", d + 1),
            name: format!("d{d}"),
            device_type: type_of(d).to_string(),
            label: None,
            customer_id: None,
            created_time: 0,
        })
        .collect();
    let views = TenantViews { devices: devices.clone(), ..TenantViews::default() };

    // Expected, per (type, key, day): count(*), count(dbl_v), sum(long_v), min(dbl_v), max(long_v), sum and count of the values.
    #[derive(Default)]
    struct Group {
        points: i64,
        doubles: i64,
        long_sum: Option<i64>,
        double_min: Option<f64>,
        long_max: Option<i64>,
        value_sum: f64,
    }
    let mut expected: BTreeMap<(String, String, i32), Group> = BTreeMap::new();
    for (device, key, day, long, double) in &points {
        let Some(d) = devices.iter().position(|r| &r.id == device) else { continue };
        let g = expected.entry((type_of(d).to_string(), key.clone(), *day)).or_default();
        g.points += 1;
        g.doubles += i64::from(double.is_some());
        if let Some(l) = long {
            g.long_sum = Some(g.long_sum.unwrap_or(0) + l);
            g.long_max = Some(g.long_max.map_or(*l, |m| m.max(*l)));
        }
        if let Some(x) = double {
            g.double_min = Some(g.double_min.map_or(*x, |m| m.min(*x)));
        }
        g.value_sum += double.unwrap_or_else(|| long.unwrap_or(0) as f64);
    }

    let sql = "SELECT d.type AS device_type, t.key, CAST(t.day AS VARCHAR) AS day, \
               avg(coalesce(t.dbl_v, CAST(t.long_v AS DOUBLE))) AS avg_value, count(*) AS points, count(t.dbl_v) AS doubles, \
               sum(t.long_v) AS long_sum, min(t.dbl_v) AS double_min, max(t.long_v) AS long_max \
               FROM telemetry t JOIN devices d ON d.id = t.entity_id GROUP BY d.type, t.key, t.day ORDER BY 1, 2, 3";
    let answer = engine.sql(tenant(A), sql, views.clone()).await?;
    assert_eq!(answer.columns, ["device_type", "key", "day", "avg_value", "points", "doubles", "long_sum", "double_min", "long_max"]);
    assert_eq!(answer.rows.len(), expected.len());
    for (row, ((device_type, key, day), g)) in answer.rows.iter().zip(&expected) {
        let date = chrono_day(*day);
        assert_eq!((row[0].as_str(), row[1].as_str(), row[2].as_str()), (Some(device_type.as_str()), Some(key.as_str()), Some(date.as_str())));
        let avg = row[3].as_f64().expect("an average");
        assert!((avg - g.value_sum / g.points as f64).abs() < 1e-9, "{row:?}");
        assert_eq!(row[4], json!(g.points), "{row:?}");
        assert_eq!(row[5], json!(g.doubles), "{row:?}");
        assert_eq!(row[6], json!(g.long_sum), "{row:?}");
        assert_eq!(row[7], json!(g.double_min), "{row:?}");
        assert_eq!(row[8], json!(g.long_max), "{row:?}");
    }

    // The telemetry side is aggregated before the join: the join sees one row per device, key
    // and day, not one per point.
    let explain = engine.sql(tenant(A), &format!("EXPLAIN {sql}"), views).await?;
    let physical = explain.rows.iter().find(|r| r[0] == json!("physical_plan")).expect("a physical plan")[1].as_str().unwrap_or_default().to_string();
    let join = physical.find("HashJoinExec").expect("a hash join");
    assert!(physical[join..].contains("AggregateExec"), "no aggregate below the join:\n{physical}");
    Ok(())
}

/// `YYYY-MM-DD` of a day number (days since 1970-01-01).
fn chrono_day(day: i32) -> String {
    let date = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch") + chrono::Days::new(day as u64);
    date.format("%Y-%m-%d").to_string()
}
