//! Timestamps beyond the calendar (the lake partitions points by day, years 1 to 9999): refused
//! by every ingest path with its own error, and, when one is already on the log, sent to the
//! dead letters without stopping any tenant's points from reaching the lake.

use std::time::Duration;

use bytes::Bytes;
use deltalake_core::arrow::array::AsArray;
use deltalake_core::arrow::datatypes::Int64Type;
use rumqttc::v5::mqttbytes::v5::PubAckReason;
use serde_json::{Value, json};
use thinglake_domain::telemetry::{KvEntry, KvValue, TelemetryData, TelemetryMessage, TsBatch};
use thinglake_domain::{Actor, EntityType};
use thinglake_infra::subjects::Subjects;
use thinglake_lake::{LakeLocation, scan};
use uuid::Uuid;

use crate::harness::{TestApp, id_of};
use crate::mqtt::{Client4, Client5, device_with_token, mqtt_addr, points_of};
use crate::telemetry::{eventually, post_raw};

/// About 266,000 years after 1970: beyond chrono's calendar, where deltalake's day partition
/// panicked.
const FAR: i64 = 8_400_000_000_000_000;

#[tokio::test]
async fn a_timestamp_beyond_the_calendar_is_refused_by_every_ingest_path() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Far").await;
    let id = device_with_token(&t, &admin, "Far", "FAR_TOKEN", json!({})).await;
    device_with_token(&t, &admin, "Far gateway", "FAR_GW", json!({"gateway": true})).await;
    let stamped = |ts: i64| json!({"ts": ts, "values": {"t": 1}}).to_string();

    // HTTP device API: 400 with ThingsBoard's error JSON naming the range.
    for ts in [FAR, -FAR] {
        let (status, _, body) = post_raw(&t, "/api/v1/FAR_TOKEN/telemetry", stamped(ts)).await;
        assert_eq!(status, 400, "{body}");
        let body: Value = serde_json::from_str(&body).expect("error JSON");
        assert_eq!(body["status"], 400);
        assert!(body["message"].as_str().is_some_and(|m| m.contains("outside the supported range")), "{body}");
    }
    // REST time-series save, an array with one bad point among good ones.
    let save = t
        .post(&format!("/api/plugins/telemetry/DEVICE/{id}/timeseries/ANY"), &admin, json!([{"ok": 1}, {"ts": FAR, "values": {"t": 1}}]))
        .await
        .expect(400);
    assert!(save["message"].as_str().is_some_and(|m| m.contains("outside the supported range")), "{save}");

    // MQTT 5: the reason code of bad JSON; the gateway's sub-device payloads alike.
    let mut c5 = Client5::connected(mqtt_addr(&t), "FAR_TOKEN").await;
    assert_eq!(c5.publish("v1/devices/me/telemetry", stamped(FAR)).await, Ok(PubAckReason::PayloadFormatInvalid));
    let mut gw = Client5::connected(mqtt_addr(&t), "FAR_GW").await;
    let sub = json!({"Far sub": [{"ts": -FAR, "values": {"t": 1}}]}).to_string();
    assert_eq!(gw.publish("v1/gateway/telemetry", sub).await, Ok(PubAckReason::PayloadFormatInvalid));
    assert_eq!(t.get("/api/tenant/devices?deviceName=Far%20sub", &admin).await.status.as_u16(), 404);
    // MQTT 3.1.1 has no reason code: the connection closes, as for bad JSON.
    let mut c4 = Client4::connected(mqtt_addr(&t), "FAR_TOKEN").await;
    c4.client.publish("v1/devices/me/telemetry", rumqttc::QoS::AtLeastOnce, false, stamped(FAR)).await.expect("queued");
    loop {
        match c4.next().await {
            Ok(rumqttc::Packet::PubAck(a)) => panic!("unexpected PUBACK {a:?}"),
            Ok(_) => {}
            Err(_) => break,
        }
    }

    // NATS ingress: the error reply.
    let client = t.nats.client().await;
    let reply = client.request("thinglake.ingress.FAR_TOKEN.telemetry", stamped(FAR).into()).await.expect("ingress answers");
    let reply: Value = serde_json::from_slice(&reply.payload).expect("JSON reply");
    assert_eq!(reply["status"], 400, "{reply}");
    assert!(reply["error"].as_str().is_some_and(|m| m.contains("outside the supported range")), "{reply}");

    // The edges of the range are accepted; nothing of a refused payload was stored.
    let (status, _, _) = post_raw(&t, "/api/v1/FAR_TOKEN/telemetry", json!({"ts": 253_402_300_799_999i64, "values": {"edge": 1}}).to_string()).await;
    assert_eq!(status, 200);
    let points = points_of(&t, &id).await;
    assert_eq!(points.iter().map(|(_, k, _)| k.as_str()).collect::<Vec<_>>(), vec!["edge"], "{points:?}");
}

/// The `long_v` values of tenant `tenant` in the lake's telemetry table, and the dead letters'
/// sequences.
async fn committed(location: &LakeLocation, tenant: &str) -> (Vec<i64>, Vec<i64>) {
    let mut values = Vec::new();
    for batch in scan::read_table(location, "telemetry").await.expect("telemetry table") {
        let tenants = batch.column_by_name("tenant_id").expect("tenant_id").as_string::<i32>();
        let long_v = batch.column_by_name("long_v").expect("long_v").as_primitive::<Int64Type>();
        values.extend((0..batch.num_rows()).filter(|&i| tenants.value(i) == tenant).map(|i| long_v.value(i)));
    }
    let mut dead = Vec::new();
    for batch in scan::read_table(location, "dead_letters").await.expect("dead letters table") {
        let projection = batch.column_by_name("projection").expect("projection").as_string::<i32>();
        let seq = batch.column_by_name("seq").expect("seq").as_primitive::<Int64Type>();
        dead.extend((0..batch.num_rows()).filter(|&i| projection.value(i) == "telemetry").map(|i| seq.value(i)));
    }
    values.sort();
    (values, dead)
}

#[tokio::test]
async fn a_point_beyond_the_calendar_already_on_the_log_stops_no_tenant() {
    let t = TestApp::start_with(|s| s.lake_commit_interval = Duration::from_millis(200)).await;
    let (attacker, _) = t.tenant("Attacker").await;
    let (victim, admin) = t.tenant("Victim").await;
    let device = t.device(&admin, "victim device").await;
    let token = crate::telemetry::access_token(&t, &admin, &id_of(&device)).await;

    // Written past the parser, as a build before the check let it through.
    let (attacker_id, device_id) = (Uuid::parse_str(&attacker).expect("uuid"), Uuid::now_v7());
    let message = TelemetryMessage::new(
        Uuid::now_v7(),
        attacker_id,
        EntityType::Device,
        device_id,
        0,
        Actor::device(device_id),
        TelemetryData::Timeseries { batches: vec![TsBatch { ts: FAR, values: vec![KvEntry { key: "t".into(), value: KvValue::Long(0) }] }] },
    );
    let js = async_nats::jetstream::new(t.nats.client().await);
    let subject = Subjects::default().telemetry(attacker_id, device_id);
    let bad_seq = js.publish(subject, Bytes::from(serde_json::to_vec(&message).expect("JSON"))).await.expect("sent").await.expect("acked").sequence;

    for v in 1..=3 {
        let (status, _, body) = post_raw(&t, &format!("/api/v1/{token}/telemetry"), json!({"ts": 1_700_000_000_000i64 + v, "values": {"t": v}}).to_string()).await;
        assert_eq!(status, 200, "{body}");
    }
    let location = LakeLocation::local(&t.data_dir.path().join("lake")).expect("local lake");
    let (values, dead) = eventually(Duration::from_secs(30), || async {
        let (values, dead) = committed(&location, &victim).await;
        (values.len() == 3 && !dead.is_empty()).then_some((values, dead))
    })
    .await;
    assert_eq!(values, vec![1, 2, 3]);
    assert_eq!(dead, vec![bad_seq as i64]);
}
