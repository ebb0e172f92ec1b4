//! The listener: accepts connections until shutdown and serves each in a task of the platform's
//! tracker; shutdown ends the open connections too.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::{ConnectionManager, PgWireServerHandlers};
use pgwire::api::auth::StartupHandler;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::tokio::process_socket;
use thinglake_platform::Platform;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::auth::Startup;
use crate::query::Queries;

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

/// A bound PostgreSQL wire protocol listener.
pub struct PgServer {
    listener: TcpListener,
    handlers: Arc<Handlers>,
    shutdown: CancellationToken,
}

impl PgServer {
    /// Binds `addr` (port 0 picks a free port); serves once [`Self::spawn`]ed.
    pub async fn bind(addr: SocketAddr, platform: Platform, shutdown: CancellationToken) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let connections = Arc::new(ConnectionManager::new());
        let handlers = Arc::new(Handlers {
            startup: Arc::new(Startup::new(platform.clone(), connections.clone())),
            queries: Arc::new(Queries::new(platform)),
            cancel: Arc::new(DefaultCancelHandler::new(connections)),
        });
        Ok(Self { listener, handlers, shutdown })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections in a task of `tracker` until shutdown.
    pub fn spawn(self, tracker: &TaskTracker) {
        let connections = tracker.clone();
        tracker.spawn(async move {
            if let Ok(addr) = self.listener.local_addr() {
                info!(%addr, "PostgreSQL wire protocol listening");
            }
            loop {
                let (socket, peer) = tokio::select! {
                    _ = self.shutdown.cancelled() => break,
                    accepted = self.listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(e) => {
                            warn!(error = %e, "accepting a PostgreSQL connection");
                            continue;
                        }
                    },
                };
                let (handlers, stop) = (self.handlers.clone(), self.shutdown.clone());
                connections.spawn(async move {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        served = process_socket(socket, None, handlers) => if let Err(e) = served {
                            debug!(%peer, error = %e, "PostgreSQL connection ended with an error");
                        }
                    }
                });
            }
        });
    }
}
