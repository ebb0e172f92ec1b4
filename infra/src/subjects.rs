//! Every NATS subject, stream, key-value bucket and consumer name Thinglake uses.

use thinglake_domain::EntityType;
use uuid::Uuid;

/// Default prefix of every subject (`thinglake.evt.…`), configurable for shared servers.
pub const DEFAULT_PREFIX: &str = "thinglake";

/// The stream of entity events (the source of truth for entities).
pub const EVENTS_STREAM: &str = "THINGLAKE_EVENTS";
/// The stream of device telemetry and client attributes.
pub const TELEMETRY_STREAM: &str = "THINGLAKE_TELEMETRY";
/// Key-value bucket of unique-key claims (names, tokens, emails).
pub const CLAIMS_BUCKET: &str = "thinglake_claims";
/// Key-value bucket of platform secrets (the JWT signing key), shared by every node.
pub const SECRETS_BUCKET: &str = "thinglake_secrets";

/// Durable consumer names of the lake projections are `lake_<projection>` (the projections and
/// their tables are named in `thinglake_lake::table`).
pub const LAKE_CONSUMER_PREFIX: &str = "lake_";

/// JetStream's direct get API (`<this>.<stream>`), answered by a stream with `allow_direct`;
/// the lake's rebuild reads ranges of the log through its batched form (nats-server 2.11+).
pub const JS_DIRECT_GET: &str = "$JS.API.DIRECT.GET";

/// Queue group of the NATS ingress subscribers: each request is handled by one node.
pub const INGRESS_QUEUE: &str = "thinglake_ingress";

/// Subject names under one prefix.
#[derive(Debug, Clone)]
pub struct Subjects {
    prefix: String,
}

impl Default for Subjects {
    fn default() -> Self {
        Self::new(DEFAULT_PREFIX)
    }
}

impl Subjects {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into() }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>.evt.<tenant>.<entity_type>.<entity_id>`: one entity's events.
    pub fn entity(&self, tenant: Uuid, entity_type: EntityType, entity_id: Uuid) -> String {
        format!("{}.evt.{}.{}.{}", self.prefix, tenant, entity_type.token(), entity_id)
    }

    /// `<prefix>.evt.>`: every entity event.
    pub fn all_events(&self) -> String {
        format!("{}.evt.>", self.prefix)
    }

    /// `<prefix>.tel.<tenant>.<device_id>`: one device's telemetry.
    pub fn telemetry(&self, tenant: Uuid, device_id: Uuid) -> String {
        format!("{}.tel.{}.{}", self.prefix, tenant, device_id)
    }

    /// `<prefix>.tel.>`: all telemetry.
    pub fn all_telemetry(&self) -> String {
        format!("{}.tel.>", self.prefix)
    }

    /// `<prefix>.ingress.<token>.<kind>`: NATS ingress of a device's payloads (request/reply);
    /// `kind` is `telemetry` or `attributes`.
    pub fn ingress(&self, token: &str, kind: &str) -> String {
        format!("{}.ingress.{token}.{kind}", self.prefix)
    }

    /// `<prefix>.ingress.>`: every ingress subject, served by the queue group [`INGRESS_QUEUE`].
    pub fn all_ingress(&self) -> String {
        format!("{}.ingress.>", self.prefix)
    }

    /// Stream names carry the prefix too, so two deployments can share one server.
    pub fn events_stream(&self) -> String {
        self.scoped(EVENTS_STREAM)
    }

    pub fn telemetry_stream(&self) -> String {
        self.scoped(TELEMETRY_STREAM)
    }

    pub fn claims_bucket(&self) -> String {
        self.scoped(CLAIMS_BUCKET)
    }

    pub fn secrets_bucket(&self) -> String {
        self.scoped(SECRETS_BUCKET)
    }

    /// Durable consumer of a lake projection (`lake_<projection>`), on its source stream.
    pub fn lake_consumer(&self, projection: &str) -> String {
        format!("{LAKE_CONSUMER_PREFIX}{projection}")
    }

    /// `<prefix>.evt.*.relation.*`: every relation's events.
    pub fn all_relation_events(&self) -> String {
        format!("{}.evt.*.{}.*", self.prefix, EntityType::Relation.token())
    }

    fn scoped(&self, name: &str) -> String {
        if self.prefix == DEFAULT_PREFIX {
            name.to_string()
        } else {
            format!("{}_{}", self.prefix.replace(['.', '-'], "_"), name)
        }
    }
}
