//! The auditor's view: an entity's events in order, its changes between two times (over HTTP and
//! SQL alike) and its state as of a time.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{TestApp, id_of};
use crate::relations::tenant_with_admin;
use crate::telemetry::eventually;

/// Lets the clock move on, so events of consecutive steps get distinct recording times.
async fn tick() {
    tokio::time::sleep(Duration::from_millis(3)).await;
}

fn recorded_at(entry: &Value) -> i64 {
    entry["recordedAt"].as_i64().expect("recordedAt")
}

#[tokio::test]
async fn history_lists_a_devices_events_in_order_with_their_actors() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let me = t.get("/api/auth/user", &admin).await.ok();
    let customer = t.customer(&admin, "Buyer").await;
    let mut device = t.device(&admin, "Boiler").await;
    let id = id_of(&device);
    device["name"] = json!("Boiler 2");
    t.post("/api/device", &admin, device).await.ok();
    t.post(&format!("/api/customer/{customer}/device/{id}"), &admin, json!({})).await.ok();

    let history = t.get(&format!("/api/history/device/{id}"), &admin).await.ok();
    let events = history.as_array().expect("a list");
    let types: Vec<&str> = events.iter().map(|e| e["eventType"].as_str().expect("type")).collect();
    assert_eq!(types, ["DeviceCreated", "DeviceUpdated", "DeviceAssignedToCustomer"], "{history}");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["version"], i as u64 + 1);
        assert_eq!(e["schemaVersion"], 1);
        assert_eq!(e["actor"]["kind"], "user");
        assert_eq!(e["actor"]["id"], me["id"]["id"]);
        assert_eq!(e["actor"]["name"], me["email"]);
        assert!(e["eventId"].is_string() && e["seq"].is_u64() && e["occurredAt"].is_i64());
    }
    assert!(events.windows(2).all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64()));
    assert_eq!(events[1]["payload"]["name"], "Boiler 2");
    // The type in the path is accepted in ThingsBoard's spelling too.
    assert_eq!(t.get(&format!("/api/history/DEVICE/{id}"), &admin).await.ok(), history);
}

#[tokio::test]
async fn state_as_of_a_time_shows_the_entity_then() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let mut device = t.device(&admin, "Old name").await;
    let id = id_of(&device);
    tick().await;
    device["name"] = json!("New name");
    t.post("/api/device", &admin, device).await.ok();
    tick().await;
    t.delete(&format!("/api/device/{id}"), &admin).await.ok();

    let history = t.get(&format!("/api/history/device/{id}"), &admin).await.ok();
    let [created, renamed, deleted] = [&history[0], &history[1], &history[2]].map(recorded_at);
    let at = |ts: i64| format!("/api/history/device/{id}/state?ts={ts}");

    let before = t.get(&at(created - 1), &admin).await.ok();
    assert_eq!(before["exists"], false);
    assert_eq!(before["version"], 0);
    assert_eq!(before["state"], Value::Null);
    assert_eq!(before["asOf"], created - 1);
    assert_eq!(before["entityId"], json!({"entityType": "DEVICE", "id": id}));

    let first = t.get(&at(renamed - 1), &admin).await.ok();
    assert_eq!(first["exists"], true);
    assert_eq!(first["deleted"], false);
    assert_eq!(first["version"], 1);
    assert_eq!(first["state"]["name"], "Old name");
    assert_eq!(first["state"]["id"]["id"], id);

    let second = t.get(&at(renamed), &admin).await.ok();
    assert_eq!(second["state"]["name"], "New name");
    assert_eq!(second["version"], 2);

    let gone = t.get(&at(deleted), &admin).await.ok();
    assert_eq!(gone["exists"], true);
    assert_eq!(gone["deleted"], true);
    assert_eq!(gone["version"], 3);
    assert_eq!(gone["state"]["name"], "New name");
    // Without ts: now.
    assert_eq!(t.get(&format!("/api/history/device/{id}/state"), &admin).await.ok()["deleted"], true);
}

#[tokio::test]
async fn another_tenants_admin_may_not_read_the_history() {
    let t = TestApp::start().await;
    let (_, acme) = tenant_with_admin(&t, "Acme").await;
    let (_, other) = tenant_with_admin(&t, "Other").await;
    let id = id_of(&t.device(&acme, "Secret").await);
    t.get(&format!("/api/history/device/{id}"), &other).await.expect(403);
    t.get(&format!("/api/history/device/{id}/state"), &other).await.expect(403);
    let sys = t.sysadmin().await;
    t.get(&format!("/api/history/device/{id}"), &sys).await.expect(403);
    t.get("/api/history/device/5d1c2b6e-0000-4000-8000-000000000001", &acme).await.expect(404);
    t.get(&format!("/api/history/gizmo/{id}"), &acme).await.expect(400);
}

#[tokio::test]
async fn the_system_administrator_reads_a_tenants_history() {
    let t = TestApp::start().await;
    let (tenant_id, admin) = t.tenant("Acme").await;
    let sys = t.sysadmin().await;
    let history = t.get(&format!("/api/history/tenant/{tenant_id}"), &sys).await.ok();
    assert_eq!(history[0]["eventType"], "TenantCreated");
    let now = t.get(&format!("/api/history/tenant/{tenant_id}/state"), &sys).await.ok();
    assert_eq!(now["state"]["title"], "Acme");
    t.get(&format!("/api/history/tenant/{tenant_id}"), &admin).await.expect(403);
}

#[tokio::test]
async fn user_history_never_shows_password_or_token_hashes() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let me = t.get("/api/auth/user", &admin).await.ok();
    let id = id_of(&me);
    // A password change ends the user's other sessions and answers a new token pair.
    let pair = t
        .post(
            "/api/auth/changePassword",
            &admin,
            json!({"currentPassword": crate::harness::PASSWORD, "newPassword": "another good password"}),
        )
        .await
        .ok();
    let admin = pair["token"].as_str().expect("new token").to_string();
    let sys = t.sysadmin().await;
    // The tenant's administrator is the tenant's entity; the system administrator is not its reader.
    t.get(&format!("/api/history/user/{id}"), &sys).await.expect(403);
    let history = t.get(&format!("/api/history/user/{id}"), &admin).await.ok();
    let types: Vec<&str> = history.as_array().expect("list").iter().map(|e| e["eventType"].as_str().expect("type")).collect();
    assert!(types.contains(&"UserActivated"), "{types:?}");
    assert!(types.contains(&"UserPasswordChanged"), "{types:?}");
    let text = history.to_string();
    for secret in ["password_hash", "passwordHash", "token_hash", "activation_token_hash", "$argon2"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    let state = t.get(&format!("/api/history/user/{id}/state"), &admin).await.ok();
    assert_eq!(state["state"]["email"], me["email"]);
    assert!(!state.to_string().contains("$argon2"));
}

/// The change list over SQL: each event of the entity with what it changed (against the fold of
/// the earlier payloads), kept when recorded in `[start, end)`.
fn changes_sql(id: &str, start: i64, end: i64) -> String {
    format!(
        "SELECT seq, version, event_type, recorded_at, actor_kind, actor_id, actor_name, changes FROM ( \
           SELECT *, json_changes(array_agg(payload) OVER (PARTITION BY entity_id ORDER BY version \
                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), payload) AS changes \
           FROM events WHERE entity_id = '{id}') \
         WHERE recorded_at >= {start} AND recorded_at < {end} ORDER BY version"
    )
}

#[tokio::test]
async fn the_change_list_between_two_times_is_the_same_over_http_and_sql() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let customer = t.customer(&admin, "Buyer").await;
    let mut device = t.device(&admin, "Pump").await;
    let id = id_of(&device);
    tick().await;
    device["name"] = json!("Pump 2");
    device["label"] = json!("cellar");
    t.post("/api/device", &admin, device).await.ok();
    tick().await;
    t.post(&format!("/api/customer/{customer}/device/{id}"), &admin, json!({})).await.ok();
    tick().await;
    device = t.get(&format!("/api/device/{id}"), &admin).await.ok();
    device["name"] = json!("Pump 3");
    t.post("/api/device", &admin, device).await.ok();
    let history = t.get(&format!("/api/history/device/{id}"), &admin).await.ok();
    let at: Vec<i64> = history.as_array().expect("a list").iter().map(recorded_at).collect();
    assert_eq!(at.len(), 4, "{history}");

    // Between the rename and the last rename (excluded): the rename and the assignment.
    let changes = t.get(&format!("/api/history/device/{id}/changes?startTs={}&endTs={}", at[1], at[3]), &admin).await.ok();
    let list = changes.as_array().expect("a list");
    let types: Vec<&str> = list.iter().map(|c| c["eventType"].as_str().expect("type")).collect();
    assert_eq!(types, ["DeviceUpdated", "DeviceAssignedToCustomer"], "{changes}");
    let renamed = &list[0]["changes"];
    assert_eq!(renamed["name"], json!({"from": "Pump", "to": "Pump 2"}), "{changes}");
    assert_eq!(renamed["label"]["to"], "cellar", "{changes}");
    // Fields saved with the values they had are no change (the save also set `additionalInfo`
    // and `deviceData`, absent from the creation's payload: those are).
    assert!(renamed.get("deviceProfileId").is_none(), "only what changed: {changes}");
    assert_eq!(list[0]["actor"], history[1]["actor"]);
    assert_eq!(list[0]["version"], 2);
    assert_eq!(list[0]["recordedAt"], at[1]);
    let assigned = list[1]["changes"].as_object().expect("changes");
    assert_eq!(assigned.len(), 1, "{changes}");
    assert_eq!(assigned["customer_id"]["to"]["id"], json!(customer), "{changes}");

    // The same answer from SQL over the events view.
    let query = changes_sql(&id, at[1], at[3]);
    let rows = eventually(Duration::from_secs(10), || async {
        let answer = t.post("/api/sql", &admin, json!({"query": query})).await.ok();
        (answer["rows"].as_array().map(Vec::len) == Some(2)).then_some(answer["rows"].clone())
    })
    .await;
    for (http, sql) in list.iter().zip(rows.as_array().expect("rows")) {
        let sql_changes: Value = serde_json::from_str(sql[7].as_str().expect("changes text")).expect("JSON");
        let as_http = json!({
            "seq": sql[0], "version": sql[1], "eventType": sql[2], "recordedAt": sql[3],
            "actor": {"kind": sql[4], "id": sql[5], "name": sql[6]}, "changes": sql_changes,
        });
        let mut http = http.clone();
        for only_http in ["eventId", "schemaVersion", "occurredAt"] {
            http.as_object_mut().expect("object").remove(only_http);
        }
        assert_eq!(as_http, http);
    }

    // The state as of a time, from SQL: the version and the fields the replay shows.
    let as_of = format!(
        "SELECT max(version), json_fold(array_agg(payload ORDER BY version)) FROM events \
         WHERE entity_id = '{id}' AND recorded_at <= {}",
        at[2]
    );
    let answer = t.post("/api/sql", &admin, json!({"query": as_of})).await.ok();
    let folded: Value = serde_json::from_str(answer["rows"][0][1].as_str().expect("state text")).expect("JSON");
    let replayed = t.get(&format!("/api/history/device/{id}/state?ts={}", at[2]), &admin).await.ok();
    assert_eq!(answer["rows"][0][0], replayed["version"]);
    assert_eq!(folded["name"], replayed["state"]["name"]);
    assert_eq!(folded["label"], replayed["state"]["label"]);

    // Bad ranges and other tenants.
    t.get(&format!("/api/history/device/{id}/changes?startTs={}&endTs={}", at[2], at[1]), &admin).await.expect(400);
    t.get(&format!("/api/history/device/{id}/changes?startTs={}", at[1]), &admin).await.expect(400);
    let (_, other) = t.tenant("Other").await;
    t.get(&format!("/api/history/device/{id}/changes?startTs=0&endTs={}", at[3]), &other).await.expect(403);
}
