//! Real ThingsBoard clients against the platform: the Python `tb-rest-client` of both
//! generations scripts use (4.3's `RestClientCE`, 4.4's `RestClient`), installed pinned by
//! `scripts/install-tools`, runs a whole provisioning flow unchanged.

use std::path::PathBuf;

use crate::harness::{SYSADMIN_EMAIL, SYSADMIN_PASSWORD, TestApp};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

async fn run_flow(venv: &str) {
    let t = TestApp::start().await;
    let python = repo().join(".tools").join(venv).join("bin/python");
    assert!(python.exists(), "{} is missing: run scripts/install-tools", python.display());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/tb_rest_client_flow.py");
    let out = tokio::process::Command::new(python)
        .arg(script)
        .arg(&t.base)
        .arg(SYSADMIN_EMAIL)
        .arg(SYSADMIN_PASSWORD)
        .output()
        .await
        .expect("python runs");
    assert!(
        out.status.success(),
        "tb-rest-client flow failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn tb_rest_client_4_4_runs_a_provisioning_script_unchanged() {
    run_flow("venv").await;
}

#[tokio::test]
async fn tb_rest_client_ce_4_3_runs_a_provisioning_script_unchanged() {
    run_flow("venv-tb43").await;
}
