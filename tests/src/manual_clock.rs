//! A wall clock a test moves forward: the system's time plus however far the test has
//! moved it, so a task due at the next minute fires the moment the test says it is that
//! minute, not a minute later. Sleepers wake when it is moved.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use pi_agent::clock::{self, WallClock};
use tokio::sync::Notify;

#[derive(Default)]
pub struct ManualClock {
    ahead_ms: AtomicU64,
    moved: Notify,
}

impl ManualClock {
    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_millis()).unwrap();
        self.ahead_ms.fetch_add(by, Ordering::SeqCst);
        self.moved.notify_waiters();
    }

    /// Moves the clock forward to the start of its next minute, plus `after` (a wall
    /// timer wakes a little after its time, too).
    pub fn advance_to_next_minute(&self, after: Duration) {
        let now = self.unix_ms();
        let next_minute = (now / 60_000 + 1) * 60_000;
        let by = next_minute - now + u64::try_from(after.as_millis()).unwrap();
        self.advance(Duration::from_millis(by));
    }
}

impl WallClock for ManualClock {
    fn unix_ms(&self) -> u64 {
        clock::unix_ms() + self.ahead_ms.load(Ordering::SeqCst)
    }

    fn sleep_until(&self, unix_ms: u64) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(async move {
            loop {
                // Registered before the clock is read: a move in between still wakes it.
                let moved = self.moved.notified();
                tokio::pin!(moved);
                moved.as_mut().enable();
                let now = self.unix_ms();
                if now >= unix_ms {
                    return Ok(());
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(unix_ms - now)) => {}
                    () = moved => {}
                }
            }
        })
    }
}
