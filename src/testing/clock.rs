//! The stand-in's wall clock: real time when it started, moved on by Tokio's clock (so paused
//! test time drives it), plus an offset a test can set to play a Vault whose clock is off.

use super::*;

/// Vault's idea of the time. Everything dated by the stand-in (token expiries, last use, the
/// `Date` header, login-limit minutes) reads this clock.
pub(super) struct Clock {
    started_wall: SystemTime,
    started: Instant,
    /// Seconds added to (or, negative, taken from) the time.
    offset: i64,
}

impl Clock {
    pub(super) fn new() -> Clock {
        Clock {
            started_wall: SystemTime::now(),
            started: Instant::now(),
            offset: 0,
        }
    }

    pub(super) fn now(&self) -> SystemTime {
        let moved = self.started_wall + self.started.elapsed();
        let by = Duration::from_secs(self.offset.unsigned_abs());
        if self.offset >= 0 {
            moved + by
        } else {
            moved.checked_sub(by).unwrap_or(UNIX_EPOCH)
        }
    }

    pub(super) fn set_offset(&mut self, seconds: i64) {
        self.offset = seconds;
    }

    /// Seconds since the Unix epoch, now.
    pub(super) fn unix_seconds(&self) -> i64 {
        unix_seconds(self.now())
    }
}

pub(super) fn unix_seconds(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    }
}
