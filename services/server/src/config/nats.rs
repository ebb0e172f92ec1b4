//! The NATS options: an external server or the supervised local one, and the names on it.

use std::convert::Infallible;
use std::fmt;
use std::str::FromStr;

use clap::{ArgAction, Args};
use thinglake_infra::nats_server::SyncInterval;

/// Where the event log lives.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "NATS")]
pub struct NatsArgs {
    /// NATS server to use, credentials in the URL (`nats://user:password@host:4222`); unset:
    /// start and supervise a local nats-server on the data directory.
    #[arg(long, env = "THINGLAKE_NATS_URL", hide_env_values = true)]
    pub nats_url: Option<NatsUrl>,
    /// Port of the supervised local nats-server (0 picks a free port).
    #[arg(long, env = "THINGLAKE_NATS_PORT", default_value_t = 4222)]
    pub nats_port: u16,
    /// How often the supervised nats-server fsyncs JetStream: `always`, or a duration (`100ms`).
    #[arg(long, env = "THINGLAKE_NATS_SYNC_INTERVAL", default_value_t = SyncInterval::default())]
    pub nats_sync_interval: SyncInterval,
    /// Prefix of every NATS subject, stream and bucket name.
    #[arg(long, env = "THINGLAKE_SUBJECT_PREFIX", default_value = thinglake_infra::subjects::DEFAULT_PREFIX)]
    pub subject_prefix: String,
    /// Serve the NATS ingress subjects (`<prefix>.ingress.<token>.telemetry|attributes`).
    #[arg(long, env = "THINGLAKE_NATS_INGRESS", action = ArgAction::Set, default_value_t = true)]
    pub nats_ingress: bool,
}

/// A NATS URL, or several separated by commas. Printed with its credentials (`user:password@`,
/// `token@`) as `***`, so it can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct NatsUrl(String);

impl NatsUrl {
    /// The URL with its credentials, to connect with; `None` when empty (unset).
    pub(crate) fn expose(&self) -> Option<String> {
        Some(self.0.clone()).filter(|u| !u.trim().is_empty())
    }
}

impl fmt::Display for NatsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = self.0.split(',').map(|one| match one.split_once("://") {
            Some((scheme, rest)) if rest.contains('@') => format!("{scheme}://***@{}", rest.rsplit_once('@').map_or("", |(_, host)| host)),
            _ => one.to_string(),
        });
        f.write_str(&redacted.collect::<Vec<_>>().join(","))
    }
}

impl fmt::Debug for NatsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}", self = self.to_string())
    }
}

impl FromStr for NatsUrl {
    type Err = Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(text.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nats_url_prints_without_its_credentials() {
        let url: NatsUrl = "nats://plat:natssecret@a:4222,nats://tok@b:4222,nats://c:4222".parse().expect("infallible");
        assert_eq!(url.to_string(), "nats://***@a:4222,nats://***@b:4222,nats://c:4222");
        assert_eq!(format!("{url:?}"), "\"nats://***@a:4222,nats://***@b:4222,nats://c:4222\"");
        assert_eq!(url.expose().as_deref(), Some("nats://plat:natssecret@a:4222,nats://tok@b:4222,nats://c:4222"));
    }
}
