//! `POST /api/sql`: a tenant administrator's read-only SQL over the tenant's views (telemetry,
//! devices), as JSON, CSV, Arrow IPC or Parquet; statements that write, define or read files
//! refused; another tenant's rows never seen; row and time limits.

use std::time::Duration;

use serde_json::json;
use thinglake_queries::arrow::array::RecordBatch;

use crate::harness::{Api, id_of};
use crate::telemetry::eventually;
use crate::timeseries::{T0, dataset, save, start};

async fn sql(t: &Api, token: &str, query: &str) -> crate::harness::Resp {
    t.post("/api/sql", token, json!({"query": query})).await
}

async fn csv(t: &Api, token: &str, query: &str, by_accept: bool) -> (u16, String, String) {
    let mut req = t.http.post(t.url(if by_accept { "/api/sql" } else { "/api/sql?format=csv" }));
    if by_accept {
        req = req.header("Accept", "text/csv");
    }
    let res = req.header("X-Authorization", format!("Bearer {token}")).json(&json!({"query": query})).send().await.expect("sent");
    let status = res.status().as_u16();
    let content_type = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    (status, content_type, res.text().await.expect("body"))
}

#[tokio::test]
async fn a_tenant_queries_its_own_rows_read_only_as_json_or_csv() {
    let t = start(|s| {
        s.lake_commit_interval = Duration::from_millis(300);
        s.query.max_rows = 1000;
        s.query.time_limit = Duration::from_secs(3);
    })
    .await;
    let (_, admin) = t.tenant("sql tenant").await;
    let device = id_of(&t.device(&admin, "sql device").await);
    let (_, other_admin) = t.tenant("other sql tenant").await;
    let other_device = id_of(&t.device(&other_admin, "other sql device").await);
    let points = dataset(0);
    save(&t, &admin, &device, &points).await;
    save(&t, &other_admin, &other_device, &dataset(5)).await;
    let expected_count = |key: &str| points.iter().filter(|(k, _, _)| k == key).count() as i64;

    // Visible at once (hot tail or lake, whichever holds them now).
    let query = "SELECT key, count(*) AS n, min(ts) AS first FROM telemetry GROUP BY key ORDER BY key";
    let answer = eventually(Duration::from_secs(10), || {
        let t = &t;
        let admin = &admin;
        async move {
            let answer = sql(t, admin, query).await.ok();
            (answer["rows"].as_array().map(Vec::len) == Some(3) && answer["rows"][2][1] == json!(expected_count("temp")))
                .then_some(answer)
        }
    })
    .await;
    assert_eq!(answer["columns"], json!(["key", "n", "first"]));
    assert_eq!(
        answer["rows"],
        json!([["label", expected_count("label"), T0], ["on", expected_count("on"), T0], ["temp", expected_count("temp"), T0]])
    );
    // Only the tenant's rows, whatever the query asks for.
    let tenants = sql(&t, &admin, "SELECT DISTINCT tenant_id, entity_id FROM telemetry").await.ok();
    assert_eq!(tenants["rows"].as_array().map(Vec::len), Some(1));
    assert_eq!(tenants["rows"][0][1], json!(device));
    let none = sql(&t, &admin, &format!("SELECT count(*) FROM telemetry WHERE entity_id = '{other_device}'")).await.ok();
    assert_eq!(none["rows"], json!([[0]]));
    let theirs = sql(&t, &other_admin, "SELECT count(*) FROM telemetry").await.ok();
    assert_eq!(theirs["rows"], json!([[points.len()]]));

    // And after the commit, the same.
    let app = t.app.as_ref().expect("running");
    eventually(Duration::from_secs(10), || async { (app.lake.hot_tail("telemetry").expect("tail").rows() == 0).then_some(()) }).await;
    assert_eq!(sql(&t, &admin, query).await.ok(), answer);
    assert_eq!(sql(&t, &other_admin, "SELECT count(*) FROM telemetry").await.ok()["rows"], json!([[points.len()]]));

    // The devices view: the tenant's devices only, joinable with telemetry.
    let devices = sql(&t, &admin, "SELECT name, type, customer_id FROM devices ORDER BY name").await.ok();
    assert_eq!(devices["rows"], json!([["sql device", "default", null]]));
    let joined = sql(
        &t,
        &admin,
        "SELECT d.name, count(*) AS n FROM telemetry t JOIN devices d ON t.entity_id = d.id WHERE t.key = 'temp' GROUP BY d.name",
    )
    .await
    .ok();
    assert_eq!(joined["rows"], json!([["sql device", expected_count("temp")]]));
    let theirs = sql(&t, &other_admin, "SELECT name FROM devices").await.ok();
    assert_eq!(theirs["rows"], json!([["other sql device"]]));

    // CSV, by Accept header or by ?format=csv.
    let csv_query = "SELECT key, count(*) AS n FROM telemetry WHERE key <> 'temp' GROUP BY key ORDER BY key";
    for by_accept in [true, false] {
        let (status, content_type, body) = csv(&t, &admin, csv_query, by_accept).await;
        assert_eq!(status, 200, "{body}");
        assert!(content_type.starts_with("text/csv"), "{content_type}");
        assert_eq!(body, format!("key,n\r\nlabel,{}\r\non,{}\r\n", expected_count("label"), expected_count("on")));
    }

    // Refused: DDL, DML, COPY, external tables, settings, several statements, files and URLs.
    for refused in [
        "CREATE TABLE x AS SELECT 1",
        "CREATE VIEW v AS SELECT * FROM telemetry",
        "DROP TABLE telemetry",
        "INSERT INTO telemetry SELECT * FROM telemetry",
        "DELETE FROM telemetry",
        "UPDATE telemetry SET key = 'x'",
        "COPY (SELECT * FROM telemetry) TO '/tmp/thinglake-sql-test.csv'",
        "CREATE EXTERNAL TABLE etc STORED AS CSV LOCATION '/etc/passwd'",
        "SET datafusion.execution.batch_size = 1",
        "SELECT 1; DROP TABLE telemetry",
        "SELECT * FROM read_parquet('/etc/passwd')",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM '/etc/passwd'",
        "SELECT * FROM 'file:///etc/passwd'",
        "SELECT * FROM information_schema.tables",
        "SELECT * FROM nonsense",
    ] {
        let body = sql(&t, &admin, refused).await.expect(400);
        assert!(body["message"].is_string(), "{refused}: {body}");
    }
    // Row and time limits.
    sql(&t, &admin, "SELECT * FROM telemetry").await.ok();
    let body = sql(&t, &admin, "SELECT a.ts FROM telemetry a, telemetry b").await.expect(400);
    assert!(body["message"].as_str().unwrap_or_default().contains("limit"), "{body}");
    let body = sql(&t, &admin, "SELECT sum(value) FROM generate_series(1, 100000000000)").await.expect(400);
    assert!(body["message"].as_str().unwrap_or_default().contains("time limit"), "{body}");

    // Not the system administrator (customer users: see sql_views.rs).
    let sys = t.sysadmin().await;
    sql(&t, &sys, "SELECT 1").await.expect(403);
}

/// Sends `query` asking for a binary format by `?format=` or by `Accept`; returns the status,
/// content type and body bytes.
async fn binary(t: &Api, token: &str, query: &str, format: &str, accept: Option<&str>) -> (u16, String, bytes::Bytes) {
    let mut req = match accept {
        Some(accept) => t.http.post(t.url("/api/sql")).header("Accept", accept),
        None => t.http.post(t.url(&format!("/api/sql?format={format}"))),
    };
    req = req.header("X-Authorization", format!("Bearer {token}"));
    let res = req.json(&json!({"query": query})).send().await.expect("sent");
    let status = res.status().as_u16();
    let content_type = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    (status, content_type, res.bytes().await.expect("body"))
}

/// Columns and rows of Arrow batches as JSON values, read here with the typed arrays (the
/// column types a telemetry query has), to compare with the JSON answer.
fn arrow_rows(batches: &[RecordBatch]) -> (Vec<String>, Vec<Vec<serde_json::Value>>) {
    use serde_json::Value;
    use thinglake_queries::arrow::array::{Array, AsArray};
    use thinglake_queries::arrow::datatypes::{DataType, Float64Type, Int64Type};
    let columns = batches[0].schema().fields().iter().map(|f| f.name().clone()).collect();
    let mut rows = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            let values = batch
                .columns()
                .iter()
                .map(|c| {
                    if c.is_null(row) {
                        return Value::Null;
                    }
                    match c.data_type() {
                        DataType::Utf8 => json!(c.as_string::<i32>().value(row)),
                        DataType::Int64 => json!(c.as_primitive::<Int64Type>().value(row)),
                        DataType::Float64 => json!(c.as_primitive::<Float64Type>().value(row)),
                        DataType::Boolean => json!(c.as_boolean().value(row)),
                        other => panic!("unexpected column type {other}"),
                    }
                })
                .collect();
            rows.push(values);
        }
    }
    (columns, rows)
}

#[tokio::test]
async fn answers_come_as_arrow_ipc_or_parquet_with_the_values_of_the_json_answer() {
    use thinglake_queries::arrow::ipc::reader::StreamReader;
    use thinglake_queries::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let t = start(|_| {}).await;
    let (_, admin) = t.tenant("sql formats tenant").await;
    let device = id_of(&t.device(&admin, "formats device").await);
    let points = dataset(0);
    save(&t, &admin, &device, &points).await;
    let expected_rows = points.len();
    let query = "SELECT key, ts, bool_v, long_v, dbl_v, str_v FROM telemetry ORDER BY key, ts";
    let answer = eventually(Duration::from_secs(10), || {
        let (t, admin) = (&t, &admin);
        async move {
            let answer = sql(t, admin, query).await.ok();
            (answer["rows"].as_array().map(Vec::len) == Some(expected_rows)).then_some(answer)
        }
    })
    .await;
    let aggregate = "SELECT key, count(*) AS n, avg(coalesce(dbl_v, long_v)) AS mean FROM telemetry GROUP BY key ORDER BY key";
    let aggregated = sql(&t, &admin, aggregate).await.ok();
    assert_eq!(aggregated["rows"].as_array().map(Vec::len), Some(3), "{aggregated}");

    for (query, answer) in [(query, &answer), (aggregate, &aggregated)] {
        for accept in [None, Some("application/vnd.apache.arrow.stream")] {
            let (status, content_type, body) = binary(&t, &admin, query, "arrow", accept).await;
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
            assert_eq!(content_type, "application/vnd.apache.arrow.stream");
            let reader = StreamReader::try_new(std::io::Cursor::new(body), None).expect("an Arrow IPC stream");
            let batches = reader.collect::<Result<Vec<_>, _>>().expect("batches");
            let (columns, rows) = arrow_rows(&batches);
            assert_eq!(json!(columns), answer["columns"]);
            assert_eq!(json!(rows), answer["rows"]);
        }
        for accept in [None, Some("application/vnd.apache.parquet")] {
            let (status, content_type, body) = binary(&t, &admin, query, "parquet", accept).await;
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
            assert_eq!(content_type, "application/vnd.apache.parquet");
            let reader = ParquetRecordBatchReaderBuilder::try_new(body).expect("a Parquet file").build().expect("reader");
            let batches = reader.collect::<Result<Vec<_>, _>>().expect("batches");
            let (columns, rows) = arrow_rows(&batches);
            assert_eq!(json!(columns), answer["columns"]);
            assert_eq!(json!(rows), answer["rows"]);
        }
    }
    // An empty answer still carries its schema.
    let (status, _, body) = binary(&t, &admin, "SELECT key, ts FROM telemetry WHERE false", "arrow", None).await;
    assert_eq!(status, 200);
    let reader = StreamReader::try_new(std::io::Cursor::new(body), None).expect("an Arrow IPC stream");
    let names: Vec<String> = reader.schema().fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(names, ["key", "ts"]);
    assert_eq!(reader.map(|b| b.expect("batch").num_rows()).sum::<usize>(), 0);

    // Errors stay JSON with a status, whatever the format asked for.
    let (status, content_type, body) = binary(&t, &admin, "DROP TABLE telemetry", "parquet", None).await;
    assert_eq!(status, 400);
    assert!(content_type.starts_with("application/json"), "{content_type}");
    let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON error");
    assert!(body["message"].as_str().unwrap_or_default().contains("refused"), "{body}");
    let (status, _, body) = binary(&t, &admin, "SELECT 1", "xml", None).await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
}
