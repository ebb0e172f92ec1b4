//! When each open PostgreSQL connection last started a statement: what the idle timeout of
//! [`crate::server`] reads and every statement of [`crate::query`] marks.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// When each open connection last started a statement, by its peer address.
#[derive(Debug, Default)]
pub struct Activity(Mutex<HashMap<SocketAddr, Instant>>);

impl Activity {
    /// Marks a statement of the connection from `peer`.
    pub fn touch(&self, peer: SocketAddr) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(peer, Instant::now());
    }

    pub(crate) fn idle_for(&self, peer: SocketAddr) -> Duration {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).get(&peer).map_or(Duration::ZERO, Instant::elapsed)
    }

    pub(crate) fn forget(&self, peer: SocketAddr) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&peer);
    }
}
