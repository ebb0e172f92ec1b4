//! The query options: what one query may take and where the PostgreSQL wire protocol listens
//! (the engine's resource limits are under [`crate::config::limits`]).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use clap::Args;
use thinglake_queries::QueryConfig;

use crate::config::duration;

/// The PostgreSQL wire protocol's address of `thinglake run` unless configured.
/// Loopback: the protocol carries passwords and tokens, in clear text unless TLS is configured.
pub const DEFAULT_PG_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5433);

/// Time-series history and SQL.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Queries")]
pub struct QueryArgs {
    /// Time limit of one query (time-series history, SQL); milliseconds, or a duration (`30s`).
    #[arg(long, env = "THINGLAKE_QUERY_TIME_LIMIT_MS", default_value = "30000", value_parser = duration::milliseconds)]
    pub query_time_limit_ms: Duration,
    /// Most rows a SQL result may have.
    #[arg(long, env = "THINGLAKE_QUERY_MAX_ROWS", default_value_t = QueryConfig::default().max_rows)]
    pub query_max_rows: usize,
    /// Most buckets of one aggregated time-series query (ThingsBoard's
    /// `DATABASE_TS_MAX_INTERVALS`).
    #[arg(long, env = "THINGLAKE_QUERY_MAX_INTERVALS", default_value_t = QueryConfig::default().max_intervals)]
    pub query_max_intervals: i64,
    /// Address of the PostgreSQL wire protocol listener (`host:port`, port 0 picks a free
    /// port), or `off`. Loopback 5433 by default, beside a local PostgreSQL on 5432; listen on
    /// other addresses only with `--pg-tls-cert`: passwords and tokens travel in it.
    #[arg(long, env = "THINGLAKE_PG_LISTEN", default_value_t = Listen(Some(DEFAULT_PG_LISTEN)))]
    pub pg_listen: Listen,
}

impl QueryArgs {
    /// The engine's configuration with these options (the limits come on top).
    pub(crate) fn config(&self) -> anyhow::Result<QueryConfig> {
        let intervals = self.query_max_intervals;
        anyhow::ensure!(intervals >= 1, "query_max_intervals must be at least 1, got {intervals}");
        Ok(QueryConfig {
            time_limit: self.query_time_limit_ms,
            max_rows: self.query_max_rows,
            max_intervals: intervals,
            ..QueryConfig::default()
        })
    }
}

/// A listener's address, or `off` (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen(pub Option<SocketAddr>);

impl FromStr for Listen {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") {
            return Ok(Self(None));
        }
        text.parse()
            .map(|addr| Self(Some(addr)))
            .map_err(|e| format!("must be host:port (like 127.0.0.1:5433) or off, not {text:?}: {e}"))
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(addr) => addr.fmt(f),
            None => f.write_str("off"),
        }
    }
}
