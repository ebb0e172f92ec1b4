//! Rate limits as ThingsBoard writes them (`"100:1,3000:60"`: at most 100 per second and 3000 per
//! minute) and a limiter that holds one set of token buckets per key (a device, a tenant).
//!
//! Each window is a bucket of `count` tokens refilled evenly over its `seconds` (greedy refill,
//! as ThingsBoard's bucket4j): a burst of `count` passes at once, then the long-run rate holds.
//! A request takes its tokens from every window or from none. Refused requests wait nowhere: the
//! caller answers at once, so a key at its limit slows no other key.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

/// One window: at most `count` per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    count: u64,
    period: Duration,
}

/// A rate limit of any number of windows; none: unlimited. Read from ThingsBoard's text.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct RateLimit {
    windows: Vec<Window>,
}

/// Why a rate-limit text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rate limit '{text}' must be count:seconds pairs separated by commas, each above zero (like 100:1,3000:60)")]
pub struct BadRateLimit {
    text: String,
}

impl RateLimit {
    /// No limit.
    pub fn unlimited() -> Self {
        Self::default()
    }

    pub fn is_unlimited(&self) -> bool {
        self.windows.is_empty()
    }

    /// The longest window (zero when unlimited): buckets idle for longer are full again.
    fn longest(&self) -> Duration {
        self.windows.iter().map(|w| w.period).max().unwrap_or_default()
    }
}

impl FromStr for RateLimit {
    type Err = BadRateLimit;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadRateLimit { text: text.to_string() };
        let mut windows = Vec::new();
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (count, seconds) = pair.split_once(':').ok_or_else(bad)?;
            let count: u64 = count.trim().parse().map_err(|_| bad())?;
            let seconds: u64 = seconds.trim().parse().map_err(|_| bad())?;
            if count == 0 || seconds == 0 {
                return Err(bad());
            }
            windows.push(Window { count, period: Duration::from_secs(seconds) });
        }
        Ok(Self { windows })
    }
}

impl TryFrom<String> for RateLimit {
    type Error = BadRateLimit;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl fmt::Display for RateLimit {
    /// ThingsBoard's text (`""` when unlimited), as `getSessionLimits` answers it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pairs: Vec<String> = self.windows.iter().map(|w| format!("{}:{}", w.count, w.period.as_secs())).collect();
        f.write_str(&pairs.join(","))
    }
}

/// The buckets of one key.
#[derive(Debug)]
struct Buckets {
    tokens: Vec<f64>,
    refreshed: Instant,
}

impl Buckets {
    fn full(limit: &RateLimit, now: Instant) -> Self {
        Self { tokens: limit.windows.iter().map(|w| w.count as f64).collect(), refreshed: now }
    }

    fn refill(&mut self, limit: &RateLimit, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refreshed).as_secs_f64();
        self.refreshed = now;
        for (tokens, w) in self.tokens.iter_mut().zip(&limit.windows) {
            *tokens = (*tokens + elapsed * w.count as f64 / w.period.as_secs_f64()).min(w.count as f64);
        }
    }

    /// Takes `n` tokens from every window, or none and how long until they would be there.
    fn take(&mut self, limit: &RateLimit, n: u64, now: Instant) -> Result<(), Duration> {
        self.refill(limit, now);
        let n = n as f64;
        let mut wait = Duration::ZERO;
        for (tokens, w) in self.tokens.iter().zip(&limit.windows) {
            if *tokens < n {
                // More than a whole window holds never passes: retry after the window.
                let seconds = if n > w.count as f64 { w.period.as_secs_f64() } else { (n - tokens) * w.period.as_secs_f64() / w.count as f64 };
                wait = wait.max(Duration::from_secs_f64(seconds));
            }
        }
        if wait > Duration::ZERO {
            return Err(wait);
        }
        for tokens in &mut self.tokens {
            *tokens -= n;
        }
        Ok(())
    }

    fn give_back(&mut self, limit: &RateLimit, n: u64) {
        for (tokens, w) in self.tokens.iter_mut().zip(&limit.windows) {
            *tokens = (*tokens + n as f64).min(w.count as f64);
        }
    }
}

/// Shards of the buckets, so that keys rarely wait for each other's lock.
const SHARDS: usize = 16;
/// Checks of a shard between sweeps of its idle buckets.
const SWEEP_EVERY: u32 = 4096;

#[derive(Debug, Default)]
struct Shard {
    buckets: HashMap<Uuid, Buckets>,
    since_sweep: u32,
}

/// Token buckets per key under one [`RateLimit`]. Buckets of keys idle for longer than the
/// longest window (full again) are dropped now and then, so memory follows the active keys.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    shards: Vec<Mutex<Shard>>,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        Self { limit, shards: (0..SHARDS).map(|_| Mutex::default()).collect() }
    }

    pub fn limit(&self) -> &RateLimit {
        &self.limit
    }

    fn shard(&self, key: Uuid) -> std::sync::MutexGuard<'_, Shard> {
        let index = (key.as_u128() % SHARDS as u128) as usize;
        self.shards[index].lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes `n` for `key`; refused: how long until it would pass.
    pub fn try_take(&self, key: Uuid, n: u64) -> Result<(), Duration> {
        if self.limit.is_unlimited() || n == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut shard = self.shard(key);
        shard.since_sweep += 1;
        if shard.since_sweep >= SWEEP_EVERY {
            shard.since_sweep = 0;
            let idle = self.limit.longest();
            shard.buckets.retain(|_, b| now.saturating_duration_since(b.refreshed) < idle);
        }
        shard.buckets.entry(key).or_insert_with(|| Buckets::full(&self.limit, now)).take(&self.limit, n, now)
    }

    /// Returns `n` taken for `key` by a request that another limit then refused.
    pub fn give_back(&self, key: Uuid, n: u64) {
        if self.limit.is_unlimited() || n == 0 {
            return;
        }
        if let Some(buckets) = self.shard(key).buckets.get_mut(&key) {
            buckets.give_back(&self.limit, n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thingsboards_text_parses_and_prints_back() {
        let limit: RateLimit = "100:1, 3000:60".parse().expect("valid");
        assert_eq!(limit.to_string(), "100:1,3000:60");
        assert!("".parse::<RateLimit>().expect("empty is unlimited").is_unlimited());
        for bad in ["100", "x:1", "100:0", "0:1", "1:-1"] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_burst_passes_then_the_rate_holds_and_every_window_counts() {
        let limit: RateLimit = "3:1,4:60".parse().expect("valid");
        let now = Instant::now();
        let mut b = Buckets::full(&limit, now);
        for _ in 0..3 {
            assert_eq!(b.take(&limit, 1, now), Ok(()));
        }
        let wait = b.take(&limit, 1, now).expect_err("the second's burst is used up");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
        // A second later the per-second window refilled, the minute window holds one more.
        let later = now + Duration::from_secs(1);
        assert_eq!(b.take(&limit, 1, later), Ok(()));
        let wait = b.take(&limit, 1, later).expect_err("the minute's four are used up");
        assert!(wait > Duration::from_secs(1), "{wait:?}");
        // More than a window ever holds: refused, retry after the window.
        assert_eq!(Buckets::full(&limit, now).take(&limit, 5, now), Err(Duration::from_secs(60)));
    }

    #[test]
    fn keys_have_their_own_buckets_and_given_back_tokens_count_again() {
        let limiter = RateLimiter::new("2:3600".parse().expect("valid"));
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(limiter.try_take(a, 2), Ok(()));
        assert!(limiter.try_take(a, 1).is_err());
        assert_eq!(limiter.try_take(b, 2), Ok(()), "another key is not slowed");
        limiter.give_back(a, 1);
        assert_eq!(limiter.try_take(a, 1), Ok(()));
        assert_eq!(RateLimiter::new(RateLimit::unlimited()).try_take(a, u64::MAX), Ok(()));
    }
}
