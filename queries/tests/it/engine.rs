//! The engine over a Delta `telemetry` table written like the projection writes it (with its
//! `txn` sequence) plus a hot tail: rows counted once when tail and table overlap, tenants apart.

use deltalake_core::arrow::array::RecordBatch;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake_core::kernel::{Action, Transaction};
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::writer::{DeltaWriter as _, RecordBatchWriter};
use serde_json::json;
use thinglake_domain::telemetry::KvValue;
use thinglake_projections::lake::table::{RowBuilder, TableSpec, day_of, telemetry};
use thinglake_projections::lake::{HotTail, LakeLocation};
use thinglake_queries::{Aggregation, Order, QueryConfig, QueryEngine, QueryError, TELEMETRY, TenantViews, TimeseriesQuery};

const A: &str = "00000000-0000-0000-0000-00000000000a";
const B: &str = "00000000-0000-0000-0000-00000000000b";
const DEVICE_A: &str = "00000000-0000-0000-0000-0000000000d1";
const DEVICE_B: &str = "00000000-0000-0000-0000-0000000000d2";
const T0: i64 = 1_700_000_000_000;

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
    let dir = tempfile::tempdir()?;
    let location = LakeLocation::local(dir.path())?;
    let tail = HotTail::new(telemetry().schema);
    let engine = QueryEngine::new(location.clone(), [(TELEMETRY, tail.clone())].into(), QueryConfig::default())?;

    // No table yet: the tail alone.
    tail.push(10, rows(A, DEVICE_A, 1..=10));
    tail.push(12, rows(B, DEVICE_B, 11..=12));
    let answer = engine.timeseries(A, "DEVICE", DEVICE_A, count_query()).await?;
    assert_eq!(answer[0].1[0].value, KvValue::Long(10));

    // Sequences 1..=12 committed while the tail still holds them (a query racing the trim),
    // and 13..=20 only in the tail.
    commit(&location, vec![rows(A, DEVICE_A, 1..=10), rows(B, DEVICE_B, 11..=12)], 12).await?;
    tail.push(20, rows(A, DEVICE_A, 13..=20));
    let answer = engine.timeseries(A, "DEVICE", DEVICE_A, count_query()).await?;
    assert_eq!(answer[0].1[0].value, KvValue::Long(18));
    let sum = engine.timeseries(A, "DEVICE", DEVICE_A, TimeseriesQuery { agg: Aggregation::Sum, ..count_query() }).await?;
    assert_eq!(sum[0].1[0].value, KvValue::Long((1..=10).sum::<i64>() + (13..=20).sum::<i64>()));

    // Raw, newest first.
    let raw = engine.timeseries(A, "DEVICE", DEVICE_A, TimeseriesQuery { interval: 0, limit: 3, ..count_query() }).await?;
    let values: Vec<KvValue> = raw[0].1.iter().map(|p| p.value.clone()).collect();
    assert_eq!(values, vec![KvValue::Long(20), KvValue::Long(19), KvValue::Long(18)]);

    // Tenant A's session never sees B's device, even when asked for it.
    assert!(engine.timeseries(A, "DEVICE", DEVICE_B, count_query()).await?.is_empty());
    let b = engine.timeseries(B, "DEVICE", DEVICE_B, count_query()).await?;
    assert_eq!(b[0].1[0].value, KvValue::Long(2));
    let sql = engine.sql(A, "SELECT tenant_id, count(*) AS n, sum(long_v) AS s FROM telemetry GROUP BY tenant_id", TenantViews::default()).await?;
    assert_eq!(sql.columns, vec!["tenant_id", "n", "s"]);
    assert_eq!(sql.rows, vec![vec![json!(A), json!(18), json!(187)]]);

    // Refusals before anything runs.
    for statement in ["DROP TABLE telemetry", "COPY telemetry TO '/tmp/x.csv'", "SELECT * FROM read_parquet('/etc/passwd')"] {
        let refused = engine.sql(A, statement, TenantViews::default()).await.expect_err(statement);
        assert!(matches!(refused, QueryError::Refused { .. } | QueryError::Invalid { .. }), "{statement}: {refused}");
    }
    Ok(())
}
