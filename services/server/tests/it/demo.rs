//! Demo mode: the demo tenant, its administrator, devices and dashboard appear on start, the
//! devices publish, and a restart duplicates nothing.

use std::time::{Duration, Instant};

use thinglake_server::demo::{DEMO_ADMIN_EMAIL, DEMO_ADMIN_PASSWORD, DEMO_DASHBOARD};
use thinglake_server::RunningApp;
use thinglake_test_support::NatsServer;

use crate::harness::{Api, test_settings};

async fn start_demo(nats: &NatsServer, data_dir: &std::path::Path) -> RunningApp {
    let mut settings = test_settings(nats, data_dir);
    settings.demo = true;
    Box::pin(RunningApp::start(settings)).await.expect("platform starts in demo mode")
}

/// The demo's devices, tenants and dashboards as counts, and the devices' ids.
async fn census(api: &Api) -> (usize, usize, usize, Vec<String>) {
    let sys = api.sysadmin().await;
    let tenants = api.get("/api/tenants?pageSize=100&page=0", &sys).await.ok();
    let demo_tenants = tenants["data"].as_array().expect("tenants").iter().filter(|t| t["title"] == "Demo").count();
    let admin = api.login(DEMO_ADMIN_EMAIL, DEMO_ADMIN_PASSWORD).await;
    let devices = api.get("/api/tenant/devices?pageSize=100&page=0", &admin).await.ok();
    let ids: Vec<String> =
        devices["data"].as_array().expect("devices").iter().map(|d| d["id"]["id"].as_str().expect("id").to_string()).collect();
    let dashboards = api.get("/api/tenant/dashboards?pageSize=100&page=0", &admin).await.ok();
    let titled = dashboards["data"].as_array().expect("dashboards").iter().filter(|d| d["title"] == DEMO_DASHBOARD).count();
    (demo_tenants, ids.len(), titled, ids)
}

#[tokio::test]
async fn demo_mode_creates_a_live_tenant_once() {
    let nats = NatsServer::start().await;
    let data_dir = tempfile::tempdir().expect("temp dir");
    let app = start_demo(&nats, data_dir.path()).await;
    let api = Api::new(format!("http://{}", app.http_addr));
    let (tenants, devices, dashboards, ids) = census(&api).await;
    assert_eq!((tenants, devices, dashboards), (1, 3, 1));

    let admin = api.login(DEMO_ADMIN_EMAIL, DEMO_ADMIN_PASSWORD).await;
    let list = api.get("/api/tenant/dashboards?pageSize=10&page=0", &admin).await.ok();
    let dashboard_id = list["data"][0]["id"]["id"].as_str().expect("id").to_string();
    let dashboard = api.get(&format!("/api/dashboard/{dashboard_id}"), &admin).await.ok();
    let types: Vec<&str> =
        dashboard["configuration"]["widgets"].as_array().expect("widgets").iter().filter_map(|w| w["type"].as_str()).collect();
    assert_eq!(types, ["timeseries", "latest", "table", "map"]);

    let deadline = Instant::now() + Duration::from_secs(10);
    for id in &ids {
        loop {
            let latest = api.get(&format!("/api/plugins/telemetry/DEVICE/{id}/values/timeseries"), &admin).await.ok();
            if latest.as_object().is_some_and(|m| !m.is_empty()) {
                break;
            }
            assert!(Instant::now() < deadline, "device {id} received no data");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    app.shutdown().await;
    let app = start_demo(&nats, data_dir.path()).await;
    let api = Api::new(format!("http://{}", app.http_addr));
    let (tenants, devices, dashboards, again) = census(&api).await;
    assert_eq!((tenants, devices, dashboards), (1, 3, 1), "a restart duplicates nothing");
    assert_eq!(again, ids);
    app.shutdown().await;
}
