//! What the HTTP listener and the WebSocket API hold for a client that does not behave: a
//! request whose headers never finish is closed after the header timeout, connections past the
//! cap are answered 503 and closed, a WebSocket session's commands are not read before it
//! authenticates, and a message past the size limit ends its session.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::harness::TestApp;
use crate::telemetry::eventually;

fn http_addr(t: &TestApp) -> SocketAddr {
    t.app.as_ref().expect("running").http_addr
}

/// Everything the server sends until it closes the connection, or `None` if it is still open
/// after `within`.
async fn until_closed(socket: &mut TcpStream, within: Duration) -> Option<String> {
    let mut received = Vec::new();
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, socket.read(&mut buf)).await.ok()? {
            Ok(0) | Err(_) => return Some(String::from_utf8_lossy(&received).into_owned()),
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
    }
}

/// `GET /health` on a fresh connection; answers the status line.
async fn health(addr: SocketAddr) -> String {
    let mut socket = TcpStream::connect(addr).await.expect("connects");
    socket.write_all(b"GET /health HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").await.expect("sent");
    let answer = until_closed(&mut socket, Duration::from_secs(10)).await.expect("answered and closed");
    answer.lines().next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn a_request_whose_headers_never_finish_is_closed_after_the_header_timeout() {
    let t = TestApp::start_with(|s| s.limits.http_header_timeout = Duration::from_millis(500)).await;
    let addr = http_addr(&t);
    let mut stalled = TcpStream::connect(addr).await.expect("connects");
    stalled.write_all(b"GET /health HTTP/1.1\r\nHost: test\r\nX-Slow: ").await.expect("sent");
    let opened = Instant::now();
    assert!(until_closed(&mut stalled, Duration::from_secs(10)).await.is_some(), "the stalled connection stays open");
    assert!(opened.elapsed() < Duration::from_secs(5), "closed only after {:?}", opened.elapsed());
    assert_eq!(health(addr).await, "HTTP/1.1 200 OK");
}

#[tokio::test]
async fn connections_past_the_cap_are_answered_503_until_one_closes() {
    let t = TestApp::start_with(|s| s.limits.http_max_connections = 3).await;
    let addr = http_addr(&t);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(addr).await.expect("connects"));
    }
    // The accept loop takes them in order: poll until the fourth is the one refused.
    let mut refused = TcpStream::connect(addr).await.expect("connects");
    refused.write_all(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n").await.expect("sent");
    let answer = until_closed(&mut refused, Duration::from_secs(10)).await.expect("answered and closed");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("Retry-After: 1") && answer.contains("\"errorCode\":2"), "{answer}");
    // The held ones are served.
    held[0].write_all(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n").await.expect("sent");
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), held[0].read(&mut buf)).await.expect("answered").expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // One closes: a new connection is served again.
    held.truncate(2);
    eventually(Duration::from_secs(10), || async { (health(addr).await == "HTTP/1.1 200 OK").then_some(()) }).await;
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

async fn ws(t: &TestApp, query: &str) -> Ws {
    let url = format!("{}/api/ws{query}", t.base.replacen("http://", "ws://", 1));
    tokio_tungstenite::connect_async(url).await.expect("websocket connects").0
}

/// The messages the server sends until it closes the session (with the close code), or `None`
/// if it is still open after `within`.
async fn until_ws_closed(ws: &mut Ws, within: Duration) -> Option<(Vec<Value>, Option<CloseCode>)> {
    let deadline = Instant::now() + within;
    let mut messages = Vec::new();
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, ws.next()).await.ok()? {
            Some(Ok(Message::Text(text))) => messages.push(serde_json::from_str(text.as_str()).unwrap_or(Value::Null)),
            Some(Ok(Message::Close(frame))) => return Some((messages, frame.map(|f| f.code))),
            None | Some(Err(_)) => return Some((messages, None)),
            Some(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn commands_before_authentication_are_refused_unread_and_the_session_closed() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("ws auth tenant").await;
    let device = crate::harness::id_of(&t.device(&admin, "ws device").await);
    let cmd = json!({"type": "TIMESERIES", "cmdId": 4, "entityType": "DEVICE", "entityId": device, "keys": "t"});
    for first in [json!({"cmds": [cmd]}).to_string(), "not json at all".to_string(), json!({"cmds": [{"cmdId": "x"}]}).to_string()] {
        let mut session = ws(&t, "").await;
        session.send(Message::Text(first.clone().into())).await.expect("sent");
        let (messages, code) = until_ws_closed(&mut session, Duration::from_secs(5)).await.expect("closed at once");
        assert_eq!(messages.len(), 1, "{first}: {messages:?}");
        assert_eq!((messages[0]["errorCode"].clone(), messages[0]["subscriptionId"].clone()), (json!(3), json!(0)), "{first}");
        assert_eq!(code, Some(CloseCode::Policy), "{first}");
    }
    // Authentication and commands in one message still work.
    let mut session = ws(&t, "").await;
    let together = json!({"authCmd": {"cmdId": 0, "token": admin}, "cmds": [cmd]});
    session.send(Message::Text(together.to_string().into())).await.expect("sent");
    let answer = tokio::time::timeout(Duration::from_secs(5), session.next()).await.expect("answer").expect("open").expect("message");
    let answer: Value = serde_json::from_str(answer.to_text().expect("text")).expect("JSON");
    assert_eq!((answer["subscriptionId"].clone(), answer["errorCode"].clone()), (json!(4), json!(0)), "{answer}");
}

#[tokio::test]
async fn a_websocket_message_past_the_size_limit_ends_the_session() {
    let t = TestApp::start_with(|s| s.limits.ws_max_message_bytes = 16 * 1024).await;
    let (_, admin) = t.tenant("ws size tenant").await;
    let mut session = ws(&t, &format!("?token={admin}")).await;
    let big = json!({"cmds": [], "padding": "x".repeat(64 * 1024)}).to_string();
    // The client may see the close before its send completes.
    let _ = session.send(Message::Text(big.into())).await;
    let (_, code) = until_ws_closed(&mut session, Duration::from_secs(5)).await.expect("closed");
    assert!(matches!(code, Some(CloseCode::Size) | None), "{code:?}");
    // A message under the limit is answered as before, on a new session.
    let mut session = ws(&t, &format!("?token={admin}")).await;
    session.send(Message::Text(json!({"cmds": [{"type": "NOPE", "cmdId": 1}]}).to_string().into())).await.expect("sent");
    let answer = tokio::time::timeout(Duration::from_secs(5), session.next()).await.expect("answer").expect("open").expect("message");
    let answer: Value = serde_json::from_str(answer.to_text().expect("text")).expect("JSON");
    assert_eq!((answer["subscriptionId"].clone(), answer["errorCode"].clone()), (json!(1), json!(2)), "{answer}");
}
