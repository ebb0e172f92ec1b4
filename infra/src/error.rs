//! Errors of the infrastructure adapters. Each keeps its cause as its `source` and says, through
//! [`Error::kind`], whether retrying can help.
//!
//! An optimistic-concurrency failure of an append is not an infrastructure failure: it is
//! [`AppendError::Conflict`], kept apart from [`AppendError::Log`] so that the platform answers it
//! with a 409 (or decides again) without the infra error carrying business meaning.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The cause of a failure as the NATS client or another library reported it. Where no library
/// error exists (a reply that never came, a consumer that closed early) it is the message saying
/// what was observed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a caller of an adapter does with a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// NATS was unreachable, busy or slow: the same call may succeed later (503 with
    /// `Retry-After`, nak, back off).
    Retryable,
    /// The caller gave something unusable (a certificate file that is not PEM, an empty signing
    /// key): fix the input, retrying repeats the failure.
    Caller,
    /// Broken data, setup or process (a corrupt event, a log gap, a nats-server that cannot
    /// start): a retry would only repeat it.
    Fatal,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach NATS: {source}")]
    Connect {
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("cannot publish to {subject}: {source}")]
    Publish {
        subject: String,
        #[source]
        source: BoxError,
    },
    /// JetStream did not acknowledge a publish within the publish timeout.
    #[error("cannot publish to {subject}: no acknowledgement within {after:?}")]
    PublishTimeout { subject: String, after: std::time::Duration },
    #[error("cannot read {subject} from the log: {source}")]
    Read {
        subject: String,
        #[source]
        source: BoxError,
    },
    /// Sequences expected on a stream were not there (trimmed or deleted while being read).
    #[error("the log lost sequences between {from} and {to} of stream {stream}")]
    LogGap { stream: String, from: u64, to: u64 },
    #[error("cannot set up stream or bucket {name}: {source}")]
    Setup {
        name: String,
        #[source]
        source: BoxError,
    },
    /// A claim operation (`op`: read, create, update, release) on `key` failed.
    #[error("claim store {bucket}: {op} {key}: {source}")]
    Claim {
        bucket: String,
        op: &'static str,
        key: String,
        #[source]
        source: BoxError,
    },
    /// A claim key holds a value that is not an owner id.
    #[error("claim store {bucket}: key {key} holds no owner id (revision {revision})")]
    ClaimCorrupt { bucket: String, key: String, revision: u64 },
    /// Other writers kept changing a claim key while it was being taken.
    #[error("claim store {bucket}: key {key} kept changing after {attempts} attempts")]
    ClaimContended { bucket: String, key: String, attempts: u32 },
    #[error("event at sequence {seq} is not a valid envelope: {source}")]
    CorruptEvent {
        seq: u64,
        #[source]
        source: Corruption,
    },
    #[error("i/o on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The supervised nats-server did not start, stop or answer as expected; `reason` is what was
    /// observed (an exit status with its log tail, a wrong port, a timeout).
    #[error("nats-server: {reason}")]
    NatsServer { reason: String },
    /// Signalling or waiting for the nats-server process failed (`action`: kill, wait for).
    #[error("nats-server: cannot {action} nats-server{}: {source}", .pid.map(|pid| format!(" {pid}")).unwrap_or_default())]
    NatsServerProcess {
        action: &'static str,
        pid: Option<u32>,
        #[source]
        source: std::io::Error,
    },
    /// The task supervising the nats-server panicked or was cancelled.
    #[error("nats-server: nats-server supervisor failed: {source}")]
    NatsServerSupervisor {
        #[source]
        source: tokio::task::JoinError,
    },
    /// No `nats-server` binary was found; `scripts/install-tools` installs one into `.tools/bin`.
    #[error(
        "nats-server binary not found (searched {searched}): run scripts/install-tools or set THINGLAKE_NATS_SERVER"
    )]
    NatsServerNotFound { searched: String },
    /// The NATS credentials file is not the JSON this version writes.
    #[error("nats-server: {} is not valid credentials JSON: {source}", .path.display())]
    Credentials {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("password hashing: {source}")]
    PasswordHash {
        #[source]
        source: BoxError,
    },
    #[error("token: {source}")]
    Token {
        #[source]
        source: jsonwebtoken::errors::Error,
    },
    /// The JWT signing key given in the configuration is empty.
    #[error("token: the configured JWT signing key is empty")]
    EmptySigningKey,
    /// A TLS listener's certificate or key could not be read or used.
    #[error("TLS {what}: {source}")]
    Tls {
        what: String,
        #[source]
        source: BoxError,
    },
}

/// Why a stored message is not what its stream should hold.
#[derive(Debug, thiserror::Error)]
pub enum Corruption {
    /// The payload does not parse as the expected type (`what`: an event envelope, a telemetry
    /// message).
    #[error("not {what}: {source}")]
    Unparsable {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// A valid envelope on a subject other than its entity's.
    #[error("envelope of {home} stored on {subject}")]
    Misplaced { home: String, subject: String },
}

impl Error {
    /// What the caller can do about it: wait and retry, fix its input, or give up.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Connect { .. }
            | Error::Publish { .. }
            | Error::PublishTimeout { .. }
            | Error::Read { .. }
            | Error::Claim { .. }
            | Error::ClaimContended { .. } => ErrorKind::Retryable,
            Error::Tls { .. } | Error::EmptySigningKey | Error::Credentials { .. } => ErrorKind::Caller,
            Error::LogGap { .. }
            | Error::Setup { .. }
            | Error::ClaimCorrupt { .. }
            | Error::CorruptEvent { .. }
            | Error::Io { .. }
            | Error::NatsServer { .. }
            | Error::NatsServerProcess { .. }
            | Error::NatsServerSupervisor { .. }
            | Error::NatsServerNotFound { .. }
            | Error::PasswordHash { .. }
            | Error::Token { .. } => ErrorKind::Fatal,
        }
    }

    /// Whether the same call may succeed later (the server was unreachable or busy), as opposed
    /// to bad data or setup that a retry would only repeat.
    pub fn is_retryable(&self) -> bool {
        self.kind() == ErrorKind::Retryable
    }

    /// A failed read of `subject` from the log.
    pub(crate) fn read(subject: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Read { subject: subject.into(), source: source.into() }
    }

    /// A failed publish to `subject`.
    pub(crate) fn publish(subject: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Publish { subject: subject.into(), source: source.into() }
    }

    /// A failed setup of the stream or bucket `name`.
    pub(crate) fn setup(name: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Setup { name: name.into(), source: source.into() }
    }
}

/// The failure of an append: the entity moved on (a conflict, the caller's to resolve), or the
/// log failed.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The entity changed since the caller read it: the expected version is stale.
    #[error("{subject} was changed by someone else: expected version {expected}")]
    Conflict { subject: String, expected: u64 },
    #[error(transparent)]
    Log(#[from] Error),
}

impl AppendError {
    /// Whether the same append may succeed later; a conflict never does (decide again instead).
    pub fn is_retryable(&self) -> bool {
        matches!(self, AppendError::Log(e) if e.is_retryable())
    }
}
