//! The last 24 hours in fixed buckets: messages, errors, first-token latency and tokens/s,
//! for the Overview's charts and its "today" figures.

use std::sync::Mutex;
use std::time::Duration;

/// One bucket's span.
pub const BUCKET: Duration = Duration::from_secs(15 * 60);
/// 24 hours of buckets.
const BUCKETS: usize = 96;

/// What happened within one bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Bucket {
    /// Start of the bucket, Unix milliseconds.
    pub start_unix_ms: u64,
    pub messages: u32,
    pub errors: u32,
    first_token_ms_sum: f64,
    first_tokens: u32,
    speed_sum: f64,
    speeds: u32,
}

impl Bucket {
    /// The mean first-token latency, if any reply started in this bucket.
    pub fn first_token_ms(&self) -> Option<f64> {
        (self.first_tokens > 0).then(|| self.first_token_ms_sum / f64::from(self.first_tokens))
    }

    /// The mean generation speed, if any generation finished in this bucket.
    pub fn tokens_per_second(&self) -> Option<f64> {
        (self.speeds > 0).then(|| self.speed_sum / f64::from(self.speeds))
    }
}

/// A ring of [`BUCKETS`] buckets indexed by time; a slot is reused once its day is over.
#[derive(Debug)]
pub struct Series {
    buckets: Mutex<[Bucket; BUCKETS]>,
}

impl Default for Series {
    fn default() -> Self {
        Self {
            buckets: Mutex::new([Bucket::default(); BUCKETS]),
        }
    }
}

fn bucket_start(unix_ms: u64) -> u64 {
    let span = BUCKET.as_millis() as u64;
    unix_ms - unix_ms % span
}

impl Series {
    fn update(&self, unix_ms: u64, change: impl FnOnce(&mut Bucket)) {
        let start = bucket_start(unix_ms);
        let index = (start / BUCKET.as_millis() as u64) as usize % BUCKETS;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = &mut buckets[index];
        if bucket.start_unix_ms != start {
            *bucket = Bucket {
                start_unix_ms: start,
                ..Bucket::default()
            };
        }
        change(bucket);
    }

    pub fn record_message(&self, unix_ms: u64, error: bool) {
        self.update(unix_ms, |b| {
            b.messages += 1;
            b.errors += u32::from(error);
        });
    }

    pub fn record_first_token(&self, unix_ms: u64, after: Duration) {
        self.update(unix_ms, |b| {
            b.first_token_ms_sum += after.as_secs_f64() * 1000.0;
            b.first_tokens += 1;
        });
    }

    pub fn record_speed(&self, unix_ms: u64, tokens_per_second: f64) {
        self.update(unix_ms, |b| {
            b.speed_sum += tokens_per_second;
            b.speeds += 1;
        });
    }

    /// The 24 hours up to `now`, oldest first, one entry per bucket (empty ones included).
    pub fn last_day(&self, now_unix_ms: u64) -> Vec<Bucket> {
        let span = BUCKET.as_millis() as u64;
        let newest = bucket_start(now_unix_ms);
        let buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        (0..BUCKETS as u64)
            .rev()
            .map(|back| newest.saturating_sub(back * span))
            .map(|start| {
                let stored = buckets[(start / span) as usize % BUCKETS];
                if stored.start_unix_ms == start {
                    stored
                } else {
                    Bucket {
                        start_unix_ms: start,
                        ..Bucket::default()
                    }
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3_600_000;

    #[test]
    fn buckets_hold_a_day_and_forget_older_ones() {
        let series = Series::default();
        let t0 = 1_800_000_000_000;
        series.record_message(t0, false);
        series.record_message(t0 + 1, true);
        series.record_first_token(t0, Duration::from_millis(300));
        series.record_first_token(t0, Duration::from_millis(500));
        series.record_speed(t0 + 2 * HOUR, 2.0);

        let day = series.last_day(t0 + 2 * HOUR);
        assert_eq!(day.len(), BUCKETS);
        assert_eq!(day.last().unwrap().tokens_per_second(), Some(2.0));
        let first = day.iter().find(|b| b.messages > 0).unwrap();
        assert_eq!((first.messages, first.errors), (2, 1));
        assert_eq!(first.first_token_ms(), Some(400.0));
        assert!(
            day.windows(2)
                .all(|w| w[0].start_unix_ms < w[1].start_unix_ms)
        );

        // A day later the same slot is reused: the old counts are gone.
        series.record_message(t0 + 24 * HOUR, false);
        let day = series.last_day(t0 + 24 * HOUR);
        assert_eq!(day.iter().map(|b| b.messages).sum::<u32>(), 1);
        assert_eq!(day.iter().filter_map(Bucket::first_token_ms).count(), 0);
    }
}
