//! User endpoints: creation rights, unique emails, activation, lists.

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{PASSWORD, TestApp, id_of};
use crate::tenants::tenant_with_admin;

fn tenant_admin(email: &str, tenant_id: &str) -> Value {
    json!({"email": email, "authority": "TENANT_ADMIN", "tenantId": {"entityType": "TENANT", "id": tenant_id}})
}

/// Fetches a user's activation link as the raw text ThingsBoard answers, and its token.
async fn activation_token(t: &TestApp, creator: &str, user_id: &str) -> String {
    let link = t.activation_link(creator, user_id).await;
    assert!(link.contains("/api/noauth/activate?activateToken="), "{link}");
    link.rsplit("activateToken=").next().expect("token").to_string()
}

async fn activate(t: &TestApp, token: &str) -> crate::harness::Resp {
    t.call(Method::POST, "/api/noauth/activate", None, Some(json!({"activateToken": token, "password": PASSWORD}))).await
}

#[tokio::test]
async fn a_created_user_is_activated_through_its_link_and_then_signs_in() {
    let t = TestApp::start().await;
    let sys = t.sysadmin().await;
    let tenant_id = id_of(&t.post("/api/tenant", &sys, json!({"title": "Acme"})).await.ok());
    let user = t.post("/api/user?sendActivationMail=false", &sys, tenant_admin("Boss@Acme.io", &tenant_id)).await.ok();
    assert_eq!(user["email"], "boss@acme.io");
    assert_eq!(user["authority"], "TENANT_ADMIN");
    assert_eq!(user["version"], 1);
    // Not activated yet: no sign-in.
    let refused = t.call(Method::POST, "/api/auth/login", None, Some(json!({"username": "boss@acme.io", "password": PASSWORD}))).await;
    assert_eq!(refused.status.as_u16(), 401);
    let token = activation_token(&t, &sys, &id_of(&user)).await;
    let pair = activate(&t, &token).await.ok();
    assert!(pair["token"].is_string() && pair["refreshToken"].is_string());
    let me = t.get("/api/auth/user", &t.login("boss@acme.io", PASSWORD).await).await.ok();
    assert_eq!(me["id"], user["id"]);
}

#[tokio::test]
async fn a_used_activation_token_cannot_be_reused() {
    let t = TestApp::start().await;
    let sys = t.sysadmin().await;
    let tenant_id = id_of(&t.post("/api/tenant", &sys, json!({"title": "Acme"})).await.ok());
    let user = t.post("/api/user?sendActivationMail=false", &sys, tenant_admin("boss@acme.io", &tenant_id)).await.ok();
    let token = activation_token(&t, &sys, &id_of(&user)).await;
    activate(&t, &token).await.ok();
    activate(&t, &token).await.expect(400);
}

#[tokio::test]
async fn only_the_latest_activation_link_works() {
    let t = TestApp::start().await;
    let sys = t.sysadmin().await;
    let tenant_id = id_of(&t.post("/api/tenant", &sys, json!({"title": "Acme"})).await.ok());
    let user = t.post("/api/user?sendActivationMail=false", &sys, tenant_admin("boss@acme.io", &tenant_id)).await.ok();
    let first = activation_token(&t, &sys, &id_of(&user)).await;
    let second = activation_token(&t, &sys, &id_of(&user)).await;
    activate(&t, &first).await.expect(400);
    activate(&t, &second).await.ok();
}

#[tokio::test]
async fn a_duplicate_email_is_refused_with_400() {
    let t = TestApp::start().await;
    let sys = t.sysadmin().await;
    let tenant_id = id_of(&t.post("/api/tenant", &sys, json!({"title": "Acme"})).await.ok());
    t.post("/api/user", &sys, tenant_admin("boss@acme.io", &tenant_id)).await.ok();
    let err = t.post("/api/user", &sys, tenant_admin("BOSS@acme.io", &tenant_id)).await.expect(400);
    assert_eq!(err["errorCode"], 30);
}

#[tokio::test]
async fn concurrent_creates_of_one_email_yield_exactly_one_user() {
    let t = TestApp::start().await;
    let sys = t.sysadmin().await;
    let tenant_id = id_of(&t.post("/api/tenant", &sys, json!({"title": "Acme"})).await.ok());
    let attempts = (0..10).map(|_| t.post("/api/user", &sys, tenant_admin("boss@acme.io", &tenant_id)));
    let results = futures::future::join_all(attempts).await;
    assert_eq!(results.iter().filter(|r| r.status.is_success()).count(), 1, "{results:?}");
    for r in results.iter().filter(|r| !r.status.is_success()) {
        assert_eq!(r.status.as_u16(), 400, "{r:?}");
    }
    let list = t.get(&format!("/api/tenant/{tenant_id}/users?pageSize=100&page=0"), &sys).await.ok();
    assert_eq!(list["totalElements"], 1);
}

#[tokio::test]
async fn a_user_for_a_missing_tenant_is_refused() {
    let t = TestApp::start().await;
    let sys = t.sysadmin().await;
    t.post("/api/user", &sys, tenant_admin("boss@acme.io", "0190f1d2-0000-7000-8000-000000000001")).await.expect(404);
}

#[tokio::test]
async fn a_tenant_admin_cannot_create_a_user_in_another_tenant() {
    let t = TestApp::start().await;
    let (_, _, admin) = tenant_with_admin(&t, "Acme").await;
    let sys = t.sysadmin().await;
    let other = id_of(&t.post("/api/tenant", &sys, json!({"title": "Globex"})).await.ok());
    let err = t.post("/api/user", &admin, tenant_admin("spy@globex.io", &other)).await.expect(403);
    assert_eq!(err["errorCode"], 20);
}

#[tokio::test]
async fn a_tenant_admin_cannot_read_another_tenants_user() {
    let t = TestApp::start().await;
    let (_, _, acme) = tenant_with_admin(&t, "Acme").await;
    let (_, _, globex) = tenant_with_admin(&t, "Globex").await;
    let globex_me = t.get("/api/auth/user", &globex).await.ok();
    t.get(&format!("/api/user/{}", id_of(&globex_me)), &acme).await.expect(403);
}

#[tokio::test]
async fn a_tenant_admin_creates_a_colleague_and_lists_its_tenants_users() {
    let t = TestApp::start().await;
    let (_, _, admin) = tenant_with_admin(&t, "Acme").await;
    let colleague = t.post("/api/user", &admin, json!({"email": "second@acme.io", "authority": "TENANT_ADMIN", "firstName": "Ann"})).await.ok();
    assert_eq!(colleague["firstName"], "Ann");
    let list = t.get("/api/users?pageSize=10&page=0&sortProperty=email&sortOrder=ASC", &admin).await.ok();
    assert_eq!(list["totalElements"], 2);
    assert_eq!(list["data"][1]["email"], "second@acme.io");
    // The 4.4 Python client's `get_users` path.
    assert_eq!(t.get("/api/user/users?pageSize=10&page=0", &admin).await.ok()["totalElements"], 2);
}

#[tokio::test]
async fn customer_users_are_created_by_their_tenant_admin_and_cannot_create_users() {
    let t = TestApp::start().await;
    let (_, _, admin) = tenant_with_admin(&t, "Acme").await;
    let customer = t.customer(&admin, "Shop").await;
    let customer_ref = json!({"entityType": "CUSTOMER", "id": customer});
    let user = t.user(&admin, json!({"email": "clerk@shop.io", "authority": "CUSTOMER_USER", "customerId": customer_ref})).await;
    let list = t.get(&format!("/api/customer/{customer}/users?pageSize=10&page=0"), &admin).await.ok();
    assert_eq!(list["totalElements"], 1);
    assert_eq!(list["data"][0]["customerId"]["id"], customer.as_str());
    let err = t.post("/api/user", &user, json!({"email": "friend@shop.io", "authority": "CUSTOMER_USER", "customerId": customer_ref})).await;
    assert_eq!(err.status.as_u16(), 403);
}

#[tokio::test]
async fn a_deleted_user_can_no_longer_sign_in_and_frees_its_email() {
    let t = TestApp::start().await;
    let (tenant_id, email, admin) = tenant_with_admin(&t, "Acme").await;
    let sys = t.sysadmin().await;
    let me = t.get("/api/auth/user", &admin).await.ok();
    t.delete(&format!("/api/user/{}", id_of(&me)), &sys).await.ok();
    t.get("/api/auth/user", &admin).await.expect(401);
    t.post("/api/user", &sys, tenant_admin(&email, &tenant_id)).await.ok();
}

#[tokio::test]
async fn a_stale_user_version_is_refused_with_409() {
    let t = TestApp::start().await;
    let (_, _, admin) = tenant_with_admin(&t, "Acme").await;
    let mut user = t.post("/api/user", &admin, json!({"email": "second@acme.io", "authority": "TENANT_ADMIN"})).await.ok();
    user["firstName"] = json!("Ann");
    assert_eq!(t.post("/api/user", &admin, user.clone()).await.ok()["version"], 2);
    user["firstName"] = json!("Bob");
    assert_eq!(t.post("/api/user", &admin, user).await.expect(409)["errorCode"], 35);
}

#[tokio::test]
async fn opening_an_activation_link_in_a_browser_leads_to_the_set_password_page() {
    let t = TestApp::start().await;
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let res = no_redirects.get(t.url("/api/noauth/activate?activateToken=abc123")).send().await.expect("sent");
    assert!(res.status().is_redirection(), "{}", res.status());
    let location = res.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert_eq!(location, "/login/createPassword?activateToken=abc123");
}
