//! Errors of the infrastructure adapters. Each says whether retrying can help.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The entity changed since the caller read it: the expected version is stale.
    #[error("{subject} was changed by someone else: expected version {expected}")]
    Conflict { subject: String, expected: u64 },
    #[error("cannot reach NATS: {source}")]
    Connect {
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("cannot publish to {subject}: {reason}")]
    Publish { subject: String, reason: String },
    #[error("cannot read {subject} from the log: {reason}")]
    Read { subject: String, reason: String },
    /// Sequences expected on a stream were not there (trimmed or deleted while being read).
    #[error("the log lost sequences between {from} and {to} of stream {stream}")]
    LogGap { stream: String, from: u64, to: u64 },
    #[error("cannot set up stream or bucket {name}: {reason}")]
    Setup { name: String, reason: String },
    #[error("claim store {bucket}: {reason}")]
    Claim { bucket: String, reason: String },
    #[error("event at sequence {seq} is not a valid envelope: {reason}")]
    CorruptEvent { seq: u64, reason: String },
    #[error("i/o on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("nats-server: {reason}")]
    NatsServer { reason: String },
    /// No `nats-server` binary was found; `scripts/install-tools` installs one into `.tools/bin`.
    #[error(
        "nats-server binary not found (searched {searched}): run scripts/install-tools or set THINGLAKE_NATS_SERVER"
    )]
    NatsServerNotFound { searched: String },
    #[error("password hashing: {reason}")]
    PasswordHash { reason: String },
    #[error("token: {reason}")]
    Token { reason: String },
    /// A TLS listener's certificate or key could not be read or used.
    #[error("TLS {what}: {reason}")]
    Tls { what: String, reason: String },
}

impl Error {
    /// Whether the same call may succeed later (the server was unreachable or busy), as opposed
    /// to a conflict or bad data that a retry would only repeat.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Connect { .. } | Error::Publish { .. } | Error::Read { .. } | Error::Claim { .. }
        )
    }
}
