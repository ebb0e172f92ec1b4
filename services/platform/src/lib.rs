//! The application layer of Thinglake: use cases shared by the HTTP API and the device
//! transports.
//!
//! A use case checks the caller's rights ([`Principal`]), reads the entity from the in-memory
//! read model, lets the domain `decide`, reserves unique keys ([`thinglake_infra::claims`]),
//! appends the events to the log with the entity's position as precondition, and applies them to
//! the read model at once so the caller reads its own write. [`Platform`] is the entry point;
//! each entity's use cases live in their own module.

mod execute;

pub mod assets;
pub mod attributes;
pub mod customers;
pub mod dashboards;
pub mod devices;
pub mod error;
pub mod gateway;
pub mod history;
pub mod lifecycle;
pub mod ownership;
pub mod principal;
pub mod profiles;
pub mod relations;
pub mod subscriptions;
pub mod telemetry;
pub mod tenants;
pub mod timeseries;
pub mod uniqueness;
pub mod users;

use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use thinglake_infra::auth::JwtKeys;
use thinglake_infra::claims::Claims;
use thinglake_infra::event_store::EventStore;
use thinglake_infra::telemetry_store::TelemetryStore;
use thinglake_projections::{EntityView, LatestValues};

pub use error::{Error, Result};
pub use principal::Principal;
pub use telemetry::TelemetryConfig;

/// Settings of the application layer.
#[derive(Debug, Clone)]
pub struct PlatformConfig {
    /// Length of generated device access tokens (ThingsBoard: 20).
    pub access_token_length: usize,
    /// Minimum password length.
    pub min_password_length: usize,
    /// Base URL used in activation links.
    pub public_url: String,
    /// Device payload limits and the device lifecycle (activity, inactivity).
    pub telemetry: TelemetryConfig,
}

impl Default for PlatformConfig {
    fn default() -> Self {
        Self {
            access_token_length: 20,
            min_password_length: 6,
            public_url: "http://localhost:8080".into(),
            telemetry: TelemetryConfig::default(),
        }
    }
}

/// The platform's use cases. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Platform {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: EventStore,
    claims: Claims,
    view: EntityView,
    jwt: JwtKeys,
    config: PlatformConfig,
    telemetry: TelemetryStore,
    latest: LatestValues,
    activity: lifecycle::ActivityTracker,
    /// Time-series history and SQL; attached by the server ([`Platform::attach_query_engine`]).
    queries: OnceLock<thinglake_queries::QueryEngine>,
}

impl Platform {
    pub fn new(store: EventStore, claims: Claims, view: EntityView, jwt: JwtKeys, config: PlatformConfig) -> Self {
        let telemetry =
            TelemetryStore::new(store.jetstream().clone(), store.subjects().clone(), config.telemetry.publish_timeout);
        let inner = Inner {
            store,
            claims,
            view,
            jwt,
            config,
            telemetry,
            latest: LatestValues::new(),
            activity: lifecycle::ActivityTracker::default(),
            queries: OnceLock::new(),
        };
        Self { inner: Arc::new(inner) }
    }

    pub fn store(&self) -> &EventStore {
        &self.inner.store
    }

    pub fn claims(&self) -> &Claims {
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

    /// The telemetry stream (publish and follow).
    pub fn telemetry_store(&self) -> &TelemetryStore {
        &self.inner.telemetry
    }

    /// The latest-values read model; the server starts its follower
    /// ([`thinglake_projections::latest::start`]) before serving.
    pub fn latest(&self) -> &LatestValues {
        &self.inner.latest
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
