//! Deleting a tenant: its entities are deleted on the log (by the system administrator), its
//! device tokens are refused at once on MQTT and HTTP and its connected devices dropped, its
//! names, tokens and emails are free for another tenant; a deletion cut short is finished by
//! deleting again or by the next start.

use reqwest::Method;
use serde_json::json;
use thinglake_domain::tenant::TenantEvent;
use thinglake_domain::{Actor, EntityId, EntityType};
use thinglake_infra::event_store::PendingEvent;
use thinglake_projections::Entities;
use thinglake_projections::entities::Table;
use uuid::Uuid;

use crate::harness::{PASSWORD, SYSADMIN_EMAIL, TestApp};
use crate::mqtt::{Client4, Client5, app, device_with_token, eventually, mqtt_addr};
use crate::sessions::{NOT_AUTHORIZED, RawMqtt5};
use crate::tenants::tenant_with_admin;

/// How many live entities of every kind the tenant's subject still holds.
fn live_entities(t: &TestApp, tenant: &str) -> usize {
    fn count<T>(table: &Table<thinglake_domain::Lifecycle<T>>, tenant: Uuid) -> usize {
        table.values().filter(|v| v.tenant_id == tenant && v.state.as_live().is_some()).count()
    }
    let tenant = Uuid::parse_str(tenant).expect("tenant id");
    let e: &Entities = &app(t).platform.view().read();
    count(&e.users, tenant)
        + count(&e.devices, tenant)
        + count(&e.relations, tenant)
        + count(&e.dashboards, tenant)
        + count(&e.assets, tenant)
        + count(&e.customers, tenant)
        + count(&e.device_profiles, tenant)
        + count(&e.asset_profiles, tenant)
}

/// Posts telemetry with a device token over HTTP; answers the status.
async fn http_telemetry(t: &TestApp, token: &str) -> u16 {
    t.call(Method::POST, &format!("/api/v1/{token}/telemetry"), None, Some(json!({"t": 1}))).await.status.as_u16()
}

/// A tenant with one entity of every kind; answers (tenant id, admin email, device id).
async fn populated_tenant(t: &TestApp, title: &str, token: &str) -> (String, String, String) {
    let (tenant, email, admin) = tenant_with_admin(t, title).await;
    let device = device_with_token(t, &admin, "Pump", token, json!({})).await;
    let asset = t.post("/api/asset", &admin, json!({"name": "Site", "type": "plant"})).await.ok();
    t.customer(&admin, "Buyer").await;
    t.post("/api/dashboard", &admin, json!({"title": "Board"})).await.ok();
    let relation = json!({"from": asset["id"], "to": {"entityType": "DEVICE", "id": device}, "type": "Contains"});
    t.post("/api/relation", &admin, relation).await.ok();
    (tenant, email, device)
}

#[tokio::test]
async fn deleting_a_tenant_deletes_its_entities_refuses_its_tokens_and_frees_its_keys() {
    let t = TestApp::start().await;
    let (tenant, email, device) = populated_tenant(&t, "Doomed", "DOOMED_TOKEN").await;
    assert!(live_entities(&t, &tenant) >= 8, "users, device, asset, customer, dashboard, relation, profiles");
    let addr = mqtt_addr(&t);
    let mut connected = RawMqtt5::connected(addr, "DOOMED_TOKEN").await;
    assert_eq!(http_telemetry(&t, "DOOMED_TOKEN").await, 200);

    let sys = t.sysadmin().await;
    t.delete(&format!("/api/tenant/{tenant}"), &sys).await.ok();

    assert_eq!(http_telemetry(&t, "DOOMED_TOKEN").await, 401);
    match Client4::new(addr, "DOOMED_TOKEN", "after-3").next().await {
        Err(rumqttc::ConnectionError::ConnectionRefused(code)) => assert_eq!(code, rumqttc::ConnectReturnCode::NotAuthorized),
        other => panic!("expected a refusal, got {other:?}"),
    }
    match Client5::new(addr, "DOOMED_TOKEN", "after-5").next().await {
        Err(rumqttc::v5::ConnectionError::ConnectionRefused(code)) => {
            assert_eq!(code, rumqttc::v5::mqttbytes::v5::ConnectReturnCode::BadUserNamePassword)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(connected.disconnect_reason().await, NOT_AUTHORIZED);

    assert_eq!(live_entities(&t, &tenant), 0);
    let platform = &app(&t).platform;
    let device_entity = EntityId::new(EntityType::Device, Uuid::parse_str(&device).expect("device id"));
    let (events, _) = platform.store().load(Uuid::parse_str(&tenant).expect("id"), device_entity).await.expect("device events");
    let last = &events.last().expect("events").1;
    assert_eq!(last.event_type, "DeviceDeleted");
    assert_eq!(last.actor.name.as_deref(), Some(SYSADMIN_EMAIL), "the deletion names who deleted the tenant");
    t.delete(&format!("/api/tenant/{tenant}"), &sys).await.expect(404);

    // Another tenant takes the token, the names and the administrator's email.
    let (heir, heir_admin) = t.tenant("Heir").await;
    device_with_token(&t, &heir_admin, "Pump", "DOOMED_TOKEN", json!({})).await;
    t.post("/api/asset", &heir_admin, json!({"name": "Site", "type": "plant"})).await.ok();
    t.customer(&heir_admin, "Buyer").await;
    let devices = t.get("/api/tenant/devices?pageSize=10&page=0", &heir_admin).await.ok();
    assert_eq!(devices["totalElements"], 1, "{devices}");
    let user = json!({"email": email, "authority": "TENANT_ADMIN", "tenantId": {"entityType": "TENANT", "id": heir}});
    t.user(&sys, user).await;
    t.login(&email, PASSWORD).await;
    assert_eq!(http_telemetry(&t, "DOOMED_TOKEN").await, 200, "the token now belongs to the heir's device");
}

/// Records `TenantDeleted` as a node that died right after it would have: nothing else.
async fn delete_only_the_tenant(t: &TestApp, tenant: &str) {
    let platform = &app(t).platform;
    let id = Uuid::parse_str(tenant).expect("tenant id");
    let position = platform.view().read().tenants.get(&id).expect("tenant").position;
    let pending = PendingEvent::new(&TenantEvent::TenantDeleted {}, Uuid::now_v7(), 0, Actor::system());
    let appended = platform.store().append(id, EntityId::new(EntityType::Tenant, id), position, vec![pending]).await.expect("appended");
    for (seq, envelope) in &appended.events {
        platform.view().apply(*seq, envelope).expect("applies");
    }
}

#[tokio::test]
async fn a_tenant_deletion_cut_short_is_finished_by_deleting_again_or_at_the_next_start() {
    let mut t = TestApp::start().await;
    let (first, _, _) = populated_tenant(&t, "First", "FIRST_TOKEN").await;
    let (second, _, _) = populated_tenant(&t, "Second", "SECOND_TOKEN").await;
    delete_only_the_tenant(&t, &first).await;
    delete_only_the_tenant(&t, &second).await;
    // The tokens are refused at once: the lookup checks the tenant.
    assert_eq!(http_telemetry(&t, "FIRST_TOKEN").await, 401);
    assert_eq!(http_telemetry(&t, "SECOND_TOKEN").await, 401);
    assert!(live_entities(&t, &first) > 0);

    let sys = t.sysadmin().await;
    t.delete(&format!("/api/tenant/{first}"), &sys).await.ok();
    assert_eq!(live_entities(&t, &first), 0);
    t.delete(&format!("/api/tenant/{first}"), &sys).await.expect(404);

    t.restart().await;
    eventually("the next start finishes the second tenant's deletion", || async {
        (live_entities(&t, &second) == 0).then_some(())
    })
    .await;
    t.get(&format!("/api/tenant/{second}"), &sys).await.expect(404);
}
