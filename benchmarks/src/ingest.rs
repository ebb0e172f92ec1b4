//! Suite `ingest`: telemetry points per second end to end through the MQTT transport (many
//! devices, QoS 1, batched payloads, each PUBACK sent after JetStream acknowledged the
//! message), the NATS ingress and the device HTTP API with the same payload, next to raw
//! JetStream publishes of the same stored bytes on the same server in the same run; connections
//! held and the server's resident memory with many devices connected.
//!
//! The platform (its MQTT transport, NATS ingress, device HTTP API and latest-values follower)
//! runs in this process; every load generator — MQTT clients, NATS requesters, HTTP clients, the
//! raw JetStream publisher, the connection holder — runs in a child process
//! (`thinglake-bench hold-connections --mode …`), so the server's CPU time and RSS read from
//! /proc are its own, and the client's work is not done in the server's runtime.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use async_nats::jetstream::message::PublishMessage;
use futures::stream::FuturesUnordered;
use serde_json::{Value, json};
use thinglake_domain::telemetry::{TelemetryData, TelemetryMessage, parse_telemetry};
use thinglake_domain::{Actor, EntityType};
use thinglake_infra::subjects::Subjects;
use thinglake_infra::telemetry_store::{DEFAULT_PUBLISH_TIMEOUT, TelemetryStore};
use thinglake_mqtt::{MqttConfig, MqttServer};
use thinglake_platform::devices::DeviceInput;
use thinglake_test_support::NatsServer;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::report::emit;

#[derive(Debug, clap::Args)]
pub(crate) struct Options {
    /// Devices publishing at once (MQTT connections; NATS and HTTP senders).
    #[arg(long, default_value_t = 100)]
    devices: usize,
    /// Publishes per device, in each of the MQTT, NATS ingress and HTTP runs.
    #[arg(long, default_value_t = 200)]
    publishes: usize,
    /// Telemetry points per publish (one `{"ts", "values"}` object).
    #[arg(long, default_value_t = 50)]
    points: usize,
    /// Requests in flight per device (MQTT: the client's QoS 1 window; NATS: requests awaiting a
    /// reply); the raw baseline keeps `devices × window` publishes in flight.
    #[arg(long, default_value_t = 32)]
    window: usize,
    /// Requests in flight over the device HTTP API (each its own keep-alive connection).
    #[arg(long, default_value_t = 64)]
    http_concurrency: usize,
    /// Devices connected at once for the connection test (0 skips it).
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Runs to skip: any of `raw`, `mqtt`, `nats`, `http` (comma separated).
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
    /// Diagnosis only: leave the latest-values follower out, to see what following the stream
    /// costs (a node without it misses other nodes' points).
    #[arg(long)]
    without_follower: bool,
}

/// Options of the child process that plays the devices: holds the connection test's
/// connections, or sends one run's load (the load generator never shares the server's process).
#[derive(Debug, clap::Args)]
pub(crate) struct HoldOptions {
    /// MQTT address (hold, mqtt), NATS URL (raw, nats) or HTTP base URL (http).
    #[arg(long)]
    addr: String,
    #[arg(long)]
    token_prefix: String,
    /// Connections to hold, or devices sending.
    #[arg(long)]
    count: usize,
    /// `hold` (default), or the load of one run: `mqtt`, `nats`, `http`, `raw`.
    #[arg(long, default_value = "hold")]
    mode: String,
    #[arg(long, default_value_t = 0)]
    publishes: usize,
    #[arg(long, default_value_t = 50)]
    points: usize,
    #[arg(long, default_value_t = 32)]
    window: usize,
    /// `raw`: the subjects' tenant and the devices' ids (comma separated), one subject per device.
    #[arg(long, default_value = "")]
    tenant: String,
    #[arg(long, value_delimiter = ',')]
    ids: Vec<String>,
}

fn payload(points: usize, ts: i64) -> Bytes {
    let values: serde_json::Map<String, Value> = (0..points).map(|k| (format!("key{k}"), json!(20.0 + k as f64 / 8.0))).collect();
    Bytes::from(json!({"ts": ts, "values": values}).to_string())
}

/// The bytes the platform stores for one publish of [`payload`]: the raw baseline publishes
/// exactly these.
fn stored_message(tenant: Uuid, device: Uuid, points: usize) -> anyhow::Result<Bytes> {
    let sample = payload(points, 1_700_000_000_000);
    let batches = parse_telemetry(&serde_json::from_slice(&sample)?, 0).map_err(|e| anyhow::anyhow!("{e}"))?;
    let message = TelemetryMessage::new(
        Uuid::now_v7(),
        tenant,
        EntityType::Device,
        device,
        1_700_000_000_000,
        Actor::device(device),
        TelemetryData::Timeseries { batches },
    );
    Ok(Bytes::from(serde_json::to_vec(&message)?))
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

/// CPU seconds (user + system) used by a process so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces): utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()).unwrap_or(0.0);
    // The kernel's USER_HZ is 100 on Linux.
    ticks / 100.0
}

/// One run's figures as the load generator reports them.
struct Load {
    acked: usize,
    seconds: f64,
}

/// Runs the load generator child process for one run and reads its result line
/// (`<acknowledged> <seconds>`).
async fn child(args: &[String]) -> anyhow::Result<Load> {
    let out = tokio::process::Command::new(std::env::current_exe()?)
        .arg("hold-connections")
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(900), out).await??;
    anyhow::ensure!(out.status.success(), "load generator failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    let acked = words.next().ok_or_else(|| anyhow::anyhow!("no result from the load generator"))?.parse()?;
    let seconds = words.next().ok_or_else(|| anyhow::anyhow!("no time from the load generator"))?.parse()?;
    Ok(Load { acked, seconds })
}

pub(crate) async fn run(o: Options) -> anyhow::Result<()> {
    let skip = |run: &str| o.skip.iter().any(|s| s == run);
    let nats = NatsServer::start().await;
    let (platform, store) = crate::setup::platform(&nats).await?;
    let client = nats.client().await;
    let subjects = Subjects::default();
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    // The latest-values follower reads every stored message back, as on a real node.
    if !o.without_follower {
        let telemetry = TelemetryStore::new(store.jetstream().clone(), Subjects::default(), DEFAULT_PUBLISH_TIMEOUT);
        thinglake_projections::latest::start(telemetry, platform.latest().clone(), &tracker, shutdown.clone()).await?;
    }
    let admin = crate::setup::tenant_admin(&platform).await?;
    let tenant = admin.tenant_id;
    platform.ensure_default_profiles(tenant, &Actor::system()).await?;
    let devices = o.devices.max(o.connections);
    let start = Instant::now();
    let mut created = FuturesUnordered::new();
    let mut ids = Vec::with_capacity(devices);
    for i in 0..devices {
        let (platform, admin) = (platform.clone(), admin.clone());
        created.push(async move {
            let input = DeviceInput { name: format!("bench-{i}"), ..DeviceInput::default() };
            platform.save_device(&admin, input, Some(format!("bench-token-{i}"))).await.map(|v| (i, v.device.id))
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
    ids.sort_by_key(|(i, _)| *i);
    let ids: Vec<Uuid> = ids.into_iter().map(|(_, id)| id.0).collect();
    eprintln!("ingest: {devices} devices created in {:.1} s", start.elapsed().as_secs_f64());

    // The server side: MQTT, the NATS ingress and the device HTTP API, all on this process.
    let config = MqttConfig { max_connections: devices + 100, ..MqttConfig::default() };
    let server = MqttServer::bind("127.0.0.1:0".parse()?, platform.clone(), config, shutdown.clone()).await?;
    let addr = server.local_addr();
    server.spawn(&tracker);
    let subscriber = thinglake_server::nats_ingress::subscribe(&client, &subjects).await?;
    tracker.spawn(thinglake_server::nats_ingress::serve(subscriber, client.clone(), subjects.clone(), platform.clone(), shutdown.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let http_addr = listener.local_addr()?;
    let router = thinglake_api::router(thinglake_api::ApiState { platform: platform.clone() });
    let stop = shutdown.clone();
    tracker.spawn(async move {
        let _ = axum::serve(listener, router).with_graceful_shutdown(async move { stop.cancelled().await }).await;
    });

    let me = std::process::id();
    if o.connections > 0 {
        // Measured first, before the throughput runs grow the heap.
        let before = rss_bytes(me);
        let mut holder = tokio::process::Command::new(std::env::current_exe()?)
            .args(["hold-connections", "--addr", &addr.to_string(), "--token-prefix", "bench-token-", "--count"])
            .arg(o.connections.to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = holder.stdout.take().ok_or_else(|| anyhow::anyhow!("child stdout"))?;
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
        drop(holder.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(60), holder.wait()).await;
    }

    let stored = stored_message(tenant.0, ids[0], o.points)?;
    emit("stored_message_bytes", stored.len() as f64, "bytes", None);
    let common = |mode: &str, addr: String, window: usize| -> Vec<String> {
        let mut args: Vec<String> = vec!["--mode".into(), mode.into(), "--addr".into(), addr, "--token-prefix".into(), "bench-token-".into()];
        for (flag, value) in [("--count", o.devices), ("--publishes", o.publishes), ("--points", o.points), ("--window", window)] {
            args.extend([flag.to_string(), value.to_string()]);
        }
        args
    };
    let mut raw_points = None;
    if !skip("raw") {
        let mut args = common("raw", nats.url(), o.window);
        let id_list: Vec<String> = ids[..o.devices].iter().map(Uuid::to_string).collect();
        args.extend(["--tenant".to_string(), tenant.0.to_string(), "--ids".to_string(), id_list.join(",")]);
        // The raw messages are another writer's to the follower: it reads every one of them.
        caught_up(&platform, !o.without_follower).await?;
        let cpu = cpu_seconds(me);
        let (reads, read) = platform.latest().stream_reads();
        let load = child(&args).await?;
        let points = (load.acked * o.points) as f64 / load.seconds;
        emit("raw_jetstream_points", points, "points/s", None);
        raw_points = Some(points);
        // The same with the headers the platform sends (`Nats-Msg-Id`, `Nats-Expected-Stream`):
        // what JetStream's de-duplication and stream check cost; the ratios stay against the above.
        args[1] = "raw-headers".into();
        let headers_load = child(&args).await?;
        emit("raw_jetstream_points_platform_headers", (headers_load.acked * o.points) as f64 / headers_load.seconds, "points/s", raw_points);
        if !o.without_follower {
            caught_up(&platform, true).await?;
            let cpu = cpu_seconds(me) - cpu;
            let (reads_after, read_after) = platform.latest().stream_reads();
            let published = (load.acked + headers_load.acked) as f64;
            emit("raw_follower_messages_read", (read_after - read) as f64, "messages", Some(published));
            emit("raw_follower_stream_reads", (reads_after - reads) as f64, "reads", None);
            // The server's CPU while the raw runs' messages were read: the follower's cost of another
            // writer's message.
            emit("raw_follower_cpu_per_message", cpu * 1e6 / published.max(1.0), "µs", None);
        }
    }
    // The same payloads through each transport; the server's CPU time per publish beside.
    let runs: [(&str, &str, String, usize); 3] = [
        ("mqtt", "mqtt_qos1", addr.to_string(), o.window),
        ("nats", "nats_ingress", nats.url(), o.window),
        ("http", "http_device_api", format!("http://{http_addr}"), o.http_concurrency.div_ceil(o.devices).max(1)),
    ];
    for (mode, name, target, window) in runs {
        if skip(mode) {
            continue;
        }
        let args = common(mode, target, window);
        // The follower reads every run's messages back (the raw ones are decoded): what it still
        // has to read of an earlier run is not this run's cost, and what it reads of this run is.
        caught_up(&platform, !o.without_follower).await?;
        let cpu = cpu_seconds(me);
        let (reads, read) = platform.latest().stream_reads();
        let load = child(&args).await?;
        caught_up(&platform, !o.without_follower).await?;
        let cpu = cpu_seconds(me) - cpu;
        let points = (load.acked * o.points) as f64 / load.seconds;
        emit(&format!("{name}_points"), points, "points/s", raw_points);
        emit(&format!("{name}_publishes"), load.acked as f64 / load.seconds, "msg/s", None);
        emit(&format!("{name}_server_cpu_per_publish"), cpu * 1e6 / load.acked.max(1) as f64, "µs", None);
        if !o.without_follower {
            // What the latest-values follower still read from the stream instead of memory (own
            // publishes whose acknowledgement it did not wait for), and in how many reads.
            let (reads_after, read_after) = platform.latest().stream_reads();
            emit(&format!("{name}_follower_messages_read"), (read_after - read) as f64, "messages", Some(load.acked as f64));
            emit(&format!("{name}_follower_stream_reads"), (reads_after - reads) as f64, "reads", None);
        }
    }

    shutdown.cancel();
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(30), tracker.wait()).await;
    Ok(())
}

/// Waits until the latest-values follower has read everything on the telemetry stream.
async fn caught_up(platform: &thinglake_platform::Platform, followed: bool) -> anyhow::Result<()> {
    if !followed {
        return Ok(());
    }
    let last = platform.telemetry_store().last_sequence().await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while platform.latest().last_seq() < last {
        anyhow::ensure!(Instant::now() < deadline, "the latest-values follower did not catch up with sequence {last}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// The child process: holds connections (`hold`) or sends one run's load and prints
/// `<acknowledged> <seconds>`.
pub(crate) async fn hold(o: HoldOptions) -> anyhow::Result<()> {
    let (acked, seconds) = match o.mode.as_str() {
        "hold" => return hold_connections(o).await,
        "mqtt" => timed(mqtt_load(&o)).await?,
        "nats" => timed(nats_load(&o)).await?,
        "http" => timed(http_load(&o)).await?,
        "raw" => timed(raw_load(&o, false)).await?,
        "raw-headers" => timed(raw_load(&o, true)).await?,
        other => anyhow::bail!("unknown mode {other}"),
    };
    println!("{acked} {seconds}");
    Ok(())
}

async fn timed(load: impl Future<Output = anyhow::Result<usize>>) -> anyhow::Result<(usize, f64)> {
    let start = Instant::now();
    let acked = load.await?;
    Ok((acked, start.elapsed().as_secs_f64()))
}

/// `count` MQTT 3.1.1 devices (rumqttc, a window of `window` QoS 1 publishes each).
async fn mqtt_load(o: &HoldOptions) -> anyhow::Result<usize> {
    let addr: SocketAddr = o.addr.parse()?;
    let mut clients = JoinSet::new();
    for d in 0..o.count {
        let (token, publishes, points, window) = (format!("{}{d}", o.token_prefix), o.publishes, o.points, o.window);
        clients.spawn(async move { publish_device(addr, d, token, publishes, points, window).await });
    }
    let mut acked = 0;
    while let Some(done) = clients.join_next().await {
        acked += done??;
    }
    Ok(acked)
}

/// One device over MQTT 3.1.1: `publishes` QoS 1 publishes; returns how many were acknowledged.
async fn publish_device(addr: SocketAddr, device: usize, token: String, publishes: usize, points: usize, window: usize) -> anyhow::Result<usize> {
    let mut options = rumqttc::MqttOptions::new(format!("bench-{device}"), addr.ip().to_string(), addr.port());
    options.set_credentials(token, "");
    options.set_keep_alive(Duration::from_secs(60));
    options.set_max_packet_size(1 << 20, 1 << 20);
    options.set_inflight(u16::try_from(window).unwrap_or(u16::MAX));
    let (client, mut events) = rumqttc::AsyncClient::new(options, 256);
    let producer = async move {
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

/// `count` devices each sending `publishes` requests to the NATS ingress, `window` awaiting
/// their reply at once; a reply other than `{"ok": true}` fails the run.
async fn nats_load(o: &HoldOptions) -> anyhow::Result<usize> {
    let client = connect_nats(&o.addr).await?;
    let subjects = Subjects::default();
    let mut devices = JoinSet::new();
    for d in 0..o.count {
        let client = client.clone();
        let subject = subjects.ingress(&format!("{}{d}", o.token_prefix), "telemetry");
        let (publishes, window, body) = (o.publishes, o.window, payload(o.points, 1_700_000_000_000 + d as i64));
        devices.spawn(async move {
            let mut inflight = FuturesUnordered::new();
            let mut acked = 0;
            for _ in 0..publishes {
                inflight.push(client.request(subject.clone(), body.clone()));
                if inflight.len() >= window
                    && let Some(reply) = inflight.next().await
                {
                    acked += ingress_ok(reply?)?;
                }
            }
            while let Some(reply) = inflight.next().await {
                acked += ingress_ok(reply?)?;
            }
            anyhow::Ok(acked)
        });
    }
    let mut acked = 0;
    while let Some(done) = devices.join_next().await {
        acked += done??;
    }
    Ok(acked)
}

fn ingress_ok(reply: async_nats::Message) -> anyhow::Result<usize> {
    let answer: Value = serde_json::from_slice(&reply.payload)?;
    anyhow::ensure!(answer["ok"] == true, "ingress refused: {answer}");
    Ok(1)
}

/// `count` devices each POSTing `publishes` payloads to `/api/v1/{token}/telemetry`, `window`
/// requests at once each.
async fn http_load(o: &HoldOptions) -> anyhow::Result<usize> {
    let http = reqwest::Client::builder().pool_max_idle_per_host(usize::MAX).build()?;
    let mut devices = JoinSet::new();
    for d in 0..o.count {
        let http = http.clone();
        let url = format!("{}/api/v1/{}{d}/telemetry", o.addr, o.token_prefix);
        let (publishes, window, body) = (o.publishes, o.window, payload(o.points, 1_700_000_000_000 + d as i64));
        devices.spawn(async move {
            let mut inflight = FuturesUnordered::new();
            let mut acked = 0;
            let post = |body: Bytes| {
                let request = http.post(&url).header("content-type", "application/json").body(body);
                async move {
                    let status = request.send().await?.status();
                    anyhow::ensure!(status.is_success(), "HTTP {status}");
                    anyhow::Ok(1)
                }
            };
            for _ in 0..publishes {
                inflight.push(post(body.clone()));
                if inflight.len() >= window
                    && let Some(r) = inflight.next().await
                {
                    acked += r?;
                }
            }
            while let Some(r) = inflight.next().await {
                acked += r?;
            }
            anyhow::Ok(acked)
        });
    }
    let mut acked = 0;
    while let Some(done) = devices.join_next().await {
        acked += done??;
    }
    Ok(acked)
}

/// The baseline: the stored bytes of `count × publishes` messages published straight to
/// JetStream on the devices' subjects, `count × window` awaiting their acknowledgement; with
/// `platform_headers`, each with a message id and the expected stream as the platform sends them.
async fn raw_load(o: &HoldOptions, platform_headers: bool) -> anyhow::Result<usize> {
    let client = connect_nats(&o.addr).await?;
    let js = async_nats::jetstream::new(client);
    let subjects = Subjects::default();
    let tenant: Uuid = o.tenant.parse()?;
    let ids: Vec<Uuid> = o.ids.iter().map(|i| i.parse()).collect::<Result<_, _>>()?;
    anyhow::ensure!(!ids.is_empty(), "--ids names no device");
    let stored = stored_message(tenant, ids[0], o.points)?;
    let stream = subjects.telemetry_stream();
    let concurrency = o.count * o.window;
    let mut inflight = FuturesUnordered::new();
    let mut acked = 0;
    for i in 0..o.count * o.publishes {
        let subject = subjects.telemetry(tenant, ids[i % ids.len()]);
        let ack = if platform_headers {
            let publish = PublishMessage::build()
                .payload(stored.clone())
                .message_id(Uuid::now_v7().to_string())
                .expected_stream(&stream);
            js.send_publish(subject, publish).await?
        } else {
            js.publish(subject, stored.clone()).await?
        };
        inflight.push(ack.into_future());
        if inflight.len() >= concurrency
            && let Some(r) = inflight.next().await
        {
            r?;
            acked += 1;
        }
    }
    while let Some(r) = inflight.next().await {
        r?;
        acked += 1;
    }
    Ok(acked)
}

/// Opens `count` MQTT connections with raw sockets (a CONNECT each, waiting for its CONNACK),
/// prints how many succeeded, and holds them until stdin closes.
async fn hold_connections(o: HoldOptions) -> anyhow::Result<()> {
    let addr: SocketAddr = o.addr.parse()?;
    let mut held = Vec::with_capacity(o.count);
    let mut pending = FuturesUnordered::new();
    for i in 0..o.count {
        let token = format!("{}{i}", o.token_prefix);
        pending.push(async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await?;
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

/// A NATS client for the load generator: the URL carries the supervised server's credentials
/// (it refuses anonymous clients), which `async_nats::connect` does not take from a URL.
async fn connect_nats(url: &str) -> anyhow::Result<async_nats::Client> {
    let (options, bare) = thinglake_infra::nats_auth::client_options(url, None);
    Ok(options.connect(bare).await?)
}
