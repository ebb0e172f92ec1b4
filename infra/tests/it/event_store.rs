//! The JetStream event store against a real nats-server: append and load, optimistic
//! concurrency, idempotent retries, following the log, corrupt messages and stream setup.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use futures::StreamExt;
use serde_json::json;
use thinglake_domain::{Actor, EntityId, EntityType, EventEnvelope};
use thinglake_infra::{AppendError, Error};
use thinglake_infra::event_store::{EntityPosition, EventStore, PendingEvent, StreamOptions};
use thinglake_infra::subjects::Subjects;
use thinglake_test_support::NatsServer;
use uuid::Uuid;

fn pending(event_type: &str, n: u64) -> PendingEvent {
    PendingEvent {
        event_id: Uuid::now_v7(),
        event_type: event_type.to_string(),
        schema_version: 1,
        occurred_at: 1_700_000_000_000,
        actor: Actor::system(),
        payload: json!({ "n": n }),
    }
}

fn device() -> EntityId {
    EntityId::new(EntityType::Device, Uuid::now_v7())
}

async fn store(nats: &NatsServer) -> Result<EventStore> {
    Ok(EventStore::connect(nats.client().await, Subjects::default()).await?)
}

#[tokio::test]
async fn appended_events_load_back_in_order_with_versions_and_position() -> Result<()> {
    let nats = NatsServer::start().await;
    let store = store(&nats).await?;
    let (tenant, entity) = (Uuid::now_v7(), device());

    let first = store
        .append(tenant, entity, EntityPosition::NEW, vec![pending("DeviceCreated", 1), pending("DeviceRenamed", 2)])
        .await?;
    assert_eq!(first.events.len(), 2);
    assert_eq!(first.events[0].1.version, 1);
    assert_eq!(first.events[1].1.version, 2);
    assert_eq!(first.position, EntityPosition { version: 2, last_seq: first.events[1].0 });

    // Another entity in between: versions are per entity, sequences are per stream.
    store.append(tenant, device(), EntityPosition::NEW, vec![pending("DeviceCreated", 9)]).await?;

    let second = store.append(tenant, entity, first.position, vec![pending("DeviceDeleted", 3)]).await?;
    assert_eq!(second.events[0].1.version, 3);

    let (events, position) = store.load(tenant, entity).await?;
    assert_eq!(position, second.position);
    assert_eq!(store.position(tenant, entity).await?, second.position);
    let types: Vec<_> = events.iter().map(|(_, e)| e.event_type.as_str()).collect();
    assert_eq!(types, ["DeviceCreated", "DeviceRenamed", "DeviceDeleted"]);
    let versions: Vec<_> = events.iter().map(|(_, e)| e.version).collect();
    assert_eq!(versions, [1, 2, 3]);
    let mut stored: Vec<(u64, EventEnvelope)> = first.events;
    stored.extend(second.events);
    assert_eq!(events, stored, "load returns exactly what append stored");
    let e = &events[0].1;
    assert_eq!((e.tenant_id, e.entity(), e.payload.clone()), (tenant, entity, json!({ "n": 1 })));
    assert!(e.recorded_at >= 1_700_000_000_000);
    Ok(())
}

#[tokio::test]
async fn loading_an_entity_without_events_answers_at_once() -> Result<()> {
    let nats = NatsServer::start().await;
    let store = store(&nats).await?;
    // Some other entity's events exist; the one asked for has none.
    store.append(Uuid::now_v7(), device(), EntityPosition::NEW, vec![pending("DeviceCreated", 1)]).await?;

    let started = Instant::now();
    let (events, position) = store.load(Uuid::now_v7(), device()).await?;
    assert!(events.is_empty());
    assert_eq!(position, EntityPosition::NEW);
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
    Ok(())
}

#[tokio::test]
async fn of_concurrent_appends_at_one_position_exactly_one_wins() -> Result<()> {
    let nats = NatsServer::start().await;
    let store = store(&nats).await?;
    let (tenant, entity) = (Uuid::now_v7(), device());

    // Two creations of a new entity: the expected subject sequence 0 means "no message yet".
    let creates = futures::future::join_all(
        (0..2).map(|n| store.append(tenant, entity, EntityPosition::NEW, vec![pending("DeviceCreated", n)])),
    )
    .await;
    let created: Vec<_> = creates.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(created.len(), 1, "{creates:?}");
    assert!(creates.iter().any(|r| matches!(r, Err(AppendError::Conflict { expected: 0, .. }))), "{creates:?}");
    let position = created[0].position;

    let updates = futures::future::join_all(
        (0..10).map(|n| store.append(tenant, entity, position, vec![pending("DeviceRenamed", n)])),
    )
    .await;
    let winners = updates.iter().filter(|r| r.is_ok()).count();
    let conflicts = updates.iter().filter(|r| matches!(r, Err(AppendError::Conflict { expected: 1, .. }))).count();
    assert_eq!((winners, conflicts), (1, 9), "{updates:?}");

    // A stale position stays stale.
    let stale = store.append(tenant, entity, position, vec![pending("DeviceRenamed", 99)]).await;
    assert!(matches!(stale, Err(AppendError::Conflict { .. })), "{stale:?}");
    let (events, _) = store.load(tenant, entity).await?;
    assert_eq!(events.len(), 2);
    Ok(())
}

#[tokio::test]
async fn retrying_an_append_with_the_same_event_ids_stores_nothing_twice() -> Result<()> {
    let nats = NatsServer::start().await;
    let store = store(&nats).await?;
    let (tenant, entity) = (Uuid::now_v7(), device());
    let events = vec![pending("DeviceCreated", 1), pending("DeviceRenamed", 2)];

    let first = store.append(tenant, entity, EntityPosition::NEW, events.clone()).await?;
    // The caller did not see the ack and retries the same append.
    let retry = store.append(tenant, entity, EntityPosition::NEW, events.clone()).await?;
    assert_eq!(retry, first, "a retry answers with the stored events, recorded_at included");
    // A retry from the position after the events: JetStream's de-duplication by Nats-Msg-Id.
    let late_retry = store.append(tenant, entity, first.position, events).await?;
    assert_eq!(late_retry, first);

    let (loaded, position) = store.load(tenant, entity).await?;
    assert_eq!(loaded.len(), 2);
    assert_eq!(position, first.position);
    assert_eq!(store.last_sequence().await?, first.position.last_seq);
    Ok(())
}

#[tokio::test]
async fn follow_delivers_the_log_in_order_and_reports_corrupt_messages_without_stopping() -> Result<()> {
    let nats = NatsServer::start().await;
    let subjects = Subjects::default();
    let store = store(&nats).await?;
    assert_eq!(store.last_sequence().await?, 0);
    let tenant = Uuid::now_v7();
    let (a, b) = (device(), device());

    let a1 = store.append(tenant, a, EntityPosition::NEW, vec![pending("DeviceCreated", 1)]).await?;
    let b1 = store.append(tenant, b, EntityPosition::NEW, vec![pending("DeviceCreated", 2)]).await?;
    // Garbage on an event subject, as a buggy or foreign publisher might leave it.
    let js = async_nats::jetstream::new(nats.client().await);
    let garbage_seq = js
        .publish(subjects.entity(tenant, EntityType::Device, Uuid::now_v7()), "not an envelope".into())
        .await?
        .await?
        .sequence;
    let a2 = store.append(tenant, a, a1.position, vec![pending("DeviceRenamed", 3)]).await?;
    let last = store.last_sequence().await?;
    assert_eq!(last, a2.position.last_seq);

    // From the start: everything, the corrupt message as an error item in its place.
    let items: Vec<_> = store.follow(0).take(4).collect().await;
    let b1_seq = b1.position.last_seq;
    match &items[..] {
        [Ok((s1, e1)), Ok((s2, e2)), Err(Error::CorruptEvent { seq, .. }), Ok((s4, e4))] => {
            assert_eq!((*s1, e1), (a1.position.last_seq, &a1.events[0].1));
            assert_eq!((*s2, e2), (b1_seq, &b1.events[0].1));
            assert_eq!(*seq, garbage_seq);
            assert_eq!((*s4, e4), (a2.position.last_seq, &a2.events[0].1));
        }
        other => bail!("unexpected items {other:?}"),
    }

    // From a sequence, then live: an event appended after following started arrives too.
    let mut live = Box::pin(store.follow(b1_seq));
    let first = live.next().await.context("stream ended")??;
    assert_eq!(first.0, b1_seq);
    assert!(matches!(live.next().await, Some(Err(Error::CorruptEvent { .. }))));
    assert_eq!(live.next().await.context("stream ended")??.0, a2.position.last_seq);
    let b2 = store.append(tenant, b, b1.position, vec![pending("DeviceRenamed", 4)]).await?;
    let next = tokio::time::timeout(Duration::from_secs(5), live.next()).await?.context("stream ended")??;
    assert_eq!(next, (b2.position.last_seq, b2.events[0].1.clone()));
    Ok(())
}

#[tokio::test]
async fn loading_an_entity_with_a_corrupt_event_fails_with_its_sequence() -> Result<()> {
    let nats = NatsServer::start().await;
    let subjects = Subjects::default();
    let store = store(&nats).await?;
    let (tenant, entity) = (Uuid::now_v7(), device());
    let created = store.append(tenant, entity, EntityPosition::NEW, vec![pending("DeviceCreated", 1)]).await?;
    let js = async_nats::jetstream::new(nats.client().await);
    let seq = js.publish(subjects.entity(tenant, entity.entity_type, entity.id), "{}".into()).await?.await?.sequence;
    assert!(seq > created.position.last_seq);

    let loaded = store.load(tenant, entity).await;
    assert!(matches!(loaded, Err(Error::CorruptEvent { seq: s, .. }) if s == seq), "{loaded:?}");
    Ok(())
}

#[tokio::test]
async fn setting_up_the_streams_is_idempotent_and_safe_concurrently() -> Result<()> {
    let nats = NatsServer::start().await;
    let client = nats.client().await;
    let subjects = Subjects::new("it.setup");

    let concurrent =
        futures::future::join_all((0..4).map(|_| EventStore::connect(client.clone(), subjects.clone()))).await;
    for result in concurrent {
        result?;
    }
    let store = EventStore::connect(client.clone(), subjects.clone()).await?;
    let (tenant, entity) = (Uuid::now_v7(), device());
    let appended = store.append(tenant, entity, EntityPosition::NEW, vec![pending("DeviceCreated", 1)]).await?;

    // Reconnecting with other options updates the streams and keeps the events.
    let options = StreamOptions { duplicate_window: Duration::from_secs(60), ..StreamOptions::default() };
    let store = EventStore::connect_with(client.clone(), subjects.clone(), &options).await?;
    let js = async_nats::jetstream::new(client);
    let mut telemetry = js.get_stream(subjects.telemetry_stream()).await?;
    let config = telemetry.info().await?.config.clone();
    assert_eq!(config.duplicate_window, Duration::from_secs(60));
    // No limit may drop telemetry the lake has not committed: it is trimmed by the lake only.
    assert_eq!((config.max_age, config.max_bytes, config.max_messages), (Duration::ZERO, -1, -1));
    let mut events = js.get_stream(subjects.events_stream()).await?;
    let info = events.info().await?;
    assert_eq!(info.config.subjects, vec![subjects.all_events()]);
    assert_eq!(info.config.duplicate_window, Duration::from_secs(60));
    assert_eq!(info.config.max_age, Duration::ZERO);

    let (loaded, _) = store.load(tenant, entity).await?;
    assert_eq!(loaded, appended.events);
    Ok(())
}
