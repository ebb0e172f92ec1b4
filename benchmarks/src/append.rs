//! Suite `append`: commands per second through the write path (read model → decide → claims →
//! JetStream append with optimistic concurrency → read model), on one entity and on many, next
//! to raw JetStream publishes on the same server with the same message size.
//!
//! Baselines: `raw_publish_async` (many publishes in flight, acks awaited) for the many-entity
//! figures, `raw_publish_sequential` (one publish at a time, each ack awaited) for the
//! one-entity figure, whose commands are serialised by design (each expects the previous
//! version).

use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use thinglake_domain::{Actor, DeviceId};
use thinglake_platform::devices::DeviceInput;
use thinglake_test_support::NatsServer;
use uuid::Uuid;

use crate::report::emit;

#[derive(Debug, clap::Args)]
pub(crate) struct Options {
    /// Devices created (claims + append) and then updated concurrently.
    #[arg(long, default_value_t = 2000)]
    entities: usize,
    /// Sequential updates of one device.
    #[arg(long, default_value_t = 2000)]
    one_entity_commands: usize,
    /// Raw publishes for the baselines.
    #[arg(long, default_value_t = 20000)]
    raw_messages: usize,
    /// Commands or publishes in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
}

pub(crate) async fn run(o: Options) -> anyhow::Result<()> {
    let nats = NatsServer::start().await;
    let (platform, store) = crate::setup::platform(&nats).await?;
    let admin = crate::setup::tenant_admin(&platform).await?;
    let tenant = admin.tenant_id;
    platform.ensure_default_profiles(tenant, &Actor::system()).await?;

    // A typical event message, to size the raw baseline alike.
    let probe = platform.save_device(&admin, device("probe", None), None).await?;
    let (events, _) = store.load(tenant.0, probe.device.id.entity_id()).await?;
    let size = serde_json::to_vec(&events[0].1)?.len();
    let payload = Bytes::from(vec![b'x'; size]);
    let js = store.jetstream().clone();

    // Baseline: raw JetStream publishes, many in flight.
    let raw_subject = |i: usize| format!("thinglake.evt.{}.device.{}", Uuid::nil(), Uuid::from_u128(i as u128 % 1000));
    let start = Instant::now();
    let mut inflight = FuturesUnordered::new();
    for i in 0..o.raw_messages {
        let ack = js.publish(raw_subject(i), payload.clone()).await?;
        inflight.push(ack.into_future());
        if inflight.len() >= o.concurrency {
            inflight.next().await.transpose()?;
        }
    }
    while let Some(r) = inflight.next().await {
        r?;
    }
    let raw_async = o.raw_messages as f64 / start.elapsed().as_secs_f64();
    emit("raw_publish_async", raw_async, "msg/s", None);

    // Baseline: raw JetStream publishes, one at a time.
    let n_seq = o.one_entity_commands;
    let start = Instant::now();
    for i in 0..n_seq {
        js.publish(raw_subject(i), payload.clone()).await?.await?;
    }
    let raw_seq = n_seq as f64 / start.elapsed().as_secs_f64();
    emit("raw_publish_sequential", raw_seq, "msg/s", None);

    // Creates: two claims (name, token) + one conditional append each.
    let start = Instant::now();
    let ids = run_concurrently(o.entities, o.concurrency, |i| {
        let platform = platform.clone();
        let admin = admin.clone();
        async move { platform.save_device(&admin, device(&format!("dev-{i}"), None), None).await.map(|v| v.device.id) }
    })
    .await?;
    let create_rate = o.entities as f64 / start.elapsed().as_secs_f64();
    emit("create_device_many_entities", create_rate, "commands/s", Some(raw_async));

    // Updates of many entities: one conditional append each.
    let start = Instant::now();
    run_concurrently(ids.len(), o.concurrency, |i| {
        let platform = platform.clone();
        let admin = admin.clone();
        let id = ids[i];
        async move {
            let mut input = device(&format!("dev-{i}"), Some(id));
            input.label = Some("updated".into());
            platform.save_device(&admin, input, None).await.map(|_| ())
        }
    })
    .await?;
    let update_many = ids.len() as f64 / start.elapsed().as_secs_f64();
    emit("update_device_many_entities", update_many, "commands/s", Some(raw_async));

    // Sequential updates of one entity: each expects the previous version.
    let id = ids[0];
    let start = Instant::now();
    for i in 0..o.one_entity_commands {
        let mut input = device("dev-0", Some(id));
        input.label = Some(format!("label {i}"));
        platform.save_device(&admin, input, None).await?;
    }
    let update_one = o.one_entity_commands as f64 / start.elapsed().as_secs_f64();
    emit("update_device_one_entity", update_one, "commands/s", Some(raw_seq));

    // Replaying one entity's history (the auditor's view and the conflict path).
    let start = Instant::now();
    let (events, _) = store.load(tenant.0, id.entity_id()).await?;
    let load_rate = events.len() as f64 / start.elapsed().as_secs_f64().max(1e-6);
    emit("load_one_entity_events", load_rate, "events/s", None);
    emit("event_message_size", size as f64, "bytes", None);
    Ok(())
}

fn device(name: &str, id: Option<DeviceId>) -> DeviceInput {
    DeviceInput { id, name: name.to_string(), device_type: Some("default".into()), ..DeviceInput::default() }
}

/// Runs `n` tasks, at most `concurrency` at once, collecting results in order.
async fn run_concurrently<T, F, Fut>(n: usize, concurrency: usize, make: F) -> anyhow::Result<Vec<T>>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = thinglake_platform::Result<T>>,
{
    let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
    let mut inflight = FuturesUnordered::new();
    for i in 0..n {
        let fut = make(i);
        inflight.push(Box::pin(async move { (i, fut.await) }));
        if inflight.len() >= concurrency
            && let Some((j, r)) = inflight.next().await {
                out[j] = Some(r?);
            }
    }
    while let Some((j, r)) = inflight.next().await {
        out[j] = Some(r?);
    }
    Ok(out.into_iter().flatten().collect())
}
