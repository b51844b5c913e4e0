//! Timing for benchmarks: the median and 99th percentile of repeated work, and durations
//! printed in a unit that fits.

use std::time::{Duration, Instant};

pub struct Stats {
    pub p50: Duration,
    pub p99: Duration,
}

/// Runs `f` once to warm up, then `n` times, timing each run.
pub async fn measure(n: usize, mut f: impl AsyncFnMut()) -> Stats {
    f().await; // warm up
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        f().await;
        times.push(started.elapsed());
    }
    times.sort();
    Stats {
        p50: times[n / 2],
        p99: times[(n * 99 / 100).min(n - 1)],
    }
}

/// `d` in milliseconds from 10 ms up (seconds from 1 s), else in microseconds.
pub fn fmt(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.2} s", d.as_secs_f64())
    } else if d >= Duration::from_millis(10) {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{:.1} µs", d.as_secs_f64() * 1e6)
    }
}
