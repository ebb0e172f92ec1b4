//! Telemetry over REST: saves, latest values, keys, tenant isolation, device lifecycle
//! attributes, and the latest values rebuilt from the log after a restart. Shared helpers of the
//! telemetry tests live here too.

use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use thinglake_server::{RunningApp, Settings};
use thinglake_test_support::NatsServer;

use crate::harness::{Api, SYSADMIN_EMAIL, SYSADMIN_PASSWORD, TestApp, id_of};

/// Starts a platform with adjusted settings (payload limits, timeouts).
pub(crate) async fn start_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let nats = NatsServer::start().await;
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut settings = Settings::new(data_dir.path());
    settings.http_host = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    settings.http_port = 0;
    settings.nats_url = Some(nats.url());
    settings.admin_email = SYSADMIN_EMAIL.into();
    settings.admin_password = Some(SYSADMIN_PASSWORD.into());
    adjust(&mut settings);
    let app = Box::pin(RunningApp::start(settings)).await.expect("platform starts");
    let api = Api::new(format!("http://{}", app.http_addr));
    TestApp { api, app: Some(app), nats, data_dir }
}

/// A tenant admin's token, a device's id and its access token.
pub(crate) async fn device_with_token(t: &Api, name: &str) -> (String, String, String) {
    let (_, admin) = t.tenant(&format!("tenant of {name}")).await;
    let device = t.device(&admin, name).await;
    let id = id_of(&device);
    let token = access_token(t, &admin, &id).await;
    (admin, id, token)
}

pub(crate) async fn access_token(t: &Api, admin: &str, device_id: &str) -> String {
    let credentials = t.get(&format!("/api/device/{device_id}/credentials"), admin).await.ok();
    credentials["credentialsId"].as_str().expect("token").to_string()
}

/// Posts a raw body (not necessarily JSON) and returns status, `Retry-After` and body text.
pub(crate) async fn post_raw(t: &Api, path: &str, body: impl Into<reqwest::Body>) -> (u16, Option<String>, String) {
    let res = t
        .http
        .post(t.url(path))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request sent");
    let status = res.status().as_u16();
    let retry_after = res.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
    (status, retry_after, res.text().await.expect("body"))
}

/// Polls `check` until it returns `Some`, for at most `within`.
pub(crate) async fn eventually<T, F, Fut>(within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "condition not met within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The latest values, typed.
pub(crate) async fn latest(t: &Api, admin: &str, entity: &str, keys: &str) -> Value {
    t.get(&format!("/api/plugins/telemetry/{entity}/values/timeseries?keys={keys}&useStrictDataTypes=true"), admin)
        .await
        .ok()
}

#[tokio::test]
async fn timeseries_saved_over_rest_are_the_latest_values_as_strings() {
    let t = TestApp::start().await;
    let (admin, id, _) = device_with_token(&t, "rest-ts").await;
    // The 4.3 client appends a literal `?scope=ANY`; with a TTL the same.
    t.post(&format!("/api/plugins/telemetry/DEVICE/{id}/timeseries/ANY?scope=ANY"), &admin, json!({"ts": 1000, "values": {"t": 21.5}}))
        .await
        .ok();
    t.post(&format!("/api/plugins/telemetry/DEVICE/{id}/timeseries/ANY/86400"), &admin, json!({"on": true}))
        .await
        .ok();
    let values = t.get(&format!("/api/plugins/telemetry/DEVICE/{id}/values/timeseries?keys=t,on"), &admin).await.ok();
    assert_eq!(values["t"], json!([{"ts": 1000, "value": "21.5"}]));
    assert_eq!(values["on"][0]["value"], "true");
    let keys = t.get(&format!("/api/plugins/telemetry/DEVICE/{id}/keys/timeseries"), &admin).await.ok();
    assert_eq!(keys, json!(["on", "t"]));
}

#[tokio::test]
async fn an_older_point_does_not_replace_the_latest_value() {
    let t = TestApp::start().await;
    let (admin, id, _) = device_with_token(&t, "older").await;
    let path = format!("/api/plugins/telemetry/DEVICE/{id}/timeseries/ANY");
    t.post(&path, &admin, json!({"ts": 2000, "values": {"t": 2}})).await.ok();
    t.post(&path, &admin, json!({"ts": 1000, "values": {"t": 1}})).await.ok();
    assert_eq!(latest(&t, &admin, &format!("DEVICE/{id}"), "t").await["t"], json!([{"ts": 2000, "value": 2}]));
}

#[tokio::test]
async fn another_tenant_can_neither_read_nor_write_telemetry() {
    let t = TestApp::start().await;
    let (_, id, _) = device_with_token(&t, "isolated").await;
    let (_, other) = t.tenant("other tenant").await;
    let base = format!("/api/plugins/telemetry/DEVICE/{id}");
    t.get(&format!("{base}/values/timeseries?keys=t"), &other).await.expect(403);
    t.get(&format!("{base}/keys/timeseries"), &other).await.expect(403);
    t.get(&format!("{base}/values/attributes"), &other).await.expect(403);
    t.post(&format!("{base}/timeseries/ANY"), &other, json!({"t": 1})).await.expect(403);
    t.post(&format!("{base}/attributes/SERVER_SCOPE"), &other, json!({"a": 1})).await.expect(403);
    t.delete(&format!("{base}/SERVER_SCOPE?keys=a"), &other).await.expect(403);
}

#[tokio::test]
async fn a_customer_user_reads_the_telemetry_of_its_devices_only() {
    let t = TestApp::start().await;
    let (tenant_id, admin) = t.tenant("customers").await;
    let customer = t.customer(&admin, "c1").await;
    let mine = id_of(&t.device(&admin, "assigned").await);
    let theirs = id_of(&t.device(&admin, "unassigned").await);
    t.post(&format!("/api/customer/{customer}/device/{mine}"), &admin, json!({})).await.ok();
    let user = t
        .user(
            &admin,
            json!({"email": format!("cu-{customer}@example.com"), "authority": "CUSTOMER_USER",
                   "tenantId": {"entityType": "TENANT", "id": tenant_id},
                   "customerId": {"entityType": "CUSTOMER", "id": customer}}),
        )
        .await;
    for id in [&mine, &theirs] {
        t.post(&format!("/api/plugins/telemetry/DEVICE/{id}/timeseries/ANY"), &admin, json!({"t": 1})).await.ok();
    }
    t.get(&format!("/api/plugins/telemetry/DEVICE/{mine}/values/timeseries?keys=t"), &user).await.ok();
    t.get(&format!("/api/plugins/telemetry/DEVICE/{theirs}/values/timeseries?keys=t"), &user).await.expect(403);
    t.post(&format!("/api/plugins/telemetry/DEVICE/{mine}/timeseries/ANY"), &user, json!({"t": 2})).await.expect(403);
}

#[tokio::test]
async fn activity_writes_the_lifecycle_server_attributes() {
    let t = TestApp::start().await;
    let (admin, id, token) = device_with_token(&t, "lifecycle").await;
    assert_eq!(post_raw(&t, &format!("/api/v1/{token}/telemetry"), r#"{"t": 1}"#).await.0, 200);
    let attrs = t.get(&format!("/api/plugins/telemetry/DEVICE/{id}/values/attributes/SERVER_SCOPE"), &admin).await.ok();
    let value = |key: &str| attrs.as_array().expect("list").iter().find(|a| a["key"] == key).map(|a| a["value"].clone());
    assert_eq!(value("active"), Some(json!(true)));
    assert!(value("lastActivityTime").is_some_and(|v| v.as_i64().is_some_and(|ts| ts > 0)));
}

#[tokio::test]
async fn a_device_without_activity_becomes_inactive() {
    let t = start_with(|s| {
        s.telemetry.inactivity_timeout = Duration::from_millis(300);
        s.telemetry.inactivity_check_interval = Duration::from_millis(100);
    })
    .await;
    let (admin, id, token) = device_with_token(&t, "sleepy").await;
    assert_eq!(post_raw(&t, &format!("/api/v1/{token}/telemetry"), r#"{"t": 1}"#).await.0, 200);
    let path = format!("/api/plugins/telemetry/DEVICE/{id}/values/attributes/SERVER_SCOPE?keys=active,inactivityAlarmTime");
    eventually(Duration::from_secs(10), || async {
        let attrs = t.get(&path, &admin).await.ok();
        let list = attrs.as_array().cloned().unwrap_or_default();
        let inactive = list.iter().any(|a| a["key"] == "active" && a["value"] == json!(false));
        let alarmed = list.iter().any(|a| a["key"] == "inactivityAlarmTime");
        (inactive && alarmed).then_some(())
    })
    .await;
}

#[tokio::test]
async fn latest_values_are_rebuilt_from_the_log_after_a_restart() {
    let mut t = TestApp::start().await;
    let (admin, id, token) = device_with_token(&t, "durable").await;
    assert_eq!(post_raw(&t, &format!("/api/v1/{token}/telemetry"), r#"{"ts": 5, "values": {"t": 7}}"#).await.0, 200);
    t.post(&format!("/api/plugins/telemetry/DEVICE/{id}/SERVER_SCOPE"), &admin, json!({"kept": "yes", "gone": 1})).await.ok();
    t.delete(&format!("/api/plugins/telemetry/DEVICE/{id}/SERVER_SCOPE?keys=gone"), &admin).await.ok();
    t.restart().await;
    // The signing key lives in NATS: the token outlives the restart.
    assert_eq!(latest(&t, &admin, &format!("DEVICE/{id}"), "t").await["t"], json!([{"ts": 5, "value": 7}]));
    let attrs = t.get(&format!("/api/plugins/telemetry/DEVICE/{id}/values/attributes/SERVER_SCOPE?keys=kept,gone"), &admin).await.ok();
    let keys: Vec<&str> = attrs.as_array().expect("list").iter().filter_map(|a| a["key"].as_str()).collect();
    assert_eq!(keys, vec!["kept"]);
}
