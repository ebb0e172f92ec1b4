//! The SQL views beside `telemetry`: `devices`, `assets`, `customers`, `relations`, `attributes`,
//! `latest` and `events`. Two tenants see only their own rows in every view; a customer user sees
//! only its customer, the devices and assets assigned to it and those entities' rows, and no
//! `events` (the audit trail); the system administrator is refused; a new event shows in `events`
//! within a second (hot tail); no event payload shows a credential.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Api, id_of};
use crate::telemetry::eventually;
use crate::timeseries::start;

async fn sql(t: &Api, token: &str, query: &str) -> Value {
    t.post("/api/sql", token, json!({"query": query})).await.ok()
}

/// The first column of every row, as strings.
async fn ids(t: &Api, token: &str, query: &str) -> BTreeSet<String> {
    let answer = sql(t, token, query).await;
    let rows = answer["rows"].as_array().unwrap_or_else(|| panic!("{query}: {answer}"));
    rows.iter().map(|r| r[0].as_str().unwrap_or_else(|| panic!("{query}: {r}")).to_string()).collect()
}

fn set(items: &[&String]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// One tenant's entities: customers, devices and assets (the first of each assigned to the first
/// customer, the second device to the second customer), relations, attributes and telemetry.
struct Fixture {
    customer: String,
    other_customer: String,
    device: String,
    other_customers_device: String,
    unassigned_device: String,
    asset: String,
    unassigned_asset: String,
}

async fn fixture(t: &Api, admin: &str, tag: &str) -> Fixture {
    let customer = t.customer(admin, &format!("{tag} customer")).await;
    let other_customer = t.customer(admin, &format!("{tag} other customer")).await;
    let device = t.device(admin, &format!("{tag} device")).await;
    let other_customers_device = t.device(admin, &format!("{tag} device 2")).await;
    let unassigned_device = t.device(admin, &format!("{tag} device 3")).await;
    let asset = t.post("/api/asset", admin, json!({"name": format!("{tag} asset"), "type": "building"})).await.ok();
    let unassigned_asset = t.post("/api/asset", admin, json!({"name": format!("{tag} asset 2")})).await.ok();
    let f = Fixture {
        device: id_of(&device),
        other_customers_device: id_of(&other_customers_device),
        unassigned_device: id_of(&unassigned_device),
        asset: id_of(&asset),
        unassigned_asset: id_of(&unassigned_asset),
        customer,
        other_customer,
    };
    t.post(&format!("/api/customer/{}/device/{}", f.customer, f.device), admin, json!({})).await.ok();
    t.post(&format!("/api/customer/{}/device/{}", f.other_customer, f.other_customers_device), admin, json!({})).await.ok();
    t.post(&format!("/api/customer/{}/asset/{}", f.customer, f.asset), admin, json!({})).await.ok();
    for (from, to) in [(&asset, &device), (&unassigned_asset, &device), (&asset, &other_customers_device)] {
        let body = json!({"from": from["id"], "to": to["id"], "type": "Contains", "additionalInfo": {"by": tag}});
        t.post("/api/relation", admin, body).await.ok();
    }
    let base = "/api/plugins/telemetry";
    for (kind, id, floor) in
        [("DEVICE", &f.device, 1), ("DEVICE", &f.other_customers_device, 2), ("ASSET", &f.asset, 3), ("CUSTOMER", &f.customer, 4)]
    {
        t.post(&format!("{base}/{kind}/{id}/attributes/SERVER_SCOPE"), admin, json!({"floor": floor, "tag": tag})).await.ok();
    }
    for (id, temp) in [(&f.device, 21.5), (&f.other_customers_device, 30.25), (&f.unassigned_device, 5.0)] {
        t.post(&format!("{base}/DEVICE/{id}/timeseries/ANY"), admin, json!({"temp": temp, "on": true})).await.ok();
    }
    f
}

#[tokio::test]
async fn every_view_shows_the_tenants_rows_and_a_customer_user_only_its_customers() {
    let t = start(|_| {}).await;
    let (_, admin) = t.tenant("views tenant").await;
    let (_, other_admin) = t.tenant("other views tenant").await;
    let a = fixture(&t, &admin, "a").await;
    let b = fixture(&t, &other_admin, "b").await;
    let user = t
        .user(&admin, json!({"email": "views-customer@example.com", "authority": "CUSTOMER_USER", "customerId": {"entityType": "CUSTOMER", "id": a.customer}}))
        .await;

    // Each tenant administrator: exactly the tenant's entities in every entity view.
    for (token, f) in [(&admin, &a), (&other_admin, &b)] {
        let devices = set(&[&f.device, &f.other_customers_device, &f.unassigned_device]);
        assert_eq!(ids(&t, token, "SELECT id FROM devices").await, devices);
        assert_eq!(ids(&t, token, "SELECT id FROM assets").await, set(&[&f.asset, &f.unassigned_asset]));
        assert_eq!(ids(&t, token, "SELECT id FROM customers").await, set(&[&f.customer, &f.other_customer]));
        assert_eq!(ids(&t, token, "SELECT from_id FROM relations").await, set(&[&f.asset, &f.unassigned_asset]));
        assert_eq!(
            ids(&t, token, "SELECT entity_id FROM attributes").await,
            set(&[&f.device, &f.other_customers_device, &f.asset, &f.customer])
        );
        assert_eq!(ids(&t, token, "SELECT entity_id FROM latest").await, devices);
        let evented = ids(&t, token, "SELECT entity_id FROM events WHERE entity_type IN ('DEVICE', 'ASSET', 'CUSTOMER')").await;
        let all = set(&[&f.device, &f.other_customers_device, &f.unassigned_device, &f.asset, &f.unassigned_asset, &f.customer, &f.other_customer]);
        assert_eq!(evented, all);
        let telemetry = eventually(Duration::from_secs(10), || async {
            let seen = ids(&t, token, "SELECT entity_id FROM telemetry").await;
            (seen.len() == 3).then_some(seen)
        })
        .await;
        assert_eq!(telemetry, devices);
    }
    // The other tenant's ids never show, even asked for by id.
    for (view, column) in [("devices", "id"), ("assets", "id"), ("customers", "id"), ("attributes", "entity_id"), ("latest", "entity_id"), ("events", "entity_id"), ("telemetry", "entity_id")] {
        let query = format!("SELECT count(*) FROM {view} WHERE {column} IN ('{}', '{}', '{}')", b.device, b.asset, b.customer);
        assert_eq!(sql(&t, &admin, &query).await["rows"], json!([[0]]), "{query}");
    }

    // Typed values, as in telemetry.
    let attrs = sql(&t, &admin, &format!("SELECT scope, key, long_v, str_v, last_update_ts > 0 FROM attributes WHERE entity_id = '{}' ORDER BY key", a.asset)).await;
    assert_eq!(attrs["rows"], json!([["SERVER_SCOPE", "floor", 3, null, true], ["SERVER_SCOPE", "tag", null, "a", true]]));
    let latest = sql(&t, &admin, &format!("SELECT entity_type, key, bool_v, dbl_v FROM latest WHERE entity_id = '{}' ORDER BY key", a.device)).await;
    assert_eq!(latest["rows"], json!([["DEVICE", "on", true, null], ["DEVICE", "temp", null, 21.5]]));
    let assets = sql(&t, &admin, &format!("SELECT name, type, customer_id FROM assets WHERE id = '{}'", a.asset)).await;
    assert_eq!(assets["rows"], json!([["a asset", "building", a.customer]]));
    let relation = sql(&t, &admin, &format!("SELECT from_type, to_type, to_id, relation_type, type_group, additional_info FROM relations WHERE from_id = '{}' AND to_id = '{}'", a.unassigned_asset, a.device)).await;
    assert_eq!(relation["rows"], json!([["ASSET", "DEVICE", a.device, "Contains", "COMMON", r#"{"by":"a"}"#]]));

    // The customer user: its customer, its device and asset, and only their rows.
    assert_eq!(ids(&t, &user, "SELECT id FROM devices").await, set(&[&a.device]));
    assert_eq!(ids(&t, &user, "SELECT id FROM assets").await, set(&[&a.asset]));
    assert_eq!(ids(&t, &user, "SELECT id FROM customers").await, set(&[&a.customer]));
    // Only the relation whose both ends it may see.
    let relations = sql(&t, &user, "SELECT from_id, to_id FROM relations").await;
    assert_eq!(relations["rows"], json!([[a.asset, a.device]]));
    assert_eq!(ids(&t, &user, "SELECT entity_id FROM attributes").await, set(&[&a.device, &a.asset, &a.customer]));
    assert_eq!(ids(&t, &user, "SELECT entity_id FROM latest").await, set(&[&a.device]));
    assert_eq!(ids(&t, &user, "SELECT entity_id FROM telemetry").await, set(&[&a.device]));
    // The audit trail is not theirs (REST's history answers them 403 too).
    let refused = t.post("/api/sql", &user, json!({"query": "SELECT entity_id FROM events"})).await.expect(400);
    assert!(refused["message"].as_str().is_some_and(|m| m.contains("events")), "{refused}");
    for hidden in [&a.other_customers_device, &a.unassigned_device, &a.unassigned_asset, &a.other_customer, &b.device] {
        for (view, column) in [("devices", "id"), ("assets", "id"), ("customers", "id"), ("attributes", "entity_id"), ("latest", "entity_id"), ("telemetry", "entity_id")] {
            let query = format!("SELECT count(*) FROM {view} WHERE {column} = '{hidden}'");
            assert_eq!(sql(&t, &user, &query).await["rows"], json!([[0]]), "{query}");
        }
    }
    // Read-only for them too.
    t.post("/api/sql", &user, json!({"query": "DROP TABLE telemetry"})).await.expect(400);

    // The system administrator has no tenant rows to query.
    let sys = t.sysadmin().await;
    t.post("/api/sql", &sys, json!({"query": "SELECT 1"})).await.expect(403);
}

#[tokio::test]
async fn a_new_event_is_in_the_events_view_within_a_second() {
    // Commits far apart: the event can only come from the hot tail.
    let t = start(|s| s.lake_commit_interval = Duration::from_secs(60)).await;
    let (_, admin) = t.tenant("fresh events tenant").await;
    let started = Instant::now();
    let device = id_of(&t.device(&admin, "fresh").await);
    let query = format!("SELECT event_type, version, actor_kind, actor_name FROM events WHERE entity_id = '{device}'");
    let rows = eventually(Duration::from_secs(1), || async {
        let answer = sql(&t, &admin, &query).await;
        (answer["rows"].as_array().is_some_and(|r| !r.is_empty())).then_some(answer["rows"].clone())
    })
    .await;
    println!("DeviceCreated visible in SQL {:?} after the create request was sent", started.elapsed());
    assert_eq!(rows[0][0], "DeviceCreated");
    assert_eq!(rows[0][1], 1);
    assert_eq!(rows[0][2], "user");
    assert!(rows[0][3].as_str().is_some_and(|name| name.starts_with("admin-")), "{rows}");
}

#[tokio::test]
async fn no_event_payload_shows_a_device_access_token_in_sql_or_history() {
    let t = start(|_| {}).await;
    let (_, admin) = t.tenant("credentials tenant").await;
    let device = t.post("/api/device?accessToken=FIRST_SECRET_TOKEN", &admin, json!({"name": "keyed"})).await.ok();
    let id = id_of(&device);
    let credentials = t.get(&format!("/api/device/{id}/credentials"), &admin).await.ok();
    let mut update = credentials.clone();
    update["credentialsId"] = json!("SECOND_SECRET_TOKEN");
    t.post("/api/device/credentials", &admin, update).await.ok();
    let query = format!("SELECT event_type, payload FROM events WHERE entity_id = '{id}' ORDER BY version");
    let rows = eventually(Duration::from_secs(10), || async {
        let answer = sql(&t, &admin, &query).await;
        (answer["rows"].as_array().is_some_and(|r| r.len() == 2)).then_some(answer["rows"].clone())
    })
    .await;
    assert_eq!(rows[0][0], "DeviceCreated");
    assert_eq!(rows[1][0], "DeviceCredentialsUpdated");
    let leaks = format!("SELECT count(*) FROM events WHERE payload LIKE '%SECRET_TOKEN%' OR entity_id = '{id}' AND payload LIKE '%ccess%oken%'");
    assert_eq!(sql(&t, &admin, &leaks).await["rows"], json!([[0]]), "{rows}");
    let history = t.get(&format!("/api/history/device/{id}"), &admin).await.ok();
    assert_eq!(history.as_array().map(Vec::len), Some(2));
    assert!(!history.to_string().contains("SECRET_TOKEN"), "{history}");
    // The tenant administrator still reads the current token where ThingsBoard shows it.
    let current = t.get(&format!("/api/device/{id}/credentials"), &admin).await.ok();
    assert_eq!(current["credentialsId"], "SECOND_SECRET_TOKEN");
}
