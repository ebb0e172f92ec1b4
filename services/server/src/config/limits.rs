//! Limits that keep one client from taking the node: what a query may build, hold, spill and
//! answer, how many run at once, and what the HTTP, WebSocket and PostgreSQL listeners hold. Set
//! by flags, `THINGLAKE_*` variables or the config file's `[limits]` table; the defaults are the
//! ones in the flags' help (docs/operations.md lists them).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use thinglake_queries::QueryConfig;

use crate::config::{MqttTls, duration};

/// Help heading of the limits, and the config file's table of them is `[limits]`.
pub(crate) const HEADING: &str = "Limits";

/// The limit options of `thinglake run`.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = HEADING)]
pub struct LimitArgs {
    /// Largest SQL answer, in bytes (Arrow, counted as it streams).
    #[arg(long, env = "THINGLAKE_QUERY_MAX_RESULT_BYTES", default_value_t = QueryConfig::default().max_result_bytes)]
    pub query_max_result_bytes: usize,
    /// Memory all running queries may hold together, in bytes.
    #[arg(long, env = "THINGLAKE_QUERY_MEMORY_BYTES", default_value_t = QueryConfig::default().memory_limit)]
    pub query_memory_bytes: usize,
    /// Memory one SQL statement may hold, in bytes.
    #[arg(long, env = "THINGLAKE_QUERY_SQL_MEMORY_BYTES", default_value_t = QueryConfig::default().sql_memory_limit)]
    pub query_sql_memory_bytes: usize,
    /// Bytes all running queries may spill to temporary files.
    #[arg(long, env = "THINGLAKE_QUERY_SPILL_BYTES", default_value_t = QueryConfig::default().spill_limit)]
    pub query_spill_bytes: u64,
    /// Bytes one call of `repeat`, `lpad`, `rpad`, `replace`, `regexp_replace`, `concat`,
    /// `range`, `generate_series`, `array_repeat` or `array_resize` may build for a batch.
    #[arg(long, env = "THINGLAKE_QUERY_MAX_FUNCTION_BYTES", default_value_t = QueryConfig::default().max_function_bytes)]
    pub query_max_function_bytes: usize,
    /// Threads of the runtime that runs SQL, apart from the dashboards' queries.
    #[arg(long, env = "THINGLAKE_QUERY_SQL_THREADS", default_value_t = QueryConfig::default().sql_threads)]
    pub query_sql_threads: usize,
    /// SQL statements one user may run at once; more are refused with 429.
    #[arg(long, env = "THINGLAKE_SQL_MAX_PER_USER", default_value_t = QueryConfig::default().concurrency.sql_per_user)]
    pub sql_max_per_user: usize,
    /// SQL statements one tenant may run at once; more are refused with 429.
    #[arg(long, env = "THINGLAKE_SQL_MAX_PER_TENANT", default_value_t = QueryConfig::default().concurrency.sql_per_tenant)]
    pub sql_max_per_tenant: usize,
    /// SQL statements the node runs at once; more are refused with 429.
    #[arg(long, env = "THINGLAKE_SQL_MAX_PER_NODE", default_value_t = QueryConfig::default().concurrency.sql_per_node)]
    pub sql_max_per_node: usize,
    /// Dashboard queries (time-series REST and WebSocket) one tenant runs at once; more wait up
    /// to the query time limit.
    #[arg(long, env = "THINGLAKE_DASHBOARD_QUERIES_PER_TENANT", default_value_t = QueryConfig::default().concurrency.dashboard_per_tenant)]
    pub dashboard_queries_per_tenant: usize,
    /// PEM certificate chain of the PostgreSQL wire listener; with `--pg-tls-key` clients can
    /// use `sslmode=require`.
    #[arg(long, env = "THINGLAKE_PG_TLS_CERT")]
    pub pg_tls_cert: Option<PathBuf>,
    /// PEM private key of the PostgreSQL wire listener's certificate.
    #[arg(long, env = "THINGLAKE_PG_TLS_KEY")]
    pub pg_tls_key: Option<PathBuf>,
    /// Most PostgreSQL wire connections held at once; more are refused with SQLSTATE 53300.
    #[arg(long, env = "THINGLAKE_PG_MAX_CONNECTIONS", default_value_t = 64)]
    pub pg_max_connections: usize,
    /// A PostgreSQL wire connection with no statement for this long is closed (0 never);
    /// seconds, or a duration (`10m`).
    #[arg(long, env = "THINGLAKE_PG_IDLE_TIMEOUT_SECS", default_value = "600", value_parser = duration::seconds)]
    pub pg_idle_timeout_secs: Duration,
    /// How long an HTTP client may take to send a request's headers (and an idle kept-alive
    /// connection may stay open); milliseconds, or a duration (`30s`).
    #[arg(long, env = "THINGLAKE_HTTP_HEADER_TIMEOUT_MS", default_value = "30000", value_parser = duration::milliseconds)]
    pub http_header_timeout_ms: Duration,
    /// Most HTTP connections (WebSocket sessions included) held at once; more are answered 503
    /// and closed.
    #[arg(long, env = "THINGLAKE_HTTP_MAX_CONNECTIONS", default_value_t = 4096)]
    pub http_max_connections: usize,
    /// Largest WebSocket message (and frame) a client may send, in bytes.
    #[arg(long, env = "THINGLAKE_WS_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024)]
    pub ws_max_message_bytes: usize,
}

/// What the node's listeners hold (the query limits are in [`crate::Settings::query`]).
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

impl LimitArgs {
    /// Checks the limits and sets the query engine's in `q`; returns the listeners'.
    pub(crate) fn apply(&self, q: &mut QueryConfig) -> anyhow::Result<ListenerLimits> {
        q.max_result_bytes = self.query_max_result_bytes;
        q.memory_limit = self.query_memory_bytes;
        q.sql_memory_limit = self.query_sql_memory_bytes;
        q.spill_limit = self.query_spill_bytes;
        q.max_function_bytes = self.query_max_function_bytes;
        q.sql_threads = self.query_sql_threads;
        q.concurrency.sql_per_user = self.sql_max_per_user;
        q.concurrency.sql_per_tenant = self.sql_max_per_tenant;
        q.concurrency.sql_per_node = self.sql_max_per_node;
        q.concurrency.dashboard_per_tenant = self.dashboard_queries_per_tenant;
        anyhow::ensure!(!self.http_header_timeout_ms.is_zero(), "http_header_timeout_ms must be more than 0");
        let positive = [
            ("sql_max_per_user", self.sql_max_per_user),
            ("sql_max_per_tenant", self.sql_max_per_tenant),
            ("sql_max_per_node", self.sql_max_per_node),
            ("dashboard_queries_per_tenant", self.dashboard_queries_per_tenant),
            ("query_sql_threads", self.query_sql_threads),
            ("pg_max_connections", self.pg_max_connections),
            ("http_max_connections", self.http_max_connections),
            ("ws_max_message_bytes", self.ws_max_message_bytes),
        ];
        for (name, value) in positive {
            anyhow::ensure!(value > 0, "{name} must be at least 1");
        }
        Ok(ListenerLimits {
            pg_tls: MqttTls::pair(self.pg_tls_cert.clone(), self.pg_tls_key.clone(), "PostgreSQL over TLS needs both pg_tls_cert and pg_tls_key")?,
            pg_max_connections: self.pg_max_connections,
            pg_idle_timeout: Some(self.pg_idle_timeout_secs).filter(|t| !t.is_zero()),
            http_header_timeout: self.http_header_timeout_ms,
            http_max_connections: self.http_max_connections,
            ws_max_message_bytes: self.ws_max_message_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RunArgs, Settings};

    #[test]
    fn limit_flags_win_over_the_files_limits_table() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("thinglake.toml");
        std::fs::write(&path, "[limits]\nsql_max_per_user = 5\npg_max_connections = 7\npg_idle_timeout_secs = 0\n").expect("write");
        let config = path.to_str().expect("a UTF-8 path");
        let args = RunArgs::try_parse_from(["--config", config, "--sql-max-per-user", "3"]).expect("valid");
        let s = Settings::resolve(args).expect("valid");
        assert_eq!(s.query.concurrency.sql_per_user, 3);
        assert_eq!(s.limits.pg_max_connections, 7);
        assert_eq!(s.limits.pg_idle_timeout, None);
        assert_eq!(s.limits.http_header_timeout, Duration::from_secs(30));
        let only_cert = RunArgs::try_parse_from(["--pg-tls-cert", "c.pem"]).expect("parses");
        assert!(Settings::resolve(only_cert).is_err());
    }
}
