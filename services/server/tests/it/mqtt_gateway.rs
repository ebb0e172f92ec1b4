//! ThingsBoard's gateway MQTT API: sub-devices created on first sight with a `Created`
//! relation, their telemetry and attributes stored as theirs, attribute requests, and
//! shared-attribute pushes on `v1/gateway/attributes`.

use rumqttc::v5::mqttbytes::v5::PubAckReason;
use serde_json::json;

use crate::harness::{TestApp, id_of};
use crate::mqtt::{Client4, Client5, client_attributes_of, device_with_token, mqtt_addr, points_of};

#[tokio::test]
async fn a_gateway_creates_its_sub_devices_and_reports_for_them() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let gateway = device_with_token(&t, &admin, "Gateway", "GW_TOKEN", json!({"gateway": true})).await;
    let addr = mqtt_addr(&t);
    let mut gw = Client4::connected(addr, "GW_TOKEN").await;

    gw.publish_acked("v1/gateway/connect", r#"{"device": "Sensor A", "type": "thermometer"}"#).await;
    let a = t.get("/api/tenant/devices?deviceName=Sensor%20A", &admin).await.ok();
    assert_eq!(a["type"], "thermometer");
    assert_eq!(a["additionalInfo"]["lastConnectedGateway"], gateway.as_str());
    let relations = t.get(&format!("/api/relations?fromId={gateway}&fromType=DEVICE"), &admin).await.ok();
    let relations = relations.as_array().expect("relations");
    assert!(relations.iter().any(|r| r["type"] == "Created" && r["to"]["id"] == a["id"]["id"]), "{relations:?}");

    // Telemetry for a known and an unseen sub-device, in both shapes.
    gw.publish_acked(
        "v1/gateway/telemetry",
        r#"{"Sensor A": [{"ts": 1700000000000, "values": {"temperature": 20}}], "Sensor B": [{"humidity": 55}]}"#,
    )
    .await;
    let b = t.get("/api/tenant/devices?deviceName=Sensor%20B", &admin).await.ok();
    let (a, b) = (id_of(&a), id_of(&b));
    assert!(points_of(&t, &a).await.contains(&(1_700_000_000_000, "temperature".to_string(), json!(20))));
    assert!(points_of(&t, &b).await.iter().any(|(_, k, v)| k == "humidity" && *v == json!(55)));
    assert!(points_of(&t, &gateway).await.is_empty(), "nothing stored as the gateway itself");

    gw.publish_acked("v1/gateway/attributes", r#"{"Sensor A": {"fw": "2.0"}}"#).await;
    assert_eq!(client_attributes_of(&t, &a).await, vec![("fw".to_string(), json!("2.0"))]);

    // Attribute requests, the SDK's `keys` form and the single `key` form.
    gw.subscribe("v1/gateway/attributes/response").await;
    gw.subscribe("v1/gateway/attributes").await;
    t.post(&format!("/api/plugins/telemetry/DEVICE/{a}/attributes/SHARED_SCOPE"), &admin, json!({"interval": 5})).await.ok();
    // The push of the shared attribute set above.
    assert_eq!(gw.message().await, ("v1/gateway/attributes".to_string(), json!({"device": "Sensor A", "data": {"interval": 5}})));
    let deadline = std::time::Instant::now() + crate::mqtt::WAIT;
    let values = loop {
        gw.client
            .publish("v1/gateway/attributes/request", rumqttc::QoS::AtLeastOnce, false, r#"{"id": 1, "device": "Sensor A", "client": true, "keys": ["fw"]}"#)
            .await
            .expect("queued");
        let (topic, body) = gw.message().await;
        assert_eq!(topic, "v1/gateway/attributes/response");
        if body["values"]["fw"] == "2.0" {
            break body;
        }
        assert!(std::time::Instant::now() < deadline, "attribute never readable: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(values, json!({"id": 1, "device": "Sensor A", "values": {"fw": "2.0"}}));
    gw.client
        .publish("v1/gateway/attributes/request", rumqttc::QoS::AtLeastOnce, false, r#"{"id": 2, "device": "Sensor A", "client": false, "key": "interval"}"#)
        .await
        .expect("queued");
    assert_eq!(gw.message().await.1, json!({"id": 2, "device": "Sensor A", "value": 5}));

    gw.publish_acked("v1/gateway/disconnect", r#"{"device": "Sensor A"}"#).await;
}

#[tokio::test]
async fn only_a_gateway_may_use_the_gateway_topics() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    device_with_token(&t, &admin, "Plain", "PLAIN_TOKEN", json!({})).await;
    let mut c = Client5::connected(mqtt_addr(&t), "PLAIN_TOKEN").await;
    assert_eq!(c.publish("v1/gateway/connect", r#"{"device": "X"}"#).await, Ok(PubAckReason::NotAuthorized));
    assert_eq!(t.get("/api/tenant/devices?deviceName=X", &admin).await.status.as_u16(), 404);
}

#[tokio::test]
async fn a_bad_gateway_payload_stores_nothing() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    device_with_token(&t, &admin, "Gw", "GW2_TOKEN", json!({"gateway": true})).await;
    let mut c = Client5::connected(mqtt_addr(&t), "GW2_TOKEN").await;
    assert_eq!(
        c.publish("v1/gateway/telemetry", r#"{"Good": {"t": 1}, "Bad": 7}"#).await,
        Ok(PubAckReason::PayloadFormatInvalid)
    );
    assert_eq!(t.get("/api/tenant/devices?deviceName=Good", &admin).await.status.as_u16(), 404);
}

#[tokio::test]
async fn sub_devices_are_recorded_as_the_gateways_doing_and_follow_their_last_gateway() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let first = device_with_token(&t, &admin, "Gateway 1", "GW_ONE", json!({"gateway": true})).await;
    let second = device_with_token(&t, &admin, "Gateway 2", "GW_TWO", json!({"gateway": true})).await;
    let addr = mqtt_addr(&t);

    let mut gw1 = Client4::connected(addr, "GW_ONE").await;
    gw1.publish_acked("v1/gateway/connect", r#"{"device": "Roaming", "type": "tracker"}"#).await;
    let roaming = t.get("/api/tenant/devices?deviceName=Roaming", &admin).await.ok();
    assert_eq!(roaming["additionalInfo"]["lastConnectedGateway"], first.as_str());
    let id = id_of(&roaming);
    let history = t.get(&format!("/api/history/device/{id}"), &admin).await.ok();
    let created = &history.as_array().expect("events")[0];
    assert_eq!(created["eventType"], "DeviceCreated");
    assert_eq!(created["actor"], json!({"kind": "device", "id": first}), "created by the gateway as a device");

    // The same device behind another gateway: one device, its last gateway updated, by that gateway.
    let mut gw2 = Client5::connected(addr, "GW_TWO").await;
    assert_eq!(c5_ok(gw2.publish("v1/gateway/connect", r#"{"device": "Roaming"}"#).await), PubAckReason::Success);
    let moved = t.get("/api/tenant/devices?deviceName=Roaming", &admin).await.ok();
    assert_eq!(id_of(&moved), id, "no second device of that name");
    assert_eq!(moved["additionalInfo"]["lastConnectedGateway"], second.as_str());
    assert_eq!(moved["type"], "tracker", "the profile is kept");
    let history = t.get(&format!("/api/history/device/{id}"), &admin).await.ok();
    let events = history.as_array().expect("events");
    assert_eq!(events.len(), 2, "{history}");
    assert_eq!(events[1]["eventType"], "DeviceUpdated");
    assert_eq!(events[1]["actor"], json!({"kind": "device", "id": second}));

    // Disconnected from the first gateway, its telemetry through that gateway connects it there
    // again; a repeat changes nothing.
    gw1.publish_acked("v1/gateway/disconnect", r#"{"device": "Roaming"}"#).await;
    gw1.publish_acked("v1/gateway/telemetry", r#"{"Roaming": {"lat": 52.1}}"#).await;
    gw1.publish_acked("v1/gateway/telemetry", r#"{"Roaming": {"lat": 52.2}}"#).await;
    let back = t.get("/api/tenant/devices?deviceName=Roaming", &admin).await.ok();
    assert_eq!(back["additionalInfo"]["lastConnectedGateway"], first.as_str());
    let history = t.get(&format!("/api/history/device/{id}"), &admin).await.ok();
    assert_eq!(history.as_array().map(Vec::len), Some(3), "{history}");
    assert_eq!(points_of(&t, &id).await.len(), 2);
}

fn c5_ok(r: Result<PubAckReason, String>) -> PubAckReason {
    r.expect("a PUBACK")
}
