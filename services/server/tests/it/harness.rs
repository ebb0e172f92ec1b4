//! A whole platform per test: a real nats-server (test support), the platform started in process
//! on a free HTTP port, and a plain HTTP client speaking ThingsBoard's REST API to it. Tests of
//! the real binary start it with [`Platform::start`].

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use thinglake_server::{RunningApp, Settings};
use thinglake_test_support::NatsServer;

pub(crate) const SYSADMIN_EMAIL: &str = "sysadmin@thinglake.local";
pub(crate) const SYSADMIN_PASSWORD: &str = "sysadmin-test-password";
pub(crate) const PASSWORD: &str = "correct horse battery";

/// A platform started in process, with its NATS and data directory. Derefs to [`Api`].
pub(crate) struct TestApp {
    pub(crate) api: Api,
    pub(crate) app: Option<RunningApp>,
    pub(crate) nats: NatsServer,
    pub(crate) data_dir: tempfile::TempDir,
}

impl std::ops::Deref for TestApp {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

/// A ThingsBoard REST client for one platform's base URL.
pub(crate) struct Api {
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
}

/// A response: status and JSON body (`Null` when empty or not JSON).
#[derive(Debug)]
pub(crate) struct Resp {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
}

impl Resp {
    /// Asserts a 2xx status and returns the body.
    #[track_caller]
    pub(crate) fn ok(self) -> Value {
        assert!(self.status.is_success(), "expected success, got {}: {}", self.status, self.body);
        self.body
    }

    /// Asserts the status and returns the body.
    #[track_caller]
    pub(crate) fn expect(self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.body);
        self.body
    }
}

impl TestApp {
    pub(crate) async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts the platform with the test settings changed by `configure`.
    pub(crate) async fn start_with(configure: impl FnOnce(&mut Settings)) -> Self {
        let nats = NatsServer::start().await;
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut settings = test_settings(&nats, data_dir.path());
        configure(&mut settings);
        // Boxed: the platform's start future is large, and every test holds it.
        let app = Box::pin(RunningApp::start(settings)).await.expect("platform starts");
        let api = Api::new(format!("http://{}", app.http_addr));
        Self { api, app: Some(app), nats, data_dir }
    }

    /// Stops the platform and starts a new one on the same NATS and data directory.
    pub(crate) async fn restart(&mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown().await;
        }
        let app = start_app(&self.nats, self.data_dir.path()).await;
        self.api.base = format!("http://{}", app.http_addr);
        self.app = Some(app);
    }
}

impl Api {
    pub(crate) fn new(base: String) -> Self {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("http client");
        Self { base, http }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends a request with an optional bearer token and JSON body.
    pub(crate) async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Resp {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.header("X-Authorization", format!("Bearer {t}"));
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request sent");
        let status = res.status();
        let bytes = res.bytes().await.expect("body read");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp { status, body }
    }

    pub(crate) async fn get(&self, path: &str, token: &str) -> Resp {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub(crate) async fn post(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub(crate) async fn delete(&self, path: &str, token: &str) -> Resp {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// Logs in and returns the access token.
    pub(crate) async fn login(&self, email: &str, password: &str) -> String {
        let body = self
            .call(Method::POST, "/api/auth/login", None, Some(json!({"username": email, "password": password})))
            .await
            .ok();
        body["token"].as_str().expect("token in login answer").to_string()
    }

    pub(crate) async fn sysadmin(&self) -> String {
        self.login(SYSADMIN_EMAIL, SYSADMIN_PASSWORD).await
    }

    /// Creates a tenant and its administrator the way tb-rest-client scripts do (create user,
    /// fetch the activation link, activate), and returns (tenant id, admin token).
    pub(crate) async fn tenant(&self, title: &str) -> (String, String) {
        let sys = self.sysadmin().await;
        let tenant = self.post("/api/tenant", &sys, json!({"title": title})).await.ok();
        let tenant_id = tenant["id"]["id"].as_str().expect("tenant id").to_string();
        let email = format!("admin-{tenant_id}@example.com");
        let token = self
            .user(&sys, json!({"email": email, "authority": "TENANT_ADMIN", "tenantId": {"entityType": "TENANT", "id": tenant_id}}))
            .await;
        (tenant_id, token)
    }

    /// A user's activation link fetched by `creator`, as the raw text ThingsBoard answers.
    pub(crate) async fn activation_link(&self, creator: &str, user_id: &str) -> String {
        let res = self
            .http
            .get(self.url(&format!("/api/user/{user_id}/activationLink")))
            .header("X-Authorization", format!("Bearer {creator}"))
            .send()
            .await
            .expect("request sent");
        assert!(res.status().is_success(), "{}", res.status());
        res.text().await.expect("link text")
    }

    /// Creates a user as `creator`, activates it with [`PASSWORD`] and returns its token.
    pub(crate) async fn user(&self, creator: &str, user: Value) -> String {
        let email = user["email"].as_str().expect("email").to_string();
        let created = self.post("/api/user?sendActivationMail=false", creator, user).await.ok();
        let id = created["id"]["id"].as_str().expect("user id").to_string();
        let link = self.activation_link(creator, &id).await;
        let activate_token = link.rsplit("activateToken=").next().expect("token in link").trim_matches('"').to_string();
        self.call(
            Method::POST,
            "/api/noauth/activate?sendActivationMail=false",
            None,
            Some(json!({"activateToken": activate_token, "password": PASSWORD})),
        )
        .await
        .ok();
        self.login(&email, PASSWORD).await
    }

    /// Creates a customer of the caller's tenant and returns its id.
    pub(crate) async fn customer(&self, token: &str, title: &str) -> String {
        let c = self.post("/api/customer", token, json!({"title": title})).await.ok();
        c["id"]["id"].as_str().expect("customer id").to_string()
    }

    /// Creates a device and returns its JSON.
    pub(crate) async fn device(&self, token: &str, name: &str) -> Value {
        self.post("/api/device", token, json!({"name": name, "type": "default"})).await.ok()
    }
}

async fn start_app(nats: &NatsServer, data_dir: &std::path::Path) -> RunningApp {
    Box::pin(RunningApp::start(test_settings(nats, data_dir))).await.expect("platform starts")
}

/// Settings of a test platform: loopback listeners on free ports, the test NATS, the sysadmin.
pub(crate) fn test_settings(nats: &NatsServer, data_dir: &std::path::Path) -> Settings {
    let mut settings = Settings::new(data_dir);
    settings.http_host = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    settings.http_port = 0;
    settings.mqtt_host = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    settings.mqtt_port = 0;
    settings.nats_url = Some(nats.url());
    settings.admin_email = SYSADMIN_EMAIL.into();
    settings.admin_password = Some(SYSADMIN_PASSWORD.into());
    settings
}

/// Ports of a [`Platform`] (0 for the MQTT port picks a free one).
pub(crate) struct Ports {
    pub(crate) http: u16,
    pub(crate) nats: u16,
    pub(crate) mqtt: u16,
}

/// The real `thinglake run` with its own supervised nats-server on a data directory, its output
/// in `thinglake-test.log` there. Killed with that nats-server if the test ends while it runs.
pub(crate) struct Platform {
    pub(crate) child: Child,
    pub(crate) api: Api,
    data_dir: PathBuf,
}

impl Drop for Platform {
    /// One that already exited is left alone: its nats-server may now belong to the next start.
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(pid) = nats_pid(&self.data_dir)
            && alive(pid)
        {
            let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
        }
    }
}

impl Platform {
    /// Starts the binary on loopback and returns once `/health` answers; a start that exits or
    /// takes too long fails the test with the end of the platform's log.
    pub(crate) async fn start(data_dir: &Path, ports: &Ports) -> Self {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(data_dir.join("thinglake-test.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_thinglake"))
            .arg("run")
            .env("THINGLAKE_DATA_DIR", data_dir)
            .env("THINGLAKE_HTTP_HOST", "127.0.0.1")
            .env("THINGLAKE_HTTP_PORT", ports.http.to_string())
            .env("THINGLAKE_NATS_PORT", ports.nats.to_string())
            .env("THINGLAKE_MQTT_HOST", "127.0.0.1")
            .env("THINGLAKE_MQTT_PORT", ports.mqtt.to_string())
            .env("THINGLAKE_ADMIN_EMAIL", SYSADMIN_EMAIL)
            .env("THINGLAKE_ADMIN_PASSWORD", SYSADMIN_PASSWORD)
            // The PostgreSQL listener's default port would clash between tests running at once.
            .env("THINGLAKE_PG_LISTEN", "127.0.0.1:0")
            .env_remove("THINGLAKE_NATS_URL")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("thinglake binary starts");
        let mut platform = Self { child, api: Api::new(format!("http://127.0.0.1:{}", ports.http)), data_dir: data_dir.to_path_buf() };
        // Generous: a start beside the whole suite (Chromium included) on 2 cores can be slow.
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Ok(res) = platform.api.http.get(platform.api.url("/health")).send().await
                && res.status().is_success()
            {
                return platform;
            }
            let exited = platform.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() >= deadline {
                // The temporary directory goes with the failed test: show the platform's log here.
                let log = std::fs::read_to_string(data_dir.join("thinglake-test.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect();
                let _ = platform.child.kill();
                panic!("platform did not become healthy (exit: {exited:?}); its log ends:\n{}", tail.join("\n"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The pid of the nats-server supervised on `data_dir`, from its pid file.
pub(crate) fn nats_pid(data_dir: &Path) -> Option<i32> {
    std::fs::read_to_string(data_dir.join("nats").join("nats-server.pid")).ok()?.trim().parse().ok()
}

/// Whether `pid` runs (exists and is no zombie).
pub(crate) fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// The id string of an entity JSON.
pub(crate) fn id_of(entity: &Value) -> String {
    entity["id"]["id"].as_str().expect("entity id").to_string()
}
