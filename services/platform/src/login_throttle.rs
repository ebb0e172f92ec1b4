//! Throttling of failed sign-ins, per account and per client address.
//!
//! Every failed password check (REST login, PostgreSQL sign-in, the current password of a
//! password change) counts against the account's email and against the client's address within a
//! window. Once either count reaches its limit, sign-ins for that account, or from that address,
//! are refused without checking the password (so without an argon2 hash) until the window that
//! began with the first failure ends. A success clears the account's count, not the address's:
//! signing in to an account of one's own must not reset guessing at another. Unknown emails count
//! like known ones, so throttling does not tell which accounts exist.
//!
//! The counts are kept in memory on each node and bounded ([`MAX_TRACKED`] keys of each kind);
//! IPv6 addresses are counted per /64, what one client usually holds.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most accounts (and, separately, addresses) tracked at once; expired entries are dropped
/// first, and when all are live a new key is not tracked (its address still is).
pub const MAX_TRACKED: usize = 100_000;

/// Limits of the sign-in throttle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    /// Failed sign-ins of one account within [`Self::window`] before it is refused (0: off).
    pub max_failures_per_account: u32,
    /// Failed sign-ins from one client address within [`Self::window`] before it is refused
    /// (0: off).
    pub max_failures_per_address: u32,
    /// How long failures are remembered; a refused account or address may try again when the
    /// window that began with its first failure ends.
    pub window: Duration,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self { max_failures_per_account: 5, max_failures_per_address: 20, window: Duration::from_secs(300) }
    }
}

/// Failures of one key in its current window.
#[derive(Debug, Clone, Copy)]
struct Failures {
    since: Instant,
    count: u32,
}

/// Failure counts by key, bounded.
#[derive(Debug)]
struct Counts<K> {
    limit: u32,
    entries: HashMap<K, Failures>,
}

impl<K: Eq + Hash + Clone> Counts<K> {
    fn new(limit: u32) -> Self {
        Self { limit, entries: HashMap::new() }
    }

    /// How long `key` stays refused, if it is.
    fn refused_for(&self, key: &K, now: Instant, window: Duration) -> Option<Duration> {
        let f = self.entries.get(key)?;
        let ends = f.since + window;
        (self.limit > 0 && f.count >= self.limit && ends > now).then(|| ends - now)
    }

    /// Counts one failure of `key`; answers how long it is refused if this reached the limit.
    fn fail(&mut self, key: &K, now: Instant, window: Duration) -> Option<Duration> {
        if self.limit == 0 {
            return None;
        }
        if !self.entries.contains_key(key) && self.entries.len() >= MAX_TRACKED {
            self.entries.retain(|_, f| f.since + window > now);
            if self.entries.len() >= MAX_TRACKED {
                return None;
            }
        }
        let f = self.entries.entry(key.clone()).or_insert(Failures { since: now, count: 0 });
        if f.since + window <= now {
            *f = Failures { since: now, count: 0 };
        }
        f.count = f.count.saturating_add(1);
        self.refused_for(key, now, window)
    }
}

/// The throttle of one node.
#[derive(Debug)]
pub struct LoginThrottle {
    limits: LoginLimits,
    state: Mutex<(Counts<String>, Counts<IpAddr>)>,
}

impl LoginThrottle {
    pub fn new(limits: LoginLimits) -> Self {
        let counts = (Counts::new(limits.max_failures_per_account), Counts::new(limits.max_failures_per_address));
        Self { limits, state: Mutex::new(counts) }
    }

    /// How long a sign-in of `email` (normalised) from `client` must wait, if it must.
    pub fn refused_for(&self, email: &str, client: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let counts = self.lock();
        let (accounts, addresses) = &*counts;
        let account = accounts.refused_for(&email.to_string(), now, self.limits.window);
        let address = addresses.refused_for(&address_key(client), now, self.limits.window);
        account.max(address)
    }

    /// Counts a failed sign-in; answers how long the account or address is now refused, if this
    /// failure reached a limit.
    pub fn failed(&self, email: &str, client: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let mut counts = self.lock();
        let (accounts, addresses) = &mut *counts;
        let account = accounts.fail(&email.to_string(), now, self.limits.window);
        let address = addresses.fail(&address_key(client), now, self.limits.window);
        account.max(address)
    }

    /// A successful sign-in clears the account's failures (not the address's).
    pub fn succeeded(&self, email: &str) {
        self.lock().0.entries.remove(email);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Counts<String>, Counts<IpAddr>)> {
        // The counts stay consistent even if a holder panicked: each update is one assignment.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The address a client is counted under: IPv4 as is, IPv6 by its /64 (IPv4-mapped ones as
/// IPv4).
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn the_nth_failure_of_an_account_refuses_it_from_every_address() {
        let t = LoginThrottle::new(LoginLimits { max_failures_per_account: 3, ..LoginLimits::default() });
        assert_eq!(t.failed("a@x", ip("10.0.0.1")), None);
        assert_eq!(t.failed("a@x", ip("10.0.0.2")), None);
        assert!(t.failed("a@x", ip("10.0.0.3")).is_some());
        assert!(t.refused_for("a@x", ip("10.0.0.9")).is_some());
        assert_eq!(t.refused_for("b@x", ip("10.0.0.9")), None);
    }

    #[test]
    fn an_address_is_refused_after_its_limit_for_every_account() {
        let t = LoginThrottle::new(LoginLimits { max_failures_per_address: 2, ..LoginLimits::default() });
        assert_eq!(t.failed("a@x", ip("10.0.0.1")), None);
        assert!(t.failed("b@x", ip("10.0.0.1")).is_some());
        assert!(t.refused_for("c@x", ip("10.0.0.1")).is_some());
        assert_eq!(t.refused_for("c@x", ip("10.0.0.2")), None);
    }

    #[test]
    fn a_success_clears_the_account_but_not_the_address() {
        let t = LoginThrottle::new(LoginLimits { max_failures_per_account: 2, max_failures_per_address: 2, ..LoginLimits::default() });
        t.failed("a@x", ip("10.0.0.1"));
        t.succeeded("a@x");
        assert_eq!(t.failed("a@x", ip("10.0.0.2")), None);
        assert!(t.failed("b@x", ip("10.0.0.1")).is_some());
    }

    #[test]
    fn failures_are_forgotten_after_the_window() {
        let t = LoginThrottle::new(LoginLimits { max_failures_per_account: 1, window: Duration::ZERO, ..LoginLimits::default() });
        assert_eq!(t.failed("a@x", ip("10.0.0.1")), None, "a zero window refuses nothing");
        assert_eq!(t.refused_for("a@x", ip("10.0.0.1")), None);
    }

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        assert_eq!(address_key(ip("2001:db8:1:2:aaaa::1")), address_key(ip("2001:db8:1:2:bbbb::2")));
        assert_ne!(address_key(ip("2001:db8:1:2::1")), address_key(ip("2001:db8:1:3::1")));
        assert_eq!(address_key(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
    }
}
