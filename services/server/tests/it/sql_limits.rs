//! What one SQL statement may take: amplifying functions refused past their build limit, an
//! answer stopped past the byte limit, concurrent statements refused per user and per tenant
//! (429, errorCode 33, Retry-After), and dashboards' time-series queries answered while
//! analysts' statements hold every SQL permit — the node answering throughout.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::harness::{Api, Resp, TestApp, id_of};
use crate::telemetry::eventually;
use crate::timeseries::{T0, dataset, path, save, start};

async fn sql(t: &Api, token: &str, query: &str) -> Resp {
    t.post("/api/sql", token, json!({"query": query})).await
}

/// The node still answers: health, and a statement of another tenant.
async fn still_answering(t: &TestApp, other: &str) {
    assert_eq!(t.call(Method::GET, "/health", None, None).await.status.as_u16(), 200);
    assert_eq!(sql(t, other, "SELECT 1 AS one").await.ok()["rows"], json!([[1]]));
}

#[tokio::test]
async fn each_amplifying_function_is_refused_past_its_build_limit_and_the_node_keeps_answering() {
    let t = start(|s| s.query.max_function_bytes = 1 << 20).await;
    let (_, admin) = t.tenant("amplifier tenant").await;
    let (_, other) = t.tenant("bystander tenant").await;
    // Each builds a few MiB for one batch: answered before the limit existed.
    for (function, statement) in [
        ("repeat", "SELECT length(repeat('x', 200000)) AS n FROM range(100)"),
        ("lpad", "SELECT length(lpad('x', 2000000)) AS n"),
        ("rpad", "SELECT length(rpad('x', 2000000, 'yz')) AS n"),
        ("range", "SELECT cardinality(range(1000000)) AS n"),
        ("generate_series", "SELECT cardinality(generate_series(1, 1000000)) AS n"),
        ("array_repeat", "SELECT cardinality(array_repeat(1, 1000000)) AS n"),
        ("range", "SELECT cardinality(range(DATE '2000-01-01', DATE '2030-01-01', INTERVAL '1 minute')) AS n"),
        ("replace", "SELECT length(replace(repeat('a', 2000), 'a', repeat('b', 1000))) AS n"),
        ("concat", "WITH v AS (SELECT repeat('x', 100000) AS s) SELECT length(concat(s, s, s, s, s, s, s, s, s, s, s, s)) FROM v"),
    ] {
        let refused = sql(&t, &admin, statement).await.expect(400);
        let message = refused["message"].as_str().unwrap_or_default();
        assert!(message.contains(&format!("{function}()")) && message.contains("query_max_function_bytes"), "{statement}: {refused}");
        assert_eq!(refused["errorCode"], 31, "{refused}");
        still_answering(&t, &other).await;
    }
    // Within the limit the same functions answer.
    assert_eq!(sql(&t, &admin, "SELECT length(repeat('x', 1000)) AS n").await.ok()["rows"], json!([[1000]]));
    assert_eq!(sql(&t, &admin, "SELECT cardinality(range(10)) AS n").await.ok()["rows"], json!([[10]]));
    // A literal copied into every row is bounded too.
    let long = format!("SELECT '{}' AS s FROM range(100000)", "x".repeat(5000));
    let refused = sql(&t, &admin, &long).await.expect(400);
    assert!(refused["message"].as_str().unwrap_or_default().contains("longer than the limit"), "{refused}");
}

#[tokio::test]
async fn an_answer_past_the_byte_limit_is_stopped_with_a_clear_error() {
    let t = start(|s| s.query.max_result_bytes = 1 << 20).await;
    let (_, admin) = t.tenant("big answer tenant").await;
    // About 5 MB of text in 5000 rows: under the row limit, over the byte limit.
    let refused = sql(&t, &admin, "SELECT repeat('x', 1000) AS s FROM range(5000)").await.expect(400);
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(message.contains("exceeds the limit of 1.0 MiB"), "{refused}");
    assert_eq!(sql(&t, &admin, "SELECT repeat('x', 100) AS s FROM range(100)").await.ok()["rows"].as_array().map(Vec::len), Some(100));
}

/// A statement that runs until the time limit stops it (or its client goes away).
const SLOW: &str = "SELECT sum(value * 2) AS s FROM range(100000000000)";

/// Starts `SLOW` as `token` in the background (again while a poll of the test holds the
/// permit it needs).
fn slow(tasks: &mut JoinSet<()>, base: &str, token: &str) {
    let (api, token) = (Api::new(base.to_string()), token.to_string());
    tasks.spawn(async move {
        while sql(&api, &token, SLOW).await.status.as_u16() == 429 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

/// Polls until `token`'s statement is refused as busy, and returns the refusal.
async fn busy(t: &TestApp, token: &str) -> (Value, Option<String>) {
    eventually(Duration::from_secs(20), || async {
        let res = t
            .http
            .post(t.url("/api/sql"))
            .header("X-Authorization", format!("Bearer {token}"))
            .json(&json!({"query": "SELECT 1"}))
            .send()
            .await
            .expect("sent");
        if res.status().as_u16() != 429 {
            return None;
        }
        let retry_after = res.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(String::from);
        Some((res.json::<Value>().await.expect("error JSON"), retry_after))
    })
    .await
}

#[tokio::test]
async fn concurrent_statements_are_refused_per_user_and_tenant_while_dashboards_are_answered() {
    let t = start(|s| {
        s.query.time_limit = Duration::from_secs(30);
        s.query.concurrency.sql_per_user = 1;
        s.query.concurrency.sql_per_tenant = 2;
    })
    .await;
    let (tenant_id, admin) = t.tenant("busy tenant").await;
    let sys = t.sysadmin().await;
    let analyst = |n: u32| json!({"email": format!("analyst{n}-{tenant_id}@example.com"), "authority": "TENANT_ADMIN", "tenantId": {"entityType": "TENANT", "id": tenant_id}});
    let second = t.user(&sys, analyst(2)).await;
    let third = t.user(&sys, analyst(3)).await;
    let (_, other_tenant) = t.tenant("quiet tenant").await;
    let device = id_of(&t.device(&admin, "dashboard device").await);
    save(&t, &admin, &device, &dataset(0)).await;

    // The first user's slow statement holds its one permit: its next one is refused at once.
    let mut running = JoinSet::new();
    slow(&mut running, &t.base, &admin);
    let (refused, retry_after) = busy(&t, &admin).await;
    assert_eq!(refused["status"], 429, "{refused}");
    assert_eq!(refused["errorCode"], 33, "{refused}");
    assert!(refused["message"].as_str().unwrap_or_default().contains("your user"), "{refused}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    // Another user of the tenant runs one; then the tenant's two permits are taken.
    slow(&mut running, &t.base, &second);
    let (refused, _) = busy(&t, &third).await;
    assert!(refused["message"].as_str().unwrap_or_default().contains("your tenant"), "{refused}");
    // Another tenant is not held up.
    assert_eq!(sql(&t, &other_tenant, "SELECT 1 AS one").await.ok()["rows"], json!([[1]]));

    // A dashboard's aggregated and raw queries of the busy tenant answer meanwhile.
    let aggregated = path(&device, &format!("keys=temp&startTs={T0}&endTs={}&interval=10000&agg=AVG", T0 + 50_000));
    let answer = eventually(Duration::from_secs(10), || async {
        let answer = t.get(&aggregated, &admin).await.ok();
        answer["temp"].as_array().is_some_and(|points| !points.is_empty()).then_some(answer)
    })
    .await;
    assert!(answer["temp"].as_array().is_some_and(|p| p.len() >= 4), "{answer}");
    let raw = t.get(&path(&device, &format!("keys=temp&startTs={T0}&endTs={}&limit=5", T0 + 50_000)), &admin).await.ok();
    assert_eq!(raw["temp"].as_array().map(Vec::len), Some(5), "{raw}");

    // The clients go away: their statements end and free the permits.
    running.abort_all();
    eventually(Duration::from_secs(40), || async { (sql(&t, &third, "SELECT 1 AS one").await.status.as_u16() == 200).then_some(()) }).await;
    eventually(Duration::from_secs(40), || async { (sql(&t, &admin, "SELECT 1 AS one").await.status.as_u16() == 200).then_some(()) }).await;
}
