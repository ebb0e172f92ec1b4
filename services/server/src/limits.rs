//! Limits that keep one client from taking the node: what a query may build, hold, spill and
//! answer, how many run at once, and what the HTTP, WebSocket and PostgreSQL listeners hold. Set
//! by flags, `THINGLAKE_*` variables or the config file's `[limits]` table; the defaults are the
//! ones in the flags' help (docs/operations.md lists them).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use crate::config::{MqttTls, Settings};

/// The limit flags of `thinglake run` (all optional; unset: the file's, else the default).
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitArgs {
    /// Largest SQL answer, in bytes (Arrow, counted as it streams; default 268435456 = 256 MiB).
    #[arg(long, env = "THINGLAKE_QUERY_MAX_RESULT_BYTES")]
    pub query_max_result_bytes: Option<usize>,
    /// Memory all running queries may hold together, in bytes (default 1073741824 = 1 GiB).
    #[arg(long, env = "THINGLAKE_QUERY_MEMORY_BYTES")]
    pub query_memory_bytes: Option<usize>,
    /// Memory one SQL statement may hold, in bytes (default 268435456 = 256 MiB).
    #[arg(long, env = "THINGLAKE_QUERY_SQL_MEMORY_BYTES")]
    pub query_sql_memory_bytes: Option<usize>,
    /// Bytes all running queries may spill to temporary files (default 1073741824 = 1 GiB).
    #[arg(long, env = "THINGLAKE_QUERY_SPILL_BYTES")]
    pub query_spill_bytes: Option<u64>,
    /// Bytes one call of `repeat`, `lpad`, `rpad`, `replace`, `regexp_replace`, `concat`,
    /// `range`, `generate_series`, `array_repeat` or `array_resize` may build for a batch
    /// (default 67108864 = 64 MiB).
    #[arg(long, env = "THINGLAKE_QUERY_MAX_FUNCTION_BYTES")]
    pub query_max_function_bytes: Option<usize>,
    /// Threads of the runtime that runs SQL, apart from the dashboards' queries (default 2).
    #[arg(long, env = "THINGLAKE_QUERY_SQL_THREADS")]
    pub query_sql_threads: Option<usize>,
    /// SQL statements one user may run at once; more are refused with 429 (default 2).
    #[arg(long, env = "THINGLAKE_SQL_MAX_PER_USER")]
    pub sql_max_per_user: Option<usize>,
    /// SQL statements one tenant may run at once; more are refused with 429 (default 4).
    #[arg(long, env = "THINGLAKE_SQL_MAX_PER_TENANT")]
    pub sql_max_per_tenant: Option<usize>,
    /// SQL statements the node runs at once; more are refused with 429 (default 8).
    #[arg(long, env = "THINGLAKE_SQL_MAX_PER_NODE")]
    pub sql_max_per_node: Option<usize>,
    /// Dashboard queries (time-series REST and WebSocket) one tenant runs at once; more wait up
    /// to the query time limit (default 16).
    #[arg(long, env = "THINGLAKE_DASHBOARD_QUERIES_PER_TENANT")]
    pub dashboard_queries_per_tenant: Option<usize>,
    /// PEM certificate chain of the PostgreSQL wire listener; with `--pg-tls-key` clients can
    /// use `sslmode=require`.
    #[arg(long, env = "THINGLAKE_PG_TLS_CERT")]
    pub pg_tls_cert: Option<PathBuf>,
    /// PEM private key of the PostgreSQL wire listener's certificate.
    #[arg(long, env = "THINGLAKE_PG_TLS_KEY")]
    pub pg_tls_key: Option<PathBuf>,
    /// Most PostgreSQL wire connections held at once; more are refused with SQLSTATE 53300
    /// (default 64).
    #[arg(long, env = "THINGLAKE_PG_MAX_CONNECTIONS")]
    pub pg_max_connections: Option<usize>,
    /// A PostgreSQL wire connection with no statement for this many seconds is closed (default
    /// 600; 0 never).
    #[arg(long, env = "THINGLAKE_PG_IDLE_TIMEOUT_SECS")]
    pub pg_idle_timeout_secs: Option<u64>,
    /// How long an HTTP client may take to send a request's headers (and an idle kept-alive
    /// connection may stay open), in milliseconds (default 30000).
    #[arg(long, env = "THINGLAKE_HTTP_HEADER_TIMEOUT_MS")]
    pub http_header_timeout_ms: Option<u64>,
    /// Most HTTP connections (WebSocket sessions included) held at once; more are answered 503
    /// and closed (default 4096).
    #[arg(long, env = "THINGLAKE_HTTP_MAX_CONNECTIONS")]
    pub http_max_connections: Option<usize>,
    /// Largest WebSocket message (and frame) a client may send, in bytes (default 65536).
    #[arg(long, env = "THINGLAKE_WS_MAX_MESSAGE_BYTES")]
    pub ws_max_message_bytes: Option<usize>,
}

/// What the node's listeners hold (the query limits are in [`Settings::query`]).
#[derive(Debug, Clone)]
pub struct ListenerLimits {
    /// The PostgreSQL wire listener's certificate and key (the same PEM files as the MQTT TLS
    /// listener's); `None`: no TLS.
    pub pg_tls: Option<MqttTls>,
    pub pg_max_connections: usize,
    /// `None`: idle connections stay open.
    pub pg_idle_timeout: Option<Duration>,
    pub http_header_timeout: Duration,
    pub http_max_connections: usize,
    pub ws_max_message_bytes: usize,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        Self {
            pg_tls: None,
            pg_max_connections: 64,
            pg_idle_timeout: Some(Duration::from_secs(600)),
            http_header_timeout: Duration::from_secs(30),
            http_max_connections: 4096,
            ws_max_message_bytes: 64 * 1024,
        }
    }
}

impl LimitArgs {
    /// Each flag over the file's value (`file`), applied to `s`.
    pub(crate) fn apply(self, file: Option<LimitArgs>, s: &mut Settings) -> anyhow::Result<()> {
        let (args, f) = (self, file.unwrap_or_default());
        let q = &mut s.query;
        macro_rules! set {
            ($target:expr, $field:ident) => {
                if let Some(v) = args.$field.or(f.$field) {
                    $target = v;
                }
            };
        }
        set!(q.max_result_bytes, query_max_result_bytes);
        set!(q.memory_limit, query_memory_bytes);
        set!(q.sql_memory_limit, query_sql_memory_bytes);
        set!(q.spill_limit, query_spill_bytes);
        set!(q.max_function_bytes, query_max_function_bytes);
        set!(q.sql_threads, query_sql_threads);
        set!(q.concurrency.sql_per_user, sql_max_per_user);
        set!(q.concurrency.sql_per_tenant, sql_max_per_tenant);
        set!(q.concurrency.sql_per_node, sql_max_per_node);
        set!(q.concurrency.dashboard_per_tenant, dashboard_queries_per_tenant);
        let l = &mut s.limits;
        set!(l.pg_max_connections, pg_max_connections);
        set!(l.http_max_connections, http_max_connections);
        set!(l.ws_max_message_bytes, ws_max_message_bytes);
        if let Some(secs) = args.pg_idle_timeout_secs.or(f.pg_idle_timeout_secs) {
            l.pg_idle_timeout = (secs > 0).then(|| Duration::from_secs(secs));
        }
        if let Some(ms) = args.http_header_timeout_ms.or(f.http_header_timeout_ms) {
            anyhow::ensure!(ms > 0, "http_header_timeout_ms must be more than 0");
            l.http_header_timeout = Duration::from_millis(ms);
        }
        l.pg_tls = match (args.pg_tls_cert.or(f.pg_tls_cert), args.pg_tls_key.or(f.pg_tls_key)) {
            (Some(cert), Some(key)) => Some(MqttTls { cert, key }),
            (None, None) => None,
            _ => anyhow::bail!("PostgreSQL over TLS needs both pg_tls_cert and pg_tls_key"),
        };
        let positive = [
            ("sql_max_per_user", q.concurrency.sql_per_user),
            ("sql_max_per_tenant", q.concurrency.sql_per_tenant),
            ("sql_max_per_node", q.concurrency.sql_per_node),
            ("dashboard_queries_per_tenant", q.concurrency.dashboard_per_tenant),
            ("query_sql_threads", q.sql_threads),
            ("pg_max_connections", l.pg_max_connections),
            ("http_max_connections", l.http_max_connections),
            ("ws_max_message_bytes", l.ws_max_message_bytes),
        ];
        for (name, value) in positive {
            anyhow::ensure!(value > 0, "{name} must be at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RunArgs;

    #[test]
    fn limit_flags_win_over_the_files_limits_table() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("thinglake.toml");
        std::fs::write(&path, "[limits]\nsql_max_per_user = 5\npg_max_connections = 7\npg_idle_timeout_secs = 0\n").expect("write");
        let flags = LimitArgs { sql_max_per_user: Some(3), ..LimitArgs::default() };
        let s = Settings::resolve(RunArgs { config: Some(path), limits: flags, ..RunArgs::default() }).expect("valid");
        assert_eq!(s.query.concurrency.sql_per_user, 3);
        assert_eq!(s.limits.pg_max_connections, 7);
        assert_eq!(s.limits.pg_idle_timeout, None);
        assert_eq!(s.limits.http_header_timeout, Duration::from_secs(30));
        let only_cert = LimitArgs { pg_tls_cert: Some("c.pem".into()), ..LimitArgs::default() };
        assert!(Settings::resolve(RunArgs { limits: only_cert, ..RunArgs::default() }).is_err());
    }
}
