//! Test support: a real `nats-server` with JetStream per test, on a free port, in a temporary
//! store directory, killed when the test drops it.
//!
//! [`NatsServer`] reuses the platform's own supervisor ([`thinglake_infra::nats_server`]), so
//! tests exercise the same start-up and readiness logic as single-node mode. The binary is found
//! like the platform finds it (`$THINGLAKE_NATS_SERVER`, `.tools/bin`, `PATH`); when it is
//! missing the test panics and says to run `scripts/install-tools` — tests never skip silently.
//!
//! [`S3Server`] is a real S3-compatible server (moto's server mode) with a fresh bucket, for the
//! lake on object storage.
//!
//! [`memory`] holds the platform's storage in memory ([`MemoryEventLog`],
//! [`MemoryTelemetryLog`], [`MemoryClaims`]), for tests of the platform and the API in process,
//! without a nats-server.

pub mod memory;
pub mod s3;

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};

use async_nats::jetstream;
use tempfile::TempDir;
use thinglake_infra::nats_server::{LocalNatsServer, NatsServerOptions, find_binary};

pub use memory::{MemoryClaims, MemoryEventLog, MemoryTelemetryLog};
pub use s3::S3Server;

/// A `nats-server -js` for one test; killed (SIGKILL) and its store deleted on drop.
#[derive(Debug)]
pub struct NatsServer {
    // Declared before `dir` so that the server dies before its store is deleted.
    server: LocalNatsServer,
    dir: TempDir,
}

impl NatsServer {
    /// Starts a server on a free port with an empty temporary store and waits until JetStream
    /// answers. Panics if `nats-server` is not installed or does not start.
    pub async fn start() -> Self {
        let binary = find_binary().unwrap_or_else(|e| {
            panic!("cannot run NATS tests without nats-server; install it with `scripts/install-tools`: {e}")
        });
        let dir = tempfile::Builder::new()
            .prefix("thinglake-nats-")
            .tempdir()
            .expect("cannot create a temporary directory for the JetStream store");
        let mut options = NatsServerOptions::new(dir.path());
        options.binary = Some(binary);
        let server = LocalNatsServer::start(options)
            .await
            .unwrap_or_else(|e| panic!("cannot start nats-server for a test: {e}"));
        Self { server, dir }
    }

    /// The client URL with the platform user's credentials,
    /// `nats://thinglake:<password>@127.0.0.1:<port>` (the server refuses anonymous clients), as
    /// `THINGLAKE_NATS_URL` takes it.
    pub fn url(&self) -> String {
        let user = &self.server.credentials().platform;
        self.server.url().replacen("nats://", &format!("nats://{}:{}@", user.user, user.password), 1)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// A new client connected to this server.
    pub async fn client(&self) -> async_nats::Client {
        let (options, url) = thinglake_infra::nats_auth::client_options(&self.url(), None);
        options
            .connect(url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to test nats-server at {}: {e}", self.url()))
    }

    /// A JetStream context over a new client.
    pub async fn jetstream(&self) -> jetstream::Context {
        jetstream::new(self.client().await)
    }

    /// Stops the server (gracefully, or nothing if it was killed) and starts it again on the same
    /// port and store, waiting until JetStream answers; for fault tests.
    pub async fn restart(&mut self) {
        self.server
            .restart()
            .await
            .unwrap_or_else(|e| panic!("cannot restart test nats-server: {e}"));
    }

    /// Kills the server with SIGKILL, as a crash would, and waits until it is gone; for fault
    /// tests. [`NatsServer::restart`] brings it back.
    pub async fn kill(&mut self) {
        self.server
            .kill()
            .await
            .unwrap_or_else(|e| panic!("cannot kill test nats-server: {e}"));
    }

    /// The pid of the server process, `None` after [`NatsServer::kill`].
    pub fn pid(&self) -> Option<u32> {
        self.server.pid()
    }

    /// The directory holding the server's config, log and JetStream store.
    pub fn store_dir(&self) -> PathBuf {
        self.server.nats_dir()
    }

    /// The temporary data directory the store lives in.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (the OS picked it; another process may
/// still take it before the caller binds it).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("cannot bind 127.0.0.1:0 to find a free port")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_is_bindable() {
        let port = free_port();
        assert_ne!(port, 0);
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("port is free");
    }

    #[tokio::test]
    async fn server_answers_jetstream_and_survives_a_kill() {
        let mut nats = NatsServer::start().await;
        let js = nats.jetstream().await;
        js.create_stream(jetstream::stream::Config {
            name: "T".into(),
            subjects: vec!["t.>".into()],
            ..Default::default()
        })
        .await
        .expect("create stream");
        js.publish("t.a", "one".into())
            .await
            .expect("publish")
            .await
            .expect("ack");

        let port = nats.port();
        nats.kill().await;
        assert_eq!(nats.pid(), None);
        nats.restart().await;
        assert_eq!(nats.port(), port, "restart keeps the port");

        let js = nats.jetstream().await;
        let mut stream = js.get_stream("T").await.expect("stream survives a kill");
        assert_eq!(stream.info().await.expect("info").state.messages, 1);
        assert!(nats.store_dir().join("jetstream").is_dir());
    }
}
