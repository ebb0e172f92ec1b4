//! Real flows through `router(state)` on in-memory storage.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use thinglake_api::{ApiState, router};
use thinglake_domain::{EntityId, EntityType};
use thinglake_infra::auth::{JwtKeys, TokenLifetimes};
use thinglake_infra::event_store::EventLog;
use thinglake_infra::telemetry_store::TelemetryLog;
use thinglake_platform::{ManualClock, Platform, PlatformConfig, Storage};
use thinglake_projections::EntityView;
use thinglake_test_support::{MemoryClaims, MemoryEventLog, MemoryTelemetryLog};
use tower::ServiceExt;
use uuid::Uuid;

const SYSADMIN_EMAIL: &str = "sysadmin@thinglake.local";
const SYSADMIN_PASSWORD: &str = "sysadmin-test-password";
const PASSWORD: &str = "correct horse battery";
const JWT_SECRET: &[u8] = b"in-process-secret-in-process-secret-in-process-secret-in-process";

/// The API over a platform on in-memory storage, and that storage to look into.
struct InProcess {
    router: Router,
    events: MemoryEventLog,
    telemetry: MemoryTelemetryLog,
}

impl InProcess {
    async fn start() -> Self {
        Self::start_with(PlatformConfig::default()).await
    }

    async fn start_with(config: PlatformConfig) -> Self {
        let (events, telemetry) = (MemoryEventLog::new(), MemoryTelemetryLog::new());
        let storage = Storage {
            events: Arc::new(events.clone()),
            telemetry: Arc::new(telemetry.clone()),
            claims: Arc::new(MemoryClaims::new()),
        };
        let jwt = JwtKeys::new(JWT_SECRET, TokenLifetimes::default());
        let platform = Platform::with_storage(storage, EntityView::new(), jwt, config);
        platform.bootstrap_sys_admin(SYSADMIN_EMAIL, Some(SYSADMIN_PASSWORD.to_string())).await.expect("system administrator");
        Self { router: router(ApiState { platform }), events, telemetry }
    }

    /// One request; the answer's status and body (JSON, else the text as a JSON string).
    async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("X-Authorization", format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => request.header("content-type", "application/json").body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .expect("a valid request");
        let response = self.router.clone().oneshot(request).await.expect("the router answers");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("the whole body");
        let body = match serde_json::from_slice(&bytes) {
            Ok(json) => json,
            Err(_) => Value::String(String::from_utf8_lossy(&bytes).into_owned()),
        };
        (status, body)
    }

    /// A request that must succeed; its body.
    async fn ok(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Value {
        let (status, body) = self.call(method.clone(), path, token, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {body}");
        body
    }

    async fn login(&self, email: &str, password: &str) -> String {
        let body = json!({"username": email, "password": password});
        let answer = self.ok(Method::POST, "/api/auth/login", None, Some(body)).await;
        answer["token"].as_str().expect("a token in the login answer").to_string()
    }

    /// A tenant and its administrator, created and activated as tb-rest-client scripts do;
    /// returns (tenant id, the administrator's token).
    async fn tenant(&self, title: &str) -> (Uuid, String) {
        let sys = self.login(SYSADMIN_EMAIL, SYSADMIN_PASSWORD).await;
        let tenant = self.ok(Method::POST, "/api/tenant", Some(&sys), Some(json!({"title": title}))).await;
        let tenant_id = tenant["id"]["id"].as_str().expect("tenant id").to_string();
        let email = format!("admin-{tenant_id}@example.com");
        let user = json!({"email": email, "authority": "TENANT_ADMIN", "tenantId": {"entityType": "TENANT", "id": tenant_id}});
        let activate_token = self.new_user(&sys, user).await;
        self.activate(&activate_token).await;
        (tenant_id.parse().expect("a uuid"), self.login(&email, PASSWORD).await)
    }

    /// Creates the user `by` the caller; returns its activation token.
    async fn new_user(&self, by: &str, user: Value) -> String {
        let created = self.ok(Method::POST, "/api/user?sendActivationMail=false", Some(by), Some(user)).await;
        let user_id = created["id"]["id"].as_str().expect("user id");
        let link = self.ok(Method::GET, &format!("/api/user/{user_id}/activationLink"), Some(by), None).await;
        let link = link.as_str().expect("the link as text");
        link.rsplit("activateToken=").next().expect("a token in the link").trim_matches('"').to_string()
    }

    /// Activates a user with [`PASSWORD`]: the answer's status and body.
    async fn activate(&self, activate_token: &str) -> (StatusCode, Value) {
        let activation = json!({"activateToken": activate_token, "password": PASSWORD});
        self.call(Method::POST, "/api/noauth/activate?sendActivationMail=false", None, Some(activation)).await
    }
}

#[tokio::test]
async fn a_device_created_and_reporting_over_the_api_is_read_back_without_a_nats_server() {
    let app = InProcess::start().await;
    let (tenant, admin) = app.tenant("In process").await;

    let device = json!({"name": "Thermometer", "type": "default"});
    let created = app.ok(Method::POST, "/api/device?accessToken=IN_PROCESS_TOKEN", Some(&admin), Some(device)).await;
    let id = created["id"]["id"].as_str().expect("device id").to_string();
    let points = json!({"ts": 1000, "values": {"t": 21.5}});
    app.ok(Method::POST, &format!("/api/plugins/telemetry/DEVICE/{id}/timeseries/ANY"), Some(&admin), Some(points)).await;

    let read = app.ok(Method::GET, &format!("/api/device/{id}"), Some(&admin), None).await;
    assert_eq!(read["name"], "Thermometer");
    let credentials = app.ok(Method::GET, &format!("/api/device/{id}/credentials"), Some(&admin), None).await;
    assert_eq!(credentials["credentialsId"], "IN_PROCESS_TOKEN");
    let values = app.ok(Method::GET, &format!("/api/plugins/telemetry/DEVICE/{id}/values/timeseries?keys=t"), Some(&admin), None).await;
    assert_eq!(values["t"], json!([{"ts": 1000, "value": "21.5"}]));

    // Written through the logs, as on JetStream.
    let device = EntityId::new(EntityType::Device, id.parse().expect("a uuid"));
    let (events, position) = app.events.load(tenant, device).await.expect("the device's events");
    assert_eq!(events.first().map(|(_, e)| e.event_type.as_str()), Some("DeviceCreated"));
    assert_eq!(position.version, events.len() as u64);
    assert!(app.telemetry.last_sequence().await.expect("telemetry log") >= 1);
}

#[tokio::test]
async fn a_taken_device_name_is_refused_by_the_in_memory_claims() {
    let app = InProcess::start().await;
    let (_, admin) = app.tenant("Claims").await;
    let device = json!({"name": "Twin", "type": "default"});
    app.ok(Method::POST, "/api/device", Some(&admin), Some(device.clone())).await;
    let (status, body) = app.call(Method::POST, "/api/device", Some(&admin), Some(device)).await;
    assert!(status.is_client_error(), "a second device named Twin: {status} {body}");
}

#[tokio::test]
async fn another_tenants_admin_and_a_customer_user_see_only_what_is_theirs_in_process() {
    let app = InProcess::start().await;
    let (_, admin) = app.tenant("Owner").await;
    let (_, stranger) = app.tenant("Stranger").await;
    let mut ids = Vec::new();
    for name in ["Assigned", "Unassigned"] {
        let created = app.ok(Method::POST, "/api/device", Some(&admin), Some(json!({"name": name, "type": "default"}))).await;
        ids.push(created["id"]["id"].as_str().expect("device id").to_string());
    }
    let customer = app.ok(Method::POST, "/api/customer", Some(&admin), Some(json!({"title": "Buyer"}))).await;
    let customer_id = customer["id"]["id"].as_str().expect("customer id").to_string();
    app.ok(Method::POST, &format!("/api/customer/{customer_id}/device/{}", ids[0]), Some(&admin), None).await;
    let user = json!({
        "email": "buyer@example.com",
        "authority": "CUSTOMER_USER",
        "customerId": {"entityType": "CUSTOMER", "id": customer_id},
    });
    let activate_token = app.new_user(&admin, user).await;
    let (status, body) = app.activate(&activate_token).await;
    assert!(status.is_success(), "{status} {body}");
    let buyer = app.login("buyer@example.com", PASSWORD).await;

    for id in &ids {
        let (status, _) = app.call(Method::GET, &format!("/api/device/{id}"), Some(&stranger), None).await;
        assert!(matches!(status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND), "another tenant's admin read device {id}: {status}");
    }
    app.ok(Method::GET, &format!("/api/device/{}", ids[0]), Some(&buyer), None).await;
    let (status, _) = app.call(Method::GET, &format!("/api/device/{}", ids[1]), Some(&buyer), None).await;
    assert!(matches!(status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND), "the customer user read an unassigned device: {status}");
    let page = app.ok(Method::GET, &format!("/api/customer/{customer_id}/devices?pageSize=10&page=0"), Some(&buyer), None).await;
    let names: Vec<&str> = page["data"].as_array().expect("a page").iter().filter_map(|d| d["name"].as_str()).collect();
    assert_eq!(names, ["Assigned"]);
}

#[tokio::test]
async fn an_activation_link_expires_when_the_platforms_clock_passes_its_lifetime() {
    let clock = Arc::new(ManualClock::starting_now());
    let config = PlatformConfig { activation_token_ttl: Duration::from_secs(3600), clock: clock.clone(), ..PlatformConfig::default() };
    let app = InProcess::start_with(config).await;
    let (_, admin) = app.tenant("Clocked").await;
    let customer = app.ok(Method::POST, "/api/customer", Some(&admin), Some(json!({"title": "Late"}))).await;
    let user = |email: &str| json!({"email": email, "authority": "CUSTOMER_USER", "customerId": customer["id"]});

    let in_time = app.new_user(&admin, user("in-time@example.com")).await;
    clock.advance(Duration::from_secs(3599));
    let (status, body) = app.activate(&in_time).await;
    assert!(status.is_success(), "activated a second before the link expires: {status} {body}");

    let late = app.new_user(&admin, user("late@example.com")).await;
    clock.advance(Duration::from_secs(3601));
    let (status, body) = app.activate(&late).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!((&body["errorCode"], &body["message"]), (&json!(31), &json!("Activation token expired")), "{body}");
}
