//! Configuration of `thinglake run`: command-line flags, `THINGLAKE_*` environment variables and
//! an optional TOML file, in that order of precedence, resolved into [`Settings`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use serde::Deserialize;
use thinglake_infra::nats_server::SyncInterval;
use thinglake_platform::TelemetryConfig;
use thinglake_platform::login_throttle::LoginLimits;
use thinglake_platform::passwords::PasswordConfig;
use thinglake_lake::{LakeLocation, S3Options};

use crate::limits::{LimitArgs, ListenerLimits};

/// Flags and environment variables of `thinglake run`. Unset values fall back to the config
/// file, then to the defaults in [`Settings`].
#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    /// TOML file with any of the settings below (keys as the flags, with underscores).
    #[arg(long, env = "THINGLAKE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory for all local state: the supervised nats-server's store, the lake.
    #[arg(long, env = "THINGLAKE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address the HTTP API and web UI listen on.
    #[arg(long, env = "THINGLAKE_HTTP_HOST")]
    pub http_host: Option<IpAddr>,
    /// Port of the HTTP API and web UI (0 picks a free port).
    #[arg(long, env = "THINGLAKE_HTTP_PORT")]
    pub http_port: Option<u16>,
    /// Port of the MQTT device transport.
    #[arg(long, env = "THINGLAKE_MQTT_PORT")]
    pub mqtt_port: Option<u16>,
    /// Address the MQTT device transport listens on.
    #[arg(long, env = "THINGLAKE_MQTT_HOST")]
    pub mqtt_host: Option<IpAddr>,
    /// QoS 1 publishes of one MQTT connection awaiting JetStream's acknowledgement at once
    /// (MQTT 5 Receive Maximum; `maxInflightMessages` of getSessionLimits).
    #[arg(long, env = "THINGLAKE_MQTT_MAX_INFLIGHT")]
    pub mqtt_max_inflight: Option<u16>,
    /// Most MQTT connections held at once.
    #[arg(long, env = "THINGLAKE_MQTT_MAX_CONNECTIONS")]
    pub mqtt_max_connections: Option<usize>,
    /// PEM certificate chain of the MQTT TLS listener; with `--mqtt-tls-key` it turns the
    /// listener on (MQTT over TLS beside plain MQTT).
    #[arg(long, env = "THINGLAKE_MQTT_TLS_CERT")]
    pub mqtt_tls_cert: Option<PathBuf>,
    /// PEM private key of the MQTT TLS listener's certificate.
    #[arg(long, env = "THINGLAKE_MQTT_TLS_KEY")]
    pub mqtt_tls_key: Option<PathBuf>,
    /// Port of the MQTT TLS listener (on the MQTT host; 0 picks a free port).
    #[arg(long, env = "THINGLAKE_MQTT_TLS_PORT")]
    pub mqtt_tls_port: Option<u16>,
    /// NATS server to use; unset: start and supervise a local nats-server on the data directory.
    #[arg(long, env = "THINGLAKE_NATS_URL")]
    pub nats_url: Option<String>,
    /// Port of the supervised local nats-server (0 picks a free port).
    #[arg(long, env = "THINGLAKE_NATS_PORT")]
    pub nats_port: Option<u16>,
    /// How often the supervised nats-server fsyncs JetStream: `always`, or a duration (`100ms`).
    #[arg(long, env = "THINGLAKE_NATS_SYNC_INTERVAL")]
    pub nats_sync_interval: Option<SyncInterval>,
    /// Prefix of every NATS subject, stream and bucket name.
    #[arg(long, env = "THINGLAKE_SUBJECT_PREFIX")]
    pub subject_prefix: Option<String>,
    /// Email of the first system administrator, created on first start.
    #[arg(long, env = "THINGLAKE_ADMIN_EMAIL")]
    pub admin_email: Option<String>,
    /// Password of the first system administrator; without it one is generated and printed once.
    #[arg(long, env = "THINGLAKE_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// Secret that signs JWTs; without it one is generated once and kept in NATS.
    #[arg(long, env = "THINGLAKE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Lifetime of access tokens, in seconds.
    #[arg(long, env = "THINGLAKE_JWT_ACCESS_TTL_SECS")]
    pub jwt_access_ttl_secs: Option<u64>,
    /// Lifetime of refresh tokens, in seconds.
    #[arg(long, env = "THINGLAKE_JWT_REFRESH_TTL_SECS")]
    pub jwt_refresh_ttl_secs: Option<u64>,
    /// Largest device payload accepted (MQTT, HTTP device API, NATS ingress), in bytes.
    #[arg(long, env = "THINGLAKE_MAX_PAYLOAD_BYTES")]
    pub max_payload_bytes: Option<usize>,
    /// A device with no activity for this many seconds becomes inactive (`active = false`).
    #[arg(long, env = "THINGLAKE_INACTIVITY_TIMEOUT_SECS")]
    pub inactivity_timeout_secs: Option<u64>,
    /// At most one `lastActivityTime` update per device per this many seconds.
    #[arg(long, env = "THINGLAKE_ACTIVITY_REPORT_SECS")]
    pub activity_report_secs: Option<u64>,
    /// How long a telemetry publish waits for JetStream's acknowledgement, in milliseconds.
    #[arg(long, env = "THINGLAKE_PUBLISH_TIMEOUT_MS")]
    pub publish_timeout_ms: Option<u64>,
    /// Serve the NATS ingress subjects (`<prefix>.ingress.<token>.telemetry|attributes`).
    #[arg(long, env = "THINGLAKE_NATS_INGRESS")]
    pub nats_ingress: Option<bool>,
    /// Directory of the built web UI (`dist` of services/web/ui). Unset: `services/web/ui/dist`
    /// under the working directory if it exists, else `web` next to the executable.
    #[arg(long, env = "THINGLAKE_WEB_DIR")]
    pub web_dir: Option<PathBuf>,
    /// Demo mode: the system administrator's password is `sysadmin` unless given. Never for
    /// production.
    #[arg(long, env = "THINGLAKE_DEMO")]
    pub demo: bool,
    /// Where the lake's Delta tables live: a directory, `file://` URL or `s3://bucket/prefix`
    /// (default `<data_dir>/lake`).
    #[arg(long, env = "THINGLAKE_LAKE_URL")]
    pub lake_url: Option<String>,
    #[command(flatten)]
    pub lake_s3: LakeS3Args,
    /// How long the lake projections gather rows before a commit, in milliseconds (rows are
    /// queryable from the hot tail meanwhile).
    #[arg(long, env = "THINGLAKE_LAKE_COMMIT_INTERVAL_MS")]
    pub lake_commit_interval_ms: Option<u64>,
    /// Hours telemetry stays on the log (default 168 = 7 days; 0 keeps it forever). Older
    /// messages are trimmed, but never before every lake table has committed them.
    #[arg(long, env = "THINGLAKE_TELEMETRY_RETENTION_HOURS")]
    pub telemetry_retention_hours: Option<u64>,
    /// Time limit of one query (time-series history, SQL) in milliseconds (default 30000).
    #[arg(long, env = "THINGLAKE_QUERY_TIME_LIMIT_MS")]
    pub query_time_limit_ms: Option<u64>,
    /// Most rows a SQL result may have (default 100000).
    #[arg(long, env = "THINGLAKE_QUERY_MAX_ROWS")]
    pub query_max_rows: Option<usize>,
    /// Address of the PostgreSQL wire protocol listener (`host:port`, port 0 picks a free
    /// port), or `off` (default 127.0.0.1:5433, beside a local PostgreSQL on 5432; listen on
    /// other addresses only with `--pg-tls-cert`, passwords and tokens travel in it).
    #[arg(long, env = "THINGLAKE_PG_LISTEN")]
    pub pg_listen: Option<String>,
    /// Most buckets of one aggregated time-series query (default 700, ThingsBoard's
    /// `DATABASE_TS_MAX_INTERVALS`).
    #[arg(long, env = "THINGLAKE_QUERY_MAX_INTERVALS")]
    pub query_max_intervals: Option<i64>,
    #[command(flatten)]
    pub access: AccessArgs,
    #[command(flatten)]
    pub quotas: crate::quotas::QuotaArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Sign-in, passwords and activation links.
#[derive(Debug, Clone, Default, Args)]
pub struct AccessArgs {
    /// Base URL users reach the platform at, used in activation links (default
    /// `http://<http host>:<http port>`, `localhost` for an unspecified host).
    #[arg(long, env = "THINGLAKE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// How long an activation link works, in seconds (default 86400, ThingsBoard's 24 h).
    #[arg(long, env = "THINGLAKE_ACTIVATION_TOKEN_TTL_SECS")]
    pub activation_token_ttl_secs: Option<u64>,
    /// Shortest password accepted on activation and password change (default 8).
    #[arg(long, env = "THINGLAKE_MIN_PASSWORD_LENGTH")]
    pub min_password_length: Option<usize>,
    /// Failed sign-ins of one account within the lockout window before it answers 429
    /// (default 5; 0 turns this off).
    #[arg(long, env = "THINGLAKE_LOGIN_MAX_FAILURES_PER_ACCOUNT")]
    pub login_max_failures_per_account: Option<u32>,
    /// Failed sign-ins from one client address (IPv6: per /64) within the lockout window before
    /// it answers 429 (default 20; 0 turns this off).
    #[arg(long, env = "THINGLAKE_LOGIN_MAX_FAILURES_PER_ADDRESS")]
    pub login_max_failures_per_address: Option<u32>,
    /// The lockout window, in seconds: failures are counted from the first one for this long
    /// (default 300).
    #[arg(long, env = "THINGLAKE_LOGIN_LOCKOUT_SECS")]
    pub login_lockout_secs: Option<u64>,
    /// argon2 password hashes computed at once (default: the number of CPUs); more wait up to
    /// 2 s, then answer 503.
    #[arg(long, env = "THINGLAKE_PASSWORD_HASH_CONCURRENCY")]
    pub password_hash_concurrency: Option<usize>,
    /// Take the client address of HTTP sign-ins from the last `X-Forwarded-For` entry (only
    /// behind a reverse proxy that sets it; default: the socket's peer).
    #[arg(long, env = "THINGLAKE_TRUST_FORWARDED_FOR")]
    pub trust_forwarded_for: Option<bool>,
}

/// Settings of an `s3://` lake (shared by `thinglake run`, `rebuild` and `trim`). Each unset
/// one falls back to the standard `AWS_*` environment variable.
#[derive(Debug, Clone, Default, Args)]
pub struct LakeS3Args {
    /// Endpoint of an S3-compatible server (MinIO, Ceph: `http://host:9000`) for an `s3://`
    /// lake; unset: `AWS_ENDPOINT_URL`, else AWS S3.
    #[arg(long, env = "THINGLAKE_LAKE_S3_ENDPOINT")]
    pub lake_s3_endpoint: Option<String>,
    /// Region of the lake's bucket; unset: `AWS_REGION`, else `us-east-1`.
    #[arg(long, env = "THINGLAKE_LAKE_S3_REGION")]
    pub lake_s3_region: Option<String>,
    /// Access key id for the lake's bucket; unset: `AWS_ACCESS_KEY_ID`, else the instance's role.
    #[arg(long, env = "THINGLAKE_LAKE_S3_ACCESS_KEY_ID")]
    pub lake_s3_access_key_id: Option<String>,
    /// Secret access key for the lake's bucket; unset: `AWS_SECRET_ACCESS_KEY`.
    #[arg(long, env = "THINGLAKE_LAKE_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub lake_s3_secret_access_key: Option<String>,
    /// Allow a plain-HTTP S3 endpoint (`true`); unset: `AWS_ALLOW_HTTP`, else HTTPS only.
    #[arg(long, env = "THINGLAKE_LAKE_S3_ALLOW_HTTP")]
    pub lake_s3_allow_http: Option<bool>,
}

impl LakeS3Args {
    pub fn options(&self) -> S3Options {
        S3Options {
            endpoint: self.lake_s3_endpoint.clone().filter(|v| !v.trim().is_empty()),
            region: self.lake_s3_region.clone().filter(|v| !v.trim().is_empty()),
            access_key_id: self.lake_s3_access_key_id.clone().filter(|v| !v.is_empty()),
            secret_access_key: self.lake_s3_secret_access_key.clone().filter(|v| !v.is_empty()),
            allow_http: self.lake_s3_allow_http,
        }
    }
}

/// The lake at `lake_url` (`None`: `<data_dir>/lake`) with `s3`'s settings; S3 settings without an
/// `s3://` URL are refused.
pub fn lake_location(lake_url: Option<&str>, data_dir: &Path, s3: &S3Options) -> anyhow::Result<LakeLocation> {
    match lake_url {
        Some(url) => LakeLocation::parse_with(url, s3).context("opening the lake location"),
        None => {
            anyhow::ensure!(s3.is_empty(), "the lake_s3_* settings need an s3:// lake_url (the lake is {}/lake)", data_dir.display());
            LakeLocation::local(&data_dir.join("lake")).context("opening the lake location")
        }
    }
}

/// The same settings as read from a TOML file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    http_host: Option<IpAddr>,
    http_port: Option<u16>,
    mqtt_port: Option<u16>,
    mqtt_host: Option<IpAddr>,
    mqtt_max_inflight: Option<u16>,
    mqtt_max_connections: Option<usize>,
    mqtt_tls_cert: Option<PathBuf>,
    mqtt_tls_key: Option<PathBuf>,
    mqtt_tls_port: Option<u16>,
    nats_url: Option<String>,
    nats_port: Option<u16>,
    nats_sync_interval: Option<String>,
    subject_prefix: Option<String>,
    admin_email: Option<String>,
    admin_password: Option<String>,
    jwt_secret: Option<String>,
    jwt_access_ttl_secs: Option<u64>,
    jwt_refresh_ttl_secs: Option<u64>,
    demo: Option<bool>,
    max_payload_bytes: Option<usize>,
    inactivity_timeout_secs: Option<u64>,
    activity_report_secs: Option<u64>,
    publish_timeout_ms: Option<u64>,
    nats_ingress: Option<bool>,
    web_dir: Option<PathBuf>,
    lake_url: Option<String>,
    lake_s3_endpoint: Option<String>,
    lake_s3_region: Option<String>,
    lake_s3_access_key_id: Option<String>,
    lake_s3_secret_access_key: Option<String>,
    lake_s3_allow_http: Option<bool>,
    lake_commit_interval_ms: Option<u64>,
    telemetry_retention_hours: Option<u64>,
    query_time_limit_ms: Option<u64>,
    query_max_rows: Option<usize>,
    pg_listen: Option<String>,
    query_max_intervals: Option<i64>,
    public_url: Option<String>,
    activation_token_ttl_secs: Option<u64>,
    min_password_length: Option<usize>,
    login_max_failures_per_account: Option<u32>,
    login_max_failures_per_address: Option<u32>,
    login_lockout_secs: Option<u64>,
    password_hash_concurrency: Option<usize>,
    trust_forwarded_for: Option<bool>,
    /// The quota options, in a `[quotas]` table.
    quotas: Option<crate::quotas::QuotaArgs>,
    /// The `[limits]` table.
    limits: Option<LimitArgs>,
}

/// The PostgreSQL wire protocol's address of `thinglake run` unless configured.
/// Loopback: the protocol carries passwords and tokens, in clear text unless TLS is configured.
pub const DEFAULT_PG_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5433);

/// PEM files of a TLS listener (MQTT, PostgreSQL wire).
#[derive(Debug, Clone)]
pub struct MqttTls {
    /// Certificate chain, the server's certificate first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Resolved settings of a running platform.
#[derive(Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub http_host: IpAddr,
    pub http_port: u16,
    pub mqtt_port: u16,
    pub mqtt_host: IpAddr,
    pub mqtt_max_inflight: u16,
    pub mqtt_max_connections: usize,
    /// The MQTT TLS listener's PEM certificate chain and key; both set: the listener runs.
    pub mqtt_tls: Option<MqttTls>,
    pub mqtt_tls_port: u16,
    pub nats_url: Option<String>,
    pub nats_port: u16,
    pub nats_sync_interval: SyncInterval,
    pub subject_prefix: String,
    pub admin_email: String,
    pub admin_password: Option<String>,
    pub jwt_secret: Option<String>,
    pub jwt_access_ttl: Duration,
    pub jwt_refresh_ttl: Duration,
    pub demo: bool,
    /// Device payload limits and lifecycle timing.
    pub telemetry: TelemetryConfig,
    /// Whether this node serves the NATS ingress subjects.
    pub nats_ingress: bool,
    /// The built web UI served at `/`.
    pub web_dir: PathBuf,
    /// Where the lake lives; `None`: `<data_dir>/lake`.
    pub lake_url: Option<String>,
    /// Settings of an `s3://` lake (over the `AWS_*` environment variables).
    pub lake_s3: S3Options,
    pub lake_commit_interval: Duration,
    /// How long telemetry stays on the log; `None`: forever.
    pub telemetry_retention: Option<Duration>,
    /// Limits of the query engine.
    pub query: thinglake_queries::QueryConfig,
    /// Where the PostgreSQL wire protocol listens; `None`: off. Off in [`Settings::new`] (tests,
    /// embedding), [`DEFAULT_PG_LISTEN`] for `thinglake run` unless configured.
    pub pg_listen: Option<SocketAddr>,
    /// Base URL of activation links; `None`: derived from the HTTP listener's address.
    pub public_url: Option<String>,
    /// How long an activation link works.
    pub activation_token_ttl: Duration,
    /// Password policy and the bound on concurrent argon2 hashing.
    pub passwords: PasswordConfig,
    /// Throttling of failed sign-ins.
    pub login: LoginLimits,
    /// Whether HTTP sign-ins take the client address from `X-Forwarded-For`.
    pub trust_forwarded_for: bool,
    /// Device and tenant rates, tenant entity caps. None in [`Settings::new`] (tests,
    /// embedding); [`crate::quotas::defaults`] for `thinglake run` unless configured.
    pub quotas: thinglake_platform::QuotaConfig,
    /// What the HTTP, WebSocket and PostgreSQL listeners hold.
    pub limits: ListenerLimits,
}

impl std::fmt::Debug for Settings {
    /// Secrets are redacted, so the effective configuration can be logged.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redact = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("Settings")
            .field("data_dir", &self.data_dir)
            .field("http", &format_args!("{}:{}", self.http_host, self.http_port))
            .field("mqtt", &format_args!("{}:{}", self.mqtt_host, self.mqtt_port))
            .field("mqtt_max_inflight", &self.mqtt_max_inflight)
            .field("mqtt_max_connections", &self.mqtt_max_connections)
            .field("mqtt_tls", &self.mqtt_tls.as_ref().map(|_| format!("{}:{}", self.mqtt_host, self.mqtt_tls_port)))
            .field("nats_url", &self.nats_url.as_deref().map_or_else(|| "<supervised local nats-server>".to_string(), redact_url_credentials))
            .field("nats_port", &self.nats_port)
            .field("nats_sync_interval", &self.nats_sync_interval.to_string())
            .field("subject_prefix", &self.subject_prefix)
            .field("admin_email", &self.admin_email)
            .field("admin_password", &redact(&self.admin_password))
            .field("jwt_secret", &redact(&self.jwt_secret))
            .field("jwt_access_ttl", &self.jwt_access_ttl)
            .field("jwt_refresh_ttl", &self.jwt_refresh_ttl)
            .field("demo", &self.demo)
            .field("lake", &self.lake_url.as_deref().unwrap_or("<data_dir>/lake"))
            .field("lake_s3", &self.lake_s3)
            .field("lake_commit_interval", &self.lake_commit_interval)
            .field("telemetry_retention", &self.telemetry_retention)
            .field("query", &self.query)
            .field("pg_listen", &self.pg_listen)
            .field("limits", &self.limits)
            .field("telemetry", &self.telemetry)
            .field("nats_ingress", &self.nats_ingress)
            .field("web_dir", &self.web_dir)
            .field("public_url", &self.public_url)
            .field("activation_token_ttl", &self.activation_token_ttl)
            .field("passwords", &self.passwords)
            .field("login", &self.login)
            .field("trust_forwarded_for", &self.trust_forwarded_for)
            .field("quotas", &self.quotas)
            .finish()
    }
}

impl Settings {
    /// Defaults for a data directory; what tests and the resolver start from.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            http_host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            http_port: 8080,
            mqtt_port: 1883,
            mqtt_host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            mqtt_max_inflight: 100,
            mqtt_max_connections: 100_000,
            mqtt_tls: None,
            mqtt_tls_port: 8883,
            nats_url: None,
            nats_port: 4222,
            nats_sync_interval: SyncInterval::default(),
            subject_prefix: thinglake_infra::subjects::DEFAULT_PREFIX.to_string(),
            admin_email: "sysadmin@thinglake.local".to_string(),
            admin_password: None,
            jwt_secret: None,
            jwt_access_ttl: Duration::from_secs(9000),
            jwt_refresh_ttl: Duration::from_secs(604_800),
            demo: false,
            lake_url: None,
            lake_s3: S3Options::default(),
            lake_commit_interval: Duration::from_secs(2),
            telemetry_retention: Some(Duration::from_secs(7 * 24 * 3600)),
            query: thinglake_queries::QueryConfig::default(),
            pg_listen: None,
            limits: ListenerLimits::default(),
            telemetry: TelemetryConfig::default(),
            nats_ingress: true,
            web_dir: PathBuf::from(WEB_DIR_IN_CHECKOUT),
            public_url: None,
            activation_token_ttl: Duration::from_secs(24 * 3600),
            passwords: PasswordConfig::default(),
            login: LoginLimits::default(),
            trust_forwarded_for: false,
            quotas: thinglake_platform::QuotaConfig::default(),
        }
    }

    /// Resolves flags and environment over the config file over the defaults.
    pub fn resolve(args: RunArgs) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let data_dir = args.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("data"));
        let mut s = Settings::new(data_dir);
        s.http_host = args.http_host.or(file.http_host).unwrap_or(s.http_host);
        s.http_port = args.http_port.or(file.http_port).unwrap_or(s.http_port);
        s.mqtt_port = args.mqtt_port.or(file.mqtt_port).unwrap_or(s.mqtt_port);
        s.mqtt_host = args.mqtt_host.or(file.mqtt_host).unwrap_or(s.mqtt_host);
        s.mqtt_max_inflight = args.mqtt_max_inflight.or(file.mqtt_max_inflight).unwrap_or(s.mqtt_max_inflight);
        s.mqtt_max_connections = args.mqtt_max_connections.or(file.mqtt_max_connections).unwrap_or(s.mqtt_max_connections);
        s.mqtt_tls_port = args.mqtt_tls_port.or(file.mqtt_tls_port).unwrap_or(s.mqtt_tls_port);
        s.mqtt_tls = match (args.mqtt_tls_cert.or(file.mqtt_tls_cert), args.mqtt_tls_key.or(file.mqtt_tls_key)) {
            (Some(cert), Some(key)) => Some(MqttTls { cert, key }),
            (None, None) => None,
            _ => anyhow::bail!("MQTT over TLS needs both mqtt_tls_cert and mqtt_tls_key"),
        };
        s.nats_url = args.nats_url.or(file.nats_url).filter(|u| !u.trim().is_empty());
        s.nats_port = args.nats_port.or(file.nats_port).unwrap_or(s.nats_port);
        s.nats_sync_interval = match (args.nats_sync_interval, file.nats_sync_interval) {
            (Some(v), _) => v,
            (None, Some(text)) => text.parse().map_err(|e| anyhow::anyhow!("nats_sync_interval in config file: {e}"))?,
            (None, None) => s.nats_sync_interval,
        };
        s.subject_prefix = args.subject_prefix.or(file.subject_prefix).unwrap_or(s.subject_prefix);
        s.admin_email = args.admin_email.or(file.admin_email).unwrap_or(s.admin_email);
        s.admin_password = args.admin_password.or(file.admin_password).filter(|p| !p.is_empty());
        s.jwt_secret = args.jwt_secret.or(file.jwt_secret).filter(|p| !p.is_empty());
        if let Some(secs) = args.jwt_access_ttl_secs.or(file.jwt_access_ttl_secs) {
            s.jwt_access_ttl = Duration::from_secs(secs);
        }
        if let Some(secs) = args.jwt_refresh_ttl_secs.or(file.jwt_refresh_ttl_secs) {
            s.jwt_refresh_ttl = Duration::from_secs(secs);
        }
        if let Some(bytes) = args.max_payload_bytes.or(file.max_payload_bytes) {
            s.telemetry.max_payload_bytes = bytes;
        }
        if let Some(secs) = args.inactivity_timeout_secs.or(file.inactivity_timeout_secs) {
            s.telemetry.inactivity_timeout = Duration::from_secs(secs);
        }
        if let Some(secs) = args.activity_report_secs.or(file.activity_report_secs) {
            s.telemetry.activity_report_interval = Duration::from_secs(secs);
        }
        if let Some(ms) = args.publish_timeout_ms.or(file.publish_timeout_ms) {
            s.telemetry.publish_timeout = Duration::from_millis(ms);
        }
        s.nats_ingress = args.nats_ingress.or(file.nats_ingress).unwrap_or(s.nats_ingress);
        s.web_dir = args.web_dir.or(file.web_dir).unwrap_or_else(default_web_dir);
        s.demo = args.demo || file.demo.unwrap_or(false);
        s.lake_url = args.lake_url.or(file.lake_url).filter(|u| !u.trim().is_empty());
        let s3 = args.lake_s3;
        s.lake_s3 = LakeS3Args {
            lake_s3_endpoint: s3.lake_s3_endpoint.or(file.lake_s3_endpoint),
            lake_s3_region: s3.lake_s3_region.or(file.lake_s3_region),
            lake_s3_access_key_id: s3.lake_s3_access_key_id.or(file.lake_s3_access_key_id),
            lake_s3_secret_access_key: s3.lake_s3_secret_access_key.or(file.lake_s3_secret_access_key),
            lake_s3_allow_http: s3.lake_s3_allow_http.or(file.lake_s3_allow_http),
        }
        .options();
        if let Some(ms) = args.lake_commit_interval_ms.or(file.lake_commit_interval_ms) {
            s.lake_commit_interval = Duration::from_millis(ms);
        }
        if let Some(hours) = args.telemetry_retention_hours.or(file.telemetry_retention_hours) {
            s.telemetry_retention = (hours > 0).then(|| Duration::from_secs(hours * 3600));
        }
        if let Some(ms) = args.query_time_limit_ms.or(file.query_time_limit_ms) {
            s.query.time_limit = Duration::from_millis(ms);
        }
        if let Some(rows) = args.query_max_rows.or(file.query_max_rows) {
            s.query.max_rows = rows;
        }
        s.pg_listen = match args.pg_listen.or(file.pg_listen) {
            None => Some(DEFAULT_PG_LISTEN),
            Some(text) if text.trim().eq_ignore_ascii_case("off") => None,
            Some(text) => Some(text.trim().parse().map_err(|e| {
                anyhow::anyhow!("pg_listen must be host:port (like 127.0.0.1:5433) or off, not {text:?}: {e}")
            })?),
        };
        if let Some(intervals) = args.query_max_intervals.or(file.query_max_intervals) {
            anyhow::ensure!(intervals >= 1, "query_max_intervals must be at least 1, got {intervals}");
            s.query.max_intervals = intervals;
        }
        let access = args.access;
        s.public_url = match access.public_url.or(file.public_url).filter(|u| !u.trim().is_empty()) {
            Some(url) => Some(public_url(&url)?),
            None => None,
        };
        if let Some(secs) = access.activation_token_ttl_secs.or(file.activation_token_ttl_secs) {
            anyhow::ensure!(secs >= 1, "activation_token_ttl_secs must be at least 1");
            s.activation_token_ttl = Duration::from_secs(secs);
        }
        if let Some(min) = access.min_password_length.or(file.min_password_length) {
            anyhow::ensure!(
                (1..=thinglake_platform::passwords::MAX_PASSWORD_LENGTH).contains(&min),
                "min_password_length must be between 1 and {}, got {min}",
                thinglake_platform::passwords::MAX_PASSWORD_LENGTH
            );
            s.passwords.min_length = min;
        }
        if let Some(n) = access.password_hash_concurrency.or(file.password_hash_concurrency) {
            anyhow::ensure!(n >= 1, "password_hash_concurrency must be at least 1");
            s.passwords.hash_concurrency = n;
        }
        s.login.max_failures_per_account = access
            .login_max_failures_per_account
            .or(file.login_max_failures_per_account)
            .unwrap_or(s.login.max_failures_per_account);
        s.login.max_failures_per_address = access
            .login_max_failures_per_address
            .or(file.login_max_failures_per_address)
            .unwrap_or(s.login.max_failures_per_address);
        if let Some(secs) = access.login_lockout_secs.or(file.login_lockout_secs) {
            s.login.window = Duration::from_secs(secs);
        }
        s.trust_forwarded_for = access.trust_forwarded_for.or(file.trust_forwarded_for).unwrap_or(false);
        s.quotas = args.quotas.resolve(file.quotas.unwrap_or_default());
        args.limits.apply(file.limits, &mut s)?;
        if s.demo && s.admin_password.is_none() {
            s.admin_password = Some("sysadmin".to_string());
        }
        Ok(s)
    }
}

impl Settings {
    /// Where the lake lives and how its projections commit.
    pub fn lake_options(&self) -> anyhow::Result<thinglake_projections::lake::LakeOptions> {
        let location = lake_location(self.lake_url.as_deref(), &self.data_dir, &self.lake_s3)?;
        let mut options = thinglake_projections::lake::LakeOptions::new(location);
        options.batch_interval = self.lake_commit_interval;
        options.telemetry_retention = self.telemetry_retention;
        Ok(options)
    }
}

/// A NATS URL as it may be logged: the user part (`user:password@`, `token@`) replaced.
fn redact_url_credentials(url: &str) -> String {
    url.split(',')
        .map(|one| match one.split_once("://") {
            Some((scheme, rest)) if rest.contains('@') => format!("{scheme}://<redacted>@{}", rest.rsplit_once('@').map_or("", |(_, host)| host)),
            _ => one.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A configured public URL, checked: absolute `http(s)`, kept without its trailing `/`.
fn public_url(text: &str) -> anyhow::Result<String> {
    let text = text.trim().trim_end_matches('/');
    let url = reqwest::Url::parse(text).map_err(|e| anyhow::anyhow!("public_url {text:?} is not a URL: {e}"))?;
    anyhow::ensure!(
        matches!(url.scheme(), "http" | "https") && url.has_host(),
        "public_url must be an http:// or https:// URL with a host, not {text:?}"
    );
    Ok(text.to_string())
}

impl Settings {
    /// The base URL of activation links: the configured one, else the HTTP listener's address
    /// (`localhost` when it listens on every interface).
    pub fn public_url_for(&self, http_addr: SocketAddr) -> String {
        if let Some(url) = &self.public_url {
            return url.clone();
        }
        match http_addr.ip() {
            ip if ip.is_unspecified() => format!("http://localhost:{}", http_addr.port()),
            IpAddr::V4(ip) => format!("http://{ip}:{}", http_addr.port()),
            IpAddr::V6(ip) => format!("http://[{ip}]:{}", http_addr.port()),
        }
    }
}

/// Where `scripts/run` builds the web UI, relative to the checkout.
const WEB_DIR_IN_CHECKOUT: &str = "services/web/ui/dist";

/// `services/web/ui/dist` when run from a checkout, else `web` beside the executable (an
/// installed copy); the checkout path when neither exists, so the UI's page says how to build it.
fn default_web_dir() -> PathBuf {
    let in_checkout = PathBuf::from(WEB_DIR_IN_CHECKOUT);
    if in_checkout.is_dir() {
        return in_checkout;
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("web")))
        .filter(|dir| dir.is_dir())
        .unwrap_or(in_checkout)
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("thinglake.toml");
        std::fs::write(&path, "http_port = 9000\nmqtt_port = 1999\nnats_sync_interval = \"always\"\n").expect("write");
        let args = RunArgs { config: Some(path), http_port: Some(9100), ..RunArgs::default() };
        let s = Settings::resolve(args).expect("valid");
        assert_eq!(s.http_port, 9100);
        assert_eq!(s.mqtt_port, 1999);
        assert_eq!(s.nats_sync_interval.to_string(), "always");
        assert_eq!(s.nats_port, 4222);
    }

    #[test]
    fn the_postgres_listener_defaults_to_loopback_5433_and_can_be_turned_off() {
        let s = Settings::resolve(RunArgs::default()).expect("valid");
        assert_eq!(s.pg_listen, Some(DEFAULT_PG_LISTEN));
        assert!(DEFAULT_PG_LISTEN.ip().is_loopback());
        let s = Settings::resolve(RunArgs { pg_listen: Some("off".into()), ..RunArgs::default() }).expect("valid");
        assert_eq!(s.pg_listen, None);
        let s = Settings::resolve(RunArgs { pg_listen: Some("127.0.0.1:0".into()), ..RunArgs::default() }).expect("valid");
        assert_eq!(s.pg_listen, Some("127.0.0.1:0".parse().expect("address")));
        assert!(Settings::resolve(RunArgs { pg_listen: Some("5433".into()), ..RunArgs::default() }).is_err());
        assert_eq!(Settings::new("d").pg_listen, None);
    }

    #[test]
    fn access_settings_come_from_flags_and_the_public_url_is_checked() {
        let access = AccessArgs {
            public_url: Some("https://iot.example.com/".into()),
            min_password_length: Some(12),
            login_max_failures_per_account: Some(3),
            trust_forwarded_for: Some(true),
            ..AccessArgs::default()
        };
        let s = Settings::resolve(RunArgs { access, ..RunArgs::default() }).expect("valid");
        assert_eq!(s.public_url.as_deref(), Some("https://iot.example.com"));
        assert_eq!((s.passwords.min_length, s.login.max_failures_per_account, s.trust_forwarded_for), (12, 3, true));
        let bad = AccessArgs { public_url: Some("iot.example.com".into()), ..AccessArgs::default() };
        assert!(Settings::resolve(RunArgs { access: bad, ..RunArgs::default() }).is_err());
        let defaults = Settings::resolve(RunArgs::default()).expect("valid");
        assert_eq!((defaults.passwords.min_length, defaults.trust_forwarded_for), (8, false));
        assert_eq!(defaults.public_url_for("0.0.0.0:8080".parse().expect("addr")), "http://localhost:8080");
        assert_eq!(defaults.public_url_for("[::1]:9".parse().expect("addr")), "http://[::1]:9");
    }

    #[test]
    fn an_unknown_key_in_the_file_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("thinglake.toml");
        std::fs::write(&path, "htp_port = 9000\n").expect("write");
        assert!(Settings::resolve(RunArgs { config: Some(path), ..RunArgs::default() }).is_err());
    }

    #[test]
    fn demo_mode_sets_a_known_admin_password_only_when_none_is_given() {
        let s = Settings::resolve(RunArgs { demo: true, ..RunArgs::default() }).expect("valid");
        assert_eq!(s.admin_password.as_deref(), Some("sysadmin"));
        let s = Settings::resolve(RunArgs { demo: true, admin_password: Some("x".into()), ..RunArgs::default() }).expect("valid");
        assert_eq!(s.admin_password.as_deref(), Some("x"));
        let s = Settings::resolve(RunArgs::default()).expect("valid");
        assert_eq!(s.admin_password, None);
    }

    #[test]
    fn secrets_are_redacted_in_the_logged_configuration() {
        let mut s = Settings::new("d");
        s.admin_password = Some("hunter2".into());
        s.jwt_secret = Some("topsecret".into());
        s.nats_url = Some("nats://plat:natssecret@nats.example.com:4222".into());
        s.lake_s3.secret_access_key = Some("s3secret".into());
        let text = format!("{s:?}");
        assert!(!text.contains("hunter2") && !text.contains("topsecret") && !text.contains("s3secret"), "{text}");
        assert!(!text.contains("natssecret") && text.contains("nats.example.com:4222"), "{text}");
        let location = s.lake_options().map(|o| format!("{:?}", o.location));
        assert!(location.is_err(), "S3 settings without an s3:// lake are refused: {location:?}");
    }

    #[test]
    fn s3_lake_settings_come_from_flags_over_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("thinglake.toml");
        let toml = "lake_url = \"s3://bucket/lake\"\nlake_s3_endpoint = \"http://file:9000\"\nlake_s3_region = \"eu-west-1\"\n\
                    lake_s3_access_key_id = \"AK\"\nlake_s3_secret_access_key = \"SK\"\nlake_s3_allow_http = true\n";
        std::fs::write(&path, toml).expect("write");
        let flags = LakeS3Args { lake_s3_endpoint: Some("http://flag:9000".into()), ..LakeS3Args::default() };
        let s = Settings::resolve(RunArgs { config: Some(path), lake_s3: flags, ..RunArgs::default() }).expect("valid");
        assert_eq!(s.lake_url.as_deref(), Some("s3://bucket/lake"));
        let expected = S3Options {
            endpoint: Some("http://flag:9000".into()),
            region: Some("eu-west-1".into()),
            access_key_id: Some("AK".into()),
            secret_access_key: Some("SK".into()),
            allow_http: Some(true),
        };
        assert_eq!(s.lake_s3, expected);
        let location = format!("{:?}", s.lake_options().expect("an S3 lake").location);
        assert!(location.contains("s3://bucket/lake/") && location.contains("http://flag:9000") && !location.contains("SK\""), "{location}");
    }
}
