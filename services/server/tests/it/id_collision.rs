//! One id, two tenants: tenant B's asset that carries the id of tenant A's device (as a log
//! written before ids sent on create were refused may hold it) reaches nothing of the device —
//! not its latest values, keys or attributes over REST, not the SQL `latest` and `attributes`
//! views, not its WebSocket updates — and B's writes and deletions through it change nothing of
//! the device, nor reach the device's MQTT connection as shared attributes.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use thinglake_domain::asset::{AssetEvent, AssetFields};
use thinglake_domain::{Actor, AssetId, AssetProfileId, CustomerId, EntityId, EntityType, TenantId};
use thinglake_infra::event_store::{EntityPosition, PendingEvent};
use uuid::Uuid;

use crate::harness::{TestApp, id_of};
use crate::mqtt::{Client4, app, device_with_token, eventually, mqtt_addr};
use crate::ws::{connect, next, send};

const BASE: &str = "/api/plugins/telemetry";

/// Appends an asset of `tenant` with the id `id` straight to the log, as a platform that took
/// ids on create wrote it, and waits until `admin` reads it.
async fn asset_with_id(t: &TestApp, tenant: &str, admin: &str, id: &str) {
    let profile = t.post("/api/asset", admin, json!({"name": "Template"})).await.ok()["assetProfileId"]["id"].clone();
    let (tenant, id): (Uuid, Uuid) = (tenant.parse().expect("tenant id"), id.parse().expect("entity id"));
    let profile: Uuid = profile.as_str().expect("asset profile id").parse().expect("profile id");
    let now = thinglake_platform::now_ms();
    let created = AssetEvent::AssetCreated {
        id: AssetId(id),
        tenant_id: TenantId(tenant),
        customer_id: CustomerId::NULL,
        fields: AssetFields { name: "Borrowed".into(), label: None, asset_profile_id: AssetProfileId(profile), additional_info: json!({}) },
        created_time: now,
    };
    let event = PendingEvent::new(&created, Uuid::now_v7(), now, Actor::system());
    let store = app(t).platform.store();
    store.append(tenant, EntityId::new(EntityType::Asset, id), EntityPosition::NEW, vec![event]).await.expect("appended");
    let url = format!("/api/asset/{id}");
    eventually("the asset in the read model", || async { t.get(&url, admin).await.status.is_success().then_some(()) }).await;
}

async fn sql_count(t: &TestApp, token: &str, query: &str) -> Value {
    t.post("/api/sql", token, json!({"query": query})).await.ok()["rows"].clone()
}

#[tokio::test]
async fn an_entity_sharing_another_tenants_device_id_reaches_none_of_its_values() {
    let t = TestApp::start().await;
    let (_, a) = t.tenant("Victim tenant").await;
    let (b_tenant, b) = t.tenant("Borrowing tenant").await;

    // Tenant A's device: connected, following its shared attributes, with values of each kind.
    let victim = device_with_token(&t, &a, "Victim", "VICTIM_TOKEN", json!({})).await;
    let mut device = Client4::connected(mqtt_addr(&t), "VICTIM_TOKEN").await;
    device.subscribe("v1/devices/me/attributes").await;
    device.publish_acked("v1/devices/me/telemetry", r#"{"temp": 21}"#).await;
    device.publish_acked("v1/devices/me/attributes", r#"{"firmware": "1.0"}"#).await;
    let victim_url = format!("{BASE}/DEVICE/{victim}");
    t.post(&format!("{victim_url}/attributes/SERVER_SCOPE"), &a, json!({"secret": "a"})).await.ok();
    t.post(&format!("{victim_url}/attributes/SHARED_SCOPE"), &a, json!({"mode": "a"})).await.ok();
    assert_eq!(device.message().await, ("v1/devices/me/attributes".to_string(), json!({"mode": "a"})));

    asset_with_id(&t, &b_tenant, &b, &victim).await;
    let asset = format!("{BASE}/ASSET/{victim}");

    // Reads through B's asset: nothing of the device.
    assert_eq!(t.get(&format!("{asset}/values/timeseries?keys=temp"), &b).await.ok(), json!({}));
    assert_eq!(t.get(&format!("{asset}/values/timeseries"), &b).await.ok(), json!({}));
    assert_eq!(t.get(&format!("{asset}/keys/timeseries"), &b).await.ok(), json!([]));
    assert_eq!(t.get(&format!("{asset}/values/attributes"), &b).await.ok(), json!([]));
    assert_eq!(t.get(&format!("{asset}/values/attributes/SERVER_SCOPE"), &b).await.ok(), json!([]));
    assert_eq!(t.get(&format!("{asset}/keys/attributes"), &b).await.ok(), json!([]));
    let range = format!("{asset}/values/timeseries?keys=temp&startTs=0&endTs={}", thinglake_platform::now_ms() + 60_000);
    assert_eq!(t.get(&range, &b).await.ok(), json!({}));
    for view in ["latest", "attributes"] {
        let query = format!("SELECT count(*) FROM {view} WHERE entity_id = '{victim}'");
        assert_eq!(sql_count(&t, &b, &query).await, json!([[0]]), "{query}");
    }

    // B's live subscriptions to its asset start empty.
    let mut ws = connect(&t, "/api/ws").await;
    let cmds = json!([
        {"type": "TIMESERIES", "cmdId": 1, "entityType": "ASSET", "entityId": victim, "keys": "temp"},
        {"type": "ATTRIBUTES", "cmdId": 2, "entityType": "ASSET", "entityId": victim, "keys": "secret,mode,firmware"},
    ]);
    send(&mut ws, json!({"authCmd": {"cmdId": 0, "token": b}, "cmds": cmds})).await;
    for _ in 0..2 {
        let initial = next(&mut ws, Duration::from_secs(5)).await.expect("initial values");
        assert_eq!(initial["errorCode"], 0, "{initial}");
        assert_eq!(initial["data"], json!({}), "B's subscription starts with the device's values: {initial}");
    }

    // The device reports and A saves; then B writes and deletes through its asset.
    device.publish_acked("v1/devices/me/telemetry", r#"{"temp": 99}"#).await;
    t.post(&format!("{victim_url}/attributes/SERVER_SCOPE"), &a, json!({"secret": "a2"})).await.ok();
    t.post(&format!("{asset}/timeseries/ANY"), &b, json!({"temp": -1})).await.ok();
    t.post(&format!("{asset}/attributes/SERVER_SCOPE"), &b, json!({"secret": "b"})).await.ok();
    t.post(&format!("{asset}/SHARED_SCOPE"), &b, json!({"mode": "b"})).await.ok();
    t.delete(&format!("{asset}/SERVER_SCOPE?keys=secret,firmware"), &b).await.ok();
    t.delete(&format!("{asset}/CLIENT_SCOPE?keys=firmware"), &b).await;

    // B's subscriptions get B's writes first: the device's came earlier on the stream and
    // would have come first had they leaked.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut points, mut attributes) = (None, None);
    while points.is_none() || attributes.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let update = next(&mut ws, left).await.expect("B's own writes reach B's subscriptions");
        match update["subscriptionId"].as_i64() {
            Some(1) if points.is_none() => points = Some(update["data"].clone()),
            Some(2) if attributes.is_none() => attributes = Some(update["data"].clone()),
            _ => {}
        }
    }
    let points = points.expect("points");
    assert_eq!(points["temp"].as_array().map(|p| p.iter().map(|p| p[1].clone()).collect::<Vec<_>>()), Some(vec![json!("-1")]), "{points}");
    assert_eq!(attributes.expect("attributes")["secret"][0][1], "b");

    // The device's values are its own.
    let latest = t.get(&format!("{victim_url}/values/timeseries?keys=temp"), &a).await.ok();
    assert_eq!(latest["temp"][0]["value"], "99");
    let values = |attributes: Value| -> Vec<(String, Value)> {
        let mut out: Vec<(String, Value)> =
            attributes.as_array().expect("attributes").iter().map(|a| (a["key"].as_str().unwrap_or_default().to_string(), a["value"].clone())).collect();
        out.sort_by(|x, y| x.0.cmp(&y.0));
        out
    };
    let server = values(t.get(&format!("{victim_url}/values/attributes/SERVER_SCOPE?keys=secret"), &a).await.ok());
    assert_eq!(server, vec![("secret".to_string(), json!("a2"))]);
    let shared = values(t.get(&format!("{victim_url}/values/attributes/SHARED_SCOPE"), &a).await.ok());
    assert_eq!(shared, vec![("mode".to_string(), json!("a"))]);
    let client = values(t.get(&format!("{victim_url}/values/attributes/CLIENT_SCOPE"), &a).await.ok());
    assert_eq!(client, vec![("firmware".to_string(), json!("1.0"))]);
    for (view, rows) in [("latest", json!([[1]])), ("attributes", json!([[1]]))] {
        let query = format!("SELECT count(*) FROM {view} WHERE entity_id = '{victim}' AND key IN ('temp', 'secret')");
        assert_eq!(sql_count(&t, &a, &query).await, rows, "{query}");
    }
    let query = format!("SELECT dbl_v, long_v FROM latest WHERE entity_id = '{victim}' AND key = 'temp'");
    assert_eq!(sql_count(&t, &a, &query).await, json!([[null, 99]]));

    // The device was never pushed B's shared attribute: its next push is A's.
    t.post(&format!("{victim_url}/attributes/SHARED_SCOPE"), &a, json!({"mode": "a3"})).await.ok();
    assert_eq!(device.message().await, ("v1/devices/me/attributes".to_string(), json!({"mode": "a3"})));

    // And B's asset holds B's values only.
    assert_eq!(values(t.get(&format!("{asset}/values/attributes"), &b).await.ok()), vec![("mode".to_string(), json!("b"))]);
    assert_eq!(t.get(&format!("{asset}/values/timeseries"), &b).await.ok()["temp"][0]["value"], "-1");
}

#[tokio::test]
async fn an_id_named_by_no_entity_of_the_caller_is_not_found_and_creates_nothing() {
    let t = TestApp::start().await;
    let (_, a) = t.tenant("Owner tenant").await;
    let (b_tenant, b) = t.tenant("Other tenant").await;
    let sys = t.sysadmin().await;
    let victim = id_of(&t.device(&a, "Victim").await);
    let fresh = Uuid::now_v7().to_string();
    let credentials = json!({"credentialsType": "ACCESS_TOKEN", "credentialsId": "BORROWED_TOKEN"});
    // (caller, save path, entity type, body, where it would be read)
    let saves = [
        (&b, "/api/device", "DEVICE", json!({"name": "Borrowed", "type": "default"}), "/api/device"),
        (&b, "/api/asset", "ASSET", json!({"name": "Borrowed"}), "/api/asset"),
        (&b, "/api/customer", "CUSTOMER", json!({"title": "Borrowed"}), "/api/customer"),
        (&b, "/api/dashboard", "DASHBOARD", json!({"title": "Borrowed"}), "/api/dashboard"),
        (&b, "/api/deviceProfile", "DEVICE_PROFILE", json!({"name": "Borrowed"}), "/api/deviceProfile"),
        (&b, "/api/assetProfile", "ASSET_PROFILE", json!({"name": "Borrowed"}), "/api/assetProfile"),
        (&b, "/api/user", "USER", json!({"email": "borrowed@example.com", "authority": "TENANT_ADMIN", "tenantId": {"entityType": "TENANT", "id": b_tenant}}), "/api/user"),
        (&sys, "/api/tenant", "TENANT", json!({"title": "Borrowed"}), "/api/tenant"),
    ];
    for id in [&fresh, &victim] {
        for (token, path, entity_type, body, read) in &saves {
            let mut body = body.clone();
            body["id"] = json!({"entityType": entity_type, "id": id});
            // Another tenant's device is that tenant's: 403, as any write to it.
            let expected = if id == &victim && *entity_type == "DEVICE" { 403 } else { 404 };
            let answer = t.post(path, token, body.clone()).await;
            assert_eq!(answer.status.as_u16(), expected, "{path} with the id {id}: {}", answer.body);
            if *entity_type == "DEVICE" {
                let answer = t.post("/api/device-with-credentials", token, json!({"device": body, "credentials": credentials})).await;
                assert_eq!(answer.status.as_u16(), expected, "device-with-credentials with the id {id}: {}", answer.body);
            }
            if id == &fresh {
                assert_eq!(t.get(&format!("{read}/{id}"), token).await.status.as_u16(), 404, "{read}/{id} was created");
            }
        }
    }
    // Nothing was created under another id either, and the victim's values stay out of reach.
    let lists = ["/api/tenant/devices", "/api/tenant/assets", "/api/customers", "/api/tenant/dashboards", "/api/deviceProfiles", "/api/assetProfiles", "/api/users"];
    for list in lists {
        let page = t.get(&format!("{list}?pageSize=100&page=0&textSearch=Borrowed"), &b).await.ok();
        assert_eq!(page["totalElements"], 0, "{list}: {page}");
    }
    let tenants = t.get("/api/tenants?pageSize=100&page=0&textSearch=Borrowed", &sys).await.ok();
    assert_eq!(tenants["totalElements"], 0, "{tenants}");
    t.get(&format!("{BASE}/ASSET/{victim}/values/timeseries"), &b).await.expect(404);
    // The token of the refused device is free.
    t.post("/api/device?accessToken=BORROWED_TOKEN", &a, json!({"name": "Token owner"})).await.ok();
}
