//! Sign-in throttling, the bound on password hashing, the password policy, and activation links
//! (their lifetime and public URL), through HTTP and the PostgreSQL wire protocol.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::RETRY_AFTER;
use serde_json::{Value, json};
use thinglake_platform::ManualClock;

use crate::harness::{PASSWORD, SYSADMIN_EMAIL, SYSADMIN_PASSWORD, TestApp, id_of};

/// A sign-in from `address` (sent as `X-Forwarded-For`); answers status, `Retry-After` and body.
async fn login_from(t: &TestApp, address: &str, email: &str, password: &str) -> (StatusCode, Option<u64>, Value) {
    let res = t
        .http
        .post(t.url("/api/auth/login"))
        .header("X-Forwarded-For", address)
        .json(&json!({"username": email, "password": password}))
        .send()
        .await
        .expect("request sent");
    let status = res.status();
    let retry_after = res.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    (status, retry_after, res.json().await.unwrap_or(Value::Null))
}

/// A tenant administrator's email (signed in once, from the test's own address).
async fn tenant_admin(t: &TestApp, title: &str) -> String {
    let (tenant_id, _) = t.tenant(title).await;
    format!("admin-{tenant_id}@example.com")
}

#[tokio::test]
async fn the_fifth_wrong_password_answers_429_and_another_account_from_another_address_still_signs_in() {
    let t = TestApp::start_with(|s| s.trust_forwarded_for = true).await;
    let admin = tenant_admin(&t, "Acme").await;
    for attempt in 1..5 {
        let (status, _, body) = login_from(&t, "10.0.0.1", SYSADMIN_EMAIL, "wrong password").await;
        assert_eq!((status.as_u16(), &body["errorCode"]), (401, &json!(10)), "attempt {attempt}: {body}");
    }
    let (status, retry_after, body) = login_from(&t, "10.0.0.1", SYSADMIN_EMAIL, "wrong password").await;
    assert_eq!(status.as_u16(), 429, "{body}");
    assert_eq!(body["errorCode"], 33, "{body}");
    assert!(retry_after.is_some_and(|s| (1..=300).contains(&s)), "Retry-After: {retry_after:?}");

    // The account is refused from any address, even with its password, until the window ends;
    // another account from another address is not.
    let (status, _, _) = login_from(&t, "10.0.0.2", SYSADMIN_EMAIL, SYSADMIN_PASSWORD).await;
    assert_eq!(status.as_u16(), 429);
    let (status, _, body) = login_from(&t, "10.0.0.3", &admin, PASSWORD).await;
    assert_eq!(status.as_u16(), 200, "{body}");
    assert!(body["token"].is_string());
}

#[tokio::test]
async fn one_address_is_throttled_across_accounts_and_forwarded_for_is_ignored_unless_trusted() {
    let t = TestApp::start().await;
    let admin = tenant_admin(&t, "Acme").await;
    // Twenty unknown accounts, each claimed to come from elsewhere: all count against the socket's
    // address, since X-Forwarded-For is not trusted by default.
    for n in 1..=20 {
        let (status, retry_after, body) = login_from(&t, &format!("10.1.0.{n}"), &format!("nobody{n}@example.com"), "guess").await;
        let expected = if n < 20 { 401 } else { 429 };
        assert_eq!(status.as_u16(), expected, "attempt {n}: {body}");
        assert_eq!(retry_after.is_some(), n == 20);
    }
    let (status, _, body) = login_from(&t, "10.2.0.1", &admin, PASSWORD).await;
    assert_eq!((status.as_u16(), &body["errorCode"]), (429, &json!(33)), "{body}");
}

#[tokio::test]
async fn sign_ins_past_the_hashing_bound_answer_503_instead_of_taking_a_thread_each() {
    let t = TestApp::start_with(|s| {
        s.trust_forwarded_for = true;
        s.passwords.hash_concurrency = 1;
        s.passwords.hash_wait = Duration::from_millis(1);
    })
    .await;
    let attempts = (0..24).map(|n| {
        let t = &t;
        async move { login_from(t, &format!("10.3.0.{n}"), &format!("user{n}@example.com"), "guess").await }
    });
    let answers = futures::future::join_all(attempts).await;
    let statuses: Vec<u16> = answers.iter().map(|(s, _, _)| s.as_u16()).collect();
    assert!(statuses.iter().all(|s| [401, 503].contains(s)), "{statuses:?}");
    let busy = answers.iter().find(|(s, _, _)| s.as_u16() == 503).expect("some sign-ins found every hashing slot busy");
    assert_eq!((busy.1, &busy.2["errorCode"]), (Some(1), &json!(33)), "{:?}", busy.2);
}

#[tokio::test]
async fn passwords_shorter_than_eight_characters_are_refused_with_errorcode_45() {
    let t = TestApp::start().await;
    let sys = t.sysadmin().await;
    let (tenant_id, admin) = t.tenant("Acme").await;
    let user = json!({"email": "short@acme.io", "authority": "TENANT_ADMIN", "tenantId": {"entityType": "TENANT", "id": tenant_id}});
    let created = t.post("/api/user?sendActivationMail=false", &sys, user).await.ok();
    let token = activation_token(&t.activation_link(&sys, &id_of(&created)).await);

    let err = t.call(reqwest::Method::POST, "/api/noauth/activate", None, Some(json!({"activateToken": token, "password": "seven77"}))).await.expect(400);
    assert_eq!(err["errorCode"], 45, "{err}");
    assert_eq!(err["message"], "Password must be 8 or more characters in length.");
    let err = t.post("/api/auth/changePassword", &admin, json!({"currentPassword": PASSWORD, "newPassword": "short"})).await.expect(400);
    assert_eq!(err["errorCode"], 45, "{err}");
    // The refused activation left the link usable.
    t.call(reqwest::Method::POST, "/api/noauth/activate", None, Some(json!({"activateToken": token, "password": "eight888"}))).await.ok();
    t.login("short@acme.io", "eight888").await;
}

fn activation_token(link: &str) -> String {
    link.rsplit("activateToken=").next().expect("token in link").to_string()
}

/// A new tenant administrator's activation link, fetched by the system administrator.
async fn new_user_link(t: &TestApp) -> (String, String) {
    let sys = t.sysadmin().await;
    let tenant = t.post("/api/tenant", &sys, json!({"title": "Acme"})).await.ok();
    let user = json!({"email": "new@acme.io", "authority": "TENANT_ADMIN", "tenantId": tenant["id"]});
    let created = t.post("/api/user?sendActivationMail=false", &sys, user).await.ok();
    let id = id_of(&created);
    (t.activation_link(&sys, &id).await, id)
}

#[tokio::test]
async fn activation_links_point_at_the_http_listener_unless_a_public_url_is_set() {
    let t = TestApp::start().await;
    let http_addr = t.app.as_ref().expect("running").http_addr;
    let (link, _) = new_user_link(&t).await;
    assert!(link.starts_with(&format!("http://{http_addr}/api/noauth/activate?activateToken=")), "{link}");

    let t = TestApp::start_with(|s| s.public_url = Some("https://iot.example.com/thinglake".into())).await;
    let (link, _) = new_user_link(&t).await;
    assert!(link.starts_with("https://iot.example.com/thinglake/api/noauth/activate?activateToken="), "{link}");
}

#[tokio::test]
async fn an_expired_activation_link_is_refused_as_thingsboard_does_and_a_new_one_works() {
    let ttl = Duration::from_secs(1);
    let clock = Arc::new(ManualClock::starting_now());
    let t = TestApp::start_with(|s| {
        s.activation_token_ttl = ttl;
        s.clock = clock.clone();
    })
    .await;
    let (link, id) = new_user_link(&t).await;
    // The link's lifetime passes on the platform's clock; nothing is waited for.
    clock.advance(ttl + Duration::from_millis(1));
    let activate = |token: String| json!({"activateToken": token, "password": "a good password"});
    let err = t.call(reqwest::Method::POST, "/api/noauth/activate", None, Some(activate(activation_token(&link)))).await.expect(400);
    assert_eq!((&err["errorCode"], &err["message"]), (&json!(31), &json!("Activation token expired")), "{err}");

    let sys = t.sysadmin().await;
    let fresh = t.activation_link(&sys, &id).await;
    t.call(reqwest::Method::POST, "/api/noauth/activate", None, Some(activate(activation_token(&fresh)))).await.ok();
    t.login("new@acme.io", "a good password").await;
}

#[tokio::test]
async fn postgres_sign_ins_share_the_throttle_with_rest() {
    let t = TestApp::start_with(|s| {
        s.pg_listen = Some("127.0.0.1:0".parse().expect("address"));
        s.trust_forwarded_for = true;
    })
    .await;
    let addr = t.app.as_ref().and_then(|a| a.pg_addr).expect("PostgreSQL listener");
    let admin = tenant_admin(&t, "Acme").await;
    let connect = |password: &'static str| {
        let config = format!("host={} port={} user={admin} password='{password}' dbname=thinglake", addr.ip(), addr.port());
        async move { tokio_postgres::connect(&config, tokio_postgres::NoTls).await.err().and_then(|e| e.code().cloned()) }
    };
    for _ in 1..5 {
        assert_eq!(connect("wrong password").await, Some(tokio_postgres::error::SqlState::INVALID_PASSWORD));
    }
    let refused = connect("wrong password").await;
    assert_eq!(refused.as_ref().map(tokio_postgres::error::SqlState::code), Some("08004"));
    assert!(connect(PASSWORD).await.is_some(), "the account is refused over the wire, even with its password");
    let (status, retry_after, _) = login_from(&t, "10.4.0.1", &admin, PASSWORD).await;
    assert_eq!((status.as_u16(), retry_after.is_some()), (429, true), "and over REST");
}

#[tokio::test]
async fn another_tenants_admin_and_a_customer_user_get_no_activation_link_of_a_user() {
    let t = TestApp::start().await;
    let (_, admin_a) = t.tenant("Tenant A").await;
    let (_, admin_b) = t.tenant("Tenant B").await;
    let customer = id_of(&t.post("/api/customer", &admin_a, json!({"title": "Buyer"})).await.ok());
    let viewer = t
        .user(&admin_a, json!({"email": "viewer@a.io", "authority": "CUSTOMER_USER", "customerId": {"entityType": "CUSTOMER", "id": customer}}))
        .await;
    let pending = json!({"email": "pending@a.io", "authority": "CUSTOMER_USER", "customerId": {"entityType": "CUSTOMER", "id": customer}});
    let id = id_of(&t.post("/api/user?sendActivationMail=false", &admin_a, pending).await.ok());

    for (who, token) in [("another tenant's administrator", &admin_b), ("a customer user", &viewer)] {
        let res = t.get(&format!("/api/user/{id}/activationLink"), token).await;
        let status = res.status.as_u16();
        assert!(status == 403 || status == 404, "{who} got the activation link: {status}");
    }
    // Neither issued a token: the user's own link still activates it.
    let link = t.activation_link(&admin_a, &id).await;
    let activate = json!({"activateToken": activation_token(&link), "password": "a good password"});
    t.call(reqwest::Method::POST, "/api/noauth/activate", None, Some(activate)).await.ok();
    t.login("pending@a.io", "a good password").await;
}
