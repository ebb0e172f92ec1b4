//! The WebSocket API with a real client (tokio-tungstenite) and telemetry published over the
//! device HTTP API: authentication by first message and by `?token=`, refusals, live points,
//! unsubscribe, the legacy endpoint.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::harness::{TestApp, id_of};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn connect(t: &TestApp, path: &str) -> Ws {
    let url = format!("{}{path}", t.base.replacen("http://", "ws://", 1));
    tokio_tungstenite::connect_async(url).await.expect("websocket connects").0
}

async fn send(ws: &mut Ws, body: Value) {
    ws.send(Message::Text(body.to_string().into())).await.expect("sent");
}

/// The next JSON message, within `within`; `None` on timeout or close.
async fn next(ws: &mut Ws, within: Duration) -> Option<Value> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, ws.next()).await.ok()?? {
            Ok(Message::Text(text)) => return serde_json::from_str(text.as_str()).ok(),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// A tenant admin token, a device id and its access token.
async fn device(t: &TestApp, tenant: &str) -> (String, String, String) {
    let (_, admin) = t.tenant(tenant).await;
    let id = id_of(&t.device(&admin, "ws-device").await);
    let creds = t.get(&format!("/api/device/{id}/credentials"), &admin).await.ok();
    (admin, id, creds["credentialsId"].as_str().expect("token").to_string())
}

async fn publish(t: &TestApp, token: &str, body: Value) {
    let res = t.http.post(t.url(&format!("/api/v1/{token}/telemetry"))).json(&body).send().await.expect("published");
    assert_eq!(res.status(), 200);
}

fn ts_cmd(cmd_id: i64, device: &str, keys: &str) -> Value {
    json!({"type": "TIMESERIES", "cmdId": cmd_id, "entityType": "DEVICE", "entityId": device, "keys": keys,
           "startTs": 0, "timeWindow": 60000, "interval": 1000, "agg": "NONE", "limit": 100})
}

#[tokio::test]
async fn a_subscriber_authenticated_by_its_first_message_gets_points_live_until_it_unsubscribes() {
    let t = TestApp::start().await;
    let (admin, id, token) = device(&t, "WS Live").await;
    publish(&t, &token, json!({"ts": 1000, "values": {"temperature": 20.5}})).await;

    let mut ws = connect(&t, "/api/ws").await;
    send(&mut ws, json!({"authCmd": {"cmdId": 0, "token": admin}, "cmds": [ts_cmd(1, &id, "temperature")]})).await;
    let initial = next(&mut ws, Duration::from_secs(5)).await.expect("initial values");
    assert_eq!(initial["subscriptionId"], 1);
    assert_eq!(initial["errorCode"], 0);
    assert_eq!(initial["data"]["temperature"], json!([[1000, "20.5"]]));
    assert_eq!(initial["latestValues"]["temperature"], 1000);

    let sent = Instant::now();
    publish(&t, &token, json!({"temperature": 21.5, "humidity": 40})).await;
    let update = next(&mut ws, Duration::from_secs(1)).await.expect("a point within 1 s of its publish");
    assert!(sent.elapsed() < Duration::from_secs(1));
    assert_eq!(update["subscriptionId"], 1);
    assert_eq!(update["data"]["temperature"][0][1], "21.5");
    assert!(update["data"].get("humidity").is_none(), "only subscribed keys");

    send(&mut ws, json!({"cmds": [{"type": "TIMESERIES", "cmdId": 1, "unsubscribe": true}]})).await;
    // Attributes still flow on another subscription, which also proves the session is alive.
    send(&mut ws, json!({"cmds": [{"type": "ATTRIBUTES", "cmdId": 2, "entityType": "DEVICE", "entityId": id, "scope": "SERVER_SCOPE"}]})).await;
    let attrs = next(&mut ws, Duration::from_secs(5)).await.expect("attribute subscription answered");
    assert_eq!(attrs["subscriptionId"], 2);
    publish(&t, &token, json!({"temperature": 99})).await;
    t.post(&format!("/api/plugins/telemetry/DEVICE/{id}/attributes/SERVER_SCOPE"), &admin, json!({"mode": "eco"})).await.ok();
    let next_update = next(&mut ws, Duration::from_secs(5)).await.expect("attribute update");
    assert_eq!(next_update["subscriptionId"], 2, "no update of the unsubscribed time series: {next_update}");
    assert_eq!(next_update["data"]["mode"][0][1], "eco");
}

#[tokio::test]
async fn a_token_on_the_url_authenticates_and_a_bad_one_gets_error_3() {
    let t = TestApp::start().await;
    let (admin, id, _) = device(&t, "WS Url").await;
    let mut ws = connect(&t, &format!("/api/ws?token={admin}")).await;
    send(&mut ws, json!({"cmds": [ts_cmd(7, &id, "t")]})).await;
    let answer = next(&mut ws, Duration::from_secs(5)).await.expect("answer");
    assert_eq!((answer["subscriptionId"].clone(), answer["errorCode"].clone()), (json!(7), json!(0)));

    let mut bad = connect(&t, "/api/ws?token=not-a-jwt").await;
    let refused = next(&mut bad, Duration::from_secs(5)).await.expect("refusal");
    assert_eq!(refused["errorCode"], 3);
    assert!(next(&mut bad, Duration::from_secs(5)).await.is_none(), "closed after the refusal");

    let mut bad_first = connect(&t, "/api/ws").await;
    send(&mut bad_first, json!({"authCmd": {"cmdId": 0, "token": "nope"}})).await;
    assert_eq!(next(&mut bad_first, Duration::from_secs(5)).await.expect("refusal")["errorCode"], 3);

    let mut unauthenticated = connect(&t, "/api/ws").await;
    send(&mut unauthenticated, json!({"cmds": [ts_cmd(3, &id, "t")]})).await;
    assert_eq!(next(&mut unauthenticated, Duration::from_secs(5)).await.expect("refusal")["errorCode"], 3);
}

#[tokio::test]
async fn another_tenants_entity_is_refused_and_bad_commands_get_error_2() {
    let t = TestApp::start().await;
    let (_, id, _) = device(&t, "WS Owner").await;
    let (_, other_admin) = t.tenant("WS Intruder").await;
    let mut ws = connect(&t, &format!("/api/ws?token={other_admin}")).await;
    send(&mut ws, json!({"cmds": [ts_cmd(1, &id, "t")]})).await;
    let refused = next(&mut ws, Duration::from_secs(5)).await.expect("refusal");
    assert_eq!((refused["subscriptionId"].clone(), refused["errorCode"].clone()), (json!(1), json!(3)));
    send(&mut ws, json!({"cmds": [{"type": "TIMESERIES", "cmdId": 2, "entityType": "DEVICE", "entityId": "zzz"}]})).await;
    assert_eq!(next(&mut ws, Duration::from_secs(5)).await.expect("refusal")["errorCode"], 2);
}

#[tokio::test]
async fn the_legacy_endpoint_takes_ts_sub_cmds() {
    let t = TestApp::start().await;
    let (admin, id, token) = device(&t, "WS Legacy").await;
    let mut ws = connect(&t, &format!("/api/ws/plugins/telemetry?token={admin}")).await;
    send(&mut ws, json!({"tsSubCmds": [{"cmdId": 5, "entityType": "DEVICE", "entityId": id, "keys": "t"}], "historyCmds": [], "attrSubCmds": []})).await;
    let initial = next(&mut ws, Duration::from_secs(5)).await.expect("initial");
    assert_eq!((initial["subscriptionId"].clone(), initial["errorCode"].clone()), (json!(5), json!(0)));
    publish(&t, &token, json!({"ts": 42, "values": {"t": 3}})).await;
    let update = next(&mut ws, Duration::from_secs(2)).await.expect("update");
    assert_eq!(update["data"]["t"], json!([[42, "3"]]));
}

#[tokio::test]
async fn a_customer_user_follows_its_customers_device_until_it_is_unassigned() {
    let t = TestApp::start().await;
    let (tenant_id, admin) = t.tenant("WS Customer").await;
    let customer = t.customer(&admin, "Viewer Co").await;
    let viewer = t
        .user(
            &admin,
            json!({"email": "ws-viewer@example.com", "authority": "CUSTOMER_USER",
                   "tenantId": {"entityType": "TENANT", "id": tenant_id},
                   "customerId": {"entityType": "CUSTOMER", "id": customer}}),
        )
        .await;
    let id = id_of(&t.device(&admin, "assigned").await);
    let creds = t.get(&format!("/api/device/{id}/credentials"), &admin).await.ok();
    let token = creds["credentialsId"].as_str().expect("token").to_string();

    let mut ws = connect(&t, &format!("/api/ws?token={viewer}")).await;
    send(&mut ws, json!({"cmds": [ts_cmd(1, &id, "t")]})).await;
    assert_eq!(next(&mut ws, Duration::from_secs(5)).await.expect("refusal")["errorCode"], 3, "not assigned yet");

    t.post(&format!("/api/customer/{customer}/device/{id}"), &admin, json!({})).await.ok();
    send(&mut ws, json!({"cmds": [ts_cmd(2, &id, "t")]})).await;
    assert_eq!(next(&mut ws, Duration::from_secs(5)).await.expect("initial")["errorCode"], 0);
    publish(&t, &token, json!({"t": 1})).await;
    assert_eq!(next(&mut ws, Duration::from_secs(2)).await.expect("update")["data"]["t"][0][1], "1");

    t.delete(&format!("/api/customer/device/{id}"), &admin).await.ok();
    publish(&t, &token, json!({"t": 2})).await;
    let cut = next(&mut ws, Duration::from_secs(2)).await.expect("refusal after unassignment");
    assert_eq!((cut["subscriptionId"].clone(), cut["errorCode"].clone()), (json!(2), json!(3)));
}

#[tokio::test]
async fn a_session_that_never_authenticates_is_closed_after_10_s() {
    let t = TestApp::start().await;
    let mut ws = connect(&t, "/api/ws").await;
    let opened = Instant::now();
    assert!(next(&mut ws, Duration::from_secs(15)).await.is_none(), "closed without a message");
    let after = opened.elapsed();
    assert!(after >= Duration::from_secs(9) && after < Duration::from_secs(13), "closed after {after:?}");
}

#[tokio::test]
async fn a_point_published_on_one_node_reaches_a_subscriber_on_another_until_it_shuts_down() {
    let t = TestApp::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = thinglake_server::Settings::new(dir.path());
    settings.http_host = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    settings.http_port = 0;
    settings.mqtt_port = 0;
    settings.nats_url = Some(t.nats.url());
    settings.admin_email = crate::harness::SYSADMIN_EMAIL.into();
    settings.admin_password = Some(crate::harness::SYSADMIN_PASSWORD.into());
    let node_b = thinglake_server::RunningApp::start(settings).await.expect("second node starts");
    let b = crate::harness::Api::new(format!("http://{}", node_b.http_addr));
    let (admin, id, token) = device(&t, "WS Cluster").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !b.get(&format!("/api/device/{id}"), &admin).await.status.is_success() {
        assert!(Instant::now() < deadline, "node B never saw the device");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let url = format!("ws://{}/api/ws?token={admin}", node_b.http_addr);
    let mut ws = tokio_tungstenite::connect_async(url).await.expect("websocket connects").0;
    send(&mut ws, json!({"cmds": [ts_cmd(1, &id, "t")]})).await;
    assert_eq!(next(&mut ws, Duration::from_secs(5)).await.expect("initial")["errorCode"], 0);
    publish(&t, &token, json!({"t": 5})).await;
    let update = next(&mut ws, Duration::from_secs(1)).await.expect("the point within 1 s on the other node");
    assert_eq!(update["data"]["t"][0][1], "5");
    // An open session ends with the node instead of holding its shutdown up.
    let stopping = Instant::now();
    node_b.shutdown().await;
    assert!(stopping.elapsed() < Duration::from_secs(10), "shutdown took {:?}", stopping.elapsed());
    assert!(next(&mut ws, Duration::from_secs(2)).await.is_none(), "the session was closed");
}
