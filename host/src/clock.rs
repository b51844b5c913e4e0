//! Wall-clock time as the store, the queue and guests see it: milliseconds since the Unix
//! epoch (0 if the clock is before 1970, as on a Pi that has not synced it yet).

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}
