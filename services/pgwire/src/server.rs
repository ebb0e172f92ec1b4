//! The listener: accepts connections until shutdown and serves each in a task of the platform's
//! tracker; shutdown ends the open connections too.
//!
//! With a certificate ([`PgOptions::tls`]) a client may ask for TLS (`sslmode=require`) before
//! it sends its password. At most [`PgOptions::max_connections`] connections are served at once:
//! one more is answered `FATAL 53300 too many connections` at startup (a few such answers at a
//! time; past them the socket is closed). A connection that has run no statement for
//! [`PgOptions::idle_timeout`] is closed.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::sink::Sink;
use pgwire::api::auth::StartupHandler;
use pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::{ClientInfo, ConnectionManager, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::process_socket;
use thinglake_infra::tls::TlsConfig;
use thinglake_platform::Platform;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

use crate::activity::Activity;
use crate::auth::Startup;
use crate::error::sqlstate;
use crate::query::Queries;

/// Options of the listener.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// The certificate offered to clients that ask for TLS; `None`: TLS requests are declined.
    pub tls: Option<TlsConfig>,
    /// Connections served at once.
    pub max_connections: usize,
    /// A connection whose last statement started longer ago is closed; `None`: never.
    pub idle_timeout: Option<Duration>,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self { tls: None, max_connections: 64, idle_timeout: Some(Duration::from_secs(600)) }
    }
}

/// Connections past the cap answered with an error at once; past them, closed unanswered.
const REFUSALS_AT_ONCE: usize = 16;

/// How long a refused connection may take to send its startup message.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(5);

/// The handlers every connection shares.
struct Handlers {
    startup: Arc<Startup>,
    queries: Arc<Queries>,
    cancel: Arc<DefaultCancelHandler>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.queries.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.queries.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancel.clone()
    }
}

/// The handlers of a connection past the cap: its startup is answered with an error.
struct Refusing {
    limit: usize,
}

#[async_trait]
impl StartupHandler for Refusing {
    async fn on_startup<C>(&self, _client: &mut C, _message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let message = format!("sorry, too many clients already (at most {} connections)", self.limit);
        Err(PgWireError::UserError(Box::new(ErrorInfo::new("FATAL".to_owned(), sqlstate::TOO_MANY_CONNECTIONS.to_owned(), message))))
    }
}

impl PgWireServerHandlers for Refusing {
    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::new(Refusing { limit: self.limit })
    }
}

/// A bound PostgreSQL wire protocol listener.
pub struct PgServer {
    listener: TcpListener,
    handlers: Arc<Handlers>,
    activity: Arc<Activity>,
    options: PgOptions,
    shutdown: CancellationToken,
}

impl PgServer {
    /// Binds `addr` (port 0 picks a free port); serves once [`Self::spawn`]ed.
    pub async fn bind(addr: SocketAddr, platform: Platform, options: PgOptions, shutdown: CancellationToken) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let connections = Arc::new(ConnectionManager::new());
        let activity = Arc::new(Activity::default());
        let handlers = Arc::new(Handlers {
            startup: Arc::new(Startup::new(platform.clone(), connections.clone())),
            queries: Arc::new(Queries::new(platform, activity.clone())),
            cancel: Arc::new(DefaultCancelHandler::new(connections)),
        });
        Ok(Self { listener, handlers, activity, options, shutdown })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections in a task of `tracker` until shutdown.
    pub fn spawn(self, tracker: &TaskTracker) {
        let connections = tracker.clone();
        tracker.spawn(async move {
            let Self { listener, handlers, activity, options, shutdown } = self;
            let tls = options.tls.as_ref().map(|tls| TlsAcceptor::from(tls.server_config()));
            if let Ok(addr) = listener.local_addr() {
                info!(%addr, tls = tls.is_some(), max_connections = options.max_connections, "PostgreSQL wire protocol listening");
            }
            let permits = Arc::new(Semaphore::new(options.max_connections.max(1)));
            let refusals = Arc::new(Semaphore::new(REFUSALS_AT_ONCE));
            while let Some((socket, peer)) = thinglake_infra::listener::accept(&listener, &shutdown, "a PostgreSQL connection").await {
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    let Ok(refusal) = refusals.clone().try_acquire_owned() else { continue };
                    debug!(%peer, limit = options.max_connections, "PostgreSQL connection refused: too many open");
                    let (tls, refusing) = (tls.clone(), Arc::new(Refusing { limit: options.max_connections }));
                    connections.spawn(async move {
                        let _ = tokio::time::timeout(REFUSAL_TIMEOUT, process_socket(socket, tls, refusing)).await;
                        drop(refusal);
                    });
                    continue;
                };
                let (handlers, stop, tls, activity, idle) = (handlers.clone(), shutdown.clone(), tls.clone(), activity.clone(), options.idle_timeout);
                activity.touch(peer);
                connections.spawn(async move {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        () = idle_watch(&activity, peer, idle) => debug!(%peer, "PostgreSQL connection closed: idle"),
                        served = process_socket(socket, tls, handlers) => if let Err(e) = served {
                            debug!(%peer, error = %e, "PostgreSQL connection ended with an error");
                        }
                    }
                    activity.forget(peer);
                    drop(permit);
                });
            }
        });
    }
}

/// Returns once the connection from `peer` has started no statement for `timeout` (never
/// without one).
async fn idle_watch(activity: &Activity, peer: SocketAddr, timeout: Option<Duration>) {
    let Some(timeout) = timeout else { return std::future::pending().await };
    loop {
        let idle = activity.idle_for(peer);
        if idle >= timeout {
            return;
        }
        tokio::time::sleep(timeout - idle).await;
    }
}
