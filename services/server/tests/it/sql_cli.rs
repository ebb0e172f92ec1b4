//! `thinglake sql`: the real binary against a running platform over HTTP — an aligned table with
//! the row count, statements from standard input, the API's CSV and Arrow bytes as they are, and
//! distinct exit codes with the API's message for a refused statement, a failed login and an
//! unreachable platform.

use std::process::Output;
use std::time::Duration;

use serde_json::json;

use crate::harness::{PASSWORD, TestApp, id_of};
use crate::telemetry::eventually;
use crate::timeseries::T0;

const EXIT_CONNECTION: i32 = 3;
const EXIT_LOGIN: i32 = 4;
const EXIT_SQL: i32 = 5;

/// Runs `thinglake sql ARGS` with `env` (and nothing of the test's own THINGLAKE_* variables),
/// feeding `stdin`.
async fn cli(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    use tokio::io::AsyncWriteExt as _;
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_thinglake"));
    command.arg("sql").args(args);
    for var in ["THINGLAKE_URL", "THINGLAKE_SQL_USER", "THINGLAKE_SQL_PASSWORD"] {
        command.env_remove(var);
    }
    command.envs(env.iter().copied()).env("THINGLAKE_LOG", "warn");
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("thinglake runs");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).await.expect("stdin written");
    drop(input);
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.expect("thinglake sql ends").expect("output")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The cells of the table lines (`| a | b |`) of a printed table, header first.
fn cells(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .filter(|l| l.starts_with('|'))
        .map(|l| l.trim_matches('|').split('|').map(|c| c.trim().to_string()).collect())
        .collect()
}

/// A tenant whose device has `temp` (doubles) and `count` (longs) at five timestamps, all
/// visible to SQL; returns (platform, admin email, admin token, expected rows of
/// `SELECT ts, key, dbl_v, long_v FROM telemetry ORDER BY ts, key` as printed).
async fn platform_with_telemetry() -> (TestApp, String, String, Vec<Vec<String>>) {
    let t = TestApp::start().await;
    let (tenant_id, admin) = t.tenant("sql cli tenant").await;
    let email = format!("admin-{tenant_id}@example.com");
    let device = id_of(&t.device(&admin, "cli device").await);
    let temps = [20.5, 21.25, 22.75, 23.5, 24.125];
    let body: Vec<_> =
        temps.iter().enumerate().map(|(i, v)| json!({"ts": T0 + i as i64 * 1000, "values": {"temp": v, "count": 7 * i as i64}})).collect();
    t.post(&format!("/api/plugins/telemetry/DEVICE/{device}/timeseries/ANY"), &admin, json!(body)).await.ok();
    eventually(Duration::from_secs(10), || {
        let (t, admin) = (&t, &admin);
        async move {
            let answer = t.post("/api/sql", admin, json!({"query": "SELECT count(*) FROM telemetry"})).await.ok();
            (answer["rows"] == json!([[10]])).then_some(())
        }
    })
    .await;
    let mut expected = Vec::new();
    for (i, v) in temps.iter().enumerate() {
        let ts = (T0 + i as i64 * 1000).to_string();
        // ORDER BY ts, key: "count" before "temp".
        expected.push(vec![ts.clone(), "count".into(), String::new(), (7 * i).to_string()]);
        expected.push(vec![ts, "temp".into(), v.to_string(), String::new()]);
    }
    (t, email, admin, expected)
}

const ROWS_QUERY: &str = "SELECT ts, key, dbl_v, long_v FROM telemetry ORDER BY ts, key";

#[tokio::test]
async fn the_cli_prints_tables_and_writes_the_apis_answers() {
    let (t, email, admin, expected) = platform_with_telemetry().await;
    let url = t.base.clone();

    // The query as the argument, credentials as flags: a table, then the row count.
    let out = cli(&[ROWS_QUERY, "--url", &url, "--user", &email, "--password", PASSWORD], &[], "").await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {}", text(&out.stderr));
    let table = cells(&stdout);
    assert_eq!(table[0], ["ts", "key", "dbl_v", "long_v"]);
    assert_eq!(table[1..], expected[..]);
    assert_eq!(stdout.lines().last(), Some("(10 rows)"));
    assert!(!stdout.contains(PASSWORD) && !text(&out.stderr).contains(PASSWORD), "the password is never printed");

    // Statements from standard input, credentials from the environment: one result each.
    let env = [("THINGLAKE_URL", url.as_str()), ("THINGLAKE_SQL_USER", email.as_str()), ("THINGLAKE_SQL_PASSWORD", PASSWORD)];
    let script = "-- three statements\nSELECT key, count(*) AS n, max(ts) AS last\n  FROM telemetry\n  GROUP BY key\n  ORDER BY key;\n\
                  SELECT name FROM devices;\nSELECT key FROM telemetry WHERE key = 'none';\n";
    let out = cli(&[], &env, script).await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {}", text(&out.stderr));
    let counts: Vec<&str> = stdout.lines().filter(|l| l.starts_with('(')).collect();
    assert_eq!(counts, ["(2 rows)", "(1 row)", "(0 rows)"]);
    let last = (T0 + 4000).to_string();
    assert_eq!(
        cells(&stdout),
        [
            vec!["key", "n", "last"],
            vec!["count", "5", last.as_str()],
            vec!["temp", "5", last.as_str()],
            vec!["name"],
            vec!["cli device"],
            vec!["key"],
        ]
    );

    // --format csv: the API's CSV, byte for byte.
    let api_csv = t
        .http
        .post(t.url("/api/sql?format=csv"))
        .header("X-Authorization", format!("Bearer {admin}"))
        .json(&json!({"query": ROWS_QUERY}))
        .send()
        .await
        .expect("sent")
        .bytes()
        .await
        .expect("body");
    let out = cli(&[ROWS_QUERY, "--format", "csv"], &env, "").await;
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), text(&api_csv));
    assert_eq!(text(&api_csv).lines().count(), 11, "a header and ten rows");

    // --format arrow --output FILE: the API's Arrow stream in the file, nothing on stdout.
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("rows.arrow");
    let out = cli(&[ROWS_QUERY, "--format", "arrow", "--output", file.to_str().expect("utf-8 path")], &env, "").await;
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    let api_arrow = t
        .http
        .post(t.url("/api/sql?format=arrow"))
        .header("X-Authorization", format!("Bearer {admin}"))
        .json(&json!({"query": ROWS_QUERY}))
        .send()
        .await
        .expect("sent")
        .bytes()
        .await
        .expect("body");
    assert_eq!(std::fs::read(&file).expect("output file"), api_arrow.to_vec());

    // Arrow and Parquet answers are one stream or file: several statements are refused.
    let out = cli(&["--format", "parquet"], &env, "SELECT 1;\nSELECT 2;\n").await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("give one statement, not 2"), "{}", text(&out.stderr));
}

#[tokio::test]
async fn the_cli_exits_with_a_code_per_failure_and_the_apis_message() {
    let (t, email, admin, _) = platform_with_telemetry().await;
    let url = t.base.clone();
    let env = [("THINGLAKE_URL", url.as_str()), ("THINGLAKE_SQL_USER", email.as_str()), ("THINGLAKE_SQL_PASSWORD", PASSWORD)];

    // A refused statement: the API's message on stderr, nothing on stdout.
    let drop = "DROP TABLE telemetry";
    let refusal = t.post("/api/sql", &admin, json!({"query": drop})).await.expect(400);
    let message = refusal["message"].as_str().expect("message");
    let out = cli(&[drop], &env, "").await;
    assert_eq!(out.status.code(), Some(EXIT_SQL), "stderr: {}", text(&out.stderr));
    assert!(text(&out.stderr).contains(message), "stderr {:?} lacks {message:?}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    // From a script: the results before the refused statement are printed, then it stops.
    let out = cli(&[], &env, "SELECT count(*) AS n FROM telemetry;\nDROP TABLE telemetry;\nSELECT 1;\n").await;
    assert_eq!(out.status.code(), Some(EXIT_SQL));
    assert_eq!(text(&out.stdout).lines().filter(|l| l.starts_with('(')).collect::<Vec<_>>(), ["(1 row)"]);
    assert_eq!(cells(&text(&out.stdout)), [["n"], ["10"]]);

    // A wrong password: the login failure code and the API's message, no password shown.
    let wrong = "not the password";
    let out = cli(&["SELECT 1", "--password", wrong], &env, "").await;
    assert_eq!(out.status.code(), Some(EXIT_LOGIN), "stderr: {}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("Invalid username or password") && stderr.contains(&email), "{stderr}");
    assert!(!stderr.contains(wrong) && !stderr.contains(PASSWORD));

    // Nothing listens: the connection failure code, naming the URL.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
    let nowhere = format!("http://127.0.0.1:{port}");
    let out = cli(&["SELECT 1", "--url", &nowhere], &env, "").await;
    assert_eq!(out.status.code(), Some(EXIT_CONNECTION), "stderr: {}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&format!("cannot connect to the platform at {nowhere}")), "{stderr}");
}
