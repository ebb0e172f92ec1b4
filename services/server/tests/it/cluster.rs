//! Two platform nodes on one NATS: each keeps its entity view current by following the log, so
//! a write on one node is read on the other, and unique names hold across nodes.

use std::time::{Duration, Instant};

use serde_json::json;
use thinglake_server::{RunningApp, Settings};

use crate::harness::{Api, SYSADMIN_EMAIL, SYSADMIN_PASSWORD, TestApp, id_of};

pub(crate) async fn second_node(t: &TestApp, dir: &std::path::Path) -> (RunningApp, Api) {
    let mut settings = Settings::new(dir);
    settings.http_host = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    settings.http_port = 0;
    settings.mqtt_port = 0;
    settings.nats_url = Some(t.nats.url());
    settings.admin_email = SYSADMIN_EMAIL.into();
    settings.admin_password = Some(SYSADMIN_PASSWORD.into());
    let app = Box::pin(RunningApp::start(settings)).await.expect("second node starts");
    let api = Api::new(format!("http://{}", app.http_addr));
    (app, api)
}

#[tokio::test]
async fn a_write_on_one_node_is_read_on_another() {
    let t = TestApp::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (node_b, b) = second_node(&t, dir.path()).await;
    let (_, admin) = t.tenant("Acme").await;
    // The token is signed with the key both nodes share through NATS.
    let device = t.device(&admin, "Seen everywhere").await;
    let path = format!("/api/device/{}", id_of(&device));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let res = b.get(&path, &admin).await;
        if res.status.is_success() {
            assert_eq!(res.body, device);
            break;
        }
        assert!(Instant::now() < deadline, "node B never saw the device: {res:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Unique names hold across nodes: the claim lives in NATS, not in a node.
    b.post("/api/device", &admin, json!({"name": "Seen everywhere"})).await.expect(400);
    node_b.shutdown().await;
}

#[tokio::test]
async fn only_one_of_two_nodes_creating_one_name_at_once_wins() {
    let t = TestApp::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (node_b, b) = second_node(&t, dir.path()).await;
    let (_, admin) = t.tenant("Acme").await;
    let body = json!({"name": "Contested"});
    let (ra, rb) = tokio::join!(t.post("/api/device", &admin, body.clone()), b.post("/api/device", &admin, body));
    let wins = [&ra, &rb].iter().filter(|r| r.status.is_success()).count();
    assert_eq!(wins, 1, "{ra:?} {rb:?}");
    node_b.shutdown().await;
}
