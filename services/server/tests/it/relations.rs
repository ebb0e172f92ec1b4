//! Relation endpoints: save, read, list both ways, names, delete (classic and v2 paths), access
//! across tenants, the relations query and cleanup when an end is deleted.

use serde_json::{Value, json};

use crate::harness::{TestApp, id_of};

/// A tenant with an administrator whose email is unique per tenant (the harness derives it from
/// the id's first 8 characters, which UUID v7 ids created in one millisecond share).
pub(crate) async fn tenant_with_admin(t: &TestApp, title: &str) -> (String, String) {
    let sys = t.sysadmin().await;
    let tenant = t.post("/api/tenant", &sys, json!({"title": title})).await.ok();
    let tenant_id = id_of(&tenant);
    let email = format!("admin-{tenant_id}@example.com");
    let token = t
        .user(&sys, json!({"email": email, "authority": "TENANT_ADMIN", "tenantId": {"entityType": "TENANT", "id": tenant_id}}))
        .await;
    (tenant_id, token)
}

fn relation(from: &Value, to: &Value, relation_type: &str) -> Value {
    json!({"from": from["id"], "to": to["id"], "type": relation_type})
}

fn key_query(from: &Value, to: &Value, relation_type: &str) -> String {
    format!(
        "fromId={}&fromType=DEVICE&relationType={relation_type}&toId={}&toType=DEVICE",
        id_of(from),
        id_of(to)
    )
}

/// The `to` ids of a list of relations, sorted.
fn tos(list: &Value) -> Vec<String> {
    let mut ids: Vec<String> =
        list.as_array().expect("a list").iter().map(|r| r["to"]["id"].as_str().expect("to id").to_string()).collect();
    ids.sort();
    ids
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[tokio::test]
async fn a_relation_is_saved_read_listed_both_ways_and_deleted() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let a = t.device(&admin, "Gateway").await;
    let b = t.device(&admin, "Sensor").await;
    let body = json!({"from": a["id"], "to": b["id"], "type": "Contains", "additionalInfo": {"note": "x"}});
    t.post("/api/relation", &admin, body).await.ok();

    let one = t.get(&format!("/api/relation?{}", key_query(&a, &b, "Contains")), &admin).await.ok();
    assert_eq!(one["from"], a["id"]);
    assert_eq!(one["to"], b["id"]);
    assert_eq!(one["type"], "Contains");
    assert_eq!(one["typeGroup"], "COMMON", "the type group defaults to COMMON");
    assert_eq!(one["additionalInfo"]["note"], "x");
    assert_eq!(one["version"], 1);

    let from = t.get(&format!("/api/relations?fromId={}&fromType=DEVICE", id_of(&a)), &admin).await.ok();
    assert_eq!(from.as_array().map(Vec::len), Some(1));
    assert_eq!(from[0], one);
    let to = t.get(&format!("/api/relations?toId={}&toType=DEVICE&relationType=Contains", id_of(&b)), &admin).await.ok();
    assert_eq!(to[0], one);
    let none = t.get(&format!("/api/relations?toId={}&toType=DEVICE&relationType=Manages", id_of(&b)), &admin).await.ok();
    assert_eq!(none, json!([]));

    let infos = t.get(&format!("/api/relations/info?fromId={}&fromType=DEVICE", id_of(&a)), &admin).await.ok();
    assert_eq!(infos[0]["fromName"], "Gateway");
    assert_eq!(infos[0]["toName"], "Sensor");

    // The 4.4 client's paths.
    let from_path = t.get(&format!("/api/relations/from/DEVICE/{}", id_of(&a)), &admin).await.ok();
    assert_eq!(from_path[0], one);
    let to_path = t.get(&format!("/api/relations/to/DEVICE/{}/Contains", id_of(&b)), &admin).await.ok();
    assert_eq!(to_path[0], one);
    let other_type = t.get(&format!("/api/relations/to/DEVICE/{}/Manages", id_of(&b)), &admin).await.ok();
    assert_eq!(other_type, json!([]));

    // Saving again updates the info and bumps the version.
    let body = json!({"from": a["id"], "to": b["id"], "type": "Contains", "typeGroup": "COMMON", "additionalInfo": {"note": "y"}});
    t.post("/api/relation", &admin, body).await.ok();
    let one = t.get(&format!("/api/relation?{}&relationTypeGroup=COMMON", key_query(&a, &b, "Contains")), &admin).await.ok();
    assert_eq!(one["additionalInfo"]["note"], "y");
    assert_eq!(one["version"], 2);

    t.delete(&format!("/api/relation?{}", key_query(&a, &b, "Contains")), &admin).await.ok();
    t.get(&format!("/api/relation?{}", key_query(&a, &b, "Contains")), &admin).await.expect(404);
    t.delete(&format!("/api/relation?{}", key_query(&a, &b, "Contains")), &admin).await.expect(404);
    let from = t.get(&format!("/api/relations?fromId={}&fromType=DEVICE", id_of(&a)), &admin).await.ok();
    assert_eq!(from, json!([]));
}

#[tokio::test]
async fn the_v2_endpoints_answer_with_the_relation() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let a = t.device(&admin, "A").await;
    let b = t.device(&admin, "B").await;
    let saved = t.post("/api/v2/relation", &admin, relation(&a, &b, "Manages")).await.ok();
    assert_eq!(saved["from"], a["id"]);
    assert_eq!(saved["type"], "Manages");
    assert_eq!(saved["typeGroup"], "COMMON");
    assert_eq!(saved["version"], 1);
    let deleted = t.delete(&format!("/api/v2/relation?{}", key_query(&a, &b, "Manages")), &admin).await.ok();
    assert_eq!(deleted, saved);
    t.delete(&format!("/api/v2/relation?{}", key_query(&a, &b, "Manages")), &admin).await.expect(404);
}

#[tokio::test]
async fn a_relation_to_another_tenants_entity_or_a_missing_one_is_refused() {
    let t = TestApp::start().await;
    let (_, acme) = tenant_with_admin(&t, "Acme").await;
    let (_, other) = tenant_with_admin(&t, "Other").await;
    let mine = t.device(&acme, "Mine").await;
    let theirs = t.device(&other, "Theirs").await;
    t.post("/api/relation", &acme, relation(&mine, &theirs, "Contains")).await.expect(403);
    t.post("/api/relation", &acme, relation(&theirs, &mine, "Contains")).await.expect(403);
    let ghost = json!({"id": {"entityType": "DEVICE", "id": "5d1c2b6e-0000-4000-8000-000000000001"}});
    t.post("/api/relation", &acme, relation(&mine, &ghost, "Contains")).await.expect(404);
    // The other tenant can neither read nor list this tenant's relations.
    let m2 = t.device(&acme, "Mine 2").await;
    t.post("/api/relation", &acme, relation(&mine, &m2, "Contains")).await.ok();
    t.get(&format!("/api/relation?{}", key_query(&mine, &m2, "Contains")), &other).await.expect(403);
    t.get(&format!("/api/relations?fromId={}&fromType=DEVICE", id_of(&mine)), &other).await.expect(403);
    t.delete(&format!("/api/relation?{}", key_query(&mine, &m2, "Contains")), &other).await.expect(403);
}

#[tokio::test]
async fn deleting_a_device_removes_its_relations() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let a = t.device(&admin, "A").await;
    let b = t.device(&admin, "B").await;
    let c = t.device(&admin, "C").await;
    t.post("/api/relation", &admin, relation(&a, &b, "Contains")).await.ok();
    t.post("/api/relation", &admin, relation(&b, &c, "Contains")).await.ok();
    t.delete(&format!("/api/device/{}", id_of(&b)), &admin).await.ok();
    let from_a = t.get(&format!("/api/relations?fromId={}&fromType=DEVICE", id_of(&a)), &admin).await.ok();
    assert_eq!(from_a, json!([]));
    let to_c = t.get(&format!("/api/relations?toId={}&toType=DEVICE", id_of(&c)), &admin).await.ok();
    assert_eq!(to_c, json!([]));
    t.get(&format!("/api/relation?{}", key_query(&a, &b, "Contains")), &admin).await.expect(404);
}

#[tokio::test]
async fn the_relations_query_walks_levels_applies_filters_and_survives_cycles() {
    let t = TestApp::start().await;
    let (tenant_id, admin) = t.tenant("Acme").await;
    let mut d: Vec<Value> = Vec::new();
    for i in 1..=5 {
        d.push(t.device(&admin, &format!("D{i}")).await);
    }
    // d1 -Contains-> d2 -Contains-> d3 -Contains-> d4 -Contains-> d1 (a cycle); d1 -Manages-> d5;
    // d2 -Contains-> the tenant itself (another entity type).
    for (from, to) in [(0, 1), (1, 2), (2, 3), (3, 0)] {
        t.post("/api/relation", &admin, relation(&d[from], &d[to], "Contains")).await.ok();
    }
    t.post("/api/relation", &admin, relation(&d[0], &d[4], "Manages")).await.ok();
    let tenant = json!({"id": {"entityType": "TENANT", "id": tenant_id}});
    t.post("/api/relation", &admin, relation(&d[1], &tenant, "Contains")).await.ok();

    let query = |max_level: u32, filters: Value, last_only: bool| {
        json!({
            "parameters": {"rootId": id_of(&d[0]), "rootType": "DEVICE", "direction": "FROM",
                           "relationTypeGroup": "COMMON", "maxLevel": max_level, "fetchLastLevelOnly": last_only},
            "filters": filters,
        })
    };
    let ids = |idx: &[usize]| sorted(idx.iter().map(|&i| id_of(&d[i])).collect());

    // Three levels, devices reached by Contains only.
    let contains = json!([{"relationType": "Contains", "entityTypes": ["DEVICE"]}]);
    let found = t.post("/api/relations", &admin, query(3, contains.clone(), false)).await.ok();
    assert_eq!(tos(&found), ids(&[1, 2, 3]));

    // Unlimited: the cycle back to d1 is followed once and the walk ends.
    let found = t.post("/api/relations", &admin, query(0, contains.clone(), false)).await.ok();
    assert_eq!(tos(&found), ids(&[0, 1, 2, 3]));

    // No filters: every relation within two levels, whatever the far end.
    let found = t.post("/api/relations", &admin, query(2, json!([]), false)).await.ok();
    let mut expected = ids(&[1, 2, 4]);
    expected.push(tenant_id.clone());
    assert_eq!(tos(&found), sorted(expected));

    // Only the last level.
    let found = t.post("/api/relations", &admin, query(3, contains, true)).await.ok();
    assert_eq!(tos(&found), ids(&[3]));

    // With names, and walking the other way.
    let infos = t.post("/api/relations/info", &admin, query(1, json!([{"relationType": "Manages"}]), false)).await.ok();
    assert_eq!(infos.as_array().map(Vec::len), Some(1));
    assert_eq!(infos[0]["fromName"], "D1");
    assert_eq!(infos[0]["toName"], "D5");
    let up = json!({"parameters": {"rootId": id_of(&d[2]), "rootType": "DEVICE", "direction": "TO", "maxLevel": 2}, "filters": []});
    let found = t.post("/api/relations", &admin, up).await.ok();
    let mut froms: Vec<String> = found.as_array().expect("list").iter().map(|r| r["from"]["id"].as_str().expect("id").to_string()).collect();
    froms.sort();
    assert_eq!(froms, ids(&[0, 1]));
}

#[tokio::test]
async fn a_customer_user_reads_only_relations_among_its_customers_entities() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let customer = t.customer(&admin, "Buyer").await;
    let a = t.device(&admin, "Shared A").await;
    let b = t.device(&admin, "Shared B").await;
    let hidden = t.device(&admin, "Hidden").await;
    for d in [&a, &b] {
        t.post(&format!("/api/customer/{customer}/device/{}", id_of(d)), &admin, json!({})).await.ok();
    }
    t.post("/api/relation", &admin, relation(&a, &b, "Contains")).await.ok();
    t.post("/api/relation", &admin, relation(&a, &hidden, "Contains")).await.ok();
    let user = t
        .user(&admin, json!({"email": "buyer@example.com", "authority": "CUSTOMER_USER",
                             "customerId": {"entityType": "CUSTOMER", "id": customer}}))
        .await;
    t.get(&format!("/api/relation?{}", key_query(&a, &b, "Contains")), &user).await.ok();
    t.get(&format!("/api/relation?{}", key_query(&a, &hidden, "Contains")), &user).await.expect(403);
    let from = t.get(&format!("/api/relations?fromId={}&fromType=DEVICE", id_of(&a)), &user).await.ok();
    assert_eq!(tos(&from), vec![id_of(&b)]);
    t.get(&format!("/api/relations?toId={}&toType=DEVICE", id_of(&hidden)), &user).await.expect(403);
    // Reading is not writing.
    t.post("/api/relation", &user, relation(&b, &a, "Contains")).await.expect(403);
    t.delete(&format!("/api/relation?{}", key_query(&a, &b, "Contains")), &user).await.expect(403);
}

#[tokio::test]
async fn assets_and_customers_can_be_related_too() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let customer = t.customer(&admin, "Buyer").await;
    let asset = t.post("/api/asset", &admin, json!({"name": "Building", "type": "building"})).await.ok();
    let device = t.device(&admin, "Meter").await;
    let customer_id = json!({"entityType": "CUSTOMER", "id": customer});
    t.post("/api/relation", &admin, json!({"from": customer_id, "to": asset["id"], "type": "Owns"})).await.ok();
    t.post("/api/relation", &admin, json!({"from": asset["id"], "to": device["id"], "type": "Contains"})).await.ok();
    let query = json!({
        "parameters": {"rootId": customer, "rootType": "CUSTOMER", "direction": "FROM", "maxLevel": 2},
        "filters": [{"relationType": "Contains", "entityTypes": ["DEVICE"]}, {"relationType": "Owns", "entityTypes": ["ASSET"]}],
    });
    let infos = t.post("/api/relations/info", &admin, query).await.ok();
    let names: Vec<(&str, &str)> = infos
        .as_array()
        .expect("list")
        .iter()
        .map(|r| (r["fromName"].as_str().expect("from name"), r["toName"].as_str().expect("to name")))
        .collect();
    assert_eq!(names, [("Buyer", "Building"), ("Building", "Meter")]);
}
