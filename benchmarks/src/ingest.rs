//! Suite `ingest`: telemetry points per second end to end through the MQTT transport (many
//! devices, QoS 1, batched payloads, each PUBACK sent after JetStream acknowledged the
//! message), next to raw JetStream publishes of the same stored bytes on the same server in the
//! same run; then connections held and the server's resident memory with many devices connected.
//!
//! The platform and its MQTT transport run in this process; the connection test's clients run in
//! a child process (`thinglake-bench hold-connections`), so the RSS read from /proc is the
//! server's alone.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde_json::{Value, json};
use thinglake_domain::telemetry::{TelemetryData, TelemetryMessage, parse_telemetry};
use thinglake_domain::user::Authority;
use thinglake_domain::{Actor, CustomerId, EntityType, TenantId, UserId};
use thinglake_infra::auth::{JwtKeys, TokenLifetimes};
use thinglake_infra::claims::Claims;
use thinglake_infra::event_store::EventStore;
use thinglake_infra::subjects::Subjects;
use thinglake_mqtt::{MqttConfig, MqttServer};
use thinglake_platform::devices::DeviceInput;
use thinglake_platform::{Platform, PlatformConfig, Principal};
use thinglake_projections::EntityView;
use thinglake_test_support::NatsServer;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::report::emit;

#[derive(Debug, clap::Args)]
pub(crate) struct Options {
    /// Devices publishing at once over MQTT.
    #[arg(long, default_value_t = 100)]
    devices: usize,
    /// QoS 1 publishes per device.
    #[arg(long, default_value_t = 200)]
    publishes: usize,
    /// Telemetry points per publish (one `{"ts", "values"}` object).
    #[arg(long, default_value_t = 50)]
    points: usize,
    /// Raw JetStream publishes in flight at once for the baseline.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Devices connected at once for the connection test (0 skips it).
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
}

/// Options of the child process that holds the test connections.
#[derive(Debug, clap::Args)]
pub(crate) struct HoldOptions {
    #[arg(long)]
    addr: SocketAddr,
    #[arg(long)]
    token_prefix: String,
    #[arg(long)]
    count: usize,
}

fn payload(points: usize, ts: i64) -> Bytes {
    let values: serde_json::Map<String, Value> = (0..points).map(|k| (format!("key{k}"), json!(20.0 + k as f64 / 8.0))).collect();
    Bytes::from(json!({"ts": ts, "values": values}).to_string())
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

pub(crate) async fn run(o: Options) -> anyhow::Result<()> {
    let nats = NatsServer::start().await;
    let client = nats.client().await;
    let subjects = Subjects::default();
    let store = EventStore::connect(client.clone(), subjects.clone()).await?;
    let claims = Claims::open(store.jetstream(), &subjects).await?;
    let platform = Platform::new(
        store.clone(),
        claims,
        EntityView::new(),
        JwtKeys::new(b"benchmark-secret-benchmark-secret-benchmark-secret-benchmark-sec", TokenLifetimes::default()),
        PlatformConfig::default(),
    );
    let tenant = TenantId(Uuid::now_v7());
    let admin = Principal {
        user_id: UserId(Uuid::now_v7()),
        email: "bench@thinglake.local".into(),
        authority: Authority::TenantAdmin,
        tenant_id: tenant,
        customer_id: CustomerId::NULL,
    };
    platform.ensure_default_profiles(tenant, &Actor::system()).await?;
    let devices = o.devices.max(o.connections);
    let start = Instant::now();
    let mut created = FuturesUnordered::new();
    let mut ids = Vec::with_capacity(devices);
    for i in 0..devices {
        let (platform, admin) = (platform.clone(), admin.clone());
        created.push(async move {
            let input = DeviceInput { name: format!("bench-{i}"), ..DeviceInput::default() };
            platform.save_device(&admin, input, Some(format!("bench-token-{i}"))).await.map(|v| v.device.id)
        });
        if created.len() >= 64
            && let Some(id) = created.next().await
        {
            ids.push(id?);
        }
    }
    while let Some(id) = created.next().await {
        ids.push(id?);
    }
    eprintln!("ingest: {devices} devices created in {:.1} s", start.elapsed().as_secs_f64());

    // Baseline: the bytes the transport stores for one publish, published raw.
    let sample = payload(o.points, 1_700_000_000_000);
    let batches = parse_telemetry(&serde_json::from_slice(&sample)?, 0).map_err(|e| anyhow::anyhow!("{e}"))?;
    let message = TelemetryMessage {
        message_id: Uuid::now_v7(),
        schema_version: TelemetryMessage::SCHEMA_VERSION,
        tenant_id: tenant.0,
        entity_type: EntityType::Device,
        entity_id: ids[0].0,
        received_at: 0,
        actor: Actor::device(ids[0].0),
        data: TelemetryData::Timeseries { batches },
    };
    let stored = Bytes::from(serde_json::to_vec(&message)?);
    let raw_messages = o.devices * o.publishes;
    let js = store.jetstream().clone();
    let start = Instant::now();
    let mut inflight = FuturesUnordered::new();
    for i in 0..raw_messages {
        let subject = subjects.telemetry(tenant.0, ids[i % o.devices].0);
        let ack = js.publish(subject, stored.clone()).await?;
        inflight.push(ack.into_future());
        if inflight.len() >= o.concurrency {
            inflight.next().await.transpose()?;
        }
    }
    while let Some(r) = inflight.next().await {
        r?;
    }
    let raw_points = (raw_messages * o.points) as f64 / start.elapsed().as_secs_f64();
    emit("raw_jetstream_points", raw_points, "points/s", None);
    emit("stored_message_bytes", stored.len() as f64, "bytes", None);

    // The MQTT transport in process, on a free port of 127.0.0.1.
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let config = MqttConfig { max_connections: devices + 100, ..MqttConfig::default() };
    let server = MqttServer::bind("127.0.0.1:0".parse()?, platform.clone(), config, shutdown.clone()).await?;
    let addr = server.local_addr();
    server.spawn(&tracker);

    if o.connections > 0 {
        // Measured first, before the throughput run grows the heap.
        let me = std::process::id();
        let before = rss_bytes(me);
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .args(["hold-connections", "--addr", &addr.to_string(), "--token-prefix", "bench-token-", "--count"])
            .arg(o.connections.to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("child stdout"))?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let start = Instant::now();
        let held: usize = match tokio::time::timeout(Duration::from_secs(300), lines.next_line()).await {
            Ok(Ok(Some(line))) => line.trim().parse()?,
            other => anyhow::bail!("connection holder failed: {other:?}"),
        };
        let elapsed = start.elapsed().as_secs_f64();
        // Let the sessions settle (connect events, buffers) before reading memory.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = rss_bytes(me);
        emit("connections_held", held as f64, "connections", Some(o.connections as f64));
        emit("connect_rate", held as f64 / elapsed, "connections/s", None);
        emit("server_rss_connected", after as f64 / 1_048_576.0, "MiB", Some(before as f64 / 1_048_576.0));
        emit("server_rss_per_connection", after.saturating_sub(before) as f64 / held.max(1) as f64, "bytes", None);
        drop(child.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    }
    let start = Instant::now();
    let mut clients = JoinSet::new();
    for d in 0..o.devices {
        let publishes = o.publishes;
        let points = o.points;
        clients.spawn(async move { publish_device(addr, d, publishes, points).await });
    }
    let mut acked = 0usize;
    while let Some(done) = clients.join_next().await {
        acked += done??;
    }
    let mqtt_points = (acked * o.points) as f64 / start.elapsed().as_secs_f64();
    emit("mqtt_qos1_points", mqtt_points, "points/s", Some(raw_points));
    emit("mqtt_qos1_publishes", acked as f64 / start.elapsed().as_secs_f64(), "msg/s", None);

    shutdown.cancel();
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(30), tracker.wait()).await;
    Ok(())
}

/// One device over MQTT 3.1.1 (rumqttc, its default in-flight window): `publishes` QoS 1
/// publishes; returns how many were acknowledged.
async fn publish_device(addr: SocketAddr, device: usize, publishes: usize, points: usize) -> anyhow::Result<usize> {
    let mut options = rumqttc::MqttOptions::new(format!("bench-{device}"), addr.ip().to_string(), addr.port());
    options.set_credentials(format!("bench-token-{device}"), "");
    options.set_keep_alive(Duration::from_secs(60));
    options.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut events) = rumqttc::AsyncClient::new(options, 256);
    let producer = async move {
        // One body per device, built before the clock matters: the clients share the cores.
        let body = payload(points, 1_700_000_000_000 + device as i64);
        for _ in 0..publishes {
            client.publish_bytes("v1/devices/me/telemetry", rumqttc::QoS::AtLeastOnce, false, body.clone()).await?;
        }
        anyhow::Ok(client)
    };
    let consumer = async {
        let mut acked = 0;
        while acked < publishes {
            if let rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)) = events.poll().await? {
                acked += 1;
            }
        }
        anyhow::Ok(acked)
    };
    let (client, acked) = tokio::try_join!(producer, consumer)?;
    let _ = client.try_disconnect();
    Ok(acked)
}

/// Child process: opens `count` MQTT connections with raw sockets (a CONNECT each, waiting for
/// its CONNACK), prints how many succeeded, and holds them until stdin closes.
pub(crate) async fn hold(o: HoldOptions) -> anyhow::Result<()> {
    let mut held = Vec::with_capacity(o.count);
    let mut pending = FuturesUnordered::new();
    for i in 0..o.count {
        let token = format!("{}{i}", o.token_prefix);
        pending.push(async move {
            let mut stream = tokio::net::TcpStream::connect(o.addr).await?;
            let mut connect = rumqttc::mqttbytes::v4::Connect::new(format!("hold-{i}"));
            connect.keep_alive = 0;
            connect.set_login(token, "");
            let mut buf = BytesMut::new();
            rumqttc::mqttbytes::v4::Packet::Connect(connect).write(&mut buf, usize::MAX).map_err(|e| anyhow::anyhow!("{e}"))?;
            stream.write_all(&buf).await?;
            let mut ack = [0u8; 4];
            stream.read_exact(&mut ack).await?;
            anyhow::ensure!(ack[3] == 0, "connection {i} refused with code {}", ack[3]);
            anyhow::Ok(stream)
        });
        if pending.len() >= 256
            && let Some(r) = pending.next().await
        {
            held.extend(r.ok());
        }
    }
    while let Some(r) = pending.next().await {
        held.extend(r.ok());
    }
    println!("{}", held.len());
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    drop(held);
    Ok(())
}
