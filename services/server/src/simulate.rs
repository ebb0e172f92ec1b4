//! `thinglake simulate`: N simulated devices, each its own MQTT connection (rumqttc, a real
//! client), publishing telemetry at a given rate, for the demo and load tests. Device `i` uses
//! the access token `<token-prefix><i>`; with `--create-as` the devices are first created over
//! the REST API (an existing name is kept). At the end (duration or Ctrl-C) each device stops
//! publishing, waits for the acknowledgements of what it sent and disconnects, so the printed
//! count of acknowledged publishes is what the platform stored.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Options of `thinglake simulate`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct SimulateArgs {
    /// Simulated devices, each its own MQTT connection.
    #[arg(long, env = "THINGLAKE_SIM_DEVICES", default_value_t = 10)]
    devices: usize,
    /// Telemetry publishes per second of each device.
    #[arg(long, env = "THINGLAKE_SIM_RATE", default_value_t = 1.0)]
    rate: f64,
    /// MQTT broker as host:port.
    #[arg(long, env = "THINGLAKE_SIM_BROKER", default_value = "127.0.0.1:1883")]
    broker: String,
    /// Device `i` connects with the access token `<prefix><i>`.
    #[arg(long, env = "THINGLAKE_SIM_TOKEN_PREFIX", default_value = "sim-token-")]
    token_prefix: String,
    /// Telemetry points in each publish.
    #[arg(long, env = "THINGLAKE_SIM_POINTS", default_value_t = 3)]
    points: usize,
    /// QoS of the publishes (0 or 1).
    #[arg(long, env = "THINGLAKE_SIM_QOS", default_value_t = 1)]
    qos: u8,
    /// Stop after this many seconds (0: until Ctrl-C).
    #[arg(long, env = "THINGLAKE_SIM_DURATION_SECS", default_value_t = 0)]
    duration_secs: u64,
    /// Create the devices first, signed in as this tenant administrator (`email:password`).
    #[arg(long, env = "THINGLAKE_SIM_CREATE_AS", hide_env_values = true)]
    create_as: Option<String>,
    /// Base URL of the REST API used by `--create-as`.
    #[arg(long, env = "THINGLAKE_SIM_HTTP", default_value = "http://127.0.0.1:8080")]
    http: String,
}

/// Counts shared by the simulated devices.
#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    acked: AtomicU64,
}

/// Runs the simulation until the duration ends or Ctrl-C, then lets every device collect the
/// acknowledgements of what it sent and disconnect, and prints the totals.
pub(crate) async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.rate > 0.0, "--rate must be positive");
    anyhow::ensure!(args.qos <= 1, "--qos must be 0 or 1");
    let (host, port) = args.broker.rsplit_once(':').context("--broker must be host:port")?;
    let port: u16 = port.parse().context("--broker port")?;
    if let Some(credentials) = &args.create_as {
        create_devices(&args, credentials).await?;
    }
    let counts = Arc::new(Counts::default());
    let stop = CancellationToken::new();
    let mut devices = JoinSet::new();
    for i in 0..args.devices {
        let (host, args, counts, stop) = (host.to_string(), args.clone(), counts.clone(), stop.clone());
        devices.spawn(async move { device(i, host, port, args, counts, stop).await });
    }
    let start = Instant::now();
    let end = async {
        if args.duration_secs > 0 {
            tokio::time::sleep(Duration::from_secs(args.duration_secs)).await;
        } else {
            let _ = tokio::signal::ctrl_c().await;
        }
    };
    tokio::pin!(end);
    let mut report = tokio::time::interval(Duration::from_secs(5));
    report.tick().await;
    let mut last = 0;
    let mut failed = 0;
    loop {
        tokio::select! {
            _ = &mut end => break,
            _ = report.tick() => {
                let now = counts.acked.load(Ordering::Relaxed);
                let rate = (now - last) as f64 / 5.0;
                println!("{:>6.0} s  {now} publishes acknowledged  {rate:.0} msg/s  {:.0} points/s", start.elapsed().as_secs_f64(), rate * args.points as f64);
                last = now;
            }
            Some(done) = devices.join_next() => {
                if let Ok(Err(e)) = done {
                    eprintln!("a device stopped: {e:#}");
                    failed += 1;
                }
                if devices.is_empty() {
                    break;
                }
            }
        }
    }
    let elapsed = start.elapsed();
    stop.cancel();
    // Each device collects its outstanding acknowledgements (bounded) and disconnects.
    while let Some(done) = devices.join_next().await {
        if let Ok(Err(e)) = done {
            eprintln!("a device stopped: {e:#}");
            failed += 1;
        }
    }
    let (sent, acked) = (counts.sent.load(Ordering::Relaxed), counts.acked.load(Ordering::Relaxed));
    println!(
        "{acked} acknowledged publishes ({} points) of {sent} sent by {} devices in {:.1} s",
        acked * args.points as u64,
        args.devices,
        elapsed.as_secs_f64()
    );
    anyhow::ensure!(failed < args.devices || args.devices == 0, "every device failed");
    Ok(())
}

/// How long a stopping device waits for the acknowledgements of what it sent.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// One device: connect, then publish on a fixed schedule until `stop`; then wait for the
/// outstanding acknowledgements and disconnect. A publish counts when acknowledged (QoS 1) or
/// written (QoS 0).
async fn device(i: usize, host: String, port: u16, args: SimulateArgs, counts: Arc<Counts>, stop: CancellationToken) -> anyhow::Result<()> {
    let mut options = rumqttc::MqttOptions::new(format!("thinglake-sim-{i}"), host, port);
    options.set_credentials(format!("{}{i}", args.token_prefix), "");
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = rumqttc::AsyncClient::new(options, 64);
    let qos = if args.qos == 0 { rumqttc::QoS::AtMostOnce } else { rumqttc::QoS::AtLeastOnce };
    let period = Duration::from_secs_f64(1.0 / args.rate);
    // Publishes handed to the client, and those acknowledged (or written, for QoS 0).
    let (mut queued, mut done) = (0u64, 0u64);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    let mut connected = false;
    // Publishing: the schedule, the client's request queue and its event loop in one task.
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick(), if connected => {
                let values: serde_json::Map<String, Value> =
                    (0..args.points).map(|k| (format!("sensor{k}"), json!(20.0 + ((n + k as u64) % 100) as f64 / 10.0))).collect();
                n += 1;
                // The queue is bounded: a device that cannot keep up skips ticks instead of
                // queueing without end.
                if client.try_publish("v1/devices/me/telemetry", qos, false, Value::Object(values).to_string()).is_ok() {
                    queued += 1;
                    counts.sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            event = events.poll() => match handle(i, event, qos, &mut done, &counts)? {
                Some(true) => connected = true,
                Some(false) => {}
                // rumqttc reconnects on the next poll; wait a little first.
                None => { connected = false; tokio::time::sleep(Duration::from_secs(1)).await; }
            },
        }
    }
    // Draining: what was queued is written and acknowledged before the disconnect.
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while done < queued {
            if handle(i, events.poll().await, qos, &mut done, &counts)?.is_none() {
                break;
            }
        }
        anyhow::Ok(())
    })
    .await;
    if let Ok(Err(e)) = drained {
        return Err(e);
    }
    if client.try_disconnect().is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while !matches!(events.poll().await, Ok(rumqttc::Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_)) {}
        })
        .await;
    }
    Ok(())
}

/// Applies one event of a device's connection: `Some(true)` once connected, `Some(false)` for
/// anything else that went well, `None` when the connection broke; an error when the platform
/// refused the device.
fn handle(
    i: usize,
    event: Result<rumqttc::Event, rumqttc::ConnectionError>,
    qos: rumqttc::QoS,
    done: &mut u64,
    counts: &Counts,
) -> anyhow::Result<Option<bool>> {
    match event {
        Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack))) => {
            anyhow::ensure!(ack.code == rumqttc::ConnectReturnCode::Success, "device {i} refused: {:?}", ack.code);
            Ok(Some(true))
        }
        Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
            *done += 1;
            counts.acked.fetch_add(1, Ordering::Relaxed);
            Ok(Some(false))
        }
        Ok(rumqttc::Event::Outgoing(rumqttc::Outgoing::Publish(_))) if qos == rumqttc::QoS::AtMostOnce => {
            *done += 1;
            counts.acked.fetch_add(1, Ordering::Relaxed);
            Ok(Some(false))
        }
        Ok(_) => Ok(Some(false)),
        Err(rumqttc::ConnectionError::ConnectionRefused(code)) => anyhow::bail!("device {i} refused: {code:?}"),
        Err(_) => Ok(None),
    }
}

async fn create_devices(args: &SimulateArgs, credentials: &str) -> anyhow::Result<()> {
    let (email, password) = credentials.split_once(':').context("--create-as must be email:password")?;
    let http = reqwest::Client::new();
    let login: Value = http
        .post(format!("{}/api/auth/login", args.http))
        .json(&json!({"username": email, "password": password}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = login["token"].as_str().context("no token in the login answer")?;
    for i in 0..args.devices {
        let res = http
            .post(format!("{}/api/device?accessToken={}{i}", args.http, args.token_prefix))
            .header("X-Authorization", format!("Bearer {token}"))
            .json(&json!({"name": format!("sim-{i}"), "type": "simulated"}))
            .send()
            .await?;
        // 400: the name exists already (from an earlier run); its token is kept.
        if !res.status().is_success() && res.status() != reqwest::StatusCode::BAD_REQUEST {
            anyhow::bail!("creating device sim-{i}: {}", res.status());
        }
    }
    println!("{} devices ready", args.devices);
    Ok(())
}
