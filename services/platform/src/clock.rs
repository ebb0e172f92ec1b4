//! The platform's time. Every use case reads `now` through the [`Clock`] it was given
//! ([`PlatformConfig::clock`](crate::PlatformConfig::clock)), never the system's clock directly:
//! recording times of events, the time a device's message was received, activation links'
//! expiry, the issue time of sign-in tokens. The server runs on [`SystemClock`]; a test (or a
//! replay) that wants time to pass without waiting runs on a [`ManualClock`] and advances it.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current time.
pub trait Clock: fmt::Debug + Send + Sync {
    /// Now.
    fn now(&self) -> SystemTime;

    /// Now, in milliseconds since the Unix epoch (the unit of every timestamp on the log).
    fn now_ms(&self) -> i64 {
        millis(self.now())
    }
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that stands still until it is moved: [`ManualClock::advance`], [`ManualClock::set`].
/// Millisecond resolution, as the log's timestamps.
#[derive(Debug)]
pub struct ManualClock {
    now_ms: AtomicI64,
}

impl ManualClock {
    /// A clock standing at `at`.
    pub fn at(at: SystemTime) -> Self {
        Self { now_ms: AtomicI64::new(millis(at)) }
    }

    /// A clock standing at the system's time of its creation.
    pub fn starting_now() -> Self {
        Self::at(SystemTime::now())
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.now_ms.fetch_add(i64::try_from(by.as_millis()).unwrap_or(i64::MAX), Ordering::SeqCst);
    }

    /// Puts the clock at `at` (forward or back).
    pub fn set(&self, at: SystemTime) {
        self.now_ms.store(millis(at), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        let ms = self.now_ms.load(Ordering::SeqCst);
        UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
    }

    fn now_ms(&self) -> i64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

/// Milliseconds since the Unix epoch of `at` (0 before it).
fn millis(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_stands_still_until_advanced_or_set() {
        let start = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let clock = ManualClock::at(start);
        assert_eq!(clock.now_ms(), 1_700_000_000_123);
        assert_eq!(clock.now(), start);
        clock.advance(Duration::from_millis(1500));
        assert_eq!(clock.now_ms(), 1_700_000_001_623);
        assert_eq!(clock.now(), start + Duration::from_millis(1500));
        clock.set(start);
        assert_eq!(clock.now_ms(), 1_700_000_000_123);
    }

    #[test]
    fn the_system_clock_reads_the_wall_clock() {
        let before = millis(SystemTime::now());
        let now = SystemClock.now_ms();
        assert!(now >= before && now - before < 60_000, "{before} {now}");
    }
}
