//! NATS ingress: devices and services that speak NATS publish ThingsBoard payloads on
//! `<prefix>.ingress.<token>.telemetry` or `<prefix>.ingress.<token>.attributes` and get a reply
//! once the data is on the telemetry stream: `{"ok": true, "points": n}`, or
//! `{"error": "…", "status": 401|400|413|503}` (statuses as the HTTP device API answers them).
//!
//! Every node subscribes in one queue group, so each request is handled once; requests are
//! handled concurrently up to a bound (`WINDOW`). The requests already waiting in the
//! subscription when one arrives are taken with it, up to `BATCH`, and handled together in one
//! task (each still answered as soon as its own publish is acknowledged): under load a task per
//! batch, not per request, and their JetStream publishes leave on the connection together; batches
//! spread over the runtime's worker threads. A message without a reply subject is processed the
//! same way and answered with nothing.

use std::sync::Arc;

use async_nats::{Client, Message, Subscriber};
use futures::stream::FuturesUnordered;
use futures::{FutureExt as _, StreamExt as _};
use serde_json::json;
use thinglake_infra::subjects::{INGRESS_QUEUE, Subjects};
use thinglake_platform::{Error as PlatformError, Platform};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

/// Requests handled at once per node: publishes awaiting JetStream's acknowledgement, as many as
/// a few thousand devices keep in flight over MQTT.
const WINDOW: usize = 4096;

/// Requests taken from the subscription at once into one task, when that many are waiting.
const BATCH: usize = 64;

/// Subscribes to the ingress subjects (in the queue group); serve them with [`serve`].
pub async fn subscribe(client: &Client, subjects: &Subjects) -> Result<Subscriber, async_nats::SubscribeError> {
    let subject = subjects.all_ingress();
    let subscriber = client.queue_subscribe(subject.clone(), INGRESS_QUEUE.to_string()).await?;
    info!(%subject, queue = INGRESS_QUEUE, "NATS ingress listening");
    Ok(subscriber)
}

/// Serves ingress requests until `shutdown`.
pub async fn serve(
    mut subscriber: Subscriber,
    client: Client,
    subjects: Subjects,
    platform: Platform,
    shutdown: CancellationToken,
) {
    let prefix: Arc<str> = format!("{}.ingress.", subjects.prefix()).into();
    let permits = Arc::new(Semaphore::new(WINDOW));
    let requests = TaskTracker::new();
    loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => break,
            message = subscriber.next() => match message {
                Some(message) => message,
                None => break,
            },
        };
        let Ok(permit) = permits.clone().acquire_owned().await else { break };
        let mut batch = vec![(message, permit)];
        // What is waiting already, while the window has room; nothing is awaited here.
        while batch.len() < BATCH {
            let Ok(permit) = permits.clone().try_acquire_owned() else { break };
            let Some(Some(message)) = subscriber.next().now_or_never() else { break };
            batch.push((message, permit));
        }
        let (client, platform, prefix) = (client.clone(), platform.clone(), prefix.clone());
        requests.spawn(async move { handle_batch(&client, &platform, &prefix, batch).await });
    }
    requests.close();
    requests.wait().await;
    if let Err(e) = subscriber.unsubscribe().await {
        debug!(error = %e, "unsubscribing the NATS ingress");
    }
}

/// Handles a batch of requests concurrently; each frees its place in the window when answered.
async fn handle_batch(client: &Client, platform: &Platform, prefix: &str, batch: Vec<(Message, OwnedSemaphorePermit)>) {
    let mut running: FuturesUnordered<_> = batch
        .into_iter()
        .map(|(message, permit)| async move {
            handle(client, platform, prefix, message).await;
            drop(permit);
        })
        .collect();
    while running.next().await.is_some() {}
}

async fn handle(client: &Client, platform: &Platform, prefix: &str, message: Message) {
    let Message { subject, reply, payload, .. } = message;
    let result = ingest(platform, prefix, &subject, &payload).await;
    let Some(reply) = reply else { return };
    let answer = match result {
        // The same bytes as `json!({"ok": true, "points": n})`, without building a JSON tree.
        Ok(points) => format!(r#"{{"ok":true,"points":{points}}}"#),
        Err((status, error)) => json!({"error": error, "status": status}).to_string(),
    };
    if let Err(e) = client.publish(reply, answer.into()).await {
        warn!(error = %e, "cannot answer a NATS ingress request");
    }
}

/// Publishes one ingress message; an error is (status, message).
async fn ingest(platform: &Platform, prefix: &str, subject: &str, payload: &[u8]) -> Result<usize, (u16, String)> {
    let rest = subject.strip_prefix(prefix).unwrap_or_default();
    let Some((token, kind)) = rest.rsplit_once('.') else {
        return Err((400, format!("unknown ingress subject {subject}")));
    };
    let device = platform.device_by_token(token).ok_or((401, "unknown access token".to_string()))?;
    let published = match kind {
        "telemetry" => platform.publish_telemetry(&device, payload).await,
        "attributes" => platform.publish_client_attributes(&device, payload).await,
        other => return Err((400, format!("unknown ingress kind '{other}': use telemetry or attributes"))),
    };
    published.map_err(|e| status_of(&e))
}

/// The one mapping of platform errors to ingress statuses.
fn status_of(e: &PlatformError) -> (u16, String) {
    let status = match e {
        PlatformError::BadPayload { .. } | PlatformError::Rejected(_) => 400,
        PlatformError::PayloadTooLarge { .. } => 413,
        PlatformError::Unauthorized { .. } | PlatformError::TokenExpired => 401,
        PlatformError::Forbidden => 403,
        PlatformError::NotFound { .. } => 404,
        PlatformError::RateLimited { .. } => 429,
        PlatformError::EntityLimit { .. } => 403,
        PlatformError::Infra(infra) if infra.is_retryable() => 503,
        _ => 500,
    };
    if status >= 500 {
        error!(status, error = %e, "NATS ingress request failed");
    } else {
        debug!(status, error = %e, "NATS ingress request refused");
    }
    (status, e.to_string())
}
