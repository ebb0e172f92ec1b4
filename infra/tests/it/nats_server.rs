//! The local nats-server supervisor against the real binary: start, durability across restarts,
//! recovery from a server left behind by a killed parent, supervision and clean shutdown.

use std::os::unix::fs::PermissionsExt as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use async_nats::jetstream::{self, stream::StorageType};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use thinglake_infra::nats_auth::{NatsCredentials, client_options};
use thinglake_infra::nats_server::{LocalNatsServer, NatsServerOptions, SyncInterval, find_binary};
use tokio_util::sync::CancellationToken;

const STREAM: &str = "IT_NATS_SERVER";

fn options(dir: &tempfile::TempDir) -> NatsServerOptions {
    let mut options = NatsServerOptions::new(dir.path());
    options.binary =
        Some(find_binary().expect("nats-server is missing: run scripts/install-tools"));
    options
}

/// Connects as the platform's user, with the password the server keeps in `dir`.
async fn connect(dir: &tempfile::TempDir, url: &str) -> Result<async_nats::Client> {
    let credentials = NatsCredentials::load(&dir.path().join("nats"))?.context("credentials written")?;
    let (options, url) = client_options(url, Some(&credentials.platform));
    Ok(options.connect(url).await?)
}

/// Creates a file-storage stream (if needed) and publishes `payload`, waiting for the ack.
async fn publish(dir: &tempfile::TempDir, url: &str, payload: &'static str) -> Result<u64> {
    let js = jetstream::new(connect(dir, url).await?);
    js.get_or_create_stream(jetstream::stream::Config {
        name: STREAM.into(),
        subjects: vec!["it.>".into()],
        storage: StorageType::File,
        ..Default::default()
    })
    .await?;
    Ok(js.publish("it.a", payload.into()).await?.await?.sequence)
}

async fn read(dir: &tempfile::TempDir, url: &str, seq: u64) -> Result<String> {
    let js = jetstream::new(connect(dir, url).await?);
    let stream = js.get_stream(STREAM).await?;
    let message = stream.get_raw_message(seq).await?;
    Ok(String::from_utf8(message.payload.to_vec())?)
}

/// Whether the process has exited (a zombie not yet reaped by its parent counts as exited).
fn is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
        Err(_) => true,
    }
}

async fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::test]
async fn starts_on_a_free_port_and_serves_jetstream() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = LocalNatsServer::start(options(&dir)).await?;
    assert_ne!(server.port(), 0);
    assert_eq!(server.url(), format!("nats://127.0.0.1:{}", server.port()));

    assert_eq!(publish(&dir, &server.url(), "hello").await?, 1);
    assert_eq!(read(&dir, &server.url(), 1).await?, "hello");

    let nats_dir = dir.path().join("nats");
    let config = std::fs::read_to_string(nats_dir.join("nats-server.conf"))?;
    assert!(config.contains("sync_interval: \"100ms\""), "{config}");
    assert!(nats_dir.join("jetstream").is_dir());
    assert!(nats_dir.join("nats-server.log").is_file());
    let pid_file = std::fs::read_to_string(nats_dir.join("nats-server.pid"))?;
    assert_eq!(Some(pid_file.trim().parse()?), server.pid());
    server.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn acknowledged_messages_survive_a_restart_on_the_same_data_dir() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut opts = options(&dir);
    opts.sync_interval = SyncInterval::Always;
    let server = LocalNatsServer::start(opts.clone()).await?;
    let seq = publish(&dir, &server.url(), "kept").await?;
    server.shutdown().await?;

    let server = LocalNatsServer::start(opts).await?;
    assert_eq!(read(&dir, &server.url(), seq).await?, "kept");
    server.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn restart_keeps_the_port_and_the_store() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut server = LocalNatsServer::start(options(&dir)).await?;
    let (url, old_pid) = (server.url(), server.pid().context("running")?);
    let seq = publish(&dir, &url, "before kill").await?;

    server.kill().await?;
    assert!(is_gone(old_pid));
    server.restart().await?;

    assert_eq!(server.url(), url);
    assert_ne!(server.pid(), Some(old_pid));
    assert_eq!(read(&dir, &url, seq).await?, "before kill");
    server.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_server_left_behind_by_a_killed_parent_is_stopped_before_starting() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let leftover = LocalNatsServer::start(options(&dir)).await?;
    let leftover_pid = leftover.pid().context("running")?;
    let seq = publish(&dir, &leftover.url(), "from the previous run").await?;
    // What a kill -9 of the platform leaves: a live child nobody will stop, and its pid file.
    std::mem::forget(leftover);

    let server = LocalNatsServer::start(options(&dir)).await?;
    assert!(
        is_gone(leftover_pid),
        "leftover nats-server {leftover_pid} still runs"
    );
    assert_eq!(read(&dir, &server.url(), seq).await?, "from the previous run");
    server.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_stale_pid_file_naming_another_program_is_left_alone() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut bystander = std::process::Command::new("sleep").arg("60").spawn()?;
    std::fs::create_dir_all(dir.path().join("nats"))?;
    std::fs::write(
        dir.path().join("nats/nats-server.pid"),
        bystander.id().to_string(),
    )?;

    let server = LocalNatsServer::start(options(&dir)).await;
    let bystander_alive = bystander.try_wait()?.is_none();
    bystander.kill()?;
    bystander.wait()?;

    server?.shutdown().await?;
    assert!(
        bystander_alive,
        "start killed a process that is not a nats-server"
    );
    Ok(())
}

#[tokio::test]
async fn shutdown_leaves_no_process_behind() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = LocalNatsServer::start(options(&dir)).await?;
    let pid = server.pid().context("running")?;
    server.shutdown().await?;
    assert!(is_gone(pid), "nats-server {pid} survived shutdown");
    Ok(())
}

#[tokio::test]
async fn dropping_the_handle_kills_the_server() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = LocalNatsServer::start(options(&dir)).await?;
    let pid = server.pid().context("running")?;
    drop(server);
    wait_until(
        "the dropped server is gone",
        Duration::from_secs(10),
        || is_gone(pid),
    )
    .await
}

#[tokio::test]
async fn the_supervisor_restarts_a_crashed_server_on_the_same_url() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cancel = CancellationToken::new();
    let supervised = LocalNatsServer::start(options(&dir))
        .await?
        .supervise(cancel.clone());
    let url = supervised.url();
    let seq = publish(&dir, &url, "before crash").await?;
    let crashed = supervised.pid().context("running")?;

    kill(Pid::from_raw(i32::try_from(crashed)?), Signal::SIGKILL)?;
    wait_until(
        "the supervisor restarted the server",
        Duration::from_secs(30),
        || supervised.restarts() == 1 && supervised.pid().is_some_and(|pid| pid != crashed),
    )
    .await?;
    assert_eq!(supervised.url(), url);
    assert_eq!(read(&dir, &url, seq).await?, "before crash");

    let restarted = supervised.pid().context("running")?;
    cancel.cancel();
    supervised.shutdown().await?;
    assert!(
        is_gone(restarted),
        "nats-server {restarted} survived shutdown"
    );
    Ok(())
}

#[tokio::test]
async fn dropping_the_supervisor_kills_the_server() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let supervised = LocalNatsServer::start(options(&dir))
        .await?
        .supervise(CancellationToken::new());
    let pid = supervised.pid().context("running")?;
    drop(supervised);
    wait_until(
        "the supervised server is gone",
        Duration::from_secs(10),
        || is_gone(pid),
    )
    .await
}

#[tokio::test]
async fn a_failed_start_reports_the_server_log() -> Result<()> {
    let (first_dir, second_dir) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let first = LocalNatsServer::start(options(&first_dir)).await?;
    let mut taken = options(&second_dir);
    taken.port = first.port();

    let error = LocalNatsServer::start(taken)
        .await
        .err()
        .context("a second server on a taken port must not start")?
        .to_string();
    assert!(error.contains("address already in use"), "{error}");
    first.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn anonymous_clients_are_refused_and_the_passwords_survive_a_restart() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = LocalNatsServer::start(options(&dir)).await?;
    let url = server.url();
    let anonymous = async_nats::ConnectOptions::new().connection_timeout(Duration::from_secs(2)).connect(&url).await;
    assert!(anonymous.is_err(), "an anonymous client connected");
    let wrong = async_nats::ConnectOptions::with_user_and_password("thinglake".into(), "guess".into()).connect(&url).await;
    assert!(wrong.is_err(), "a wrong password was accepted");
    let seq = publish(&dir, &url, "as the platform").await?;
    let config = dir.path().join("nats").join("nats-server.conf");
    assert_eq!(std::fs::metadata(&config)?.permissions().mode() & 0o777, 0o600, "the config holds the passwords");
    let before = NatsCredentials::load(&dir.path().join("nats"))?;
    server.shutdown().await?;

    let server = LocalNatsServer::start(options(&dir)).await?;
    assert_eq!(Some(server.credentials().clone()), before);
    assert_eq!(read(&dir, &server.url(), seq).await?, "as the platform");
    server.shutdown().await?;
    Ok(())
}
