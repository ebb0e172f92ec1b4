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
pub mod customers;
pub mod devices;
pub mod error;
pub mod history;
pub mod ownership;
pub mod principal;
pub mod profiles;
pub mod relations;
pub mod tenants;
pub mod uniqueness;
pub mod users;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use thinglake_infra::auth::JwtKeys;
use thinglake_infra::claims::Claims;
use thinglake_infra::event_store::EventStore;
use thinglake_projections::EntityView;

pub use error::{Error, Result};
pub use principal::Principal;

/// Settings of the application layer.
#[derive(Debug, Clone)]
pub struct PlatformConfig {
    /// Length of generated device access tokens (ThingsBoard: 20).
    pub access_token_length: usize,
    /// Minimum password length.
    pub min_password_length: usize,
    /// Base URL used in activation links.
    pub public_url: String,
}

impl Default for PlatformConfig {
    fn default() -> Self {
        Self { access_token_length: 20, min_password_length: 6, public_url: "http://localhost:8080".into() }
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
}

impl Platform {
    pub fn new(store: EventStore, claims: Claims, view: EntityView, jwt: JwtKeys, config: PlatformConfig) -> Self {
        Self { inner: Arc::new(Inner { store, claims, view, jwt, config }) }
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
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
