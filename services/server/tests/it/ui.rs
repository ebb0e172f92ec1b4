//! The web UI in a real browser: Debian's Chromium driven by playwright-core
//! (`services/web/ui/e2e/*.mjs`, their shared set-up in `e2e/browser.mjs`) against a platform
//! started here, serving the UI built by `scripts/test` (`npm ci && npm run build`). Screenshots
//! (and downloaded files) go to `$CARGO_TARGET_DIR/ui-artifacts`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use thinglake_server::RunningApp;
use thinglake_test_support::NatsServer;

use crate::harness::{Api, PASSWORD, TestApp, id_of, test_settings};
use crate::telemetry::eventually;

fn ui_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/ui")
}

/// Where screenshots go: beside the build output, never in the repository.
fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("ui-artifacts")
}

/// The project's node (scripts/install-tools), else the one on PATH.
fn node() -> PathBuf {
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/bin/node");
    if local.exists() { local } else { PathBuf::from("node") }
}

async fn start_with_ui() -> TestApp {
    let dist = ui_dir().join("dist");
    assert!(
        dist.join("index.html").is_file() && ui_dir().join("node_modules/playwright-core").is_dir(),
        "the web UI is not built in {}: run scripts/test (it builds it) or `npm ci && npm run build` there",
        ui_dir().display()
    );
    let nats = NatsServer::start().await;
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut settings = test_settings(&nats, data_dir.path());
    settings.web_dir = dist;
    let app: RunningApp = Box::pin(RunningApp::start(settings)).await.expect("platform starts");
    let api = Api::new(format!("http://{}", app.http_addr));
    TestApp { api, app: Some(app), nats, data_dir }
}

/// Runs one phase of the browser script; its JSON result line, or a failure with its output.
async fn browser(t: &TestApp, phase: &str, env: &[(&str, &str)]) -> Value {
    browser_script(t, "e2e/entities.mjs", phase, env).await
}

/// Runs one phase of a browser script in `services/web/ui/e2e`.
async fn browser_script(t: &TestApp, script: &str, phase: &str, env: &[(&str, &str)]) -> Value {
    let started = Instant::now();
    let mut cmd = tokio::process::Command::new(node());
    cmd.arg(script)
        .arg(phase)
        .current_dir(ui_dir())
        .env("THINGLAKE_URL", &t.base)
        .env("UI_ARTIFACTS", artifacts_dir())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(180), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("browser phase {phase} did not finish in 180 s"))
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser phase {phase} failed ({}); screenshots in {}\n--- stderr\n{stderr}\n--- stdout\n{stdout}",
        out.status,
        artifacts_dir().display()
    );
    eprintln!("browser phase {phase} took {:.1} s", started.elapsed().as_secs_f64());
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("phase {phase} printed no JSON result ({e}): {stdout}"))
}

#[tokio::test]
async fn a_tenant_admin_and_a_customer_user_work_through_the_web_ui() {
    let t = start_with_ui().await;
    let (tenant_id, admin) = t.tenant("UI Tenant").await;
    let admin_email = format!("admin-{tenant_id}@example.com");

    // Another customer's device, which the customer user must not reach.
    let red = t.customer(&admin, "Red").await;
    let red_pump = id_of(&t.device(&admin, "Red pump").await);
    t.post(&format!("/api/customer/{red}/device/{red_pump}"), &admin, json!({})).await.ok();

    // Tenant administrator: creates, finds, edits, audits and assigns a device in the browser.
    let result = browser(&t, "admin", &[("LOGIN_EMAIL", &admin_email), ("LOGIN_PASSWORD", PASSWORD)]).await;
    let device_id = result["deviceId"].as_str().expect("device id from the browser");

    // What the browser did is what the API holds.
    let device = t.get(&format!("/api/device/info/{device_id}"), &admin).await.ok();
    assert_eq!((device["name"].as_str(), device["label"].as_str()), (Some("Boiler 7"), Some("Boiler room")), "{device}");
    assert_eq!(device["customerTitle"], "Green Acres");
    let history = t.get(&format!("/api/history/device/{device_id}"), &admin).await.ok();
    let types: Vec<&str> = history.as_array().expect("list").iter().filter_map(|e| e["eventType"].as_str()).collect();
    assert_eq!(types, ["DeviceCreated", "DeviceUpdated", "DeviceAssignedToCustomer"]);

    // A user of the customer the browser created.
    let green = t.get("/api/tenant/customers?customerTitle=Green%20Acres", &admin).await.ok();
    let green_id = id_of(&green);
    let customer_email = "green-user@example.com";
    t.user(
        &admin,
        json!({"email": customer_email, "authority": "CUSTOMER_USER",
               "customerId": {"entityType": "CUSTOMER", "id": green_id}}),
    )
    .await;
    browser(
        &t,
        "customer",
        &[
            ("LOGIN_EMAIL", customer_email),
            ("LOGIN_PASSWORD", PASSWORD),
            ("OTHER_DEVICE_ID", &red_pump),
            ("EXPECT_DEVICE", "Boiler 7"),
        ],
    )
    .await;
}

/// Dashboards in the browser (`e2e/dashboards.mjs`): a tenant administrator creates a device and a
/// dashboard with a latest-value widget and a chart, sees telemetry published over the device HTTP
/// API appear live, meets a 409 on a stale save, assigns the dashboard to a customer, changes
/// the time window (a day back, an averaged history range, a bad range) and saves one, whose
/// user sees it read-only and live in that window.
#[tokio::test]
async fn dashboards_update_live_in_the_browser_and_customer_users_see_them_read_only() {
    let t = start_with_ui().await;
    let (tenant_id, admin) = t.tenant("Dashboards Tenant").await;
    let admin_email = format!("admin-{tenant_id}@example.com");
    let kilns = t.customer(&admin, "Kiln Works").await;

    let result = browser_script(
        &t,
        "e2e/dashboards.mjs",
        "admin",
        &[("LOGIN_EMAIL", &admin_email), ("LOGIN_PASSWORD", PASSWORD), ("CUSTOMER_TITLE", "Kiln Works")],
    )
    .await;
    let (device_id, dashboard_id) = (result["deviceId"].as_str().expect("device id"), result["dashboardId"].as_str().expect("dashboard id"));

    // What the browser did is what the API and the log hold.
    let dashboard = t.get(&format!("/api/dashboard/{dashboard_id}"), &admin).await.ok();
    assert_eq!(dashboard["assignedCustomers"][0]["title"], "Kiln Works", "{dashboard}");
    let widgets = dashboard["configuration"]["widgets"].as_array().expect("widgets");
    assert!(widgets.iter().any(|w| w["type"] == "latest" && w["datasources"][0]["keys"] == json!(["temperature"])), "{dashboard}");
    let history = t.get(&format!("/api/history/dashboard/{dashboard_id}"), &admin).await.ok();
    let types: Vec<&str> = history.as_array().expect("list").iter().filter_map(|e| e["eventType"].as_str()).collect();
    assert_eq!(types, ["DashboardCreated", "DashboardUpdated", "DashboardUpdated", "DashboardAssignedToCustomer", "DashboardUpdated"]);
    let timewindow = &dashboard["configuration"]["timewindow"];
    assert_eq!(
        (&timewindow["selectedTab"], &timewindow["realtime"]["timewindowMs"], &timewindow["aggregation"]["type"]),
        (&json!(0), &json!(600_000), &json!("NONE")),
        "the time window is stored as ThingsBoard stores it: {timewindow}"
    );
    let latest = t.get(&format!("/api/plugins/telemetry/DEVICE/{device_id}/values/timeseries?keys=temperature"), &admin).await.ok();
    assert_eq!(latest["temperature"][0]["value"], "22.75", "{latest}");

    // The customer's user reads the device's data only once the device is assigned too.
    t.post(&format!("/api/customer/{kilns}/device/{device_id}"), &admin, json!({})).await.ok();
    let customer_email = "kiln-user@example.com";
    t.user(
        &admin,
        json!({"email": customer_email, "authority": "CUSTOMER_USER",
               "customerId": {"entityType": "CUSTOMER", "id": kilns}}),
    )
    .await;
    browser_script(
        &t,
        "e2e/dashboards.mjs",
        "customer",
        &[
            ("LOGIN_EMAIL", customer_email),
            ("LOGIN_PASSWORD", PASSWORD),
            ("DASHBOARD_TITLE", "Kiln overview"),
            ("DEVICE_TOKEN", result["deviceToken"].as_str().expect("device token")),
            ("EXPECT_VALUE", "22.75"),
        ],
    )
    .await;
}

/// The SQL console in the browser (`e2e/sql.mjs`) over a device's points: bad and refused SQL
/// show the platform's message, an example and a time series show as a table and a chart, the
/// CSV download holds every row and the Parquet one is a Parquet file, a long result is cut in
/// the table with a note, a slow query can be cancelled, a narrow screen fits; a customer user
/// gets the console too and sees only its customer's device and points.
#[tokio::test]
async fn the_sql_console_shows_tables_charts_errors_and_downloads() {
    const POINTS: i64 = 10;
    let t = start_with_ui().await;
    let (tenant_id, admin) = t.tenant("SQL UI Tenant").await;
    let admin_email = format!("admin-{tenant_id}@example.com");
    let device = id_of(&t.device(&admin, "Oven 1").await);
    let creds = t.get(&format!("/api/device/{device}/credentials"), &admin).await.ok();
    let token = creds["credentialsId"].as_str().expect("device token");
    let now = i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis()).expect("ms");
    let batch: Vec<Value> =
        (0..POINTS).map(|i| json!({"ts": now - (POINTS - 1 - i) * 60_000, "values": {"temperature": 180.5 + i as f64}})).collect();
    let res = t.http.post(t.url(&format!("/api/v1/{token}/telemetry"))).json(&batch).send().await.expect("published");
    assert_eq!(res.status(), 200);
    let count = json!({"query": "SELECT count(*) AS n FROM telemetry"});
    eventually(Duration::from_secs(10), || async {
        let answer = t.post("/api/sql", &admin, count.clone()).await.ok();
        (answer["rows"] == json!([[POINTS]])).then_some(())
    })
    .await;
    browser_script(
        &t,
        "e2e/sql.mjs",
        "admin",
        &[
            ("LOGIN_EMAIL", &admin_email),
            ("LOGIN_PASSWORD", PASSWORD),
            ("DEVICE_NAME", "Oven 1"),
            ("POINTS", &POINTS.to_string()),
        ],
    )
    .await;

    // A customer's user: its customer's device with one point, the tenant's other device unseen.
    let bakers = t.customer(&admin, "Bakers").await;
    let oven2 = id_of(&t.device(&admin, "Oven 2").await);
    t.post(&format!("/api/customer/{bakers}/device/{oven2}"), &admin, json!({})).await.ok();
    t.post(&format!("/api/plugins/telemetry/DEVICE/{oven2}/timeseries/ANY"), &admin, json!({"temperature": 200})).await.ok();
    let customer_email = "baker@example.com";
    t.user(
        &admin,
        json!({"email": customer_email, "authority": "CUSTOMER_USER",
               "customerId": {"entityType": "CUSTOMER", "id": bakers}}),
    )
    .await;
    eventually(Duration::from_secs(10), || async {
        let answer = t.post("/api/sql", &admin, count.clone()).await.ok();
        (answer["rows"] == json!([[POINTS + 1]])).then_some(())
    })
    .await;
    browser_script(
        &t,
        "e2e/sql.mjs",
        "customer",
        &[("LOGIN_EMAIL", customer_email), ("LOGIN_PASSWORD", PASSWORD), ("DEVICE_NAME", "Oven 2"), ("POINTS", "1")],
    )
    .await;
}

#[tokio::test]
async fn the_platform_serves_the_ui_for_pages_and_json_for_unknown_api_paths() {
    let t = start_with_ui().await;
    let page = t.http.get(t.url("/devices/some-id")).send().await.expect("request sent");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("body");
    assert!(html.contains("<div id=\"app\">"), "{html}");
    let unknown = t.get("/api/no-such-endpoint", "no-token").await;
    assert_eq!((unknown.status.as_u16(), unknown.body["errorCode"].as_u64()), (404, Some(32)), "{:?}", unknown.body);
    // The API's own routes are untouched.
    assert_eq!(t.http.get(t.url("/health")).send().await.expect("sent").text().await.expect("body"), "ok");
}
