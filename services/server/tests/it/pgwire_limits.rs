//! The PostgreSQL wire listener's protections: TLS with the MQTT listener's kind of certificate
//! (`psql sslmode=require`), a connection cap answered with SQLSTATE 53300, and idle connections
//! closed after the configured time.

use std::net::SocketAddr;
use std::time::Duration;

use tokio_postgres::error::SqlState;

use crate::harness::{PASSWORD, TestApp};
use crate::mqtt_tls::self_signed;
use crate::pgwire::{connect, psql_with_sslmode, tenant};
use crate::telemetry::eventually;
use crate::timeseries::start;

/// A platform whose PostgreSQL listener is on a free loopback port, changed by `adjust`.
async fn platform(adjust: impl FnOnce(&mut thinglake_server::Settings)) -> (TestApp, SocketAddr) {
    let t = start(|s| {
        s.pg_listen = Some("127.0.0.1:0".parse().expect("address"));
        adjust(s);
    })
    .await;
    let addr = t.app.as_ref().and_then(|a| a.pg_addr).expect("PostgreSQL listener");
    (t, addr)
}

#[tokio::test]
async fn psql_signs_in_over_tls_when_a_certificate_is_configured() {
    let certs = tempfile::tempdir().expect("temp dir");
    let files = self_signed(certs.path());
    let (t, addr) = platform(|s| s.limits.pg_tls = Some(files)).await;
    let (email, _, _) = tenant(&t, "pg tls tenant", 0).await;
    let (code, out, err) = psql_with_sslmode(addr, "require", &email, PASSWORD, "SELECT count(*) FROM devices").await;
    assert_eq!((code, out.trim()), (0, "1"), "{err}");
    // psql's `\conninfo` tells whether the connection is encrypted.
    let (code, out, err) = psql_with_sslmode(addr, "require", &email, PASSWORD, "\\conninfo").await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("SSL") || out.contains("TLS"), "not encrypted: {out}");
    // Plain connections stay possible on loopback.
    let (code, out, err) = psql_with_sslmode(addr, "disable", &email, PASSWORD, "SELECT 2").await;
    assert_eq!((code, out.trim()), (0, "2"), "{err}");
}

#[tokio::test]
async fn connections_past_the_cap_are_refused_with_53300_until_one_closes() {
    let (t, addr) = platform(|s| s.limits.pg_max_connections = 2).await;
    let (email, _, _) = tenant(&t, "pg cap tenant", 0).await;
    let first = connect(addr, &email, PASSWORD).await.expect("first connection");
    let second = connect(addr, &email, PASSWORD).await.expect("second connection");
    let refused = connect(addr, &email, PASSWORD).await.expect_err("third refused");
    assert_eq!(refused.code(), Some(&SqlState::TOO_MANY_CONNECTIONS), "{refused:?}");
    // The two open ones still work.
    assert_eq!(second.0.query_one("SELECT 1", &[]).await.expect("query").get::<_, i64>(0), 1);
    drop(first);
    let third = eventually(Duration::from_secs(10), || async { connect(addr, &email, PASSWORD).await.ok() }).await;
    assert_eq!(third.0.query_one("SELECT 3", &[]).await.expect("query").get::<_, i64>(0), 3);
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let (t, addr) = platform(|s| s.limits.pg_idle_timeout = Some(Duration::from_secs(1))).await;
    let (email, _, _) = tenant(&t, "pg idle tenant", 0).await;
    let (client, _task) = connect(addr, &email, PASSWORD).await.expect("connection");
    assert_eq!(client.query_one("SELECT 1", &[]).await.expect("query").get::<_, i64>(0), 1);
    eventually(Duration::from_secs(10), || async { client.is_closed().then_some(()) }).await;
    assert!(client.query_one("SELECT 1", &[]).await.is_err(), "closed connections answer nothing");
}
