//! Sessions end with their rights: sign-out and a password change revoke the user's tokens; an
//! open PostgreSQL connection, WebSocket session or MQTT connection is refused or closed once
//! its user or device is deleted, signs out or gets new credentials.

use std::net::SocketAddr;

use reqwest::Method;
use serde_json::{Value, json};
use tokio_postgres::error::SqlState;

use crate::harness::{PASSWORD, TestApp, id_of};
use crate::mqtt::{Client4, Client5, device_with_token, eventually, mqtt_addr};
use crate::ws::{connect, next, send, ts_cmd};

/// Signs in and answers the whole token pair.
async fn login_pair(t: &TestApp, email: &str, password: &str) -> Value {
    t.call(Method::POST, "/api/auth/login", None, Some(json!({"username": email, "password": password}))).await.ok()
}

async fn refresh(t: &TestApp, refresh_token: &str) -> crate::harness::Resp {
    t.call(Method::POST, "/api/auth/token", None, Some(json!({"refreshToken": refresh_token}))).await
}

/// A second tenant administrator created by `admin`; answers (email, id, token).
async fn colleague(t: &TestApp, admin: &str, name: &str) -> (String, String, String) {
    let email = format!("{name}-{}@example.com", uuid::Uuid::now_v7());
    let token = t.user(admin, json!({"email": email, "authority": "TENANT_ADMIN"})).await;
    let id = id_of(&t.get("/api/auth/user", &token).await.ok());
    (email, id, token)
}

#[tokio::test]
async fn signing_out_revokes_the_access_and_refresh_tokens() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let (email, _, _) = colleague(&t, &admin, "leaver").await;
    let pair = login_pair(&t, &email, PASSWORD).await;
    let (access, refresh_token) = (pair["token"].as_str().expect("token"), pair["refreshToken"].as_str().expect("refresh"));
    t.get("/api/auth/user", access).await.ok();
    t.call(Method::POST, "/api/auth/logout", Some(access), None).await.ok();
    assert_eq!(t.get("/api/auth/user", access).await.expect(401)["errorCode"], 10);
    refresh(&t, refresh_token).await.expect(401);
    // Signing in again opens a new session.
    let again = t.login(&email, PASSWORD).await;
    t.get("/api/auth/user", &again).await.ok();
}

#[tokio::test]
async fn a_sign_out_on_one_node_revokes_the_tokens_on_another() {
    let t = TestApp::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (node_b, b) = crate::cluster::second_node(&t, dir.path()).await;
    let (_, admin) = t.tenant("Acme").await;
    let (email, _, _) = colleague(&t, &admin, "roamer").await;
    let pair = login_pair(&t, &email, PASSWORD).await;
    let (access, refresh_token) = (pair["token"].as_str().expect("token"), pair["refreshToken"].as_str().expect("refresh"));
    eventually("node B accepts the token", || async { b.get("/api/auth/user", access).await.status.is_success().then_some(()) }).await;
    t.call(Method::POST, "/api/auth/logout", Some(access), None).await.ok();
    eventually("node B refuses the token", || async { (b.get("/api/auth/user", access).await.status == 401).then_some(()) }).await;
    let refused = b.call(Method::POST, "/api/auth/token", None, Some(json!({"refreshToken": refresh_token}))).await;
    refused.expect(401);
    node_b.shutdown().await;
}

#[tokio::test]
async fn a_password_change_revokes_the_old_tokens_and_keeps_the_new_ones() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let (email, _, _) = colleague(&t, &admin, "mover").await;
    let old = login_pair(&t, &email, PASSWORD).await;
    let old_access = old["token"].as_str().expect("token");
    let new = t
        .post("/api/auth/changePassword", old_access, json!({"currentPassword": PASSWORD, "newPassword": "a brand new secret"}))
        .await
        .ok();
    refresh(&t, old["refreshToken"].as_str().expect("refresh")).await.expect(401);
    t.get("/api/auth/user", old_access).await.expect(401);
    t.get("/api/auth/user", new["token"].as_str().expect("token")).await.ok();
    refresh(&t, new["refreshToken"].as_str().expect("refresh")).await.ok();
}

/// A signed-in tokio-postgres client and the task driving its connection.
async fn pg_connect(addr: SocketAddr, user: &str, password: &str) -> (tokio_postgres::Client, tokio::task::JoinSet<()>) {
    crate::pgwire::connect(addr, user, password).await.expect("signs in")
}

#[tokio::test]
async fn a_postgresql_connection_is_refused_once_its_user_is_deleted_or_signs_out() {
    let t = TestApp::start_with(|s| s.pg_listen = Some("127.0.0.1:0".parse().expect("address"))).await;
    let addr = t.app.as_ref().and_then(|a| a.pg_addr).expect("PostgreSQL listener");
    let (_, admin) = t.tenant("Acme").await;
    let (deleted_email, deleted_id, _) = colleague(&t, &admin, "deleted").await;
    let (leaving_email, _, leaving_token) = colleague(&t, &admin, "leaving").await;

    let (deleted, _deleted_task) = pg_connect(addr, &deleted_email, PASSWORD).await;
    let (leaving, _leaving_task) = pg_connect(addr, &leaving_email, PASSWORD).await;
    deleted.simple_query("SELECT 1").await.expect("runs while the user exists");
    leaving.query("SELECT 1", &[]).await.expect("runs while signed in");

    t.delete(&format!("/api/user/{deleted_id}"), &admin).await.ok();
    let err = deleted.simple_query("SELECT 1").await.expect_err("the user is deleted");
    assert_eq!(err.code(), Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION), "{err}");

    t.call(Method::POST, "/api/auth/logout", Some(&leaving_token), None).await.ok();
    let err = leaving.query("SELECT 1", &[]).await.expect_err("the user signed out");
    assert_eq!(err.code(), Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION), "{err}");
}

/// Changes a device's access token over REST.
async fn change_token(t: &TestApp, admin: &str, device: &str, token: &str) {
    let mut creds = t.get(&format!("/api/device/{device}/credentials"), admin).await.ok();
    creds["credentialsId"] = json!(token);
    t.post("/api/device/credentials", admin, creds).await.ok();
}

/// A bare MQTT 5 connection, to read the reason code of the server's DISCONNECT byte by byte
/// (rumqttc 0.25 reports a DISCONNECT followed by the close as a decoding error).
pub(crate) struct RawMqtt5(tokio::net::TcpStream);

impl RawMqtt5 {
    /// Connects with `token` as user name and reads the CONNACK (which must accept).
    pub(crate) async fn connected(addr: SocketAddr, token: &str) -> Self {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connects");
        let client_id = b"raw";
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 5, 0x82, 0, 60, 0];
        body.extend_from_slice(&[0, client_id.len() as u8]);
        body.extend_from_slice(client_id);
        body.extend_from_slice(&[0, token.len() as u8]);
        body.extend_from_slice(token.as_bytes());
        let mut packet = vec![0x10, body.len() as u8];
        packet.extend_from_slice(&body);
        stream.write_all(&packet).await.expect("CONNECT sent");
        let mut header = [0u8; 2];
        stream.read_exact(&mut header).await.expect("CONNACK");
        assert_eq!(header[0], 0x20, "CONNACK expected");
        let mut rest = vec![0u8; usize::from(header[1])];
        stream.read_exact(&mut rest).await.expect("CONNACK body");
        assert_eq!(rest[1], 0, "connection accepted");
        Self(stream)
    }

    /// Reads until the server closes; answers the reason code of its DISCONNECT.
    pub(crate) async fn disconnect_reason(&mut self) -> u8 {
        use tokio::io::AsyncReadExt as _;
        let mut bytes = Vec::new();
        tokio::time::timeout(crate::mqtt::WAIT, self.0.read_to_end(&mut bytes)).await.expect("closed in time").expect("read");
        assert_eq!(bytes.first(), Some(&0xE0), "a DISCONNECT, then the close: {bytes:?}");
        bytes[2]
    }
}

/// MQTT 5's reason code "not authorized".
pub(crate) const NOT_AUTHORIZED: u8 = 0x87;

#[tokio::test]
async fn an_mqtt_device_is_disconnected_when_deleted_or_its_token_changes() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let addr = mqtt_addr(&t);
    let deleted = device_with_token(&t, &admin, "Deleted", "DELETED_TOKEN", json!({})).await;
    let renewed = device_with_token(&t, &admin, "Renewed", "RENEWED_TOKEN", json!({})).await;
    let renewed_v3 = device_with_token(&t, &admin, "Renewed 3", "RENEWED_TOKEN_3", json!({})).await;
    device_with_token(&t, &admin, "Bystander", "BYSTANDER_TOKEN", json!({})).await;

    let mut bystander = Client5::connected(addr, "BYSTANDER_TOKEN").await;
    let mut c5 = RawMqtt5::connected(addr, "DELETED_TOKEN").await;
    t.delete(&format!("/api/device/{deleted}"), &admin).await.ok();
    assert_eq!(c5.disconnect_reason().await, NOT_AUTHORIZED);

    let mut c5 = RawMqtt5::connected(addr, "RENEWED_TOKEN").await;
    change_token(&t, &admin, &renewed, "RENEWED_TOKEN_NEW").await;
    assert_eq!(c5.disconnect_reason().await, NOT_AUTHORIZED);
    // The new token connects.
    Client5::connected(addr, "RENEWED_TOKEN_NEW").await;

    let mut c4 = Client4::connected(addr, "RENEWED_TOKEN_3").await;
    change_token(&t, &admin, &renewed_v3, "RENEWED_TOKEN_3_NEW").await;
    loop {
        match c4.next().await {
            Ok(rumqttc::Packet::PubAck(_) | rumqttc::Packet::Publish(_)) => panic!("the session must end"),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    // Other devices stay connected.
    assert_eq!(bystander.publish("v1/devices/me/telemetry", r#"{"t": 1}"#).await, Ok(rumqttc::v5::mqttbytes::v5::PubAckReason::Success));
}

/// A live subscription of `token` to `device`, its first answer read.
async fn subscribed(t: &TestApp, token: &str, device: &str) -> crate::ws::Ws {
    let mut ws = connect(t, "/api/ws").await;
    send(&mut ws, json!({"authCmd": {"cmdId": 0, "token": token}, "cmds": [ts_cmd(1, device, "t")]})).await;
    let first = next(&mut ws, crate::mqtt::WAIT).await.expect("initial answer");
    assert_eq!(first["errorCode"], 0, "{first}");
    ws
}

/// Reads until the server ends the session: answers the last message before the close.
async fn ended(ws: &mut crate::ws::Ws) -> Value {
    let mut last = Value::Null;
    while let Some(message) = next(ws, crate::mqtt::WAIT).await {
        last = message;
    }
    last
}

#[tokio::test]
async fn a_websocket_session_ends_when_its_user_is_deleted_or_signs_out() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let device = id_of(&t.device(&admin, "ws-device").await);
    let (_, deleted_id, deleted_token) = colleague(&t, &admin, "deleted").await;
    let (_, _, leaving_token) = colleague(&t, &admin, "leaving").await;

    let mut deleted = subscribed(&t, &deleted_token, &device).await;
    let mut leaving = subscribed(&t, &leaving_token, &device).await;
    let mut staying = subscribed(&t, &admin, &device).await;

    t.delete(&format!("/api/user/{deleted_id}"), &admin).await.ok();
    assert_eq!(ended(&mut deleted).await["errorCode"], 3);

    t.call(Method::POST, "/api/auth/logout", Some(&leaving_token), None).await.ok();
    assert_eq!(ended(&mut leaving).await["errorCode"], 3);

    // The administrator's session goes on.
    send(&mut staying, json!({"cmds": [ts_cmd(2, &device, "t")]})).await;
    let answer = next(&mut staying, crate::mqtt::WAIT).await.expect("answer");
    assert_eq!(answer["errorCode"], 0, "{answer}");
}
