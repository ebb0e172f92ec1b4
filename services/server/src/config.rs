//! Configuration of `thinglake run`, each option written once: a flattened clap block per
//! subsystem ([`HttpArgs`], [`MqttArgs`], [`NatsArgs`], [`DeviceArgs`], [`LakeArgs`],
//! [`QueryArgs`], [`AuthArgs`], [`QuotaArgs`], [`LimitArgs`]) gives each its flag, `THINGLAKE_*`
//! variable, help line and default. A TOML file (`config/file.rs`) fills in what neither a flag
//! nor a variable set, so the precedence is flag, variable, file, default. [`Settings::resolve`]
//! turns the options into the settings the platform runs with.

mod auth;
mod devices;
pub(crate) mod duration;
mod file;
mod http;
mod lake;
pub mod limits;
mod mqtt;
mod nats;
mod query;
pub mod quotas;
mod secret;

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{ArgMatches, Args, Command, FromArgMatches as _};
use thinglake_infra::nats_server::SyncInterval;
use thinglake_lake::S3Options;
use thinglake_platform::{Clock, SystemClock, TelemetryConfig};
use thinglake_platform::login_throttle::LoginLimits;
use thinglake_platform::passwords::PasswordConfig;

pub use auth::AuthArgs;
pub use devices::DeviceArgs;
pub use http::HttpArgs;
pub use lake::{LakeArgs, LakeS3Args, lake_location};
pub use mqtt::MqttArgs;
pub use nats::{NatsArgs, NatsUrl};
pub use query::{DEFAULT_PG_LISTEN, Listen, QueryArgs};
pub use secret::Secret;

pub use limits::{LimitArgs, ListenerLimits};
pub use quotas::QuotaArgs;

/// The options of `thinglake run`. Logged once at start: secrets print as `***`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// TOML file with any of the options below: keys as the long flags with underscores, the
    /// limits in a `[limits]` table, the quotas in a `[quotas]` table. Flags and variables win
    /// over it.
    #[arg(long, env = "THINGLAKE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory for all local state: the supervised nats-server's store, the lake.
    #[arg(long, env = "THINGLAKE_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Demo mode: the system administrator's password is `sysadmin` unless given. Never for
    /// production.
    #[arg(long, env = "THINGLAKE_DEMO")]
    pub demo: bool,
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub mqtt: MqttArgs,
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub devices: DeviceArgs,
    #[command(flatten)]
    pub lake: LakeArgs,
    #[command(flatten)]
    pub query: QueryArgs,
    #[command(flatten)]
    pub auth: AuthArgs,
    #[command(flatten)]
    pub quotas: QuotaArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
}

impl RunArgs {
    /// The `run` command alone, as `thinglake`'s command line has it.
    fn command() -> Command {
        Self::augment_args(Command::new("run"))
    }

    /// Every option at its default: no flags, no variables, no file.
    pub fn defaults() -> Self {
        let command = Self::command().mut_args(|arg| arg.env(None));
        let matches = command.try_get_matches_from(["run"]).expect("every option has a default or is optional");
        Self::from_arg_matches(&matches).expect("the defaults parse")
    }

    /// The options from `args` (what follows `run`), the environment and the config file.
    pub fn try_parse_from<I, T>(args: I) -> anyhow::Result<Self>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
    {
        let line = std::iter::once(OsString::from("run")).chain(args.into_iter().map(Into::into));
        let matches = Self::command().try_get_matches_from(line)?;
        Self::from_arg_matches(&matches)?.with_config_file(&matches)
    }

    /// These options, parsed from `matches`, with the config file's values for those that
    /// neither a flag nor a variable set.
    pub fn with_config_file(self, matches: &ArgMatches) -> anyhow::Result<Self> {
        let Some(path) = &self.config else {
            return Ok(self);
        };
        let command = Self::command();
        let line = file::command_line(&command, matches, path)?;
        let matches = command.try_get_matches_from(line).with_context(|| format!("config file {}", path.display()))?;
        Ok(Self::from_arg_matches(&matches)?)
    }
}

/// PEM files of a TLS listener (MQTT, PostgreSQL wire).
#[derive(Debug, Clone)]
pub struct MqttTls {
    /// Certificate chain, the server's certificate first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl MqttTls {
    /// The files of a listener given both (`None` given neither); one alone is `refusal`.
    pub(crate) fn pair(cert: Option<PathBuf>, key: Option<PathBuf>, refusal: &str) -> anyhow::Result<Option<Self>> {
        match (cert, key) {
            (Some(cert), Some(key)) => Ok(Some(Self { cert, key })),
            (None, None) => Ok(None),
            _ => anyhow::bail!("{refusal}"),
        }
    }
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
    pub admin_password: Option<Secret>,
    pub jwt_secret: Option<Secret>,
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
    /// embedding); the defaults of [`quotas`] for `thinglake run` unless configured.
    pub quotas: thinglake_platform::QuotaConfig,
    /// What the HTTP, WebSocket and PostgreSQL listeners hold.
    pub limits: ListenerLimits,
    /// The platform's clock: the system's, or one a test moves itself.
    pub clock: Arc<dyn Clock>,
}

impl Settings {
    /// Defaults for a data directory, as `thinglake run` has them but for what tests and
    /// embedding need: no PostgreSQL listener, no quotas, the checkout's web UI.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let mut s = Self::resolve(RunArgs::defaults()).expect("the defaults are valid");
        s.data_dir = data_dir.into();
        s.pg_listen = None;
        s.quotas = thinglake_platform::QuotaConfig::default();
        s.web_dir = PathBuf::from(WEB_DIR_IN_CHECKOUT);
        s
    }

    /// The settings the options give, checked.
    pub fn resolve(args: RunArgs) -> anyhow::Result<Self> {
        let RunArgs { config: _, data_dir, demo, http, mqtt, nats, devices, lake, query, auth, quotas, limits } = args;
        let mut query_config = query.config()?;
        let limits = limits.apply(&mut query_config)?;
        let admin_password = Secret::non_empty(auth.admin_password.clone()).or_else(|| demo.then(|| Secret::from("sysadmin")));
        Ok(Self {
            data_dir,
            http_host: http.http_host,
            http_port: http.http_port,
            mqtt_port: mqtt.mqtt_port,
            mqtt_host: mqtt.mqtt_host,
            mqtt_max_inflight: mqtt.mqtt_max_inflight,
            mqtt_max_connections: mqtt.mqtt_max_connections,
            mqtt_tls: mqtt.tls()?,
            mqtt_tls_port: mqtt.mqtt_tls_port,
            nats_url: nats.nats_url.as_ref().and_then(NatsUrl::expose),
            nats_port: nats.nats_port,
            nats_sync_interval: nats.nats_sync_interval,
            subject_prefix: nats.subject_prefix,
            admin_email: auth.admin_email.clone(),
            admin_password,
            jwt_secret: Secret::non_empty(auth.jwt_secret.clone()),
            jwt_access_ttl: auth.jwt_access_ttl_secs,
            jwt_refresh_ttl: auth.jwt_refresh_ttl_secs,
            demo,
            telemetry: devices.telemetry(),
            nats_ingress: nats.nats_ingress,
            web_dir: http.web_dir.unwrap_or_else(default_web_dir),
            lake_url: lake.lake_url.filter(|u| !u.trim().is_empty()),
            lake_s3: lake.lake_s3.options(),
            lake_commit_interval: lake.lake_commit_interval_ms,
            telemetry_retention: Some(lake.telemetry_retention_hours).filter(|d| !d.is_zero()),
            query: query_config,
            pg_listen: query.pg_listen.0,
            public_url: auth.public_url.as_deref().filter(|u| !u.trim().is_empty()).map(public_url).transpose()?,
            activation_token_ttl: auth.activation_token_ttl()?,
            passwords: auth.passwords()?,
            login: auth.login(),
            trust_forwarded_for: auth.trust_forwarded_for,
            quotas: quotas.config(),
            limits,
            clock: Arc::new(SystemClock),
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `thinglake run`'s options from these flags (no variable of the test environment sets one).
    fn run(flags: &[&str]) -> anyhow::Result<RunArgs> {
        RunArgs::try_parse_from(flags)
    }

    fn file(dir: &tempfile::TempDir, toml: &str) -> String {
        let path = dir.path().join("thinglake.toml");
        std::fs::write(&path, toml).expect("write");
        path.to_str().expect("a UTF-8 path").to_string()
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = file(&dir, "http_port = 9000\nmqtt_port = 1999\nnats_sync_interval = \"always\"\n");
        let s = Settings::resolve(run(&["--config", &path, "--http-port", "9100"]).expect("valid")).expect("valid");
        assert_eq!(s.http_port, 9100);
        assert_eq!(s.mqtt_port, 1999);
        assert_eq!(s.nats_sync_interval.to_string(), "always");
        assert_eq!(s.nats_port, 4222);
    }

    #[test]
    fn the_postgres_listener_defaults_to_loopback_5433_and_can_be_turned_off() {
        let s = Settings::resolve(run(&[]).expect("valid")).expect("valid");
        assert_eq!(s.pg_listen, Some(DEFAULT_PG_LISTEN));
        assert!(DEFAULT_PG_LISTEN.ip().is_loopback());
        let s = Settings::resolve(run(&["--pg-listen", "off"]).expect("valid")).expect("valid");
        assert_eq!(s.pg_listen, None);
        let s = Settings::resolve(run(&["--pg-listen", "127.0.0.1:0"]).expect("valid")).expect("valid");
        assert_eq!(s.pg_listen, Some("127.0.0.1:0".parse().expect("address")));
        assert!(run(&["--pg-listen", "5433"]).is_err());
        assert_eq!(Settings::new("d").pg_listen, None);
    }

    #[test]
    fn access_settings_come_from_flags_and_the_public_url_is_checked() {
        let flags = [
            "--public-url=https://iot.example.com/",
            "--min-password-length=12",
            "--login-max-failures-per-account=3",
            "--trust-forwarded-for=true",
        ];
        let s = Settings::resolve(run(&flags).expect("valid")).expect("valid");
        assert_eq!(s.public_url.as_deref(), Some("https://iot.example.com"));
        assert_eq!((s.passwords.min_length, s.login.max_failures_per_account, s.trust_forwarded_for), (12, 3, true));
        assert!(Settings::resolve(run(&["--public-url", "iot.example.com"]).expect("parses")).is_err());
        let defaults = Settings::resolve(run(&[]).expect("valid")).expect("valid");
        assert_eq!((defaults.passwords.min_length, defaults.trust_forwarded_for), (8, false));
        assert_eq!(defaults.public_url_for("0.0.0.0:8080".parse().expect("addr")), "http://localhost:8080");
        assert_eq!(defaults.public_url_for("[::1]:9".parse().expect("addr")), "http://[::1]:9");
    }

    #[test]
    fn an_unknown_key_in_the_file_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = file(&dir, "htp_port = 9000\n");
        assert!(run(&["--config", &path]).is_err());
        let misplaced = file(&dir, "sql_max_per_user = 3\n");
        assert!(run(&["--config", &misplaced]).is_err(), "a limit belongs in [limits]");
    }

    #[test]
    fn demo_mode_sets_a_known_admin_password_only_when_none_is_given() {
        let password = |flags: &[&str]| Settings::resolve(run(flags).expect("valid")).expect("valid").admin_password.map(|p| p.expose().to_string());
        assert_eq!(password(&["--demo"]).as_deref(), Some("sysadmin"));
        assert_eq!(password(&["--demo", "--admin-password", "x"]).as_deref(), Some("x"));
        assert_eq!(password(&[]), None);
    }

    #[test]
    fn secrets_are_redacted_in_the_logged_configuration() {
        let flags = [
            "--admin-password=hunter2",
            "--jwt-secret=topsecret",
            "--nats-url=nats://plat:natssecret@nats.example.com:4222",
            "--lake-s3-secret-access-key=s3secret",
        ];
        let args = run(&flags).expect("valid");
        let text = format!("{args:?}");
        assert!(!text.contains("hunter2") && !text.contains("topsecret") && !text.contains("s3secret"), "{text}");
        assert!(!text.contains("natssecret") && text.contains("nats.example.com:4222"), "{text}");
        let s = Settings::resolve(args).expect("valid");
        assert_eq!(s.nats_url.as_deref(), Some("nats://plat:natssecret@nats.example.com:4222"));
        let location = s.lake_options().map(|o| format!("{:?}", o.location));
        assert!(location.is_err(), "S3 settings without an s3:// lake are refused: {location:?}");
    }

    #[test]
    fn s3_lake_settings_come_from_flags_over_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let toml = "lake_url = \"s3://bucket/lake\"\nlake_s3_endpoint = \"http://file:9000\"\nlake_s3_region = \"eu-west-1\"\n\
                    lake_s3_access_key_id = \"AK\"\nlake_s3_secret_access_key = \"SK\"\nlake_s3_allow_http = true\n";
        let path = file(&dir, toml);
        let s = Settings::resolve(run(&["--config", &path, "--lake-s3-endpoint", "http://flag:9000"]).expect("valid")).expect("valid");
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

    #[test]
    fn durations_take_the_options_unit_or_their_own_from_flags_and_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = file(&dir, "jwt_access_ttl_secs = 60\nlake_commit_interval_ms = \"5s\"\ntelemetry_retention_hours = 0\n");
        let s = Settings::resolve(run(&["--config", &path, "--login-lockout-secs", "2m"]).expect("valid")).expect("valid");
        assert_eq!((s.jwt_access_ttl, s.lake_commit_interval, s.login.window), (Duration::from_secs(60), Duration::from_secs(5), Duration::from_secs(120)));
        assert_eq!(s.telemetry_retention, None);
        assert!(run(&["--query-time-limit-ms", "soon"]).is_err());
    }

    #[test]
    fn the_defaults_are_the_libraries_and_the_help_shows_them() {
        let s = Settings::new("d");
        assert_eq!(format!("{:?}", s.query), format!("{:?}", thinglake_queries::QueryConfig::default()));
        assert_eq!(format!("{:?}", s.telemetry), format!("{:?}", TelemetryConfig::default()));
        assert_eq!((s.login, s.passwords), (LoginLimits::default(), PasswordConfig::default()));
        assert_eq!((s.http_port, s.jwt_access_ttl, s.telemetry_retention), (8080, Duration::from_secs(9000), Some(Duration::from_secs(7 * 24 * 3600))));
        let help = RunArgs::command().render_long_help().to_string();
        for shown in ["[default: 8080]", "[default: 127.0.0.1:5433]", "[default: 1000:1,30000:60]", "[env: THINGLAKE_QUERY_TIME_LIMIT_MS=]", "Limits:"] {
            assert!(help.contains(shown), "{shown} in {help}");
        }
    }
}
