//! Starts and supervises a local `nats-server` with JetStream for single-node mode.
//!
//! [`LocalNatsServer::start`] writes `<data_dir>/nats/nats-server.conf`, stops a server left
//! behind by a previous run that was killed (found through the pid file), spawns the binary with
//! its output appended to `<data_dir>/nats/nats-server.log`, and returns once a client can connect
//! and JetStream answers. [`LocalNatsServer::supervise`] hands the server to an owned background
//! task that restarts it with backoff when it exits unexpectedly. The JetStream store lives in
//! `<data_dir>/nats/jetstream`; how often it is fsynced is [`SyncInterval`] (see
//! `docs/decisions/0002-nats-durability.md`). The server refuses anonymous clients: its users and
//! their rights are [`crate::nats_auth`]'s, their passwords kept in `<data_dir>/nats`.

use std::fmt;
use std::io::{Read, Seek, SeekFrom};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;
use tokio_util::task::{AbortOnDropHandle, TaskTracker};
use tracing::{debug, error, info, warn};

use crate::error::{Error, Result};
use crate::nats_auth::{NatsCredentials, UserPassword, write_private};
use crate::subjects::{DEFAULT_PREFIX, Subjects};

/// Environment variable naming the `nats-server` binary to run, overriding the search.
pub const BINARY_ENV: &str = "THINGLAKE_NATS_SERVER";
/// File name of the binary, looked up in `.tools/bin` and on `PATH`.
pub const BINARY_NAME: &str = "nats-server";
/// Default fsync interval of the JetStream file store (instead of nats-server's 2 minutes).
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_millis(100);

/// How long a server gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long a SIGKILLed process may take to disappear before we give up.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// A log file larger than this is moved to `nats-server.log.1` when the server starts.
const LOG_ROTATE_BYTES: u64 = 10 * 1024 * 1024;
/// First delay before restarting a crashed server; doubles up to [`RESTART_BACKOFF_MAX`].
const RESTART_BACKOFF_MIN: Duration = Duration::from_millis(100);
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A server that ran this long before exiting is restarted without accumulated backoff.
const RESTART_BACKOFF_RESET: Duration = Duration::from_secs(60);

/// When JetStream fsyncs its file store: after every write, or at a fixed interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncInterval {
    /// fsync every message before acknowledging it: strict durability, ~40x slower.
    Always,
    /// fsync at this interval: bounds what a power failure can take; a process crash loses nothing.
    Every(Duration),
}

impl Default for SyncInterval {
    fn default() -> Self {
        Self::Every(DEFAULT_SYNC_INTERVAL)
    }
}

/// Renders the value as nats-server's config expects: `always` or a Go duration (`100ms`).
impl fmt::Display for SyncInterval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Always => f.write_str("always"),
            Self::Every(d) if d.subsec_nanos() == 0 => write!(f, "{}s", d.as_secs()),
            Self::Every(d) if d.as_nanos() % 1_000_000 == 0 => write!(f, "{}ms", d.as_millis()),
            Self::Every(d) if d.as_nanos() % 1_000 == 0 => write!(f, "{}us", d.as_micros()),
            Self::Every(d) => write!(f, "{}ns", d.as_nanos()),
        }
    }
}

/// Parses `always` or a whole number with a unit: `ns`, `us`, `ms`, `s`, `m`, `h` (`100ms`, `2m`).
impl FromStr for SyncInterval {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("always") {
            return Ok(Self::Always);
        }
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("sync interval {s:?}: expected `always` or e.g. `100ms`"))?;
        let d = match unit {
            "ns" => Duration::from_nanos(n),
            "us" => Duration::from_micros(n),
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            _ => return Err(format!("sync interval {s:?}: unknown unit {unit:?}")),
        };
        if d.is_zero() {
            return Err(format!(
                "sync interval {s:?} must be positive (or `always`)"
            ));
        }
        Ok(Self::Every(d))
    }
}

/// How to run the local server. `NatsServerOptions::new(data_dir)` gives the defaults.
#[derive(Debug, Clone)]
pub struct NatsServerOptions {
    /// The binary to run; `None` searches with [`find_binary`].
    pub binary: Option<PathBuf>,
    /// The platform's data directory; the server keeps everything in `<data_dir>/nats`.
    pub data_dir: PathBuf,
    /// Address to listen on for clients.
    pub host: IpAddr,
    /// Client port; 0 lets the server pick a free one (kept across restarts).
    pub port: u16,
    /// How often JetStream fsyncs its file store.
    pub sync_interval: SyncInterval,
    /// Largest message the server accepts, in bytes; `None` keeps the server's 1 MiB.
    pub max_payload: Option<u32>,
    /// How long to wait for a started server to accept clients and answer JetStream requests.
    pub startup_timeout: Duration,
    /// Prefix of the platform's subjects: the ingress user may publish to its ingress subjects.
    pub subject_prefix: String,
}

impl NatsServerOptions {
    /// Defaults for a server keeping its store under `data_dir`: 127.0.0.1, a free port, 100 ms sync.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            binary: None,
            data_dir: data_dir.into(),
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            sync_interval: SyncInterval::default(),
            max_payload: None,
            startup_timeout: Duration::from_secs(60),
            subject_prefix: DEFAULT_PREFIX.to_string(),
        }
    }

    /// The directory holding the config, pid file, log and JetStream store.
    pub fn nats_dir(&self) -> PathBuf {
        self.data_dir.join("nats")
    }
}

/// Finds the `nats-server` binary: `$THINGLAKE_NATS_SERVER`, else `.tools/bin/nats-server` in the
/// directory of the running executable, the current directory or one of their parents (where
/// `scripts/install-tools` puts it), else `nats-server` on `PATH`.
pub fn find_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(BINARY_ENV).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(Error::NatsServer {
                reason: format!("{BINARY_ENV}={} is not an executable file", path.display()),
            })
        };
    }
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf));
    let bases = exe_dir.into_iter().chain(std::env::current_dir().ok());
    let mut searched = Vec::new();
    for base in bases {
        for dir in base.ancestors() {
            let candidate = dir.join(".tools").join("bin").join(BINARY_NAME);
            if is_executable(&candidate) {
                return Ok(candidate);
            }
        }
        searched.push(format!(".tools/bin in {} and its parents", base.display()));
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(BINARY_NAME);
            if is_executable(&candidate) {
                return Ok(candidate);
            }
        }
    }
    searched.push("PATH".to_owned());
    Err(Error::NatsServerNotFound {
        searched: searched.join(", "),
    })
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A running local `nats-server` owned by this process; killed (SIGKILL) if dropped while running.
#[derive(Debug)]
pub struct LocalNatsServer {
    binary: PathBuf,
    options: NatsServerOptions,
    /// The actual client port, known once the first start succeeded.
    port: u16,
    child: Child,
    started_at: Instant,
    credentials: NatsCredentials,
}

impl LocalNatsServer {
    /// Stops a server left behind by a killed previous run, starts a fresh one and waits until
    /// JetStream answers.
    pub async fn start(options: NatsServerOptions) -> Result<Self> {
        let binary = match &options.binary {
            Some(binary) => binary.clone(),
            None => find_binary()?,
        };
        let credentials = NatsCredentials::load_or_create(&options.nats_dir())?;
        let (child, port) = spawn_ready(&binary, &options, options.port, &credentials).await?;
        Ok(Self {
            binary,
            options,
            port,
            child,
            started_at: Instant::now(),
            credentials,
        })
    }

    /// The users of the server: the platform's and the NATS ingress clients'.
    pub fn credentials(&self) -> &NatsCredentials {
        &self.credentials
    }

    /// The client URL, `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        client_url(self.options.host, self.port)
    }

    /// The client port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The operating-system id of the server process, `None` once it has exited and been reaped.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The directory holding config, pid file, log and the JetStream store (`<data_dir>/nats`).
    pub fn nats_dir(&self) -> PathBuf {
        self.options.nats_dir()
    }

    /// The log file the server's output is appended to.
    pub fn log_file(&self) -> PathBuf {
        self.options.nats_dir().join("nats-server.log")
    }

    /// The options the server was started with (with the binary and port resolved).
    pub fn options(&self) -> NatsServerOptions {
        NatsServerOptions {
            binary: Some(self.binary.clone()),
            port: self.port,
            ..self.options.clone()
        }
    }

    /// Stops the server gracefully (SIGTERM; SIGKILL after 10 s) and waits until it has exited.
    pub async fn shutdown(mut self) -> Result<()> {
        self.stop().await
    }

    /// Kills the server with SIGKILL, as a crash would, and waits until it has exited.
    pub async fn kill(&mut self) -> Result<()> {
        let killed = match self.child.try_wait() {
            Ok(Some(_)) => Ok(()),
            _ => self.child.kill().await,
        };
        let pid = self.child.id();
        killed.map_err(|source| Error::NatsServerProcess { action: "kill", pid, source })
    }

    /// Stops the server if it still runs and starts it again on the same port and store.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop().await?;
        let (child, _) = spawn_ready(&self.binary, &self.options, self.port, &self.credentials).await?;
        self.child = child;
        self.started_at = Instant::now();
        Ok(())
    }

    /// Hands the server to an owned background task that restarts it (with backoff) whenever it
    /// exits unexpectedly, and stops it when `cancel` fires or the handle is shut down or dropped.
    ///
    /// NATS is stopped last on shutdown, so `cancel` should not be the root token that stops
    /// everything: pass a token cancelled after projections have flushed, or call
    /// [`SupervisedNatsServer::shutdown`] then. Must be called within a Tokio runtime.
    pub fn supervise(self, cancel: CancellationToken) -> SupervisedNatsServer {
        let state = Arc::new(SupervisorState {
            pid: AtomicU32::new(self.pid().unwrap_or(0)),
            restarts: AtomicU64::new(0),
        });
        let url = self.url();
        let credentials = self.credentials.clone();
        let tracker = TaskTracker::new();
        let task = tracker.spawn(supervise_loop(self, cancel.clone(), Arc::clone(&state)));
        tracker.close();
        SupervisedNatsServer {
            url,
            credentials,
            state,
            cancel,
            task: AbortOnDropHandle::new(task),
        }
    }

    /// SIGTERM, wait up to [`STOP_GRACE`], then SIGKILL. Does nothing if the server has exited.
    async fn stop(&mut self) -> Result<()> {
        let Some(pid) = self.child.id() else {
            return Ok(());
        };
        if let Ok(Some(_)) = self.child.try_wait() {
            return Ok(());
        }
        debug!(pid, "stopping nats-server");
        if let Err(errno) = kill(to_pid(pid)?, Signal::SIGTERM) {
            warn!(pid, %errno, "cannot send SIGTERM to nats-server; killing it");
        }
        match tokio::time::timeout(STOP_GRACE, self.child.wait()).await {
            Ok(Ok(status)) => {
                info!(pid, %status, "nats-server stopped");
                Ok(())
            }
            Ok(Err(source)) => Err(Error::NatsServerProcess { action: "wait for", pid: Some(pid), source }),
            Err(_) => {
                warn!(pid, "nats-server ignored SIGTERM; killing it");
                self.kill().await
            }
        }
    }
}

/// A [`LocalNatsServer`] watched by a background task; dropping this handle kills the server.
#[derive(Debug)]
pub struct SupervisedNatsServer {
    url: String,
    credentials: NatsCredentials,
    state: Arc<SupervisorState>,
    cancel: CancellationToken,
    task: AbortOnDropHandle<Result<()>>,
}

#[derive(Debug)]
struct SupervisorState {
    /// Pid of the current server process, 0 while none runs.
    pid: AtomicU32,
    restarts: AtomicU64,
}

impl SupervisedNatsServer {
    /// The client URL; it stays the same across restarts.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The users of the server; they stay the same across restarts.
    pub fn credentials(&self) -> &NatsCredentials {
        &self.credentials
    }

    /// The pid of the current server process, `None` while it is being restarted.
    pub fn pid(&self) -> Option<u32> {
        Some(self.state.pid.load(Ordering::Acquire)).filter(|&pid| pid != 0)
    }

    /// How many times the server was restarted after exiting unexpectedly.
    pub fn restarts(&self) -> u64 {
        self.state.restarts.load(Ordering::Acquire)
    }

    /// Stops supervising and shuts the server down gracefully; call it last in the shutdown order.
    pub async fn shutdown(mut self) -> Result<()> {
        self.cancel.cancel();
        (&mut self.task).await.map_err(|source| Error::NatsServerSupervisor { source })?
    }
}

async fn supervise_loop(
    mut server: LocalNatsServer,
    cancel: CancellationToken,
    state: Arc<SupervisorState>,
) -> Result<()> {
    let mut backoff = RESTART_BACKOFF_MIN;
    loop {
        let status = tokio::select! {
            () = cancel.cancelled() => break,
            status = server.child.wait() => status,
        };
        state.pid.store(0, Ordering::Release);
        let ran_for = server.started_at.elapsed();
        if ran_for >= RESTART_BACKOFF_RESET {
            backoff = RESTART_BACKOFF_MIN;
        }
        match status {
            Ok(status) => {
                warn!(%status, ?ran_for, ?backoff, "nats-server exited unexpectedly; restarting")
            }
            Err(error) => warn!(%error, ?backoff, "cannot wait for nats-server; restarting"),
        }
        loop {
            tokio::select! {
                () = cancel.cancelled() => return server.stop().await,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(RESTART_BACKOFF_MAX);
            let restarted = tokio::select! {
                () = cancel.cancelled() => return server.stop().await,
                restarted = server.restart() => restarted,
            };
            match restarted {
                Ok(()) => {
                    state.restarts.fetch_add(1, Ordering::AcqRel);
                    state
                        .pid
                        .store(server.pid().unwrap_or(0), Ordering::Release);
                    info!(url = %server.url(), pid = server.pid(), "nats-server restarted");
                    break;
                }
                Err(error) => error!(%error, ?backoff, "cannot restart nats-server; retrying"),
            }
        }
    }
    state.pid.store(0, Ordering::Release);
    server.stop().await
}

/// Prepares the directory, stops a leftover server, spawns the binary and waits until it is ready.
async fn spawn_ready(
    binary: &Path,
    options: &NatsServerOptions,
    port: u16,
    credentials: &NatsCredentials,
) -> Result<(Child, u16)> {
    let dir = options.nats_dir();
    std::fs::create_dir_all(&dir).map_err(|source| io_error(&dir, source))?;
    let pid_file = dir.join("nats-server.pid");
    let config_file = dir.join("nats-server.conf");
    let log_file = dir.join("nats-server.log");

    stop_leftover(&pid_file, &config_file).await?;
    remove_ports_files(&dir)?;
    let config = render_config(options, port, &dir, &pid_file, credentials)?;
    // It holds the passwords.
    write_private(&config_file, config.as_bytes())?;
    let (stdout, stderr) = open_log(&log_file)?;

    let mut child = Command::new(binary)
        .arg("-c")
        .arg(&config_file)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| io_error(binary, source))?;
    let pid = child.id().unwrap_or(0);
    debug!(pid, binary = %binary.display(), config = %config_file.display(), "nats-server spawned");

    match wait_ready(&mut child, options, port, &dir, &log_file, &credentials.platform).await {
        Ok(port) => {
            info!(pid, url = %client_url(options.host, port), sync_interval = %options.sync_interval, "nats-server ready");
            Ok((child, port))
        }
        Err(error) => {
            // Best effort: the child is killed on drop anyway; reaping it here avoids a zombie.
            let _ = child.kill().await;
            Err(error)
        }
    }
}

/// Polls until the child listens, accepts a client and answers a JetStream account query.
async fn wait_ready(
    child: &mut Child,
    options: &NatsServerOptions,
    port: u16,
    dir: &Path,
    log_file: &Path,
    user: &UserPassword,
) -> Result<u16> {
    let deadline = Instant::now() + options.startup_timeout;
    let pid = child.id().unwrap_or(0);
    let mut poll = Duration::from_millis(10);
    let mut last_error = String::from("no ports file yet: not listening");
    loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|source| io_error(log_file, source))?
        {
            return Err(Error::NatsServer {
                reason: format!(
                    "exited during startup ({status}); log tail:\n{}",
                    log_tail(log_file)
                ),
            });
        }
        // Probe only once our own process has written its ports file: the port may belong to
        // another server, which would otherwise pass for ours.
        if let Some(listening) = read_ports_file(dir, pid)? {
            if port != 0 && listening != port {
                return Err(Error::NatsServer {
                    reason: format!("listens on port {listening} instead of {port}"),
                });
            }
            match probe(&client_url(options.host, listening), user).await {
                Ok(()) => return Ok(listening),
                Err(error) => last_error = error,
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::NatsServer {
                reason: format!(
                    "not ready after {:?} ({last_error}); log tail:\n{}",
                    options.startup_timeout,
                    log_tail(log_file)
                ),
            });
        }
        tokio::time::sleep(poll).await;
        poll = (poll * 2).min(Duration::from_millis(100));
    }
}

/// Connects and asks JetStream for the account: succeeds only once the server serves JetStream.
async fn probe(url: &str, user: &UserPassword) -> std::result::Result<(), String> {
    let client = async_nats::ConnectOptions::with_user_and_password(user.user.clone(), user.password.clone())
        .connection_timeout(Duration::from_secs(1))
        .connect(url)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut js = async_nats::jetstream::new(client);
    js.set_timeout(Duration::from_secs(2));
    js.query_account()
        .await
        .map(drop)
        .map_err(|e| format!("jetstream: {e}"))
}

/// Renders the server configuration. Strings are JSON-quoted, which the NATS config parser reads.
fn render_config(
    options: &NatsServerOptions,
    port: u16,
    dir: &Path,
    pid_file: &Path,
    credentials: &NatsCredentials,
) -> Result<String> {
    let quote = |path: &Path| -> Result<String> {
        let s = path.to_str().ok_or_else(|| Error::NatsServer {
            reason: format!("path {} is not valid UTF-8", path.display()),
        })?;
        Ok(serde_json::Value::from(s).to_string())
    };
    let listen_port = if port == 0 {
        "-1".to_owned()
    } else {
        port.to_string()
    };
    let listen = match options.host {
        IpAddr::V4(ip) => format!("{ip}:{listen_port}"),
        IpAddr::V6(ip) => format!("[{ip}]:{listen_port}"),
    };
    let mut config = format!(
        "# Written by thinglake on every start; edits are overwritten.\n\
         listen: \"{listen}\"\n\
         pid_file: {pid}\n\
         ports_file_dir: {dir}\n",
        pid = quote(pid_file)?,
        dir = quote(dir)?,
    );
    if let Some(max_payload) = options.max_payload {
        config.push_str(&format!("max_payload: {max_payload}\n"));
    }
    config.push_str(&format!(
        "jetstream {{\n  store_dir: {dir}\n  sync_interval: \"{sync}\"\n}}\n",
        dir = quote(dir)?,
        sync = options.sync_interval,
    ));
    config.push_str(&render_authorization(credentials, &Subjects::new(options.subject_prefix.clone())));
    Ok(config)
}

/// The users block: the platform with every right; the ingress clients may publish to the
/// ingress subjects and receive replies on `_INBOX.>`, nothing else. Without a user nobody
/// connects.
fn render_authorization(credentials: &NatsCredentials, subjects: &Subjects) -> String {
    let q = |s: &str| serde_json::Value::from(s).to_string();
    format!(
        "authorization {{\n  users: [\n    {{user: {pu}, password: {pp}}}\n    \
         {{user: {iu}, password: {ip}, permissions: {{publish: {{allow: [{ingress}]}}, subscribe: {{allow: [{inbox}]}}}}}}\n  ]\n}}\n",
        pu = q(&credentials.platform.user),
        pp = q(&credentials.platform.password),
        iu = q(&credentials.ingress.user),
        ip = q(&credentials.ingress.password),
        ingress = q(&subjects.all_ingress()),
        inbox = q("_INBOX.>"),
    )
}

/// Stops a server a previous run left behind (the platform was killed, the child lived on), so
/// that the new one does not share the JetStream store with it.
async fn stop_leftover(pid_file: &Path, config_file: &Path) -> Result<()> {
    let text = match std::fs::read_to_string(pid_file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(io_error(pid_file, source)),
    };
    let Ok(pid) = text.trim().parse::<u32>() else {
        warn!(pid_file = %pid_file.display(), "ignoring unreadable nats-server pid file");
        return Ok(());
    };
    if pid == std::process::id() || !is_alive(pid) || !is_nats_server(pid, config_file) {
        return Ok(());
    }
    warn!(pid, "stopping nats-server left behind by a previous run");
    let nix_pid = to_pid(pid)?;
    for (signal, grace) in [(Signal::SIGTERM, STOP_GRACE), (Signal::SIGKILL, KILL_GRACE)] {
        // ESRCH means it exited meanwhile; is_alive below sees that.
        let _ = kill(nix_pid, signal);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !is_alive(pid) {
                info!(pid, "leftover nats-server stopped");
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Err(Error::NatsServer {
        reason: format!("leftover nats-server {pid} survived SIGKILL; stop it by hand"),
    })
}

/// Whether `pid` names a running process (zombies, which hold no files or ports, count as gone).
fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name, which may itself contain ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => to_pid(pid).is_ok_and(|pid| kill(pid, None).is_ok()),
    }
}

/// Whether `pid` runs a `nats-server` binary or was started with our config file.
fn is_nats_server(pid: u32, config_file: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let mut args = cmdline.split(|&b| b == 0).filter(|a| !a.is_empty());
    let Some(argv0) = args.next() else {
        return false;
    };
    let name = Path::new(std::str::from_utf8(argv0).unwrap_or_default())
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    name.contains(BINARY_NAME)
        || args.any(|a| config_file.to_str().is_some_and(|c| a == c.as_bytes()))
}

/// Reads the port from the `<name>_<pid>.ports` file the server writes once it listens.
fn read_ports_file(dir: &Path, pid: u32) -> Result<Option<u16>> {
    #[derive(serde::Deserialize)]
    struct Ports {
        nats: Vec<String>,
    }
    let suffix = format!("_{pid}.ports");
    let entries = std::fs::read_dir(dir).map_err(|source| io_error(dir, source))?;
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().ends_with(&suffix) {
            continue;
        }
        // A partly written file fails to parse; the next poll reads it again.
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let Ok(ports) = serde_json::from_str::<Ports>(&text) else {
            continue;
        };
        let port = ports
            .nats
            .iter()
            .find_map(|url| url.rsplit_once(':').and_then(|(_, port)| port.parse().ok()));
        return Ok(port);
    }
    Ok(None)
}

/// Removes ports files of earlier runs so that they are never mistaken for the current one.
fn remove_ports_files(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|source| io_error(dir, source))?;
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().ends_with(".ports") {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|source| io_error(&path, source))?;
        }
    }
    Ok(())
}

/// Opens the log for appending (rotating it once when large) as the child's stdout and stderr.
fn open_log(log_file: &Path) -> Result<(Stdio, Stdio)> {
    if std::fs::metadata(log_file).is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
        let rotated = log_file.with_extension("log.1");
        std::fs::rename(log_file, &rotated).map_err(|source| io_error(log_file, source))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_file)
        .map_err(|source| io_error(log_file, source))?;
    let stderr = file
        .try_clone()
        .map_err(|source| io_error(log_file, source))?;
    Ok((Stdio::from(file), Stdio::from(stderr)))
}

/// The last few lines of the log, for error messages; empty if it cannot be read.
fn log_tail(log_file: &Path) -> String {
    const TAIL_BYTES: u64 = 2048;
    let Ok(mut file) = std::fs::File::open(log_file) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut buf = Vec::new();
    if file
        .seek(SeekFrom::Start(len.saturating_sub(TAIL_BYTES)))
        .is_err()
        || file.read_to_end(&mut buf).is_err()
    {
        return String::new();
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn client_url(host: IpAddr, port: u16) -> String {
    let host = if host.is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host
    };
    match host {
        IpAddr::V4(ip) => format!("nats://{ip}:{port}"),
        IpAddr::V6(ip) => format!("nats://[{ip}]:{port}"),
    }
}

fn to_pid(pid: u32) -> Result<Pid> {
    i32::try_from(pid)
        .map(Pid::from_raw)
        .map_err(|_| Error::NatsServer {
            reason: format!("pid {pid} out of range"),
        })
}

fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_interval_renders_as_go_durations() {
        assert_eq!(SyncInterval::default().to_string(), "100ms");
        assert_eq!(SyncInterval::Always.to_string(), "always");
        assert_eq!(
            SyncInterval::Every(Duration::from_secs(120)).to_string(),
            "120s"
        );
        assert_eq!(
            SyncInterval::Every(Duration::from_micros(1500)).to_string(),
            "1500us"
        );
    }

    #[test]
    fn sync_interval_parses_what_it_renders() {
        for s in ["always", "100ms", "2s", "1500us", "7ns"] {
            assert_eq!(
                s.parse::<SyncInterval>().map(|i| i.to_string()).as_deref(),
                Ok(s)
            );
        }
        assert_eq!(
            "2m".parse(),
            Ok(SyncInterval::Every(Duration::from_secs(120)))
        );
        assert!("0ms".parse::<SyncInterval>().is_err());
        assert!("fast".parse::<SyncInterval>().is_err());
        assert!("10 parsecs".parse::<SyncInterval>().is_err());
    }

    #[test]
    fn config_holds_store_sync_interval_and_random_port() {
        let mut options = NatsServerOptions::new("/data");
        options.max_payload = Some(4096);
        let dir = options.nats_dir();
        let credentials = NatsCredentials::generate();
        let config = render_config(&options, 0, &dir, &dir.join("nats-server.pid"), &credentials)
            .expect("utf-8 paths");
        assert!(config.contains("listen: \"127.0.0.1:-1\""), "{config}");
        assert!(config.contains("store_dir: \"/data/nats\""), "{config}");
        assert!(config.contains("sync_interval: \"100ms\""), "{config}");
        assert!(
            config.contains("pid_file: \"/data/nats/nats-server.pid\""),
            "{config}"
        );
        assert!(config.contains("max_payload: 4096"), "{config}");
        assert!(
            !config.contains("http"),
            "no monitoring port by default: {config}"
        );
        assert!(config.contains(&credentials.platform.password), "{config}");
        assert!(
            config.contains(r#"publish: {allow: ["thinglake.ingress.>"]}"#),
            "{config}"
        );
    }

    #[test]
    fn this_process_is_alive_and_not_a_nats_server() {
        let me = std::process::id();
        assert!(is_alive(me));
        assert!(!is_nats_server(me, Path::new("/nowhere/nats-server.conf")));
    }

    #[test]
    fn client_url_uses_loopback_for_unspecified_hosts() {
        assert_eq!(
            client_url("0.0.0.0".parse().expect("ip"), 4222),
            "nats://127.0.0.1:4222"
        );
        assert_eq!(
            client_url("::1".parse().expect("ip"), 4222),
            "nats://[::1]:4222"
        );
    }
}
