//! MQTT over TLS: with a certificate and key configured, a second listener speaks TLS and runs
//! the same sessions; a client trusting the certificate publishes QoS 1 telemetry that is then
//! on the log, and a plain-TCP client on the TLS port gets no session.

use std::path::Path;
use std::process::Command;

use serde_json::json;
use thinglake_server::MqttTls;

use crate::harness::TestApp;
use crate::mqtt::{Client4, app, device_with_token, mosquitto, points_of};

/// A self-signed certificate for 127.0.0.1 and localhost, made with the `openssl` CLI.
pub(crate) fn self_signed(dir: &Path) -> MqttTls {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("the openssl CLI runs (Debian's openssl package)");
    assert!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
    MqttTls { cert, key }
}

#[tokio::test]
async fn telemetry_over_tls_is_stored_and_plain_tcp_on_the_tls_port_is_refused() {
    let certs = tempfile::tempdir().expect("temp dir");
    let files = self_signed(certs.path());
    let ca = files.cert.clone();
    let t = TestApp::start_with(|s| {
        s.mqtt_tls = Some(files);
        s.mqtt_tls_port = 0;
    })
    .await;
    let tls_addr = app(&t).mqtt_tls_addr.expect("TLS listener configured");
    assert_ne!(tls_addr, app(&t).mqtt_addr);
    let (_, admin) = t.tenant("Acme").await;
    let id = device_with_token(&t, &admin, "Secure", "TLS_TOKEN", json!({})).await;

    for (version, value) in [("mqttv311", 1), ("mqttv5", 2)] {
        let out = mosquitto("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &tls_addr.port().to_string(), "-V", version, "-u", "TLS_TOKEN"])
            .arg("--cafile")
            .arg(&ca)
            .args(["-q", "1", "-t", "v1/devices/me/telemetry", "-m", &format!(r#"{{"secure": {value}}}"#)])
            .output()
            .await
            .expect("mosquitto_pub runs");
        assert!(out.status.success(), "{version} over TLS: {}", String::from_utf8_lossy(&out.stderr));
    }
    // QoS 1 returned only after the PUBACK, which follows JetStream's acknowledgement.
    let values: Vec<_> = points_of(&t, &id).await.into_iter().filter(|(_, k, _)| k == "secure").map(|(_, _, v)| v).collect();
    assert_eq!(values, vec![json!(1), json!(2)]);

    // Plain MQTT on the TLS port gets no CONNACK.
    let mut plain = Client4::new(tls_addr, "TLS_TOKEN", "plain-on-tls");
    match plain.next().await {
        Err(_) => {}
        Ok(packet) => panic!("plain TCP on the TLS port must fail, got {packet:?}"),
    }
    // The plain listener still serves.
    let mut c = Client4::connected(app(&t).mqtt_addr, "TLS_TOKEN").await;
    c.publish_acked("v1/devices/me/telemetry", r#"{"secure": 4}"#).await;
    let count = points_of(&t, &id).await.iter().filter(|(_, k, _)| k == "secure").count();
    assert_eq!(count, 3);
}
