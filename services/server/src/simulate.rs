//! `thinglake simulate`: N simulated devices, each its own MQTT connection (rumqttc, a real
//! client), publishing telemetry at a given rate, for the demo and load tests. Device `i` uses
//! the access token `<token-prefix><i>`; with `--create-as` the devices are first created over
//! the REST API (an existing name is kept).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Value, json};
use tokio::task::JoinSet;

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

/// Runs the simulation until the duration ends or Ctrl-C.
pub(crate) async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.rate > 0.0, "--rate must be positive");
    let (host, port) = args.broker.rsplit_once(':').context("--broker must be host:port")?;
    let port: u16 = port.parse().context("--broker port")?;
    if let Some(credentials) = &args.create_as {
        create_devices(&args, credentials).await?;
    }
    let acked = Arc::new(AtomicU64::new(0));
    let mut devices = JoinSet::new();
    for i in 0..args.devices {
        let (host, args, acked) = (host.to_string(), args.clone(), acked.clone());
        devices.spawn(async move { device(i, host, port, args, acked).await });
    }
    let start = Instant::now();
    let stop = async {
        if args.duration_secs > 0 {
            tokio::time::sleep(Duration::from_secs(args.duration_secs)).await;
        } else {
            let _ = tokio::signal::ctrl_c().await;
        }
    };
    tokio::pin!(stop);
    let mut report = tokio::time::interval(Duration::from_secs(5));
    report.tick().await;
    let mut last = 0;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = report.tick() => {
                let now = acked.load(Ordering::Relaxed);
                let rate = (now - last) as f64 / 5.0;
                println!("{:>6.0} s  {now} publishes sent  {rate:.0} msg/s  {:.0} points/s", start.elapsed().as_secs_f64(), rate * args.points as f64);
                last = now;
            }
            Some(done) = devices.join_next() => {
                if let Ok(Err(e)) = done {
                    eprintln!("a device stopped: {e:#}");
                }
            }
        }
    }
    devices.shutdown().await;
    let total = acked.load(Ordering::Relaxed);
    println!("{total} publishes ({} points) in {:.1} s", total * args.points as u64, start.elapsed().as_secs_f64());
    Ok(())
}

/// One device: connect, then publish on a fixed schedule; a publish counts when acknowledged
/// (QoS 1) or sent (QoS 0).
async fn device(i: usize, host: String, port: u16, args: SimulateArgs, acked: Arc<AtomicU64>) -> anyhow::Result<()> {
    let mut options = rumqttc::MqttOptions::new(format!("thinglake-sim-{i}"), host, port);
    options.set_credentials(format!("{}{i}", args.token_prefix), "");
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = rumqttc::AsyncClient::new(options, 64);
    let qos = if args.qos == 0 { rumqttc::QoS::AtMostOnce } else { rumqttc::QoS::AtLeastOnce };
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let publisher = async {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for n in 0u64.. {
            tick.tick().await;
            let values: serde_json::Map<String, Value> =
                (0..args.points).map(|k| (format!("sensor{k}"), json!(20.0 + ((n + k as u64) % 100) as f64 / 10.0))).collect();
            client.publish("v1/devices/me/telemetry", qos, false, Value::Object(values).to_string()).await?;
        }
        anyhow::Ok(())
    };
    let driver = async {
        loop {
            match events.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                    acked.fetch_add(1, Ordering::Relaxed);
                }
                Ok(rumqttc::Event::Outgoing(rumqttc::Outgoing::Publish(_))) if qos == rumqttc::QoS::AtMostOnce => {
                    acked.fetch_add(1, Ordering::Relaxed);
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack))) if ack.code != rumqttc::ConnectReturnCode::Success => {
                    anyhow::bail!("device {i} refused: {:?}", ack.code);
                }
                Ok(_) => {}
                Err(rumqttc::ConnectionError::ConnectionRefused(code)) => anyhow::bail!("device {i} refused: {code:?}"),
                // rumqttc reconnects on the next poll; wait a little first.
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
    };
    tokio::select! {
        r = publisher => r,
        r = driver => r,
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
