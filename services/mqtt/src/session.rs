//! One device connection: CONNECT and the access-token check, then a loop that reads packets,
//! runs each publish as a future that resolves after JetStream acknowledged it (up to
//! `max_inflight` at once, acknowledged in the order received), pushes shared-attribute updates
//! the device subscribed to, and enforces the keep-alive.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use futures::{FutureExt as _, SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use thinglake_domain::device::Device;
use thinglake_platform::Platform;
use thinglake_projections::SharedUpdate;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio::time::Instant;
use tokio_stream::StreamMap;
use tokio_stream::wrappers::BroadcastStream;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::codec::{AckReason, CloseReason, ConnectRefusal, ConnectRequest, Inbound, MqttCodec, Outbound, Version};
use crate::config::MqttConfig;
use crate::error::{Error, Result};
use crate::gateway::Gateway;
use crate::step::Step;
use crate::topics::{self, Route, Subscription};
use crate::{device_api, rpc};

/// What a connection needs from the server: shared, cheap to clone.
#[derive(Clone)]
pub(crate) struct Context {
    pub(crate) platform: Platform,
    pub(crate) config: Arc<MqttConfig>,
    pub(crate) shutdown: CancellationToken,
}

/// How a refused publish is answered: MQTT 5 acknowledges QoS 1 with a reason code; MQTT 3.1.1
/// has none and closes the connection. This is the one place platform errors become MQTT codes.
fn refusal(version: Version, qos: u8, pkid: u16, error: &thinglake_platform::Error) -> Step {
    use thinglake_platform::Error as E;
    let (ack, close) = match error {
        E::BadPayload { .. } | E::Rejected(_) => (AckReason::PayloadFormatInvalid, CloseReason::PayloadFormatInvalid),
        E::PayloadTooLarge { .. } => return Step::close(CloseReason::PacketTooLarge),
        E::Forbidden | E::Unauthorized { .. } | E::NotFound { .. } => (AckReason::NotAuthorized, CloseReason::NotAuthorized),
        // ThingsBoard's codes: a PUBACK cannot carry 0x96, a QoS 0 publish has no PUBACK.
        E::RateLimited { .. } if (version, qos) == (Version::V5, 0) => return Step::close(CloseReason::MessageRateTooHigh),
        E::RateLimited { .. } => (AckReason::QuotaExceeded, CloseReason::MessageRateTooHigh),
        E::EntityLimit { .. } => (AckReason::QuotaExceeded, CloseReason::QuotaExceeded),
        _ => (AckReason::UnspecifiedError, CloseReason::UnspecifiedError),
    };
    match (version, qos) {
        (Version::V5, 1) => Step::packets(vec![Outbound::PubAck { pkid, reason: ack }]),
        // QoS 0 under MQTT 5 has no acknowledgement to carry the reason: dropped (logged).
        (Version::V5, _) => Step::default(),
        (Version::V311, _) => Step::close(close),
    }
}

/// Serves one accepted socket until the client leaves, breaks the protocol, or the server stops.
pub(crate) async fn serve(stream: TcpStream, context: Context) {
    let peer = stream.peer_addr().ok();
    let result = match stream.set_nodelay(true) {
        Ok(()) => {
            let (read, write) = stream.into_split();
            run(read, write, context).await
        }
        Err(e) => Err(e.into()),
    };
    if let Err(e) = result {
        debug!(?peer, error = %e, "MQTT connection closed");
    }
}

/// Serves one accepted socket of the TLS listener: the handshake (bounded by the CONNECT
/// timeout), then the same session as over plain TCP.
pub(crate) async fn serve_tls(stream: TcpStream, acceptor: TlsAcceptor, context: Context) {
    let peer = stream.peer_addr().ok();
    if let Err(e) = stream.set_nodelay(true) {
        debug!(?peer, error = %e, "MQTT TLS connection closed");
        return;
    }
    let handshake = tokio::select! {
        _ = context.shutdown.cancelled() => return,
        handshake = tokio::time::timeout(context.config.connect_timeout, acceptor.accept(stream)) => handshake,
    };
    let stream = match handshake {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            debug!(?peer, error = %e, "MQTT TLS handshake failed");
            return;
        }
        Err(_) => {
            debug!(?peer, "MQTT TLS handshake timed out");
            return;
        }
    };
    let (read, write) = tokio::io::split(stream);
    if let Err(e) = run(read, write, context).await {
        debug!(?peer, error = %e, "MQTT TLS connection closed");
    }
}

async fn run<R, W>(read: R, write: W, context: Context) -> Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let config = context.config.clone();
    let mut reader = FramedRead::new(read, MqttCodec::new(config.max_packet_size()));
    let first = tokio::select! {
        _ = context.shutdown.cancelled() => return Ok(()),
        first = tokio::time::timeout(config.connect_timeout, reader.next()) => first,
    };
    let connect = match first {
        Ok(Some(Ok(Inbound::Connect(c)))) => c,
        Ok(Some(Err(e))) => return Err(e),
        Ok(Some(Ok(_))) => return Err(Error::Protocol { reason: "the first packet must be CONNECT" }),
        Ok(None) | Err(_) => return Ok(()),
    };
    let mut writer = FramedWrite::new(write, MqttCodec::with_version(connect.version, usize::MAX));
    let device = match authenticate(&context.platform, &connect) {
        Ok(device) => device,
        Err(refusal) => {
            debug!(version = ?connect.version, ?refusal, "MQTT CONNECT refused");
            writer.send(connack(&config, Some(refusal), None)).await?;
            return Ok(());
        }
    };
    let assigned = (connect.version == Version::V5 && connect.client_id.is_empty()).then(|| uuid::Uuid::now_v7().to_string());
    writer.send(connack(&config, None, assigned)).await?;
    debug!(device = %device.id.0, version = ?connect.version, "MQTT device connected");

    let device = Arc::new(device);
    let mut session = Session::new(context.clone(), device.clone(), connect.version, connect.keep_alive);
    let platform = context.platform.clone();
    let connected = device.clone();
    session.defer(async move {
        if let Err(e) = platform.device_connected(&connected).await {
            warn!(device = %connected.id.0, error = %e, "recording a device connect failed");
        }
        Step::default()
    });
    let result = session.run(&mut reader, &mut writer).await;
    session.disconnected().await;
    result
}

fn authenticate(platform: &Platform, connect: &ConnectRequest) -> Result<Device, ConnectRefusal> {
    if connect.version == Version::V311 && connect.client_id.is_empty() && !connect.clean_session {
        return Err(ConnectRefusal::BadClientId);
    }
    let token = connect.username.as_deref().ok_or(ConnectRefusal::BadCredentials)?;
    platform.device_by_token(token).ok_or(ConnectRefusal::BadCredentials)
}

fn connack(config: &MqttConfig, refusal: Option<ConnectRefusal>, assigned_client_id: Option<String>) -> Outbound {
    Outbound::ConnAck {
        refusal,
        assigned_client_id,
        max_packet_size: u32::try_from(config.max_packet_size()).unwrap_or(u32::MAX),
        receive_max: config.max_inflight,
    }
}

/// A connected device's state.
struct Session {
    context: Context,
    device: Arc<Device>,
    version: Version,
    keep_alive: Option<Duration>,
    subscriptions: HashSet<Subscription>,
    /// The device's own shared-attribute updates, once it subscribed to them.
    shared: Option<BroadcastStream<SharedUpdate>>,
    /// The gateway's side, when the device is a gateway.
    gateway: Option<Gateway>,
    /// Sub-devices' shared-attribute updates, by sub-device name.
    sub_device_updates: StreamMap<String, BroadcastStream<SharedUpdate>>,
    inflight: FuturesOrdered<BoxFuture<'static, Step>>,
    /// Moves when a tenant, user or device changes: the session then rechecks its device.
    access: watch::Receiver<u64>,
}

impl Session {
    fn new(context: Context, device: Arc<Device>, version: Version, keep_alive: u16) -> Self {
        let gateway = Gateway::is_gateway(&device).then(|| Gateway::new(context.platform.clone(), device.clone()));
        Session {
            device,
            version,
            // MQTT: the server closes after one and a half keep-alive periods without a packet.
            keep_alive: (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 1500)),
            subscriptions: HashSet::new(),
            shared: None,
            gateway,
            sub_device_updates: StreamMap::new(),
            inflight: FuturesOrdered::new(),
            access: context.platform.view().access_changes(),
            context,
        }
    }

    /// Queues work whose answer is sent in order with the acknowledgements.
    fn defer(&mut self, work: impl Future<Output = Step> + Send + 'static) {
        self.inflight.push_back(work.boxed());
    }

    async fn run<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(&mut self, reader: &mut FramedRead<R, MqttCodec>, writer: &mut FramedWrite<W, MqttCodec>) -> Result<()> {
        let max_inflight = usize::from(self.context.config.max_inflight.max(1));
        let shutdown = self.context.shutdown.clone();
        let mut deadline = self.keep_alive.map(|k| Instant::now() + k);
        // A device deleted or given a new token (or its tenant deleted) while it connected.
        let mut revoked = !self.context.platform.device_session_holds(&self.device);
        loop {
            if revoked {
                // MQTT 5: DISCONNECT 0x87 (not authorized); 3.1.1 has no reason, the socket closes.
                return self.close(CloseReason::NotAuthorized, writer).await;
            }
            let can_read = self.inflight.len() < max_inflight;
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return self.close(CloseReason::ServerShuttingDown, writer).await,
                Ok(()) = self.access.changed() => {
                    revoked = !self.context.platform.device_session_holds(&self.device);
                    continue;
                }
                Some(step) = self.inflight.next(), if !self.inflight.is_empty() => {
                    if let Some(reason) = self.apply(step, writer).await? {
                        return self.close(reason, writer).await;
                    }
                }
                Some(update) = next_update(&mut self.shared), if self.shared.is_some() => {
                    if let Ok(update) = update {
                        writer.feed(Outbound::Publish { topic: topics::ATTRIBUTES.into(), payload: update_json(&update) }).await?;
                    }
                }
                Some((name, update)) = self.sub_device_updates.next(), if !self.sub_device_updates.is_empty() => {
                    if let Ok(update) = update {
                        let payload = json!({"device": name, "data": update_value(&update)});
                        writer.feed(Outbound::Publish { topic: topics::GATEWAY_ATTRIBUTES.into(), payload: Bytes::from(payload.to_string()) }).await?;
                    }
                }
                packet = read_until(reader, deadline), if can_read => {
                    let packet = match packet {
                        Some(Some(Ok(p))) => p,
                        Some(Some(Err(Error::PacketTooLarge { .. }))) => return self.close(CloseReason::PacketTooLarge, writer).await,
                        Some(Some(Err(e))) => {
                            let _ = self.close(CloseReason::ProtocolError, writer).await;
                            return Err(e);
                        }
                        Some(None) => return self.close(CloseReason::ClientLeft, writer).await,
                        None => return self.close(CloseReason::KeepAliveTimeout, writer).await,
                    };
                    deadline = self.keep_alive.map(|k| Instant::now() + k);
                    if let Some(reason) = self.handle(packet, writer).await? {
                        return self.close(reason, writer).await;
                    }
                }
            }
            // Acknowledge everything already done in one write.
            while let Some(Some(step)) = self.inflight.next().now_or_never() {
                if let Some(reason) = self.apply(step, writer).await? {
                    return self.close(reason, writer).await;
                }
            }
            writer.flush().await?;
        }
    }

    /// Writes a finished step's packets and applies its effects; returns a reason to close.
    async fn apply<W: AsyncWrite + Unpin>(&mut self, step: Step, writer: &mut FramedWrite<W, MqttCodec>) -> Result<Option<CloseReason>> {
        for packet in step.packets {
            writer.feed(packet).await?;
        }
        for (name, device) in step.watch {
            if self.subscriptions.contains(&Subscription::GatewayAttributes) {
                self.sub_device_updates.insert(name, BroadcastStream::new(self.context.platform.subscribe_shared_updates(&device)));
            }
        }
        for name in step.unwatch {
            self.sub_device_updates.remove(&name);
        }
        Ok(step.close)
    }

    /// Closes the connection after finishing what was received: every publish still in flight is
    /// stored (or refused) and, while the client listens, acknowledged. MQTT 5 clients get a
    /// DISCONNECT with the reason.
    async fn close<W: AsyncWrite + Unpin>(&mut self, reason: CloseReason, writer: &mut FramedWrite<W, MqttCodec>) -> Result<()> {
        let mut writable = true;
        while let Some(step) = self.inflight.next().await {
            if writable && self.apply(step, writer).await.is_err() {
                writable = false;
            }
        }
        if writable {
            if self.version == Version::V5 && reason != CloseReason::ClientLeft {
                writer.send(Outbound::Disconnect(reason)).await?;
            } else {
                writer.flush().await?;
            }
        }
        debug!(device = %self.device.id.0, ?reason, "MQTT connection closed");
        Ok(())
    }

    /// Handles one packet; returns a reason to close the connection.
    async fn handle<W: AsyncWrite + Unpin>(&mut self, packet: Inbound, writer: &mut FramedWrite<W, MqttCodec>) -> Result<Option<CloseReason>> {
        match packet {
            Inbound::Connect(_) => return Ok(Some(CloseReason::ProtocolError)),
            Inbound::Publish { topic, qos, pkid, payload } => return Ok(self.publish(&topic, qos, pkid, payload)),
            Inbound::Subscribe { pkid, filters } => {
                let granted = filters.iter().map(|(filter, qos)| self.subscribe(filter).then_some((*qos).min(1))).collect();
                writer.feed(Outbound::SubAck { pkid, granted }).await?;
            }
            Inbound::Unsubscribe { pkid, count } => writer.feed(Outbound::UnsubAck { pkid, count }).await?,
            Inbound::PingReq => {
                let (platform, device) = (self.context.platform.clone(), self.device.clone());
                self.defer(async move {
                    if let Err(e) = platform.device_activity(&device).await {
                        debug!(device = %device.id.0, error = %e, "recording device activity failed");
                    }
                    Step::packets(vec![Outbound::PingResp])
                });
            }
            Inbound::Disconnect => return Ok(Some(CloseReason::ClientLeft)),
            Inbound::Ack => {}
        }
        Ok(None)
    }

    fn subscribe(&mut self, filter: &str) -> bool {
        let Some(subscription) = Subscription::of(filter) else { return false };
        if subscription.is_gateway() && self.gateway.is_none() {
            return false;
        }
        if subscription == Subscription::SharedAttributes && self.shared.is_none() {
            self.shared = Some(BroadcastStream::new(self.context.platform.subscribe_shared_updates(&self.device)));
        }
        if subscription == Subscription::GatewayAttributes
            && let Some(gateway) = &self.gateway
        {
            for (name, device) in gateway.connected() {
                if !self.sub_device_updates.contains_key(&name) {
                    self.sub_device_updates.insert(name, BroadcastStream::new(self.context.platform.subscribe_shared_updates(&device)));
                }
            }
        }
        self.subscriptions.insert(subscription);
        true
    }

    /// Routes a publish; its answer is queued. Returns a reason to close at once.
    fn publish(&mut self, topic: &str, qos: u8, pkid: u16, payload: Bytes) -> Option<CloseReason> {
        let version = self.version;
        if qos > 1 {
            return Some(CloseReason::QoSNotSupported);
        }
        if payload.len() > self.context.config.max_payload_size {
            return Some(CloseReason::PacketTooLarge);
        }
        let reject = |reason: AckReason, close: CloseReason| match (version, qos) {
            (Version::V5, 1) => {
                Some(Step::packets(vec![Outbound::PubAck { pkid, reason }]))
            }
            (Version::V5, _) => None,
            (Version::V311, _) => Some(Step::close(close)),
        };
        let route = match Route::of(topic) {
            Some(Route::Gateway(_)) if self.gateway.is_none() => {
                debug!(topic, "gateway topic from a device that is not a gateway");
                let step = reject(AckReason::NotAuthorized, CloseReason::NotAuthorized)?;
                return self.queue_ready(step);
            }
            Some(route) => route,
            None => {
                debug!(topic, "publish to an unknown topic");
                let step = reject(AckReason::TopicNameInvalid, CloseReason::TopicNameInvalid)?;
                return self.queue_ready(step);
            }
        };
        let (platform, device, config) = (self.context.platform.clone(), self.device.clone(), self.context.config.clone());
        let gateway = self.gateway.clone();
        let work = async move {
            let handled = match route {
                Route::Gateway(route) => match gateway {
                    Some(gateway) => gateway.handle(route, &payload).await,
                    None => Ok(Step::default()),
                },
                Route::RpcRequest(id) => platform
                    .admit_device_message(&device, 0)
                    .and_then(|()| rpc::client_request(&config, &platform.config().quotas, device.as_ref(), gateway.is_some(), &id, &payload)),
                route => device_api::handle(&platform, &device, route, &payload).await,
            };
            match handled {
                Ok(mut step) => {
                    // The acknowledgement first, then any answer (attribute response, RPC reply).
                    if qos == 1 {
                        step.packets.insert(0, Outbound::PubAck { pkid, reason: AckReason::Success });
                    }
                    step
                }
                Err(e) => {
                    debug!(device = %device.id.0, error = %e, "publish refused");
                    refusal(version, qos, pkid, &e)
                }
            }
        };
        self.inflight.push_back(work.boxed());
        None
    }

    /// Queues an answer that needs no work, behind the publishes received before it.
    fn queue_ready(&mut self, step: Step) -> Option<CloseReason> {
        self.inflight.push_back(futures::future::ready(step).boxed());
        None
    }

    /// Records the disconnect of the device (and of a gateway's connected sub-devices).
    async fn disconnected(&mut self) {
        let platform = &self.context.platform;
        if let Some(gateway) = &self.gateway {
            for (_, device) in gateway.connected() {
                let _ = tokio::time::timeout(Duration::from_secs(5), platform.device_disconnected(&device)).await;
            }
        }
        match tokio::time::timeout(Duration::from_secs(5), platform.device_disconnected(&self.device)).await {
            Ok(Err(e)) => warn!(device = %self.device.id.0, error = %e, "recording a device disconnect failed"),
            Err(_) => warn!(device = %self.device.id.0, "recording a device disconnect timed out"),
            Ok(Ok(())) => {}
        }
        debug!(device = %self.device.id.0, "MQTT device disconnected");
    }
}

async fn read_until<R: AsyncRead + Unpin>(reader: &mut FramedRead<R, MqttCodec>, deadline: Option<Instant>) -> Option<Option<Result<Inbound>>> {
    match deadline {
        Some(at) => tokio::time::timeout_at(at, reader.next()).await.ok(),
        None => Some(reader.next().await),
    }
}

async fn next_update(
    shared: &mut Option<BroadcastStream<SharedUpdate>>,
) -> Option<Result<SharedUpdate, tokio_stream::wrappers::errors::BroadcastStreamRecvError>> {
    match shared {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}

/// A shared-attribute change as ThingsBoard pushes it: `{"k": v}` or `{"deleted": [...]}`.
pub(crate) fn update_value(update: &SharedUpdate) -> Value {
    match update {
        SharedUpdate::Updated(values) => Value::Object(values.clone()),
        SharedUpdate::Deleted(keys) => json!({ "deleted": keys }),
    }
}

fn update_json(update: &SharedUpdate) -> Bytes {
    Bytes::from(update_value(update).to_string())
}
