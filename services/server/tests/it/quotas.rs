//! Quotas: a device or tenant over its message rate is refused on every transport with its own
//! answer (HTTP 429 + `Retry-After` + errorCode 33, MQTT 5 PUBACK 0x97 / DISCONNECT 0x96, MQTT
//! 3.1.1 a close, NATS status 429), the rates `getSessionLimits` reports are the enforced ones,
//! a tenant at its rate does not hold back another, and entity caps refuse creations (errorCode
//! 41) and a gateway's new sub-devices.

use rumqttc::v5::mqttbytes::v5::{Packet as Packet5, PubAckReason};
use serde_json::{Value, json};
use thinglake_platform::{EntityLimits, QuotaConfig};

use crate::harness::{TestApp, id_of};
use crate::mqtt::{Client4, Client5, device_with_token, mqtt_addr};
use crate::telemetry::post_raw;

fn quotas(device: &str, tenant: &str) -> QuotaConfig {
    QuotaConfig {
        device_messages: device.parse().expect("valid"),
        tenant_messages: tenant.parse().expect("valid"),
        ..QuotaConfig::default()
    }
}

async fn nats_status(t: &TestApp, token: &str) -> Value {
    let client = t.nats.client().await;
    let reply = client.request(format!("thinglake.ingress.{token}.telemetry"), r#"{"t": 1}"#.into()).await.expect("ingress answers");
    serde_json::from_slice::<Value>(&reply.payload).expect("JSON reply")
}

#[tokio::test]
async fn a_device_over_its_rate_is_refused_on_every_transport_with_its_code() {
    let t = TestApp::start_with(|s| s.quotas = quotas("3:3600", "")).await;
    let (_, admin) = t.tenant("Rates").await;
    for (name, token) in [("http", "RATE_HTTP"), ("nats", "RATE_NATS"), ("m5", "RATE_M5"), ("m4", "RATE_M4"), ("limits", "RATE_LIMITS")] {
        device_with_token(&t, &admin, name, token, json!({})).await;
    }
    device_with_token(&t, &admin, "gw", "RATE_GW", json!({"gateway": true})).await;

    // getSessionLimits reports the enforced rate (and counts as a message itself).
    let mut c = Client5::connected(mqtt_addr(&t), "RATE_LIMITS").await;
    c.subscribe("v1/devices/me/rpc/response/+").await;
    let request = json!({"method": "getSessionLimits", "params": {}}).to_string();
    assert_eq!(c.publish("v1/devices/me/rpc/request/1", request).await, Ok(PubAckReason::Success));
    let (_, limits) = c.message().await;
    assert_eq!(limits["rateLimits"]["messages"], "3:3600", "{limits}");
    assert_eq!(limits["rateLimits"]["telemetryMessages"], "3:3600", "{limits}");

    // HTTP device API: 429, Retry-After, ThingsBoard's errorCode 33.
    for _ in 0..3 {
        assert_eq!(post_raw(&t, "/api/v1/RATE_HTTP/telemetry", r#"{"t": 1}"#).await.0, 200);
    }
    let (status, retry_after, body) = post_raw(&t, "/api/v1/RATE_HTTP/telemetry", r#"{"t": 1}"#).await;
    assert_eq!(status, 429, "{body}");
    assert!(retry_after.and_then(|s| s.parse::<u64>().ok()).is_some_and(|s| s >= 1), "Retry-After in seconds");
    let body: Value = serde_json::from_str(&body).expect("error JSON");
    assert_eq!((body["status"].clone(), body["errorCode"].clone()), (json!(429), json!(33)), "{body}");
    assert_eq!(post_raw(&t, "/api/v1/RATE_HTTP/attributes", r#"{"a": 1}"#).await.0, 429, "attributes count too");

    // NATS ingress: status 429.
    for _ in 0..3 {
        assert_eq!(nats_status(&t, "RATE_NATS").await, json!({"ok": true, "points": 1}));
    }
    assert_eq!(nats_status(&t, "RATE_NATS").await["status"], 429);

    // MQTT 5: PUBACK 0x97 at QoS 1, the session goes on; QoS 0 over the rate: DISCONNECT 0x96
    // and the connection closes.
    let mut c5 = Client5::connected(mqtt_addr(&t), "RATE_M5").await;
    for _ in 0..3 {
        assert_eq!(c5.publish("v1/devices/me/telemetry", r#"{"t": 1}"#).await, Ok(PubAckReason::Success));
    }
    assert_eq!(c5.publish("v1/devices/me/telemetry", r#"{"t": 1}"#).await, Ok(PubAckReason::QuotaExceeded));
    c5.client.publish("v1/devices/me/telemetry", rumqttc::v5::mqttbytes::QoS::AtMostOnce, false, r#"{"t": 1}"#).await.expect("queued");
    loop {
        match c5.next().await {
            Ok(Packet5::Disconnect(d)) => {
                assert_eq!(d.reason_code, rumqttc::v5::mqttbytes::v5::DisconnectReasonCode::MessageRateTooHigh);
                break;
            }
            Ok(Packet5::PubAck(a)) => panic!("unexpected PUBACK {a:?}"),
            Ok(_) => {}
            // rumqttc may fail to read the DISCONNECT as the socket closes behind it (as for 0x95):
            // the connection ended either way.
            Err(_) => break,
        }
    }

    // MQTT 3.1.1 has no reason codes: the connection closes.
    let mut c4 = Client4::connected(mqtt_addr(&t), "RATE_M4").await;
    for _ in 0..3 {
        c4.publish_acked("v1/devices/me/telemetry", r#"{"t": 1}"#).await;
    }
    c4.client.publish("v1/devices/me/telemetry", rumqttc::QoS::AtLeastOnce, false, r#"{"t": 1}"#).await.expect("queued");
    loop {
        match c4.next().await {
            Ok(rumqttc::Packet::PubAck(a)) => panic!("unexpected PUBACK {a:?}"),
            Ok(_) => {}
            Err(_) => break,
        }
    }

    // A gateway's messages for its sub-devices count against the gateway.
    let mut gw = Client5::connected(mqtt_addr(&t), "RATE_GW").await;
    for i in 0..3 {
        let payload = json!({format!("sub {i}"): {"t": i}}).to_string();
        assert_eq!(gw.publish("v1/gateway/telemetry", payload).await, Ok(PubAckReason::Success));
    }
    let payload = json!({"sub 9": {"t": 9}}).to_string();
    assert_eq!(gw.publish("v1/gateway/telemetry", payload).await, Ok(PubAckReason::QuotaExceeded));
    assert_eq!(t.get("/api/tenant/devices?deviceName=sub%209", &admin).await.status.as_u16(), 404, "nothing of it stored");
}

#[tokio::test]
async fn a_tenant_over_its_rate_is_refused_while_another_tenant_goes_on() {
    let t = TestApp::start_with(|s| s.quotas = quotas("", "20:3600")).await;
    let (_, noisy) = t.tenant("Noisy").await;
    let (_, quiet) = t.tenant("Quiet").await;
    device_with_token(&t, &noisy, "n1", "NOISY_1", json!({})).await;
    device_with_token(&t, &noisy, "n2", "NOISY_2", json!({})).await;
    device_with_token(&t, &quiet, "q1", "QUIET_1", json!({})).await;

    // The noisy tenant sends 200 at once over two devices while the quiet one sends 20.
    let paths: Vec<&str> = (0..200).map(|i| if i % 2 == 0 { "/api/v1/NOISY_1/telemetry" } else { "/api/v1/NOISY_2/telemetry" }).collect();
    let flood = paths.iter().map(|path| post_raw(&t, path, r#"{"t": 1}"#));
    let quiet_sends = (0..20).map(|_| post_raw(&t, "/api/v1/QUIET_1/telemetry", r#"{"t": 1}"#));
    let (flood, quiet_sends) = tokio::join!(futures::future::join_all(flood), futures::future::join_all(quiet_sends));
    let accepted = flood.iter().filter(|(status, _, _)| *status == 200).count();
    assert_eq!(accepted, 20, "exactly the tenant's rate passes");
    assert!(flood.iter().all(|(status, _, _)| *status == 200 || *status == 429));
    assert!(quiet_sends.iter().all(|(status, _, _)| *status == 200), "the other tenant is not limited by the noisy one");

    // MQTT 5 answers a tenant over its rate with 0x97 as well.
    let mut c5 = Client5::connected(mqtt_addr(&t), "NOISY_1").await;
    assert_eq!(c5.publish("v1/devices/me/telemetry", r#"{"t": 1}"#).await, Ok(PubAckReason::QuotaExceeded));
}

#[tokio::test]
async fn entity_caps_refuse_creations_with_code_41_and_the_gateway_refuses_the_sub_device() {
    let limits = EntityLimits { max_devices: 2, max_assets: 1, max_customers: 1, max_dashboards: 1, max_profiles: 3 };
    let t = TestApp::start_with(|s| s.quotas = QuotaConfig { entities: limits, ..QuotaConfig::default() }).await;
    let (_, admin) = t.tenant("Capped").await;
    let (_, other) = t.tenant("Other").await;

    let first = t.device(&admin, "d1").await;
    device_with_token(&t, &admin, "gw", "CAP_GW", json!({"gateway": true})).await;
    let refused = t.post("/api/device", &admin, json!({"name": "d3", "type": "default"})).await.expect(403);
    assert_eq!(refused["errorCode"], 41, "{refused}");
    assert!(refused["message"].as_str().is_some_and(|m| m.contains("Devices limit exceeded")), "{refused}");
    t.post("/api/asset", &admin, json!({"name": "a1"})).await.ok();
    assert_eq!(t.post("/api/asset", &admin, json!({"name": "a2"})).await.expect(403)["errorCode"], 41);
    t.post("/api/customer", &admin, json!({"title": "c1"})).await.ok();
    assert_eq!(t.post("/api/customer", &admin, json!({"title": "c2"})).await.expect(403)["errorCode"], 41);
    t.post("/api/dashboard", &admin, json!({"title": "b1"})).await.ok();
    assert_eq!(t.post("/api/dashboard", &admin, json!({"title": "b2"})).await.expect(403)["errorCode"], 41);
    // Two default profiles (device, asset) exist; one more fits, then none.
    t.post("/api/deviceProfile", &admin, json!({"name": "p3"})).await.ok();
    assert_eq!(t.post("/api/deviceProfile", &admin, json!({"name": "p4"})).await.expect(403)["errorCode"], 41);

    // The gateway cannot create a sub-device beyond the cap: PUBACK 0x97, nothing created.
    let mut gw = Client5::connected(mqtt_addr(&t), "CAP_GW").await;
    assert_eq!(gw.publish("v1/gateway/telemetry", json!({"Sub": {"t": 1}}).to_string()).await, Ok(PubAckReason::QuotaExceeded));
    assert_eq!(t.get("/api/tenant/devices?deviceName=Sub", &admin).await.status.as_u16(), 404);

    // Another tenant has its own count; a deletion frees a place.
    t.post("/api/device", &other, json!({"name": "d1", "type": "default"})).await.ok();
    t.delete(&format!("/api/device/{}", id_of(&first)), &admin).await.ok();
    assert_eq!(gw.publish("v1/gateway/telemetry", json!({"Sub": {"t": 1}}).to_string()).await, Ok(PubAckReason::Success));
    assert_eq!(t.get("/api/tenant/devices?deviceName=Sub", &admin).await.status.as_u16(), 200);
}
