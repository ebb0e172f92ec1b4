//! The listener: accepts device connections and runs each as an owned task until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use thinglake_platform::Platform;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::MqttConfig;
use crate::error::{Error, Result};
use crate::session::{self, Context};
use crate::tls::TlsConfig;

/// A bound MQTT listener, not yet accepting.
pub struct MqttServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    context: Context,
    /// Set: every connection is TLS (the handshake runs in the connection's task).
    tls: Option<TlsAcceptor>,
}

impl MqttServer {
    /// Binds the listener (port 0 picks a free port).
    pub async fn bind(addr: SocketAddr, platform: Platform, config: MqttConfig, shutdown: CancellationToken) -> Result<Self> {
        let listener = TcpListener::bind(addr).await.map_err(|source| Error::Bind { addr, source })?;
        let local_addr = listener.local_addr().map_err(|source| Error::Bind { addr, source })?;
        Ok(Self { listener, local_addr, context: Context { platform, config: Arc::new(config), shutdown }, tls: None })
    }

    /// Makes this listener a TLS one: connections must complete a TLS handshake (within the
    /// CONNECT timeout) before the MQTT session starts; the session is the same.
    pub fn with_tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(TlsAcceptor::from(tls.server_config()));
        self
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Accepts connections on `tracker` until the shutdown token is cancelled. Then the listener
    /// closes at once, and each connection finishes its in-flight publishes (acknowledging
    /// them), tells MQTT 5 clients "server shutting down", and ends; `tracker.wait()` waits for
    /// all of them.
    pub fn spawn(self, tracker: &TaskTracker) {
        let connections = tracker.clone();
        tracker.spawn(async move {
            let Self { listener, local_addr, context, tls } = self;
            let permits = Arc::new(Semaphore::new(context.config.max_connections));
            info!(%local_addr, tls = tls.is_some(), "MQTT transport listening");
            while let Some((stream, _)) = thinglake_infra::listener::accept(&listener, &context.shutdown, "an MQTT connection").await {
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    warn!(limit = context.config.max_connections, "MQTT connection limit reached; refusing");
                    drop(stream);
                    continue;
                };
                let context = context.clone();
                match tls.clone() {
                    None => connections.spawn(async move {
                        session::serve(stream, context).await;
                        drop(permit);
                    }),
                    Some(acceptor) => connections.spawn(async move {
                        session::serve_tls(stream, acceptor, context).await;
                        drop(permit);
                    }),
                };
            }
            info!("MQTT transport stopped accepting");
        });
    }
}
