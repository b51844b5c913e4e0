//! Wall-clock time as the store, the queue and guests see it: milliseconds since the Unix
//! epoch (0 if the clock is before 1970, as on a Pi that has not synced it yet) — and the
//! wall clock as a part the scheduler is given ([`WallClock`]), so that tests move its time
//! forward instead of waiting for it.
//!
//! - `timer` — sleeping until a wall-clock time, however the clock is set meanwhile.

mod timer;

use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;

/// Now, in milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// What time it is and a sleep until a time of day: the system's clock in the bot
/// ([`SystemClock`]), one a test moves forward in the test crate.
pub trait WallClock: Send + Sync + 'static {
    /// Now, in milliseconds since the Unix epoch.
    fn unix_ms(&self) -> u64;

    /// Returns once the clock reads `unix_ms` or later — or earlier, when the clock was set
    /// meanwhile: callers read the clock again and sleep again if it is not time yet.
    fn sleep_until(&self, unix_ms: u64) -> BoxFuture<'_, io::Result<()>>;
}

/// The system's wall clock, slept on with a timer that follows the clock being set.
pub struct SystemClock;

impl WallClock for SystemClock {
    fn unix_ms(&self) -> u64 {
        unix_ms()
    }

    fn sleep_until(&self, unix_ms: u64) -> BoxFuture<'_, io::Result<()>> {
        // A timer per sleep: one syscall, and the scheduler sleeps once per due task.
        Box::pin(async move { timer::WallTimer::new()?.sleep_until(unix_ms).await })
    }
}
