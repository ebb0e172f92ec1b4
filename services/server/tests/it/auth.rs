//! `/api/auth/…`: sign-in, refresh, the current user and password change.

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{PASSWORD, SYSADMIN_EMAIL, SYSADMIN_PASSWORD, TestApp};

async fn login_raw(t: &TestApp, username: &str, password: &str) -> crate::harness::Resp {
    t.call(Method::POST, "/api/auth/login", None, Some(json!({"username": username, "password": password}))).await
}

/// The claims of a JWT, read without verifying (as ThingsBoard clients do).
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("jwt payload");
    serde_json::from_slice(&base64url(payload)).expect("claims json")
}

/// Unpadded base64url, enough to read a JWT payload.
fn base64url(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c).expect("base64url character") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

#[tokio::test]
async fn login_with_the_right_password_answers_a_thingsboard_token_pair() {
    let t = TestApp::start().await;
    let pair = login_raw(&t, SYSADMIN_EMAIL, SYSADMIN_PASSWORD).await.ok();
    let access = claims(pair["token"].as_str().expect("token"));
    assert_eq!(access["sub"], SYSADMIN_EMAIL);
    assert_eq!(access["scopes"], json!(["SYS_ADMIN"]));
    assert!(access["exp"].as_i64().is_some());
    let refresh = claims(pair["refreshToken"].as_str().expect("refresh token"));
    assert_eq!(refresh["scopes"], json!(["REFRESH_TOKEN"]));
}

#[tokio::test]
async fn login_with_a_wrong_password_is_refused_with_errorcode_10() {
    let t = TestApp::start().await;
    let err = login_raw(&t, SYSADMIN_EMAIL, "wrong password").await.expect(401);
    assert_eq!(err["errorCode"], 10);
    assert_eq!(err["message"], "Invalid username or password");
}

#[tokio::test]
async fn login_of_an_unknown_user_is_refused_with_errorcode_10() {
    let t = TestApp::start().await;
    let err = login_raw(&t, "nobody@example.com", SYSADMIN_PASSWORD).await.expect(401);
    assert_eq!(err["errorCode"], 10);
    assert_eq!(err["message"], "Invalid username or password");
}

#[tokio::test]
async fn a_refresh_token_yields_a_new_working_pair() {
    let t = TestApp::start().await;
    let pair = login_raw(&t, SYSADMIN_EMAIL, SYSADMIN_PASSWORD).await.ok();
    let refreshed = t
        .call(Method::POST, "/api/auth/token", None, Some(json!({"refreshToken": pair["refreshToken"]})))
        .await
        .ok();
    let token = refreshed["token"].as_str().expect("token");
    assert_eq!(claims(token)["sessionId"], claims(pair["token"].as_str().expect("token"))["sessionId"]);
    assert_eq!(t.get("/api/auth/user", token).await.ok()["email"], SYSADMIN_EMAIL);
}

#[tokio::test]
async fn an_access_token_is_not_accepted_as_refresh_token() {
    let t = TestApp::start().await;
    let pair = login_raw(&t, SYSADMIN_EMAIL, SYSADMIN_PASSWORD).await.ok();
    let err = t.call(Method::POST, "/api/auth/token", None, Some(json!({"refreshToken": pair["token"]}))).await.expect(401);
    assert_eq!(err["errorCode"], 10);
}

#[tokio::test]
async fn a_refresh_token_does_not_authorize_requests() {
    let t = TestApp::start().await;
    let pair = login_raw(&t, SYSADMIN_EMAIL, SYSADMIN_PASSWORD).await.ok();
    t.get("/api/auth/user", pair["refreshToken"].as_str().expect("refresh token")).await.expect(401);
}

#[tokio::test]
async fn auth_user_answers_the_signed_in_user_without_secrets() {
    let t = TestApp::start().await;
    let (tenant_id, admin) = t.tenant("Acme").await;
    let me = t.get("/api/auth/user", &admin).await.ok();
    assert_eq!(me["authority"], "TENANT_ADMIN");
    assert_eq!(me["tenantId"], json!({"entityType": "TENANT", "id": tenant_id}));
    assert_eq!(me["id"]["entityType"], "USER");
    assert_eq!(me["name"], me["email"]);
    let text = me.to_string();
    assert!(!text.contains("argon2") && !text.contains("password") && !text.contains("activation"), "{text}");
}

#[tokio::test]
async fn after_changing_the_password_the_old_one_fails_and_the_new_one_works() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let email = t.get("/api/auth/user", &admin).await.ok()["email"].as_str().expect("email").to_string();
    let pair = t
        .post("/api/auth/changePassword", &admin, json!({"currentPassword": PASSWORD, "newPassword": "a brand new secret"}))
        .await
        .ok();
    assert!(pair["token"].is_string() && pair["refreshToken"].is_string());
    assert_eq!(login_raw(&t, &email, PASSWORD).await.expect(401)["errorCode"], 10);
    login_raw(&t, &email, "a brand new secret").await.ok();
}

#[tokio::test]
async fn changing_the_password_needs_the_current_one() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    let err = t
        .post("/api/auth/changePassword", &admin, json!({"currentPassword": "not it", "newPassword": "a brand new secret"}))
        .await
        .expect(400);
    assert!(err["message"].as_str().is_some_and(|m| m.contains("password")), "{err}");
}

#[tokio::test]
async fn a_too_short_new_password_is_refused() {
    let t = TestApp::start().await;
    let (_, admin) = t.tenant("Acme").await;
    t.post("/api/auth/changePassword", &admin, json!({"currentPassword": PASSWORD, "newPassword": "abc"})).await.expect(400);
}

#[tokio::test]
async fn logout_answers_200() {
    let t = TestApp::start().await;
    let sys = t.sysadmin().await;
    let res = t.call(Method::POST, "/api/auth/logout", Some(&sys), None).await;
    assert_eq!(res.status.as_u16(), 200);
}
