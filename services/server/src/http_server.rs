//! The HTTP listener: HTTP/1.1 connections served by hyper with a header-read timeout (a client
//! that sends part of a request and stalls is closed) and a cap on open connections (WebSocket
//! sessions included: the permit travels with the upgraded socket). Past the cap a connection
//! is answered `503` with `Retry-After` and closed at once. Shutdown stops accepting and lets
//! open requests finish.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;
use tracing::debug;

/// What a connection past the cap is answered before it is closed: ThingsBoard's error JSON.
fn busy_answer() -> Vec<u8> {
    let body = serde_json::json!({
        "status": 503,
        "message": "Too many open connections: retry later",
        "errorCode": 2,
        "timestamp": thinglake_platform::now_ms(),
    })
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Limits of the HTTP listener.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// How long a client may take to send a request's headers.
    pub header_timeout: Duration,
    /// Connections held at once.
    pub max_connections: usize,
}

/// Serves `router` on `listener` in tasks of `tracker` until `shutdown`.
pub fn spawn(listener: TcpListener, router: Router, limits: HttpLimits, tracker: &TaskTracker, shutdown: CancellationToken) {
    let connections = tracker.clone();
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let builder = Arc::new(builder);
    tracker.spawn(async move {
        while let Some((socket, peer)) = thinglake_infra::listener::accept(&listener, &shutdown, "an HTTP connection").await {
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                debug!(%peer, limit = limits.max_connections, "HTTP connection refused: too many open");
                // A fresh socket's send buffer takes the short answer at once; it is never waited for.
                let _ = socket.try_write(&busy_answer());
                continue;
            };
            let (router, builder, stop) = (router.clone(), builder.clone(), shutdown.clone());
            connections.spawn(async move {
                let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    router.clone().oneshot(request.map(axum::body::Body::new))
                });
                let io = TokioIo::new(Counted { stream: socket, _permit: permit });
                let connection = builder.serve_connection(io, service).with_upgrades();
                tokio::pin!(connection);
                let served = tokio::select! {
                    served = connection.as_mut() => served,
                    () = stop.cancelled() => {
                        connection.as_mut().graceful_shutdown();
                        connection.await
                    }
                };
                if let Err(e) = served {
                    debug!(%peer, error = %e, "HTTP connection ended with an error");
                }
            });
        }
    });
}

/// A connection's socket holding its permit: freed when the socket closes, after an upgrade too.
struct Counted {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Counted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
