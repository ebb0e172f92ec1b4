//! The application layer of Thinglake: use cases shared by the HTTP API and the device
//! transports.
//!
//! A use case checks the caller's rights ([`Principal`]), reads the entity from the in-memory
//! read model, lets the domain `decide`, reserves unique keys ([`thinglake_infra::claims`]),
//! appends the events to the log with the entity's position as precondition, and applies them to
//! the read model at once so the caller reads its own write. [`Platform`] is the entry point;
//! each entity's use cases live in their own module.
//!
//! The platform writes through [`Storage`]: the event log, the telemetry log and the claims, as
//! traits of `thinglake-infra`. [`Platform::new`] puts it on JetStream; tests build it with
//! [`Platform::with_storage`] on the in-memory ones of `thinglake-test-support`, without a
//! nats-server.

mod execute;

pub mod assets;
pub mod attributes;
pub mod clock;
pub mod customer_assignment;
pub mod customers;
pub mod dashboards;
pub mod devices;
pub mod error;
pub mod gateway;
pub mod history;
pub mod lifecycle;
pub mod login_throttle;
pub mod ownership;
pub mod passwords;
pub mod principal;
pub mod profiles;
pub mod quotas;
pub mod rate_limit;
pub mod relations;
pub mod subscriptions;
pub mod telemetry;
pub mod tenant_deletion;
pub mod tenants;
pub mod timeseries;
pub mod uniqueness;
pub mod users;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use thinglake_infra::auth::JwtKeys;
use thinglake_infra::claims::{ClaimStore, Claims};
use thinglake_infra::event_store::{EventLog, EventStore};
use thinglake_infra::telemetry_store::{TelemetryLog, TelemetryStore};
use thinglake_projections::{EntityView, LatestValues};

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{Error, Result};
pub use principal::Principal;
pub use quotas::{EntityLimits, QuotaConfig};
pub use rate_limit::RateLimit;
pub use telemetry::TelemetryConfig;

/// Settings of the application layer.
#[derive(Debug, Clone)]
pub struct PlatformConfig {
    /// Length of generated device access tokens (ThingsBoard: 20).
    pub access_token_length: usize,
    /// Password policy and the bound on concurrent argon2 hashing.
    pub passwords: passwords::PasswordConfig,
    /// Throttling of failed sign-ins.
    pub login: login_throttle::LoginLimits,
    /// Whether the HTTP API takes the client address from `X-Forwarded-For` (behind a trusted
    /// reverse proxy) rather than from the socket, for the sign-in throttle.
    pub trust_forwarded_for: bool,
    /// Base URL of the platform as users reach it, used in activation links (no trailing `/`).
    pub public_url: String,
    /// How long an activation link works (ThingsBoard: 24 h).
    pub activation_token_ttl: Duration,
    /// Device payload limits and the device lifecycle (activity, inactivity).
    pub telemetry: TelemetryConfig,
    /// Message rates of devices and tenants, and entity caps of tenants.
    pub quotas: QuotaConfig,
    /// Where every use case reads the time ([`SystemClock`] unless a test moves time itself).
    pub clock: Arc<dyn Clock>,
}

impl Default for PlatformConfig {
    fn default() -> Self {
        Self {
            access_token_length: 20,
            passwords: passwords::PasswordConfig::default(),
            login: login_throttle::LoginLimits::default(),
            trust_forwarded_for: false,
            public_url: "http://localhost:8080".into(),
            activation_token_ttl: Duration::from_secs(24 * 3600),
            telemetry: TelemetryConfig::default(),
            quotas: QuotaConfig::default(),
            clock: Arc::new(SystemClock),
        }
    }
}

/// Where the platform writes: the JetStream stores ([`Platform::new`]) or in-memory ones (tests).
/// Each append, publish or claim costs a dynamic call and a boxed future, next to its round trip
/// to NATS.
#[derive(Debug, Clone)]
pub struct Storage {
    pub events: Arc<dyn EventLog>,
    pub telemetry: Arc<dyn TelemetryLog>,
    pub claims: Arc<dyn ClaimStore>,
}

/// The platform's use cases. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Platform {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn EventLog>,
    claims: Arc<dyn ClaimStore>,
    view: EntityView,
    jwt: JwtKeys,
    config: PlatformConfig,
    telemetry: Arc<dyn TelemetryLog>,
    latest: LatestValues,
    activity: lifecycle::ActivityTracker,
    login_throttle: login_throttle::LoginThrottle,
    hashing: passwords::PasswordHashing,
    /// The rate limiters of [`PlatformConfig::quotas`].
    quotas: quotas::Quotas,
    /// Time-series history and SQL; attached by the server ([`Platform::attach_query_engine`]).
    queries: OnceLock<thinglake_queries::QueryEngine>,
}

impl Platform {
    /// A platform on JetStream: `store`'s connection carries the telemetry publishes too
    /// ([`TelemetryStore`], with the configured publish timeout).
    pub fn new(store: EventStore, claims: Claims, view: EntityView, jwt: JwtKeys, config: PlatformConfig) -> Self {
        let telemetry =
            TelemetryStore::new(store.jetstream().clone(), store.subjects().clone(), config.telemetry.publish_timeout);
        let storage = Storage { events: Arc::new(store), telemetry: Arc::new(telemetry), claims: Arc::new(claims) };
        Self::with_storage(storage, view, jwt, config)
    }

    /// A platform on any storage (the in-memory one in tests).
    pub fn with_storage(storage: Storage, view: EntityView, jwt: JwtKeys, config: PlatformConfig) -> Self {
        let Storage { events: store, telemetry, claims } = storage;
        let login_throttle = login_throttle::LoginThrottle::new(config.login);
        let hashing = passwords::PasswordHashing::new(&config.passwords);
        let quotas = quotas::Quotas::new(&config.quotas);
        let inner = Inner {
            store,
            claims,
            view,
            jwt,
            config,
            telemetry,
            latest: LatestValues::new(),
            activity: lifecycle::ActivityTracker::default(),
            login_throttle,
            hashing,
            quotas,
            queries: OnceLock::new(),
        };
        Self { inner: Arc::new(inner) }
    }

    /// The event log.
    pub fn store(&self) -> &Arc<dyn EventLog> {
        &self.inner.store
    }

    pub fn claims(&self) -> &Arc<dyn ClaimStore> {
        &self.inner.claims
    }

    pub fn view(&self) -> &EntityView {
        &self.inner.view
    }

    pub fn jwt(&self) -> &JwtKeys {
        &self.inner.jwt
    }

    pub fn config(&self) -> &PlatformConfig {
        &self.inner.config
    }

    /// The sign-in throttle of this node.
    pub fn login_throttle(&self) -> &login_throttle::LoginThrottle {
        &self.inner.login_throttle
    }

    pub(crate) fn password_hashing(&self) -> &passwords::PasswordHashing {
        &self.inner.hashing
    }

    /// The telemetry log (publish and follow). The latest-values follower reads the JetStream
    /// stream itself ([`thinglake_projections::latest::start`] takes a [`TelemetryStore`]).
    pub fn telemetry_store(&self) -> &Arc<dyn TelemetryLog> {
        &self.inner.telemetry
    }

    /// The platform's clock ([`PlatformConfig::clock`]).
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.config.clock
    }

    /// Now by the platform's clock, in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        self.inner.config.clock.now_ms()
    }

    /// The latest-values read model; the server starts its follower
    /// ([`thinglake_projections::latest::start`]) before serving.
    pub fn latest(&self) -> &LatestValues {
        &self.inner.latest
    }
}

/// Milliseconds since the Unix epoch by the system's clock: for what is no use case's time (the
/// timestamp of an error answer); use cases read [`Platform::now_ms`].
pub fn now_ms() -> i64 {
    SystemClock.now_ms()
}
