//! The accept loop's step shared by the TCP listeners (HTTP, MQTT, PostgreSQL wire).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// How long a listener waits after a failed accept (out of file descriptors and the like)
/// before trying again, instead of spinning on the error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The next connection of `listener`, or `None` once `shutdown` is cancelled. A failed accept
/// is logged with `what` (e.g. "an MQTT connection") and retried after a short pause.
pub async fn accept(listener: &TcpListener, shutdown: &CancellationToken, what: &str) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return None,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => return Some(accepted),
                Err(e) => {
                    warn!(error = %e, "accepting {what} failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_the_next_connection_and_none_after_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let shutdown = CancellationToken::new();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), accept(&listener, &shutdown, "a test connection"));
        let (client, (_, peer)) = (client.expect("connect"), accepted.expect("a connection"));
        assert_eq!(peer, client.local_addr().expect("client address"));
        shutdown.cancel();
        assert!(accept(&listener, &shutdown, "a test connection").await.is_none());
    }
}
