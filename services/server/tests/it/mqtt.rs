//! The MQTT device API with real clients (rumqttc for 3.1.1 and 5, Debian's mosquitto_pub,
//! ThingsBoard's own Python SDK): connect and token check, every telemetry shape, attributes,
//! attribute requests, shared-attribute pushes, session limits, reason codes for bad input, and
//! what a PUBACK promises: the point is on the log.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use rumqttc::v5::mqttbytes::v5::{Packet as Packet5, PubAckReason};
use serde_json::{Value, json};
use thinglake_domain::telemetry::{TelemetryData, TelemetryMessage};
use thinglake_server::RunningApp;

use crate::harness::{TestApp, id_of};

pub(crate) const WAIT: Duration = Duration::from_secs(15);

pub(crate) fn app(t: &TestApp) -> &RunningApp {
    t.app.as_ref().expect("platform running")
}

pub(crate) fn mqtt_addr(t: &TestApp) -> SocketAddr {
    app(t).mqtt_addr
}

/// Creates a device with a known access token and returns its id.
pub(crate) async fn device_with_token(t: &TestApp, admin: &str, name: &str, token: &str, additional_info: Value) -> String {
    let device = t
        .post(&format!("/api/device?accessToken={token}"), admin, json!({"name": name, "type": "default", "additionalInfo": additional_info}))
        .await
        .ok();
    id_of(&device)
}

/// Every message on the telemetry stream about `device` so far.
pub(crate) async fn telemetry_of(t: &TestApp, device: &str) -> Vec<TelemetryMessage> {
    let store = app(t).platform.telemetry_store().clone();
    let last = store.last_sequence().await.expect("last sequence");
    if last == 0 {
        return Vec::new();
    }
    let mut follow = Box::pin(store.follow(1));
    let mut out = Vec::new();
    while let Some(item) = tokio::time::timeout(WAIT, follow.next()).await.expect("stream answers") {
        let (seq, message) = item.expect("decodes");
        if message.entity_id.to_string() == device {
            out.push(message);
        }
        if seq >= last {
            break;
        }
    }
    out
}

/// The time-series points `device` reported, as (key, JSON value) pairs in order.
pub(crate) async fn points_of(t: &TestApp, device: &str) -> Vec<(i64, String, Value)> {
    let mut out = Vec::new();
    for message in telemetry_of(t, device).await {
        if let TelemetryData::Timeseries { batches } = message.data {
            for batch in batches {
                for e in batch.values {
                    out.push((batch.ts, e.key, e.value.to_json()));
                }
            }
        }
    }
    out
}

/// Client attributes `device` reported, in order.
pub(crate) async fn client_attributes_of(t: &TestApp, device: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for message in telemetry_of(t, device).await {
        if let TelemetryData::Attributes { scope: thinglake_domain::telemetry::AttributeScope::ClientScope, values, .. } = message.data {
            out.extend(values.into_iter().map(|e| (e.key, e.value.to_json())));
        }
    }
    out
}

/// An MQTT 3.1.1 client driven inline (no background task).
pub(crate) struct Client4 {
    pub(crate) client: rumqttc::AsyncClient,
    pub(crate) events: rumqttc::EventLoop,
}

impl Client4 {
    pub(crate) fn new(addr: SocketAddr, token: &str, client_id: &str) -> Self {
        let mut options = rumqttc::MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
        options.set_credentials(token, "");
        options.set_keep_alive(Duration::from_secs(30));
        let (client, events) = rumqttc::AsyncClient::new(options, 64);
        Self { client, events }
    }

    /// The next packet from the server, or the connection error.
    pub(crate) async fn next(&mut self) -> Result<rumqttc::Packet, rumqttc::ConnectionError> {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.events.poll()).await.expect("server answers in time")? {
                rumqttc::Event::Incoming(packet) => return Ok(packet),
                rumqttc::Event::Outgoing(_) => {}
            }
        }
    }

    pub(crate) async fn connected(addr: SocketAddr, token: &str) -> Self {
        let mut c = Self::new(addr, token, &format!("c-{}", uuid::Uuid::now_v7()));
        match c.next().await {
            Ok(rumqttc::Packet::ConnAck(ack)) => assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success),
            other => panic!("expected CONNACK, got {other:?}"),
        }
        c
    }

    /// Publishes at QoS 1 and waits for the PUBACK.
    pub(crate) async fn publish_acked(&mut self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client.publish(topic, rumqttc::QoS::AtLeastOnce, false, payload).await.expect("queued");
        loop {
            match self.next().await {
                Ok(rumqttc::Packet::PubAck(_)) => return,
                Ok(_) => {}
                Err(e) => panic!("connection failed before PUBACK: {e}"),
            }
        }
    }

    pub(crate) async fn subscribe(&mut self, filter: &str) {
        self.client.subscribe(filter, rumqttc::QoS::AtLeastOnce).await.expect("queued");
        loop {
            match self.next().await.expect("connected") {
                rumqttc::Packet::SubAck(ack) => {
                    assert!(matches!(ack.return_codes[0], rumqttc::SubscribeReasonCode::Success(_)), "{ack:?}");
                    return;
                }
                _ => continue,
            }
        }
    }

    /// The next PUBLISH from the server: (topic, JSON payload).
    pub(crate) async fn message(&mut self) -> (String, Value) {
        loop {
            if let rumqttc::Packet::Publish(p) = self.next().await.expect("connected") {
                return (p.topic, serde_json::from_slice(&p.payload).expect("JSON payload"));
            }
        }
    }
}

/// An MQTT 5 client driven inline.
pub(crate) struct Client5 {
    pub(crate) client: rumqttc::v5::AsyncClient,
    pub(crate) events: rumqttc::v5::EventLoop,
}

impl Client5 {
    pub(crate) fn new(addr: SocketAddr, token: &str, client_id: &str) -> Self {
        let mut options = rumqttc::v5::MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
        options.set_credentials(token, "");
        let (client, events) = rumqttc::v5::AsyncClient::new(options, 64);
        Self { client, events }
    }

    pub(crate) async fn next(&mut self) -> Result<Packet5, rumqttc::v5::ConnectionError> {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.events.poll()).await.expect("server answers in time")? {
                rumqttc::v5::Event::Incoming(packet) => return Ok(packet),
                rumqttc::v5::Event::Outgoing(_) => {}
            }
        }
    }

    pub(crate) async fn connected(addr: SocketAddr, token: &str) -> Self {
        let mut c = Self::new(addr, token, "");
        match c.next().await {
            Ok(Packet5::ConnAck(ack)) => assert_eq!(ack.code, rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success),
            other => panic!("expected CONNACK, got {other:?}"),
        }
        c
    }

    /// Publishes at QoS 1 and returns the PUBACK's reason, or the DISCONNECT reason if the
    /// server closed instead.
    pub(crate) async fn publish(&mut self, topic: &str, payload: impl Into<bytes::Bytes>) -> Result<PubAckReason, String> {
        self.client.publish(topic, rumqttc::v5::mqttbytes::QoS::AtLeastOnce, false, payload).await.expect("queued");
        loop {
            match self.next().await {
                Ok(Packet5::PubAck(ack)) => return Ok(ack.reason),
                Ok(Packet5::Disconnect(d)) => return Err(format!("{:?}", d.reason_code)),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    pub(crate) async fn subscribe(&mut self, filter: &str) {
        self.client.subscribe(filter, rumqttc::v5::mqttbytes::QoS::AtLeastOnce).await.expect("queued");
        loop {
            if let Packet5::SubAck(ack) = self.next().await.expect("connected") {
                assert!(matches!(ack.return_codes[0], rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::Success(_)), "{ack:?}");
                return;
            }
        }
    }

    pub(crate) async fn message(&mut self) -> (String, Value) {
        loop {
            if let Packet5::Publish(p) = self.next().await.expect("connected") {
                return (String::from_utf8_lossy(&p.topic).into_owned(), serde_json::from_slice(&p.payload).expect("JSON payload"));
            }
        }
    }
}

pub(crate) fn mosquitto(tool: &str) -> tokio::process::Command {
    let path = ["/usr/bin", "/usr/local/bin"].iter().map(|d| PathBuf::from(d).join(tool)).find(|p| p.exists());
    let path = path.unwrap_or_else(|| panic!("{tool} is missing: run scripts/install-tools (Debian's mosquitto-clients)"));
    tokio::process::Command::new(path)
}

/// Runs `mosquitto_pub` and returns (success, stderr).
async fn mosquitto_pub(addr: SocketAddr, version: &str, token: &str, topic: &str, qos: u8, message: &str) -> (bool, String) {
    let out = mosquitto("mosquitto_pub")
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string(), "-V", version, "-u", token])
        .args(["-q", &qos.to_string(), "-t", topic, "-m", message])
        .output()
        .await
        .expect("mosquitto_pub runs");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Polls `probe` until it returns `Some`, or fails after [`WAIT`].
pub(crate) async fn eventually<T, F: std::future::Future<Output = Option<T>>>(what: &str, mut probe: impl FnMut() -> F) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_unknown_token_is_refused_with_each_versions_code() {
    let t = TestApp::start().await;
    let addr = mqtt_addr(&t);
    let mut v4 = Client4::new(addr, "no-such-token", "c1");
    match v4.next().await {
        Err(rumqttc::ConnectionError::ConnectionRefused(code)) => assert_eq!(code, rumqttc::ConnectReturnCode::NotAuthorized),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let mut v5 = Client5::new(addr, "no-such-token", "c2");
    match v5.next().await {
        Err(rumqttc::v5::ConnectionError::ConnectionRefused(code)) => {
            assert_eq!(code, rumqttc::v5::mqttbytes::v5::ConnectReturnCode::BadUserNamePassword)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let (ok, stderr) = mosquitto_pub(addr, "mqttv311", "no-such-token", "v1/devices/me/telemetry", 1, "{}").await;
    assert!(!ok, "mosquitto_pub with a bad token must fail");
    assert!(stderr.to_lowercase().contains("not authori"), "{stderr}");
}

#[tokio::test]
async fn telemetry_in_every_shape_is_on_the_log_once_acknowledged() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let id = device_with_token(&t, &admin, "Thermo", "THERMO_TOKEN", json!({})).await;
    let addr = mqtt_addr(&t);

    let mut c = Client4::connected(addr, "THERMO_TOKEN").await;
    c.publish_acked("v1/devices/me/telemetry", r#"{"temperature": 21.5, "on": true}"#).await;
    let points = points_of(&t, &id).await;
    assert!(points.iter().any(|(_, k, v)| k == "temperature" && *v == json!(21.5)), "{points:?}");

    c.publish_acked("v1/devices/me/telemetry", r#"{"ts": 1700000000000, "values": {"humidity": 40}}"#).await;
    c.publish_acked("v1/devices/me/telemetry", r#"[{"ts": 1700000001000, "values": {"a": 1}}, {"b": "x"}]"#).await;

    let mut c5 = Client5::connected(addr, "THERMO_TOKEN").await;
    assert_eq!(c5.publish("v1/devices/me/telemetry", r#"{"pressure": 1013}"#).await, Ok(PubAckReason::Success));

    let points = points_of(&t, &id).await;
    for (ts, key, value) in [
        (None, "humidity", json!(40)),
        (Some(1_700_000_000_000), "humidity", json!(40)),
        (Some(1_700_000_001_000), "a", json!(1)),
        (None, "b", json!("x")),
        (None, "pressure", json!(1013)),
        (None, "on", json!(true)),
    ] {
        assert!(
            points.iter().any(|(t, k, v)| k == key && *v == value && ts.is_none_or(|ts| ts == *t)),
            "{key}={value} missing from {points:?}"
        );
    }
}

#[tokio::test]
async fn mosquitto_clients_publish_telemetry_and_attributes_with_both_versions() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let id = device_with_token(&t, &admin, "Mosq", "MOSQ_TOKEN", json!({})).await;
    let addr = mqtt_addr(&t);
    for (version, qos, value) in [("mqttv311", 1, 1), ("mqttv311", 0, 2), ("mqttv5", 1, 3), ("mqttv5", 0, 4)] {
        let (ok, stderr) =
            mosquitto_pub(addr, version, "MOSQ_TOKEN", "v1/devices/me/telemetry", qos, &format!(r#"{{"m": {value}}}"#)).await;
        assert!(ok, "{version} qos {qos}: {stderr}");
    }
    let (ok, stderr) = mosquitto_pub(addr, "mqttv5", "MOSQ_TOKEN", "v1/devices/me/attributes", 1, r#"{"fw": "1.2"}"#).await;
    assert!(ok, "{stderr}");
    // QoS 0 has no acknowledgement: poll for the last ones.
    let points = eventually("all four points", || async {
        let points = points_of(&t, &id).await;
        (points.iter().filter(|(_, k, _)| k == "m").count() == 4).then_some(points)
    })
    .await;
    let values: Vec<Value> = points.iter().filter(|(_, k, _)| k == "m").map(|(_, _, v)| v.clone()).collect();
    for v in 1..=4 {
        assert!(values.contains(&json!(v)), "{values:?}");
    }
    assert_eq!(client_attributes_of(&t, &id).await, vec![("fw".to_string(), json!("1.2"))]);
}

#[tokio::test]
async fn bad_input_gets_a_reason_code_under_5_and_a_disconnect_under_3_1_1() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let id = device_with_token(&t, &admin, "Bad", "BAD_TOKEN", json!({})).await;
    let addr = mqtt_addr(&t);

    let mut c5 = Client5::connected(addr, "BAD_TOKEN").await;
    assert_eq!(c5.publish("v1/devices/me/telemetry", "{not json").await, Ok(PubAckReason::PayloadFormatInvalid));
    assert_eq!(c5.publish("v1/devices/me/telemetry", "[1, 2]").await, Ok(PubAckReason::PayloadFormatInvalid));
    assert_eq!(c5.publish("v1/devices/me/unknown", "{}").await, Ok(PubAckReason::TopicNameInvalid));
    assert_eq!(c5.publish("v1/gateway/telemetry", "{}").await, Ok(PubAckReason::NotAuthorized), "not a gateway");
    // The session goes on after a refused publish.
    assert_eq!(c5.publish("v1/devices/me/telemetry", r#"{"ok": 1}"#).await, Ok(PubAckReason::Success));
    let limit = app(&t).platform.config().telemetry.max_payload_bytes;
    let big = format!(r#"{{"x": "{}"}}"#, "a".repeat(limit));
    // Oversized: DISCONNECT 0x95 and the socket closes (a client may see only the close).
    let refused = c5.publish("v1/devices/me/telemetry", big.clone()).await;
    assert!(refused.is_err(), "no PUBACK for an oversized payload: {refused:?}");

    let mut c4 = Client4::connected(addr, "BAD_TOKEN").await;
    c4.client.publish("v1/devices/me/telemetry", rumqttc::QoS::AtLeastOnce, false, "{not json").await.expect("queued");
    assert!(matches!(disconnected(&mut c4).await, Ok(())), "3.1.1 closes on bad JSON");
    let mut c4 = Client4::connected(addr, "BAD_TOKEN").await;
    c4.client.publish("v1/devices/me/nope", rumqttc::QoS::AtLeastOnce, false, "{}").await.expect("queued");
    assert!(matches!(disconnected(&mut c4).await, Ok(())), "3.1.1 closes on an unknown topic");

    // Nothing of a refused payload was stored.
    let points = points_of(&t, &id).await;
    assert_eq!(points.iter().map(|(_, k, _)| k.as_str()).collect::<Vec<_>>(), vec!["ok"], "{points:?}");
}

/// Waits until the server closes the connection without a PUBACK.
async fn disconnected(c: &mut Client4) -> Result<(), String> {
    loop {
        match c.next().await {
            Ok(rumqttc::Packet::PubAck(a)) => return Err(format!("unexpected PUBACK {a:?}")),
            Ok(_) => {}
            Err(_) => return Ok(()),
        }
    }
}

#[tokio::test]
async fn attribute_requests_and_shared_updates_follow_thingsboard() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let id = device_with_token(&t, &admin, "Attr", "ATTR_TOKEN", json!({})).await;
    let addr = mqtt_addr(&t);
    t.post(&format!("/api/plugins/telemetry/DEVICE/{id}/attributes/SHARED_SCOPE"), &admin, json!({"target": 22, "mode": "eco"}))
        .await
        .ok();

    let mut c = Client4::connected(addr, "ATTR_TOKEN").await;
    c.publish_acked("v1/devices/me/attributes", r#"{"fw": "1.0", "model": "T1"}"#).await;
    c.subscribe("v1/devices/me/attributes/response/+").await;
    c.subscribe("v1/devices/me/attributes").await;
    // The attributes reach the latest-values model shortly after their acknowledgement.
    let deadline = Instant::now() + WAIT;
    let answer = loop {
        c.client
            .publish("v1/devices/me/attributes/request/1", rumqttc::QoS::AtLeastOnce, false, r#"{"clientKeys": "fw", "sharedKeys": "target"}"#)
            .await
            .expect("queued");
        let (topic, body) = c.message().await;
        assert_eq!(topic, "v1/devices/me/attributes/response/1");
        if body.get("client").is_some() && body.get("shared").is_some() {
            break body;
        }
        assert!(Instant::now() < deadline, "attributes never readable: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(answer, json!({"client": {"fw": "1.0"}, "shared": {"target": 22}}));

    c.client.publish("v1/devices/me/attributes/request/2", rumqttc::QoS::AtLeastOnce, false, "{}").await.expect("queued");
    let (topic, all) = c.message().await;
    assert_eq!(topic, "v1/devices/me/attributes/response/2");
    assert_eq!(all, json!({"client": {"fw": "1.0", "model": "T1"}, "shared": {"target": 22, "mode": "eco"}}));

    // Shared attribute changes are pushed to the subscriber.
    t.post(&format!("/api/plugins/telemetry/DEVICE/{id}/attributes/SHARED_SCOPE"), &admin, json!({"target": 23})).await.ok();
    assert_eq!(c.message().await, ("v1/devices/me/attributes".to_string(), json!({"target": 23})));
    t.delete(&format!("/api/plugins/telemetry/DEVICE/{id}/SHARED_SCOPE?keys=mode"), &admin).await.ok();
    assert_eq!(c.message().await, ("v1/devices/me/attributes".to_string(), json!({"deleted": ["mode"]})));
}

#[tokio::test]
async fn session_limits_are_answered_and_other_client_rpc_gets_an_error() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    device_with_token(&t, &admin, "Rpc", "RPC_TOKEN", json!({})).await;
    let mut c = Client5::connected(mqtt_addr(&t), "RPC_TOKEN").await;
    c.subscribe("v1/devices/me/rpc/response/+").await;
    c.subscribe("v1/devices/me/rpc/request/+").await;
    let request = json!({"method": "getSessionLimits", "params": {"timeout": 5000}}).to_string();
    assert_eq!(c.publish("v1/devices/me/rpc/request/1", request).await, Ok(PubAckReason::Success));
    let (topic, limits) = c.message().await;
    assert_eq!(topic, "v1/devices/me/rpc/response/1");
    assert_eq!(limits["maxPayloadSize"], app(&t).platform.config().telemetry.max_payload_bytes);
    assert!(limits["maxInflightMessages"].as_u64().is_some_and(|n| n > 0), "{limits}");
    assert!(limits["rateLimits"].is_object(), "{limits}");
    c.publish("v1/devices/me/rpc/request/2", json!({"method": "reboot", "params": {}}).to_string()).await.ok();
    let (topic, answer) = c.message().await;
    assert_eq!(topic, "v1/devices/me/rpc/response/2");
    assert!(answer["error"].is_string(), "{answer}");
}

#[tokio::test]
async fn an_empty_client_id_is_accepted_under_5_and_with_a_clean_session_under_3_1_1() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    device_with_token(&t, &admin, "Anon", "ANON_TOKEN", json!({})).await;
    let addr = mqtt_addr(&t);
    Client5::connected(addr, "ANON_TOKEN").await;
    let mut c = Client4::new(addr, "ANON_TOKEN", "");
    assert!(matches!(c.next().await, Ok(rumqttc::Packet::ConnAck(a)) if a.code == rumqttc::ConnectReturnCode::Success));
}

#[tokio::test]
async fn thingsboards_python_sdk_connects_and_sends_telemetry() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let id = device_with_token(&t, &admin, "Sdk", "SDK_TOKEN", json!({})).await;
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = repo.join(".tools/venv/bin/python");
    assert!(python.exists(), "{} is missing: run scripts/install-tools", python.display());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/tb_mqtt_client_flow.py");
    let addr = mqtt_addr(&t);
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(python).arg(script).arg(addr.ip().to_string()).arg(addr.port().to_string()).arg("SDK_TOKEN").output(),
    )
    .await
    .expect("the SDK flow finishes")
    .expect("python runs");
    assert!(out.status.success(), "tb-mqtt-client flow failed:\n{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let points = points_of(&t, &id).await;
    assert!(points.iter().any(|(_, k, v)| k == "sdk_temperature" && *v == json!(36.6)), "{points:?}");
    assert!(client_attributes_of(&t, &id).await.contains(&("sdk_version".to_string(), json!("1.13.14"))));
}
