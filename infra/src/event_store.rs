//! The JetStream event store: the write path and the replay path of every entity.
//!
//! Each entity's events live on its own subject (`<prefix>.evt.<tenant>.<type>.<id>`, see
//! [`Subjects::entity`]) in one stream. An append carries two headers that make JetStream the
//! arbiter of concurrent writers and of retries:
//!
//! - `Nats-Expected-Last-Subject-Sequence`: the stream sequence of the entity's last event as the
//!   writer saw it (0 for an entity with no events). If another writer got there first, JetStream
//!   rejects the message (error 10071) and the append fails with [`AppendError::Conflict`].
//! - `Nats-Msg-Id`: the event id. Within the stream's duplicate window a retried publish is
//!   acknowledged as a duplicate of the stored one instead of being stored twice.
//!
//! Loading replays the entity's subject with an ordered reader ([`crate::log::ordered`]);
//! [`EventStore::follow`] tails the whole stream for read models. A message that is not a valid envelope surfaces as
//! [`Error::CorruptEvent`] and never stops a stream.
//!
//! [`EventLog`] is the trait the platform writes through ([`EventStore`] on JetStream, an
//! in-memory log in `thinglake-test-support`).
//!
//! See `docs/decisions/0003-event-envelope-and-subjects.md`.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::{CreateStreamErrorKind, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, Context};
use bytes::Bytes;
use futures::Stream;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde_json::Value;
use thinglake_domain::{Actor, DomainEvent, EntityId, EventEnvelope};
use tracing::{debug, warn};
use uuid::Uuid;

use crate::error::{AppendError, BoxError, Corruption, Error, Result};
use crate::log::get;
use crate::log::ordered::{self, OrderedReader};
use crate::subjects::Subjects;

/// How long a load waits for the next message of an entity before giving up.
const LOAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How often stream setup is retried when another process creates the same stream concurrently.
const SETUP_ATTEMPTS: u32 = 3;

/// Settings of the two streams the store creates or updates at connect.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// Window within which a repeated `Nats-Msg-Id` is recognised as a retry.
    pub duplicate_window: Duration,
    /// Replicas per stream: 1 on a single node, 3 on a cluster.
    pub replicas: usize,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self {
            duplicate_window: Duration::from_secs(120),
            replicas: 1,
        }
    }
}

/// Where an entity stands on the log: the precondition of the next append.
///
/// `version` counts the entity's events (the envelope version of the last one); `last_seq` is the
/// stream sequence of the last one. Both are 0 for an entity with no events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct EntityPosition {
    pub version: u64,
    pub last_seq: u64,
}

impl EntityPosition {
    /// The position of an entity that has no events yet.
    pub const NEW: EntityPosition = EntityPosition { version: 0, last_seq: 0 };

    pub fn is_new(self) -> bool {
        self.version == 0 && self.last_seq == 0
    }
}

/// An event decided but not yet on the log: the envelope without what the store fills in
/// (tenant and entity, version, recorded-at).
#[derive(Debug, Clone, PartialEq)]
pub struct PendingEvent {
    /// The de-duplication key: keep it when retrying the same append.
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    /// Milliseconds since the Unix epoch, when the command was decided.
    pub occurred_at: i64,
    pub actor: Actor,
    pub payload: Value,
}

impl PendingEvent {
    /// Wraps a typed domain event. `event_id` should be a fresh UUID v7.
    pub fn new<E: DomainEvent>(event: &E, event_id: Uuid, occurred_at: i64, actor: Actor) -> Self {
        let (event_type, payload) = event.encode();
        Self { event_id, event_type, schema_version: E::SCHEMA_VERSION, occurred_at, actor, payload }
    }

    /// The envelope stored for this event as the entity's `version`, recorded at `recorded_at`
    /// (ms since the Unix epoch).
    pub fn into_envelope(self, tenant: Uuid, entity: EntityId, version: u64, recorded_at: i64) -> EventEnvelope {
        EventEnvelope {
            event_id: self.event_id,
            tenant_id: tenant,
            entity_type: entity.entity_type,
            entity_id: entity.id,
            version,
            event_type: self.event_type,
            schema_version: self.schema_version,
            occurred_at: self.occurred_at,
            recorded_at,
            actor: self.actor,
            payload: self.payload,
        }
    }
}

/// The result of an append: each event with its stream sequence, and the entity's new position.
#[derive(Debug, Clone, PartialEq)]
pub struct Appended {
    pub events: Vec<(u64, EventEnvelope)>,
    pub position: EntityPosition,
}

/// An entity's events with their stream sequences, and its position for the next append.
pub type Loaded = (Vec<(u64, EventEnvelope)>, EntityPosition);

/// The event log as the write side and the read models use it: append with optimistic
/// concurrency and de-duplication, an entity's position and replay, following the whole log.
/// [`EventStore`] is the JetStream implementation; `thinglake_test_support::MemoryEventLog` keeps
/// the same contract in memory, for tests without a nats-server. The methods are those of
/// [`EventStore`], which documents them.
pub trait EventLog: fmt::Debug + Send + Sync + 'static {
    fn append(
        &self,
        tenant: Uuid,
        entity: EntityId,
        expected: EntityPosition,
        events: Vec<PendingEvent>,
    ) -> BoxFuture<'_, Result<Appended, AppendError>>;

    fn position(&self, tenant: Uuid, entity: EntityId) -> BoxFuture<'_, Result<EntityPosition>>;

    fn load(&self, tenant: Uuid, entity: EntityId) -> BoxFuture<'_, Result<Loaded>>;

    fn last_sequence(&self) -> BoxFuture<'_, Result<u64>>;

    fn follow(&self, from_seq: u64) -> BoxStream<'static, Result<(u64, EventEnvelope)>>;
}

impl EventLog for EventStore {
    fn append(
        &self,
        tenant: Uuid,
        entity: EntityId,
        expected: EntityPosition,
        events: Vec<PendingEvent>,
    ) -> BoxFuture<'_, Result<Appended, AppendError>> {
        Box::pin(EventStore::append(self, tenant, entity, expected, events))
    }

    fn position(&self, tenant: Uuid, entity: EntityId) -> BoxFuture<'_, Result<EntityPosition>> {
        Box::pin(EventStore::position(self, tenant, entity))
    }

    fn load(&self, tenant: Uuid, entity: EntityId) -> BoxFuture<'_, Result<Loaded>> {
        Box::pin(EventStore::load(self, tenant, entity))
    }

    fn last_sequence(&self) -> BoxFuture<'_, Result<u64>> {
        Box::pin(EventStore::last_sequence(self))
    }

    fn follow(&self, from_seq: u64) -> BoxStream<'static, Result<(u64, EventEnvelope)>> {
        Box::pin(EventStore::follow(self, from_seq))
    }
}

/// The JetStream event store. Cheap to clone; all clones share one connection.
#[derive(Debug, Clone)]
pub struct EventStore {
    js: Context,
    subjects: Subjects,
    events_stream: String,
}

impl EventStore {
    /// Creates or updates the events and telemetry streams with default [`StreamOptions`].
    /// Safe to call from several processes at once.
    pub async fn connect(client: async_nats::Client, subjects: Subjects) -> Result<Self> {
        Self::connect_with(client, subjects, &StreamOptions::default()).await
    }

    /// Creates or updates the events and telemetry streams with the given options.
    pub async fn connect_with(client: async_nats::Client, subjects: Subjects, options: &StreamOptions) -> Result<Self> {
        let js = jetstream::new(client);
        let events_stream = subjects.events_stream();
        ensure_stream(
            &js,
            stream::Config {
                name: events_stream.clone(),
                description: Some("Thinglake entity events: the source of truth".to_string()),
                subjects: vec![subjects.all_events()],
                storage: StorageType::File,
                retention: RetentionPolicy::Limits,
                max_age: Duration::ZERO,
                duplicate_window: options.duplicate_window,
                num_replicas: options.replicas,
                allow_direct: true,
                ..Default::default()
            },
        )
        .await?;
        ensure_stream(
            &js,
            stream::Config {
                name: subjects.telemetry_stream(),
                description: Some("Thinglake device telemetry and client attributes".to_string()),
                subjects: vec![subjects.all_telemetry()],
                storage: StorageType::File,
                retention: RetentionPolicy::Limits,
                // No limits: a JetStream limit would delete messages the lake has not committed.
                // Old telemetry leaves the log only through the lake's trim, which stops at what
                // every lake table has committed (`projections::lake::retention`).
                max_age: Duration::ZERO,
                duplicate_window: options.duplicate_window,
                num_replicas: options.replicas,
                allow_direct: true,
                ..Default::default()
            },
        )
        .await?;
        Ok(Self { js, subjects, events_stream })
    }

    /// The JetStream context, for adapters that share the connection (claims, secrets).
    pub fn jetstream(&self) -> &Context {
        &self.js
    }

    pub fn subjects(&self) -> &Subjects {
        &self.subjects
    }

    /// Appends `events` to the entity's subject, expecting it to be at `expected`.
    ///
    /// Events are published one by one, each expecting the previous one's sequence; version
    /// `expected.version + i + 1` and `recorded_at` (now) are filled in. Fails with
    /// [`AppendError::Conflict`] if the entity moved on since `expected` was read; in a multi-event
    /// append the events before the conflicting one stay stored (callers reload and decide
    /// again). Retrying with the same event ids and the same `expected` is idempotent at any
    /// time: an event already stored right after the position it expected is recognised by its
    /// id and returned as it was first written.
    pub async fn append(
        &self,
        tenant: Uuid,
        entity: EntityId,
        expected: EntityPosition,
        events: Vec<PendingEvent>,
    ) -> Result<Appended, AppendError> {
        let subject = self.subjects.entity(tenant, entity.entity_type, entity.id);
        let mut position = expected;
        let mut appended = Vec::with_capacity(events.len());
        for pending in events {
            let envelope = pending.into_envelope(tenant, entity, position.version + 1, now_ms());
            let (seq, stored) = self.publish_one(&subject, position, envelope).await?;
            position = EntityPosition { version: stored.version, last_seq: seq };
            appended.push((seq, stored));
        }
        Ok(Appended { events: appended, position })
    }

    async fn publish_one(
        &self,
        subject: &str,
        expected: EntityPosition,
        envelope: EventEnvelope,
    ) -> Result<(u64, EventEnvelope), AppendError> {
        let body = serde_json::to_vec(&envelope).expect("an envelope of JSON values serializes");
        let publish = PublishMessage::build()
            .payload(Bytes::from(body))
            .message_id(envelope.event_id.to_string())
            .expected_last_subject_sequence(expected.last_seq)
            .expected_stream(&self.events_stream);
        let publish_error = |source: BoxError| Error::publish(subject.to_string(), source);
        let acked =
            self.js.send_publish(subject.to_string(), publish).await.map_err(|e| publish_error(e.into()))?.await;
        let ack = match acked {
            Ok(ack) => ack,
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                // JetStream checks the expected sequence before the message id, so a retry of an
                // append that was stored lands here: the entity moved on, by this very event.
                return match self.stored_after(subject, expected.last_seq).await? {
                    Some((seq, stored)) if stored.event_id == envelope.event_id => {
                        debug!(subject, seq, "append was a retry of a stored event");
                        Ok((seq, stored))
                    }
                    _ => Err(AppendError::Conflict { subject: subject.to_string(), expected: expected.version }),
                };
            }
            Err(e) => return Err(publish_error(e.into()).into()),
        };
        if ack.duplicate {
            debug!(subject, seq = ack.sequence, "append was a retry of a stored event");
            let stored = self.read_at(ack.sequence).await?;
            return Ok((ack.sequence, stored));
        }
        Ok((ack.sequence, envelope))
    }

    /// Reads the event stored at one stream sequence.
    async fn read_at(&self, seq: u64) -> Result<EventEnvelope> {
        let message = get::at(&self.js, &self.events_stream, seq).await?;
        decode_event(&self.subjects, seq, &message.subject, &message.payload)
    }

    /// The first event on `subject` after stream sequence `after`, if any.
    async fn stored_after(&self, subject: &str, after: u64) -> Result<Option<(u64, EventEnvelope)>> {
        let Some(message) = get::after_on_subject(&self.js, &self.events_stream, subject, after).await? else {
            return Ok(None);
        };
        let envelope = decode_event(&self.subjects, message.seq, &message.subject, &message.payload)?;
        Ok(Some((message.seq, envelope)))
    }

    /// The entity's position from its last event alone, without replaying it.
    pub async fn position(&self, tenant: Uuid, entity: EntityId) -> Result<EntityPosition> {
        let subject = self.subjects.entity(tenant, entity.entity_type, entity.id);
        let Some(message) = get::last_on_subject(&self.js, &self.events_stream, &subject).await? else {
            return Ok(EntityPosition::NEW);
        };
        let envelope = decode_event(&self.subjects, message.seq, &message.subject, &message.payload)?;
        Ok(EntityPosition { version: envelope.version, last_seq: message.seq })
    }

    /// Replays every event of the entity in order, with its stream sequence, and returns the
    /// entity's position for the next append. An entity with no events answers at once with no
    /// events and [`EntityPosition::NEW`]. Filtering by time (time travel) is left to the caller:
    /// each envelope carries `recorded_at`.
    pub async fn load(&self, tenant: Uuid, entity: EntityId) -> Result<Loaded> {
        let subject = self.subjects.entity(tenant, entity.entity_type, entity.id);
        let read_error = |source: BoxError| Error::read(subject.clone(), source);
        // One cheap request answers for entities with no events (every create) without a consumer.
        if self.position(tenant, entity).await?.is_new() {
            return Ok((Vec::new(), EntityPosition::NEW));
        }
        let mut reader =
            OrderedReader::open(&self.js, &self.events_stream, 1, Some(subject.clone()), subject.clone()).await?;
        let mut events = Vec::new();
        let replayed =
            if reader.pending_at_open() > 0 { read_until_caught_up(&self.subjects, &mut reader, &mut events).await } else { Ok(()) };
        reader.close().await;
        replayed.map_err(|stop| match stop {
            ReplayStop::Error(e) => e,
            ReplayStop::Failed(reason) => read_error(reason.into()),
        })?;

        let position = match events.last() {
            Some((seq, last)) => {
                let count = events.len() as u64;
                if last.version != count {
                    warn!(subject, count, version = last.version, "entity event count differs from its last version");
                }
                EntityPosition { version: count, last_seq: *seq }
            }
            None => EntityPosition::NEW,
        };
        Ok((events, position))
    }

    /// The last sequence of the events stream now (0 when empty): a read model that starts
    /// following knows it has caught up once it has processed this sequence.
    pub async fn last_sequence(&self) -> Result<u64> {
        Ok(get::stream_state(&self.js, &self.events_stream, self.subjects.all_events()).await?.last_sequence)
    }

    /// Every event of every entity from stream sequence `from_seq` on (inclusive; 0 or 1 mean
    /// from the start), then live, in order. To resume after a checkpoint at sequence `n`, pass
    /// `n + 1`.
    ///
    /// A corrupt message yields [`Error::CorruptEvent`] and the stream goes on; a transient read
    /// failure yields [`Error::Read`] and the stream goes on (the ordered consumer recreates
    /// itself). The stream ends after an error creating the consumer: restart from the
    /// checkpoint.
    pub fn follow(&self, from_seq: u64) -> impl Stream<Item = Result<(u64, EventEnvelope)>> + Send + 'static {
        let subjects = self.subjects.clone();
        let reading = self.subjects.all_events();
        ordered::follow(self.js.clone(), self.events_stream.clone(), from_seq, "the event log", reading, move |delivery| {
            decode_event(&subjects, delivery.seq, delivery.subject(), delivery.payload())
        })
    }
}

enum ReplayStop {
    /// A corrupt message, or a read error of the reader itself.
    Error(Error),
    Failed(String),
}

/// Reads an entity's messages until the consumer reports nothing pending.
async fn read_until_caught_up(
    subjects: &Subjects,
    reader: &mut OrderedReader,
    events: &mut Vec<(u64, EventEnvelope)>,
) -> std::result::Result<(), ReplayStop> {
    loop {
        let next = tokio::time::timeout(LOAD_TIMEOUT, reader.next())
            .await
            .map_err(|_| ReplayStop::Failed(format!("no message within {LOAD_TIMEOUT:?}")))?;
        let delivery = match next {
            Some(Ok(delivery)) => delivery,
            Some(Err(e)) => return Err(ReplayStop::Error(e)),
            None => return Err(ReplayStop::Failed("the consumer closed before catching up".to_string())),
        };
        let envelope =
            decode_event(subjects, delivery.seq, delivery.subject(), delivery.payload()).map_err(ReplayStop::Error)?;
        events.push((delivery.seq, envelope));
        if delivery.pending == 0 {
            return Ok(());
        }
    }
}

/// Parses an envelope and checks it is stored on its own entity's subject.
fn decode_event(subjects: &Subjects, seq: u64, subject: &str, payload: &[u8]) -> Result<EventEnvelope> {
    let envelope: EventEnvelope = serde_json::from_slice(payload)
        .map_err(|source| Error::CorruptEvent { seq, source: Corruption::Unparsable { what: "an event envelope", source } })?;
    let home = subjects.entity(envelope.tenant_id, envelope.entity_type, envelope.entity_id);
    if home != subject {
        return Err(Error::CorruptEvent { seq, source: Corruption::Misplaced { home, subject: subject.to_string() } });
    }
    Ok(envelope)
}

/// Creates the stream or brings its configuration up to date. Two processes starting at once may
/// both see it missing and both create it; the loser of that race retries as an update.
async fn ensure_stream(js: &Context, config: stream::Config) -> Result<()> {
    let name = config.name.clone();
    let mut attempt = 1;
    loop {
        match js.create_or_update_stream(config.clone()).await {
            Ok(info) => {
                debug!(stream = %name, messages = info.state.messages, "stream ready");
                return Ok(());
            }
            Err(e) if attempt < SETUP_ATTEMPTS && is_creation_race(e.kind()) => {
                debug!(stream = %name, attempt, "stream created concurrently; retrying");
                tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
                attempt += 1;
            }
            Err(e) => return Err(Error::setup(name, e)),
        }
    }
}

fn is_creation_race(kind: CreateStreamErrorKind) -> bool {
    match kind {
        CreateStreamErrorKind::JetStream(e) => {
            e.error_code() == ErrorCode::STREAM_NAME_EXIST || e.error_code() == ErrorCode::STREAM_NOT_FOUND
        }
        CreateStreamErrorKind::NotFound => true,
        _ => false,
    }
}

fn now_ms() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use thinglake_domain::EntityType;

    use super::*;

    fn envelope(tenant: Uuid, id: Uuid) -> EventEnvelope {
        EventEnvelope {
            event_id: Uuid::now_v7(),
            tenant_id: tenant,
            entity_type: EntityType::Device,
            entity_id: id,
            version: 1,
            event_type: "DeviceCreated".to_string(),
            schema_version: 1,
            occurred_at: 1,
            recorded_at: 2,
            actor: Actor::system(),
            payload: serde_json::json!({"name": "d"}),
        }
    }

    #[test]
    fn decoding_accepts_an_envelope_on_its_own_subject() {
        let subjects = Subjects::default();
        let (tenant, id) = (Uuid::now_v7(), Uuid::now_v7());
        let e = envelope(tenant, id);
        let body = serde_json::to_vec(&e).expect("serializable");
        let subject = subjects.entity(tenant, EntityType::Device, id);
        assert_eq!(decode_event(&subjects, 7, &subject, &body).ok(), Some(e));
    }

    #[test]
    fn decoding_rejects_an_envelope_on_another_entitys_subject() {
        let subjects = Subjects::default();
        let (tenant, id) = (Uuid::now_v7(), Uuid::now_v7());
        let body = serde_json::to_vec(&envelope(tenant, id)).expect("serializable");
        let elsewhere = subjects.entity(tenant, EntityType::Device, Uuid::now_v7());
        assert!(matches!(decode_event(&subjects, 7, &elsewhere, &body), Err(Error::CorruptEvent { seq: 7, .. })));
    }

    #[test]
    fn decoding_rejects_garbage() {
        let subjects = Subjects::default();
        assert!(matches!(decode_event(&subjects, 3, "x", b"{not json"), Err(Error::CorruptEvent { seq: 3, .. })));
    }
}
