//! Customer endpoints: create, read, list, unique titles, delete and what deleting releases;
//! what a customer user may see.

use serde_json::{Value, json};

use crate::harness::{TestApp, id_of};

fn names(page: &Value, field: &str) -> Vec<String> {
    page["data"].as_array().expect("data").iter().filter_map(|e| e[field].as_str().map(String::from)).collect()
}

#[tokio::test]
async fn a_created_customer_reads_back_with_thingsboards_shape() {
    let t = TestApp::start().await;
    let (tenant_id, admin) = t.tenant("Acme").await;
    let created = t.post("/api/customer", &admin, json!({"title": "Globex", "city": "Springfield"})).await.ok();
    assert_eq!(created["id"]["entityType"], "CUSTOMER");
    assert_eq!(created["title"], "Globex");
    assert_eq!(created["name"], "Globex");
    assert_eq!(created["city"], "Springfield");
    assert_eq!(created["isPublic"], false);
    assert_eq!(created["version"], 1);
    assert_eq!(created["tenantId"]["id"], tenant_id.as_str());
    let read = t.get(&format!("/api/customer/{}", id_of(&created)), &admin).await.ok();
    assert_eq!(read, created);
}

#[tokio::test]
async fn a_stale_customer_version_is_refused_with_409() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let mut customer = t.post("/api/customer", &admin, json!({"title": "Globex"})).await.ok();
    customer["city"] = json!("Paris");
    assert_eq!(t.post("/api/customer", &admin, customer.clone()).await.ok()["version"], 2);
    customer["city"] = json!("Rome");
    assert_eq!(t.post("/api/customer", &admin, customer).await.expect(409)["errorCode"], 35);
}

#[tokio::test]
async fn a_duplicate_customer_title_is_refused_with_400() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    t.customer(&admin, "Globex").await;
    t.post("/api/customer", &admin, json!({"title": "Globex"})).await.expect(400);
    let list = t.get("/api/customers?pageSize=10&page=0", &admin).await.ok();
    assert_eq!(list["totalElements"], 1);
}

#[tokio::test]
async fn a_renamed_customer_frees_its_old_title() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let id = t.customer(&admin, "Old").await;
    t.post("/api/customer", &admin, json!({"id": {"entityType": "CUSTOMER", "id": id}, "title": "New"})).await.ok();
    t.customer(&admin, "Old").await;
    t.post("/api/customer", &admin, json!({"title": "New"})).await.expect(400);
}

#[tokio::test]
async fn customers_page_search_and_sort() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    for title in ["Beta", "alpha", "Gamma", "Alpine"] {
        t.customer(&admin, title).await;
    }
    let page = t.get("/api/customers?pageSize=3&page=0&sortProperty=title&sortOrder=ASC", &admin).await.ok();
    assert_eq!(names(&page, "title"), ["alpha", "Alpine", "Beta"]);
    assert_eq!(page["totalElements"], 4);
    assert_eq!(page["hasNext"], true);
    let found = t.get("/api/customers?pageSize=10&page=0&textSearch=ALP", &admin).await.ok();
    assert_eq!(found["totalElements"], 2);
    let one = t.get("/api/tenant/customers?customerTitle=Gamma", &admin).await.ok();
    assert_eq!(one["title"], "Gamma");
    t.get("/api/tenant/customers?customerTitle=Delta", &admin).await.expect(404);
}

#[tokio::test]
async fn a_deleted_customer_is_gone_and_its_title_is_free() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let id = t.customer(&admin, "Globex").await;
    t.delete(&format!("/api/customer/{id}"), &admin).await.ok();
    t.get(&format!("/api/customer/{id}"), &admin).await.expect(404);
    t.customer(&admin, "Globex").await;
}

#[tokio::test]
async fn deleting_a_customer_unassigns_its_devices_and_assets_and_deletes_its_users() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let cid = t.customer(&admin, "Globex").await;
    let device = id_of(&t.device(&admin, "Pump").await);
    let asset = id_of(&t.post("/api/asset", &admin, json!({"name": "Plant"})).await.ok());
    t.post(&format!("/api/customer/{cid}/device/{device}"), &admin, json!({})).await.ok();
    t.post(&format!("/api/customer/{cid}/asset/{asset}"), &admin, json!({})).await.ok();
    let user = t.user(&admin, customer_user("user@globex.com", &cid)).await;
    t.delete(&format!("/api/customer/{cid}"), &admin).await.ok();
    let null = "13814000-1dd2-11b2-8080-808080808080";
    assert_eq!(t.get(&format!("/api/device/{device}"), &admin).await.ok()["customerId"]["id"], null);
    assert_eq!(t.get(&format!("/api/asset/{asset}"), &admin).await.ok()["customerId"]["id"], null);
    t.get("/api/tenant/devices?pageSize=10&page=0", &user).await.expect(401);
}

/// The user JSON of a customer user of `customer`.
fn customer_user(email: &str, customer: &str) -> Value {
    json!({"email": email, "authority": "CUSTOMER_USER", "customerId": {"entityType": "CUSTOMER", "id": customer}})
}

#[tokio::test]
async fn a_customer_user_sees_exactly_its_customers_devices_and_assets() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let mine = t.customer(&admin, "Globex").await;
    let other = t.customer(&admin, "Initech").await;
    let my_device = id_of(&t.device(&admin, "Mine").await);
    let other_device = id_of(&t.device(&admin, "Theirs").await);
    t.device(&admin, "Unassigned").await;
    let my_asset = id_of(&t.post("/api/asset", &admin, json!({"name": "My plant"})).await.ok());
    let other_asset = id_of(&t.post("/api/asset", &admin, json!({"name": "Their plant"})).await.ok());
    t.post(&format!("/api/customer/{mine}/device/{my_device}"), &admin, json!({})).await.ok();
    t.post(&format!("/api/customer/{other}/device/{other_device}"), &admin, json!({})).await.ok();
    t.post(&format!("/api/customer/{mine}/asset/{my_asset}"), &admin, json!({})).await.ok();
    t.post(&format!("/api/customer/{other}/asset/{other_asset}"), &admin, json!({})).await.ok();
    let user = t.user(&admin, customer_user("u@globex.com", &mine)).await;

    let devices = t.get(&format!("/api/customer/{mine}/devices?pageSize=10&page=0"), &user).await.ok();
    assert_eq!(names(&devices, "name"), ["Mine"]);
    let assets = t.get(&format!("/api/customer/{mine}/assets?pageSize=10&page=0"), &user).await.ok();
    assert_eq!(names(&assets, "name"), ["My plant"]);
    let infos = t.get(&format!("/api/customer/{mine}/assetInfos?pageSize=10&page=0"), &user).await.ok();
    assert_eq!(infos["data"][0]["customerTitle"], "Globex");
    t.get(&format!("/api/device/{my_device}"), &user).await.ok();
    t.get(&format!("/api/asset/{my_asset}"), &user).await.ok();
    t.get(&format!("/api/customer/{mine}"), &user).await.ok();
    t.get(&format!("/api/device/{other_device}"), &user).await.expect(403);
    t.get(&format!("/api/asset/{other_asset}"), &user).await.expect(403);
    t.get(&format!("/api/customer/{other}"), &user).await.expect(403);
    t.get(&format!("/api/customer/{other}/devices?pageSize=10&page=0"), &user).await.expect(403);
    t.get(&format!("/api/customer/{other}/assets?pageSize=10&page=0"), &user).await.expect(403);
}
