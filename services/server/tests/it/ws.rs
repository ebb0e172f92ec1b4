//! The WebSocket API with a real client (tokio-tungstenite) and telemetry published over the
//! device HTTP API: authentication by first message and by `?token=`, refusals, live points,
//! unsubscribe, the legacy endpoint, a subscription's initial time window and history commands.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::harness::{TestApp, id_of};
use crate::telemetry::eventually;

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub(crate) async fn connect(t: &TestApp, path: &str) -> Ws {
    let url = format!("{}{path}", t.base.replacen("http://", "ws://", 1));
    tokio_tungstenite::connect_async(url).await.expect("websocket connects").0
}

pub(crate) async fn send(ws: &mut Ws, body: Value) {
    ws.send(Message::Text(body.to_string().into())).await.expect("sent");
}

/// The next JSON message, within `within`; `None` on timeout or close.
pub(crate) async fn next(ws: &mut Ws, within: Duration) -> Option<Value> {
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

pub(crate) fn ts_cmd(cmd_id: i64, device: &str, keys: &str) -> Value {
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
    let node_b = Box::pin(thinglake_server::RunningApp::start(settings)).await.expect("second node starts");
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

/// 2023-11-14T22:13:20Z: points far from now, so only the range reads can see them.
const T0: i64 = 1_700_000_000_000;

/// Publishes `temperature` = 10, 11, … at T0, T0 + 1 s, … and waits until a REST range query
/// answers all of them (the query engine reads the hot tail, which follows the log).
async fn publish_series(t: &TestApp, admin: &str, id: &str, token: &str, n: i64) -> Vec<(i64, f64)> {
    let points: Vec<(i64, f64)> = (0..n).map(|i| (T0 + i * 1000, 10.0 + i as f64)).collect();
    let batch: Vec<Value> = points.iter().map(|(ts, v)| json!({"ts": ts, "values": {"temperature": v}})).collect();
    publish(t, token, Value::Array(batch)).await;
    let path = format!("/api/plugins/telemetry/DEVICE/{id}/values/timeseries?keys=temperature&startTs={T0}&endTs={}&limit=1000", T0 + n * 1000);
    eventually(Duration::from_secs(10), || async {
        let got = t.get(&path, admin).await.ok();
        (got["temperature"].as_array().map(Vec::len) == Some(points.len())).then_some(())
    })
    .await;
    points
}

/// `[[ts, "v"], …]` as the WebSocket sends values.
fn rows(points: &[(i64, f64)]) -> Value {
    Value::Array(points.iter().map(|(ts, v)| json!([ts, Value::String(format!("{v:?}"))])).collect())
}

#[tokio::test]
async fn a_subscription_with_a_time_window_starts_with_the_windows_points_then_goes_live() {
    let t = TestApp::start().await;
    let (admin, id, token) = device(&t, "WS Window").await;
    let points = publish_series(&t, &admin, &id, &token, 6).await;

    let mut ws = connect(&t, &format!("/api/ws?token={admin}")).await;
    // [T0 + 1 s, T0 + 4 s): the second, third and fourth points, oldest first.
    send(&mut ws, json!({"cmds": [{"type": "TIMESERIES", "cmdId": 1, "entityType": "DEVICE", "entityId": id,
        "keys": "temperature", "startTs": T0 + 1000, "timeWindow": 3000, "agg": "NONE"}]}))
    .await;
    let initial = next(&mut ws, Duration::from_secs(5)).await.expect("initial window");
    assert_eq!((initial["subscriptionId"].clone(), initial["errorCode"].clone()), (json!(1), json!(0)), "{initial}");
    assert_eq!(initial["data"]["temperature"], rows(&points[1..4]), "{initial}");
    assert_eq!(initial["latestValues"]["temperature"], T0 + 3000);

    // `limit` keeps the newest points of a raw window.
    send(&mut ws, json!({"cmds": [{"type": "TIMESERIES", "cmdId": 2, "entityType": "DEVICE", "entityId": id,
        "keys": "temperature", "startTs": T0, "timeWindow": 6000, "limit": 2}]}))
    .await;
    let limited = next(&mut ws, Duration::from_secs(5)).await.expect("limited window");
    assert_eq!(limited["data"]["temperature"], rows(&points[4..6]), "{limited}");

    // Averages of 2 s buckets from startTs, the last one clipped at startTs + timeWindow, each at
    // the middle of its bucket.
    send(&mut ws, json!({"cmds": [{"type": "TIMESERIES", "cmdId": 3, "entityType": "DEVICE", "entityId": id,
        "keys": "temperature", "startTs": T0, "timeWindow": 5000, "interval": 2000, "agg": "AVG"}]}))
    .await;
    let averaged = next(&mut ws, Duration::from_secs(5)).await.expect("aggregated window");
    let avg = |from: usize, to: usize| points[from..to].iter().map(|p| p.1).sum::<f64>() / (to - from) as f64;
    let expected = vec![(T0 + 1000, avg(0, 2)), (T0 + 3000, avg(2, 4)), (T0 + 4500, avg(4, 5))];
    assert_eq!(averaged["data"]["temperature"], rows(&expected), "{averaged}");

    // Then each subscription goes live.
    publish(&t, &token, json!({"temperature": 99.5})).await;
    let mut live = Vec::new();
    while live.len() < 3 {
        let update = next(&mut ws, Duration::from_secs(2)).await.expect("live update");
        assert_eq!(update["data"]["temperature"][0][1], "99.5", "{update}");
        live.push(update["subscriptionId"].as_i64().expect("id"));
    }
    live.sort_unstable();
    assert_eq!(live, [1, 2, 3]);

    // Too many buckets is a bad request, as over REST.
    send(&mut ws, json!({"cmds": [{"type": "TIMESERIES", "cmdId": 4, "entityType": "DEVICE", "entityId": id,
        "keys": "temperature", "startTs": T0, "timeWindow": 701, "interval": 1, "agg": "MAX"}]}))
    .await;
    let refused = next(&mut ws, Duration::from_secs(5)).await.expect("refusal");
    assert_eq!((refused["subscriptionId"].clone(), refused["errorCode"].clone()), (json!(4), json!(2)), "{refused}");
    assert!(refused["errorMsg"].as_str().is_some_and(|m| m.contains("700")), "{refused}");
}

#[tokio::test]
async fn history_commands_answer_their_range_once_in_both_dialects() {
    let t = TestApp::start().await;
    let (admin, id, token) = device(&t, "WS History").await;
    let points = publish_series(&t, &admin, &id, &token, 5).await;

    let mut ws = connect(&t, &format!("/api/ws?token={admin}")).await;
    send(&mut ws, json!({"cmds": [{"type": "TIMESERIES_HISTORY", "cmdId": 1, "entityType": "DEVICE", "entityId": id,
        "keys": "temperature", "startTs": T0 + 1000, "endTs": T0 + 3000}]}))
    .await;
    let answer = next(&mut ws, Duration::from_secs(5)).await.expect("history");
    assert_eq!((answer["subscriptionId"].clone(), answer["errorCode"].clone()), (json!(1), json!(0)), "{answer}");
    assert_eq!(answer["data"]["temperature"], rows(&points[1..3]), "{answer}");

    send(&mut ws, json!({"cmds": [{"type": "TIMESERIES_HISTORY", "cmdId": 2, "entityType": "DEVICE", "entityId": id,
        "keys": "temperature", "startTs": T0, "endTs": T0 + 5000, "interval": 5000, "agg": "SUM"}]}))
    .await;
    let sum = next(&mut ws, Duration::from_secs(5)).await.expect("aggregated history");
    let total: f64 = points.iter().map(|p| p.1).sum();
    assert_eq!(sum["data"]["temperature"], rows(&[(T0 + 2500, total)]), "{sum}");

    // Keys are required; so is the range.
    send(&mut ws, json!({"cmds": [{"type": "TIMESERIES_HISTORY", "cmdId": 3, "entityType": "DEVICE", "entityId": id,
        "startTs": T0, "endTs": T0 + 5000}]}))
    .await;
    assert_eq!(next(&mut ws, Duration::from_secs(5)).await.expect("refusal")["errorCode"], 2);
    send(&mut ws, json!({"cmds": [{"type": "TIMESERIES_HISTORY", "cmdId": 4, "entityType": "DEVICE", "entityId": id, "keys": "temperature"}]})).await;
    assert_eq!(next(&mut ws, Duration::from_secs(5)).await.expect("refusal")["errorCode"], 2);

    // A history command subscribes to nothing: after a new point, the next message is the answer
    // to the attribute subscription sent after it.
    publish(&t, &token, json!({"temperature": 50})).await;
    send(&mut ws, json!({"cmds": [{"type": "ATTRIBUTES", "cmdId": 5, "entityType": "DEVICE", "entityId": id, "scope": "SERVER_SCOPE"}]})).await;
    assert_eq!(next(&mut ws, Duration::from_secs(5)).await.expect("attributes")["subscriptionId"], 5);

    // The legacy endpoint's historyCmds, and another tenant's device refused with error 3.
    let mut legacy = connect(&t, &format!("/api/ws/plugins/telemetry?token={admin}")).await;
    send(&mut legacy, json!({"tsSubCmds": [], "attrSubCmds": [], "historyCmds": [{"cmdId": 9, "entityType": "DEVICE", "entityId": id,
        "keys": "temperature", "startTs": T0 + 4000, "endTs": T0 + 5000}]}))
    .await;
    let old = next(&mut legacy, Duration::from_secs(5)).await.expect("legacy history");
    assert_eq!(old["data"]["temperature"], rows(&points[4..5]), "{old}");
    let (_, intruder) = t.tenant("WS History Intruder").await;
    let mut other = connect(&t, &format!("/api/ws?token={intruder}")).await;
    send(&mut other, json!({"cmds": [{"type": "TIMESERIES_HISTORY", "cmdId": 1, "entityType": "DEVICE", "entityId": id,
        "keys": "temperature", "startTs": T0, "endTs": T0 + 5000}]}))
    .await;
    assert_eq!(next(&mut other, Duration::from_secs(5)).await.expect("refusal")["errorCode"], 3);
}
