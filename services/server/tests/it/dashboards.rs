//! Dashboards over REST: create, read, list, versions, assignment to customers, read-only access
//! of customer users, and isolation between tenants and customers.

use serde_json::json;

use crate::harness::{TestApp, id_of};

fn dashboard(title: &str) -> serde_json::Value {
    json!({
        "title": title,
        "configuration": {"widgets": [{"id": "w1", "type": "timeseries", "datasources": [], "layout": {"col": 0, "row": 0, "sizeX": 8, "sizeY": 4}}]},
    })
}

#[tokio::test]
async fn a_dashboard_is_saved_read_listed_versioned_and_deleted() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Dash Co").await;
    let created = t.post("/api/dashboard", &admin, dashboard("Plant")).await.ok();
    let id = id_of(&created);
    assert_eq!(created["id"]["entityType"], "DASHBOARD");
    assert_eq!(created["version"], 1);
    assert_eq!(created["configuration"]["widgets"][0]["id"], "w1");
    let info = t.get(&format!("/api/dashboard/info/{id}"), &admin).await.ok();
    assert_eq!(info["title"], "Plant");
    assert!(info.get("configuration").is_none(), "an info carries no configuration");

    let mut update = created.clone();
    update["title"] = json!("Plant 2");
    let updated = t.post("/api/dashboard", &admin, update.clone()).await.ok();
    assert_eq!(updated["version"], 2);
    let stale = t.post("/api/dashboard", &admin, update).await.expect(409);
    assert_eq!(stale["errorCode"], 35);

    t.post("/api/dashboard", &admin, dashboard("Other")).await.ok();
    let page = t.get("/api/tenant/dashboards?pageSize=10&page=0&sortProperty=title&sortOrder=ASC", &admin).await.ok();
    assert_eq!(page["totalElements"], 2);
    assert_eq!(page["data"][0]["title"], "Other");
    let found = t.get("/api/tenant/dashboards?pageSize=10&page=0&textSearch=plant", &admin).await.ok();
    assert_eq!(found["totalElements"], 1);

    t.post("/api/dashboard", &admin, json!({"configuration": {}})).await.expect(400);
    t.post("/api/dashboard", &admin, json!({"title": "x", "configuration": [1]})).await.expect(400);

    let history = t.get(&format!("/api/history/dashboard/{id}"), &admin).await.ok();
    assert_eq!(history.as_array().map(Vec::len), Some(2));
    assert_eq!(history[1]["eventType"], "DashboardUpdated");
    let state = t.get(&format!("/api/history/dashboard/{id}/state"), &admin).await.ok();
    assert_eq!(state["state"]["title"], "Plant 2");

    t.delete(&format!("/api/dashboard/{id}"), &admin).await.ok();
    t.get(&format!("/api/dashboard/{id}"), &admin).await.expect(404);
}

#[tokio::test]
async fn customer_users_read_only_the_dashboards_assigned_to_their_customer() {
    let t = TestApp::start().await;
    let (tenant_id, admin) = t.tenant("Dash Iso").await;
    let mine = t.customer(&admin, "Mine").await;
    let theirs = t.customer(&admin, "Theirs").await;
    let user = t
        .user(
            &admin,
            json!({"email": "viewer@dash.io", "authority": "CUSTOMER_USER",
                   "tenantId": {"entityType": "TENANT", "id": tenant_id},
                   "customerId": {"entityType": "CUSTOMER", "id": mine}}),
        )
        .await;
    let shared = id_of(&t.post("/api/dashboard", &admin, dashboard("Shared")).await.ok());
    let private = id_of(&t.post("/api/dashboard", &admin, dashboard("Private")).await.ok());
    let assigned = t.post(&format!("/api/customer/{mine}/dashboard/{shared}"), &admin, json!({})).await.ok();
    assert_eq!(assigned["assignedCustomers"][0]["title"], "Mine");
    t.post(&format!("/api/customer/{theirs}/dashboard/{private}"), &admin, json!({})).await.ok();

    let got = t.get(&format!("/api/dashboard/{shared}"), &user).await.ok();
    assert_eq!(got["title"], "Shared");
    t.get(&format!("/api/dashboard/{private}"), &user).await.expect(403);
    let page = t.get(&format!("/api/customer/{mine}/dashboards?pageSize=10&page=0"), &user).await.ok();
    assert_eq!(page["totalElements"], 1);
    t.get(&format!("/api/customer/{theirs}/dashboards?pageSize=10&page=0"), &user).await.expect(403);
    let tenant_list = t.get("/api/tenant/dashboards?pageSize=10&page=0", &user).await.ok();
    assert_eq!(tenant_list["totalElements"], 1, "a customer user lists only its customer's dashboards");
    // Read-only.
    let mut edit = got.clone();
    edit["title"] = json!("Hacked");
    t.post("/api/dashboard", &user, edit).await.expect(403);
    t.delete(&format!("/api/dashboard/{shared}"), &user).await.expect(403);

    t.delete(&format!("/api/customer/{mine}/dashboard/{shared}"), &admin).await.ok();
    t.get(&format!("/api/dashboard/{shared}"), &user).await.expect(403);

    let (_, other_admin) = t.tenant("Dash Other").await;
    t.get(&format!("/api/dashboard/{private}"), &other_admin).await.expect(403);
    t.post(&format!("/api/customer/{mine}/dashboard/{private}"), &other_admin, json!({})).await.expect(403);
    let other_list = t.get("/api/tenant/dashboards?pageSize=10&page=0", &other_admin).await.ok();
    assert_eq!(other_list["totalElements"], 0);
}

#[tokio::test]
async fn dashboards_survive_a_restart() {
    let mut t = TestApp::start().await;
    let (_, admin) = t.tenant("Dash Restart").await;
    let id = id_of(&t.post("/api/dashboard", &admin, dashboard("Kept")).await.ok());
    t.restart().await;
    let got = t.get(&format!("/api/dashboard/{id}"), &admin).await.ok();
    assert_eq!(got["title"], "Kept");
    assert_eq!(got["configuration"]["widgets"][0]["type"], "timeseries");
}
