//! The PostgreSQL wire protocol: Debian's `psql` (simple protocol) and tokio-postgres (extended
//! protocol, bound parameters) sign in with a tenant administrator's platform email and
//! password, see their tenant's telemetry posted over the REST API and nothing of another
//! tenant's; wrong passwords, DDL, COPY and unknown tables get PostgreSQL errors with their
//! SQLSTATE; session statements of drivers are answered; a cancel request and the time limit end
//! a running query.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use crate::harness::{PASSWORD, TestApp, id_of};
use crate::telemetry::eventually;
use crate::timeseries::{T0, dataset, save, start};

/// A platform with the PostgreSQL listener on a free port, and its address.
async fn platform() -> (TestApp, SocketAddr) {
    let t = start(|s| {
        s.pg_listen = Some("127.0.0.1:0".parse().expect("address"));
        s.query.time_limit = Duration::from_secs(5);
    })
    .await;
    let addr = t.app.as_ref().and_then(|a| a.pg_addr).expect("PostgreSQL listener");
    (t, addr)
}

/// A tenant with one device holding `dataset(offset)`; answers (admin email, admin token, device id).
pub(crate) async fn tenant(t: &TestApp, title: &str, offset: i64) -> (String, String, String) {
    let (tenant_id, admin) = t.tenant(title).await;
    let device = id_of(&t.device(&admin, &format!("{title} device")).await);
    save(t, &admin, &device, &dataset(offset)).await;
    (format!("admin-{tenant_id}@example.com"), admin, device)
}

/// Runs `psql -c command` as `user`; answers (exit code, stdout, stderr).
pub(crate) async fn psql(addr: SocketAddr, user: &str, password: &str, command: &str) -> (i32, String, String) {
    psql_with_sslmode(addr, "disable", user, password, command).await
}

/// [`psql`] with libpq's `sslmode` (`disable`, `require`, …).
pub(crate) async fn psql_with_sslmode(
    addr: SocketAddr,
    sslmode: &str,
    user: &str,
    password: &str,
    command: &str,
) -> (i32, String, String) {
    let out = tokio::process::Command::new("psql")
        .arg(format!("host={} port={} user={user} dbname=thinglake sslmode={sslmode} connect_timeout=10", addr.ip(), addr.port()))
        .args(["-X", "-A", "-t", "-F", ",", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose", "-c", command])
        .env("PGPASSWORD", password)
        .env("PGAPPNAME", "thinglake-test")
        .kill_on_drop(true)
        .output()
        .await
        .expect("psql runs: install it with scripts/install-tools (postgresql-client)");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test]
async fn psql_signs_in_with_platform_credentials_and_sees_only_its_tenant() {
    let (t, addr) = platform().await;
    let (email, _, device) = tenant(&t, "pg tenant", 0).await;
    let (other_email, _, _) = tenant(&t, "other pg tenant", 5).await;
    let points = dataset(0);
    let count = |key: &str| points.iter().filter(|(k, _, _)| k == key).count();

    let expected = format!("label,{}\non,{}\ntemp,{}\n", count("label"), count("on"), count("temp"));
    let query = "SELECT key, count(*) FROM telemetry GROUP BY key ORDER BY key";
    let out = eventually(Duration::from_secs(10), || {
        let (email, expected) = (&email, &expected);
        async move {
            let (code, out, err) = psql(addr, email, PASSWORD, query).await;
            assert_eq!(code, 0, "{err}");
            (&out == expected).then_some(out)
        }
    })
    .await;
    assert_eq!(out, expected);
    // Only the tenant's rows: one device, however the query asks.
    let (code, out, err) = psql(addr, &email, PASSWORD, "SELECT DISTINCT entity_id FROM telemetry").await;
    assert_eq!((code, out), (0, format!("{device}\n")), "{err}");
    let (_, out, _) = psql(addr, &other_email, PASSWORD, "SELECT count(*), min(ts) FROM telemetry").await;
    assert_eq!(out, format!("{},{T0}\n", dataset(5).len()));

    // Several statements in one query string, with what drivers send around them.
    let (code, out, err) =
        psql(addr, &email, PASSWORD, "SET extra_float_digits = 3; SHOW TimeZone; SELECT version(); SELECT count(*) FROM devices").await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert_eq!(lines[..2], ["SET", "UTC"]);
    assert!(lines[2].starts_with("PostgreSQL 16") && lines[2].contains("Thinglake"), "{out}");
    assert_eq!(lines[3], "1");

    // Wrong password, unknown user: refused at sign-in (psql shows no SQLSTATE for a failed
    // connection; the extended-protocol test checks 28P01).
    for (user, password) in [(email.as_str(), "wrong password"), ("nobody@example.com", PASSWORD)] {
        let (code, _, err) = psql(addr, user, password, "SELECT 1").await;
        assert_eq!(code, 2, "{err}");
        assert!(err.to_lowercase().contains("password authentication failed"), "{err}");
    }

    // DDL, DML and COPY refused; unknown tables named.
    for (statement, state) in [
        ("DROP TABLE telemetry", "42501"),
        ("CREATE TABLE x (a int)", "42501"),
        ("DELETE FROM telemetry", "42501"),
        ("COPY telemetry TO STDOUT", "42501"),
        ("COPY (SELECT * FROM telemetry) TO '/tmp/thinglake-pg-test.csv'", "42501"),
        ("CREATE EXTERNAL TABLE etc STORED AS CSV LOCATION '/etc/passwd'", "42501"),
        ("SELECT * FROM nonsense", "42P01"),
        ("SELECT * FROM read_csv('/etc/passwd')", "42883"),
        ("SELECT nonsense FROM telemetry", "42703"),
        ("SELEC 1", "42601"),
    ] {
        let (code, out, err) = psql(addr, &email, PASSWORD, statement).await;
        assert_eq!(code, 1, "{statement}: {out} {err}");
        assert!(err.contains(&format!("ERROR:  {state}")), "{statement}: {err}");
    }
}

/// A signed-in client and the task driving its connection (aborted on drop).
pub(crate) async fn connect(addr: SocketAddr, user: &str, password: &str) -> Result<(Client, JoinSet<()>), tokio_postgres::Error> {
    let config = format!("host={} port={} user={user} password='{password}' dbname=thinglake", addr.ip(), addr.port());
    let (client, connection) = tokio_postgres::connect(&config, NoTls).await?;
    let mut task = JoinSet::new();
    task.spawn(async move {
        let _ = connection.await;
    });
    Ok((client, task))
}

#[tokio::test]
async fn tokio_postgres_binds_parameters_over_the_extended_protocol() {
    let (t, addr) = platform().await;
    let (email, token, _) = tenant(&t, "pg extended tenant", 0).await;
    tenant(&t, "pg extended other", 5).await;
    let points = dataset(0);
    let (client, _connection) = connect(addr, &email, PASSWORD).await.expect("signed in");
    // What JDBC and others send first.
    client.batch_execute("SET extra_float_digits = 3; SET application_name = 'PostgreSQL JDBC Driver'").await.expect("SET");
    let version: String = client.query_one("SHOW server_version", &[]).await.expect("SHOW").get(0);
    assert!(version.starts_with("16"), "{version}");

    let temps: Vec<_> = points.iter().filter(|(k, ts, _)| k == "temp" && *ts >= T0 + 10_000).collect();
    let query = "SELECT key, count(*) AS n, min(ts) AS first FROM telemetry WHERE key = $1 AND ts >= $2 GROUP BY key";
    let expected_n = temps.len() as i64;
    let rows = eventually(Duration::from_secs(10), || {
        let client = &client;
        async move {
            let rows = client.query(query, &[&"temp", &(T0 + 10_000)]).await.expect("query");
            (rows.len() == 1 && rows[0].get::<_, i64>("n") == expected_n).then_some(rows)
        }
    })
    .await;
    assert_eq!(rows[0].get::<_, String>("key"), "temp");
    assert_eq!(rows[0].get::<_, i64>("first"), temps[0].1);

    // Typed columns, NULLs included, in the binary format tokio-postgres asks for.
    let statement = client
        .prepare("SELECT ts, long_v, dbl_v, str_v, bool_v FROM telemetry WHERE key = $1 AND ts >= $2 ORDER BY ts LIMIT 100")
        .await
        .expect("prepared");
    for key in ["temp", "label", "on"] {
        let rows = client.query(&statement, &[&key, &T0]).await.expect("query");
        let mine: Vec<_> = points.iter().filter(|(k, _, _)| k == key).collect();
        assert_eq!(rows.len(), mine.len());
        for (row, (_, ts, value)) in rows.iter().zip(mine) {
            assert_eq!(row.get::<_, i64>("ts"), *ts);
            let (long, double, text, boolean): (Option<i64>, Option<f64>, Option<String>, Option<bool>) =
                (row.get("long_v"), row.get("dbl_v"), row.get("str_v"), row.get("bool_v"));
            let got = match (long, double, text, boolean) {
                (Some(l), None, None, None) => crate::timeseries::V::Long(l),
                (None, Some(d), None, None) => crate::timeseries::V::Double(d),
                (None, None, Some(s), None) => crate::timeseries::V::Str(s),
                (None, None, None, Some(b)) => crate::timeseries::V::Bool(b),
                other => panic!("one typed value per row, got {other:?}"),
            };
            assert_eq!(&got, value);
        }
    }

    // Errors carry their SQLSTATE.
    let state = |e: tokio_postgres::Error| e.code().cloned();
    assert_eq!(client.simple_query("DROP TABLE telemetry").await.err().and_then(state), Some(SqlState::INSUFFICIENT_PRIVILEGE));
    assert_eq!(client.query("SELECT * FROM nonsense WHERE a = $1", &[&1_i64]).await.err().and_then(state), Some(SqlState::UNDEFINED_TABLE));
    // The time limit (5 s here) and a cancel request end a running query.
    let long = "SELECT sum(value) FROM generate_series(1, 100000000000)";
    assert_eq!(client.query(long, &[]).await.err().and_then(state), Some(SqlState::QUERY_CANCELED));
    let cancel = client.cancel_token();
    let started = std::time::Instant::now();
    let (answer, _) = tokio::join!(client.query(long, &[]), async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        cancel.cancel_query(NoTls).await.expect("cancel request sent");
    });
    assert_eq!(answer.err().and_then(state), Some(SqlState::QUERY_CANCELED));
    assert!(started.elapsed() < Duration::from_secs(4), "cancelled before the time limit: {:?}", started.elapsed());
    // The connection is still usable.
    let one: i64 = client.query_one("SELECT 1", &[]).await.expect("after cancel").get(0);
    assert_eq!(one, 1);

    // Sign-in: wrong password refused with 28P01; an access token of the user works as password,
    // not as another user's.
    let refused = connect(addr, &email, "wrong").await.err().and_then(state);
    assert_eq!(refused, Some(SqlState::INVALID_PASSWORD));
    let (by_token, _connection) = connect(addr, &email, &token).await.expect("token as password");
    let n: i64 = by_token.query_one("SELECT count(*) FROM telemetry", &[]).await.expect("query").get(0);
    assert_eq!(n, points.len() as i64);
    let refused = connect(addr, "someone-else@example.com", &token).await.err().and_then(state);
    assert_eq!(refused, Some(SqlState::INVALID_PASSWORD));
}
