//! Issue 4's durability promise with the real binary: MQTT clients stream QoS 1 telemetry, the
//! platform is killed with SIGKILL mid-stream and started again on the same data directory, and
//! every point whose PUBACK arrived is on the telemetry stream — read back with a raw JetStream
//! consumer, independent of the platform's own reader. Points stored without a PUBACK (in flight
//! at the kill) are allowed; an acknowledged point stored twice, or one never sent, is not.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull::OrderedConfig;
use futures::StreamExt as _;
use serde_json::json;
use thinglake_domain::telemetry::{TelemetryData, TelemetryMessage};
use thinglake_infra::nats_auth::{NatsCredentials, client_options};
use thinglake_infra::subjects::Subjects;
use thinglake_test_support::free_port;

use crate::harness::{Platform, Ports, id_of};

/// Clients streaming at once; each is its own device and connection.
const CLIENTS: usize = 4;
/// rumqttc's window of unacknowledged QoS 1 publishes per client.
const INFLIGHT: u16 = 50;
/// Acknowledged publishes (all clients) before the kill.
const ACKED_BEFORE_KILL: usize = 2_000;

/// What the clients sent and what was acknowledged, as the unique `seq` values of the points.
#[derive(Default)]
struct Record {
    sent: HashSet<i64>,
    acked: Vec<i64>,
}

/// One device streaming `{"seq": v}` at QoS 1 as fast as its window allows, `v` unique across
/// all clients, until its connection breaks. rumqttc reports each publish's packet id as it
/// writes it (in the order they were queued) and each PUBACK by packet id, which maps every
/// acknowledgement to its value.
async fn stream(port: u16, token: String, client_no: usize, record: Arc<Mutex<Record>>) {
    let mut options = rumqttc::MqttOptions::new(format!("crash-{client_no}"), "127.0.0.1", port);
    options.set_credentials(token, "");
    options.set_keep_alive(Duration::from_secs(30));
    options.set_inflight(INFLIGHT);
    let (client, mut events) = rumqttc::AsyncClient::new(options, 16);
    let queued = Mutex::new(VecDeque::<i64>::new());
    let publisher = async {
        for n in 0i64.. {
            let value = (client_no as i64) * 1_000_000_000 + n;
            queued.lock().expect("lock").push_back(value);
            record.lock().expect("lock").sent.insert(value);
            let payload = json!({"seq": value}).to_string();
            if client.publish("v1/devices/me/telemetry", rumqttc::QoS::AtLeastOnce, false, payload).await.is_err() {
                break;
            }
        }
    };
    let driver = async {
        let mut by_pkid = HashMap::<u16, i64>::new();
        loop {
            match events.poll().await {
                Ok(rumqttc::Event::Outgoing(rumqttc::Outgoing::Publish(pkid))) => {
                    let value = queued.lock().expect("lock").pop_front().expect("a queued value per publish");
                    by_pkid.insert(pkid, value);
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(ack))) => {
                    let value = by_pkid.remove(&ack.pkid).expect("a PUBACK answers a publish in flight");
                    record.lock().expect("lock").acked.push(value);
                }
                Ok(_) => {}
                // The platform died: stop (no reconnect; rumqttc would resend in-flight publishes).
                Err(_) => return,
            }
        }
    };
    tokio::select! {
        () = publisher => {}
        () = driver => {}
    }
}

/// Every `seq` value on the telemetry stream, read with a raw ordered JetStream consumer (as the
/// platform's NATS user, from the data directory).
async fn stored_values(data_dir: &Path, nats_port: u16) -> Vec<i64> {
    let credentials = NatsCredentials::load(&data_dir.join("nats")).expect("readable").expect("the platform's NATS credentials");
    let (options, url) = client_options(&format!("nats://127.0.0.1:{nats_port}"), Some(&credentials.platform));
    let client = options.connect(url).await.expect("NATS reachable");
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream(Subjects::default().telemetry_stream()).await.expect("telemetry stream");
    let last = stream.info().await.expect("stream info").state.last_sequence;
    let consumer = stream.create_consumer(OrderedConfig::default()).await.expect("ordered consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let mut values = Vec::new();
    while let Some(message) = tokio::time::timeout(Duration::from_secs(30), messages.next()).await.expect("stream answers") {
        let message = message.expect("message");
        let seq = message.info().expect("JetStream message").stream_sequence;
        let decoded: TelemetryMessage = serde_json::from_slice(&message.payload).expect("a telemetry message");
        if let TelemetryData::Timeseries { batches } = decoded.data {
            for batch in batches {
                values.extend(batch.values.iter().filter(|e| e.key == "seq").filter_map(|e| e.value.to_json().as_i64()));
            }
        }
        if seq >= last {
            break;
        }
    }
    values
}

#[tokio::test]
async fn a_kill_9_during_a_qos1_stream_loses_no_acknowledged_point() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = Ports { http: free_port(), nats: free_port(), mqtt: free_port() };
    let mut platform = Platform::start(dir.path(), &ports).await;
    let (_, admin) = platform.api.tenant("Acme").await;
    let mut devices = Vec::new();
    for c in 0..CLIENTS {
        let token = format!("CRASH_TOKEN_{c}");
        let path = format!("/api/device?accessToken={token}");
        let device = platform.api.post(&path, &admin, json!({"name": format!("crash-{c}"), "type": "default"})).await.ok();
        devices.push((id_of(&device), token));
    }

    let record = Arc::new(Mutex::new(Record::default()));
    let mut clients = tokio::task::JoinSet::new();
    for (c, (_, token)) in devices.iter().enumerate() {
        clients.spawn(stream(ports.mqtt, token.clone(), c, record.clone()));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while record.lock().expect("lock").acked.len() < ACKED_BEFORE_KILL {
        assert!(Instant::now() < deadline, "the clients made no progress; see {}", dir.path().join("thinglake-test.log").display());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    platform.child.kill().expect("kill -9");
    platform.child.wait().expect("reaped");
    let ended = tokio::time::timeout(Duration::from_secs(60), async { while clients.join_next().await.is_some() {} }).await;
    assert!(ended.is_ok(), "the clients notice the dead connection");

    let platform = Platform::start(dir.path(), &ports).await;
    let (sent, acked) = {
        let r = record.lock().expect("lock");
        (r.sent.clone(), r.acked.clone())
    };
    let stored = stored_values(dir.path(), ports.nats).await;
    let mut times = HashMap::<i64, usize>::new();
    for v in &stored {
        *times.entry(*v).or_default() += 1;
    }
    let missing: Vec<i64> = acked.iter().copied().filter(|v| !times.contains_key(v)).collect();
    assert!(missing.is_empty(), "{} of {} acknowledged points lost, e.g. {:?}", missing.len(), acked.len(), &missing[..missing.len().min(10)]);
    let acked_set: HashSet<i64> = acked.iter().copied().collect();
    assert_eq!(acked_set.len(), acked.len(), "one PUBACK per publish");
    let twice: Vec<i64> = times.iter().filter(|(v, n)| **n > 1 && acked_set.contains(v)).map(|(v, _)| *v).collect();
    assert!(twice.is_empty(), "acknowledged points stored twice: {twice:?}");
    assert!(stored.iter().all(|v| sent.contains(v)), "only points that were sent are stored");
    let unacked_stored = times.keys().filter(|v| !acked_set.contains(v)).count();
    assert!(
        unacked_stored <= CLIENTS * usize::from(INFLIGHT),
        "{unacked_stored} points stored without a PUBACK: more than were in flight"
    );
    eprintln!(
        "kill -9 mid-stream: {} sent, {} acknowledged, {} stored ({} without a PUBACK)",
        sent.len(),
        acked.len(),
        stored.len(),
        unacked_stored
    );

    // The restarted platform rebuilt its latest values from the same log, and serves MQTT again.
    // (The token issued before the crash is still valid: the signing key lives in NATS.)
    for (c, (id, token)) in devices.iter().enumerate() {
        let newest = acked.iter().copied().filter(|v| v / 1_000_000_000 == c as i64).max().expect("each client was acknowledged");
        let latest = platform.api.get(&format!("/api/plugins/telemetry/DEVICE/{id}/values/timeseries?keys=seq"), &admin).await.ok();
        let value = latest["seq"][0]["value"].clone();
        let value = value.as_i64().or_else(|| value.as_str().and_then(|s| s.parse().ok())).expect("a latest seq");
        assert!(value >= newest, "latest seq {value} of device {c} is older than its last acknowledged {newest}");
        if c == 0 {
            let mut after = crate::mqtt::Client4::connected(std::net::SocketAddr::from(([127, 0, 0, 1], ports.mqtt)), token).await;
            after.publish_acked("v1/devices/me/telemetry", r#"{"after_restart": 1}"#).await;
        }
    }
}
