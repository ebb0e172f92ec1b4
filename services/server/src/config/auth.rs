//! The sign-in options: the first administrator, tokens, passwords, sign-in throttling and the
//! links users are sent.

use std::time::Duration;

use clap::{ArgAction, Args};
use thinglake_platform::login_throttle::LoginLimits;
use thinglake_platform::passwords::{MAX_PASSWORD_LENGTH, PasswordConfig};

use crate::config::{Secret, duration};

/// Users, tokens and passwords.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Auth")]
pub struct AuthArgs {
    /// Email of the first system administrator, created on first start.
    #[arg(long, env = "THINGLAKE_ADMIN_EMAIL", default_value = "sysadmin@thinglake.local")]
    pub admin_email: String,
    /// Password of the first system administrator; without it one is generated and printed once.
    #[arg(long, env = "THINGLAKE_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<Secret>,
    /// Secret that signs JWTs; without it one is generated once and kept in NATS.
    #[arg(long, env = "THINGLAKE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,
    /// Lifetime of access tokens; seconds, or a duration (`2h 30m`).
    #[arg(long, env = "THINGLAKE_JWT_ACCESS_TTL_SECS", default_value = "9000", value_parser = duration::seconds)]
    pub jwt_access_ttl_secs: Duration,
    /// Lifetime of refresh tokens; seconds, or a duration (`7days`).
    #[arg(long, env = "THINGLAKE_JWT_REFRESH_TTL_SECS", default_value = "604800", value_parser = duration::seconds)]
    pub jwt_refresh_ttl_secs: Duration,
    /// Base URL users reach the platform at, used in activation links (unset:
    /// `http://<http host>:<http port>`, `localhost` for an unspecified host).
    #[arg(long, env = "THINGLAKE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// How long an activation link works (ThingsBoard's 24 h); seconds, or a duration.
    #[arg(long, env = "THINGLAKE_ACTIVATION_TOKEN_TTL_SECS", default_value = "86400", value_parser = duration::seconds)]
    pub activation_token_ttl_secs: Duration,
    /// Shortest password accepted on activation and password change.
    #[arg(long, env = "THINGLAKE_MIN_PASSWORD_LENGTH", default_value_t = PasswordConfig::default().min_length)]
    pub min_password_length: usize,
    /// Failed sign-ins of one account within the lockout window before it answers 429 (0 turns
    /// this off).
    #[arg(long, env = "THINGLAKE_LOGIN_MAX_FAILURES_PER_ACCOUNT", default_value_t = LoginLimits::default().max_failures_per_account)]
    pub login_max_failures_per_account: u32,
    /// Failed sign-ins from one client address (IPv6: per /64) within the lockout window before
    /// it answers 429 (0 turns this off).
    #[arg(long, env = "THINGLAKE_LOGIN_MAX_FAILURES_PER_ADDRESS", default_value_t = LoginLimits::default().max_failures_per_address)]
    pub login_max_failures_per_address: u32,
    /// The lockout window: failures are counted from the first one for this long; seconds, or a
    /// duration.
    #[arg(long, env = "THINGLAKE_LOGIN_LOCKOUT_SECS", default_value = "300", value_parser = duration::seconds)]
    pub login_lockout_secs: Duration,
    /// argon2 password hashes computed at once (unset: the number of CPUs); more wait up to 2 s,
    /// then answer 503.
    #[arg(long, env = "THINGLAKE_PASSWORD_HASH_CONCURRENCY")]
    pub password_hash_concurrency: Option<usize>,
    /// Take the client address of HTTP sign-ins from the last `X-Forwarded-For` entry (only
    /// behind a reverse proxy that sets it; `false`: the socket's peer).
    #[arg(long, env = "THINGLAKE_TRUST_FORWARDED_FOR", action = ArgAction::Set, default_value_t = false)]
    pub trust_forwarded_for: bool,
}

impl AuthArgs {
    /// The password policy, checked.
    pub(crate) fn passwords(&self) -> anyhow::Result<PasswordConfig> {
        let mut passwords = PasswordConfig::default();
        let min = self.min_password_length;
        anyhow::ensure!(
            (1..=MAX_PASSWORD_LENGTH).contains(&min),
            "min_password_length must be between 1 and {MAX_PASSWORD_LENGTH}, got {min}"
        );
        passwords.min_length = min;
        if let Some(n) = self.password_hash_concurrency {
            anyhow::ensure!(n >= 1, "password_hash_concurrency must be at least 1");
            passwords.hash_concurrency = n;
        }
        Ok(passwords)
    }

    pub(crate) fn login(&self) -> LoginLimits {
        LoginLimits {
            max_failures_per_account: self.login_max_failures_per_account,
            max_failures_per_address: self.login_max_failures_per_address,
            window: self.login_lockout_secs,
        }
    }

    /// The activation links' lifetime, checked.
    pub(crate) fn activation_token_ttl(&self) -> anyhow::Result<Duration> {
        anyhow::ensure!(self.activation_token_ttl_secs >= Duration::from_secs(1), "activation_token_ttl_secs must be at least 1");
        Ok(self.activation_token_ttl_secs)
    }
}
