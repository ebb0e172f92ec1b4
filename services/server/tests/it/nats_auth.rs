//! Who may use NATS: the real binary's supervised nats-server refuses anonymous clients, and its
//! ingress user publishes telemetry through the NATS ingress but reads no bucket or stream,
//! forges no event and overhears no other device's token or the platform's replies; and a
//! platform pointed at an external server signs in with the credentials in its URL.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_nats::{Client, ConnectOptions, Event};
use serde_json::{Value, json};
use thinglake_infra::nats_auth::{INGRESS_USER, NatsCredentials, client_options};
use thinglake_infra::nats_server::{LocalNatsServer, NatsServerOptions, find_binary};
use thinglake_infra::subjects::Subjects;
use thinglake_server::{RunningApp, Settings};
use thinglake_test_support::free_port;
use tokio::sync::mpsc;

use crate::harness::{Api, SYSADMIN_EMAIL, SYSADMIN_PASSWORD, id_of};

/// A client of `user` whose server errors (permission violations) arrive on the receiver.
async fn client_of(url: &str, user: &str, password: &str) -> (Client, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let client = ConnectOptions::with_user_and_password(user.into(), password.into())
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                if let Event::ServerError(e) = event {
                    let _ = tx.send(e.to_string());
                }
            }
        })
        .connect(url)
        .await
        .expect("the ingress user signs in");
    (client, rx)
}

/// Waits (with a deadline) for a server error containing `what`.
async fn violation(errors: &mut mpsc::UnboundedReceiver<String>, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, errors.recv()).await {
            Ok(Some(e)) if e.to_lowercase().contains(what) => return e,
            Ok(Some(_)) => {}
            _ => panic!("no server error mentioning {what:?}"),
        }
    }
}

/// A device of a new tenant: (admin token, tenant id, device id, access token).
async fn device(api: &Api) -> (String, String, String, String) {
    let (tenant, admin) = api.tenant("Acme").await;
    let id = id_of(&api.device(&admin, "nats device").await);
    let credentials = api.get(&format!("/api/device/{id}/credentials"), &admin).await.ok();
    let token = credentials["credentialsId"].as_str().expect("token").to_string();
    (admin, tenant, id, token)
}

#[tokio::test]
async fn the_supervised_server_refuses_strangers_and_confines_the_ingress_user_to_the_ingress() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (http_port, nats_port) = (free_port(), free_port());
    let platform = crate::process::start(dir.path(), http_port, nats_port).await;
    let url = format!("nats://127.0.0.1:{nats_port}");
    let anonymous = ConnectOptions::new().connection_timeout(Duration::from_secs(2)).connect(&url).await;
    assert!(anonymous.is_err(), "an anonymous client connected to the supervised nats-server");

    let credentials = NatsCredentials::load(&dir.path().join("nats")).expect("readable").expect("credentials kept in the data dir");
    assert_eq!(credentials.ingress.user, INGRESS_USER);
    let (admin, tenant, id, token) = device(&platform.api).await;
    let (ingress, mut errors) = client_of(&url, &credentials.ingress.user, &credentials.ingress.password).await;

    // The ingress works for it.
    let reply = ingress.request(format!("thinglake.ingress.{token}.telemetry"), r#"{"ts": 9, "values": {"t": 1}}"#.into()).await.expect("answered");
    assert_eq!(serde_json::from_slice::<Value>(&reply.payload).expect("json"), json!({"ok": true, "points": 1}));
    let path = format!("/api/plugins/telemetry/DEVICE/{id}/values/timeseries?keys=t");
    let deadline = Instant::now() + Duration::from_secs(10);
    while platform.api.get(&path, &admin).await.ok()["t"] != json!([{"ts": 9, "value": "1"}]) {
        assert!(Instant::now() < deadline, "the point never became the latest value");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // No bucket (the JWT signing key), no stream, no JetStream API at all.
    let mut js = jetstream::new(ingress.clone());
    js.set_timeout(Duration::from_secs(2));
    let subjects = Subjects::default();
    assert!(js.get_key_value(subjects.secrets_bucket()).await.is_err(), "the ingress user opened the secrets bucket");
    assert!(js.get_stream(subjects.events_stream()).await.is_err(), "the ingress user read the events stream");
    violation(&mut errors, "permissions violation for publish to \"$js.api").await;

    // No forged event, no eavesdropping on other devices' tokens or the platform's replies.
    let subject = subjects.entity(tenant.parse().expect("uuid"), thinglake_domain::EntityType::Device, id.parse().expect("uuid"));
    ingress.publish(subject.clone(), r#"{"forged": true}"#.into()).await.expect("sent");
    ingress.flush().await.expect("flushed");
    violation(&mut errors, "permissions violation for publish to \"thinglake.evt.").await;
    for forbidden in ["thinglake.ingress.>", "_THINGLAKE_INBOX.>", ">"] {
        let _sub = ingress.subscribe(forbidden).await.expect("sent");
        violation(&mut errors, "permissions violation for subscription").await;
    }
    let (platform_client, url) = client_options(&url, Some(&credentials.platform));
    let events = jetstream::new(platform_client.connect(url).await.expect("the platform user signs in"));
    let stream = events.get_stream(subjects.events_stream()).await.expect("events stream");
    let last = stream.get_last_raw_message_by_subject(&subject).await.expect("the device's last event");
    assert!(!String::from_utf8_lossy(&last.payload).contains("forged"), "a forged event reached the log");
}

#[tokio::test]
async fn the_platform_signs_in_to_an_external_server_with_the_credentials_in_its_url() {
    let nats_dir = tempfile::tempdir().expect("temp dir");
    let mut options = NatsServerOptions::new(nats_dir.path());
    options.binary = Some(find_binary().expect("nats-server is missing: run scripts/install-tools"));
    let server = LocalNatsServer::start(options).await.expect("nats-server starts");
    let user = server.credentials().platform.clone();

    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut settings = Settings::new(data_dir.path());
    settings.http_host = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    settings.http_port = 0;
    settings.mqtt_host = settings.http_host;
    settings.mqtt_port = 0;
    settings.nats_url = Some(format!("nats://{}:{}@127.0.0.1:{}", user.user, user.password, server.port()));
    settings.admin_email = SYSADMIN_EMAIL.into();
    settings.admin_password = Some(SYSADMIN_PASSWORD.into());
    let app = Box::pin(RunningApp::start(settings)).await.expect("the platform starts on the external server");
    assert!(!app.nats_url.contains(&user.password), "the URL kept without its password: {}", app.nats_url);
    let api = Api::new(format!("http://{}", app.http_addr));
    let (admin, _, id, _) = device(&api).await;
    api.get(&format!("/api/device/{id}"), &admin).await.ok();
    app.shutdown().await;
    server.shutdown().await.expect("nats-server stops");
}
