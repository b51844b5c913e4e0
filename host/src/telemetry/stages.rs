//! Per-stage figures for the Pipeline page: calls, latency percentiles over the recent
//! calls, failures by kind and the last few errors.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Display;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Recent call durations kept per stage for the percentiles.
const RECENT_CALLS: usize = 1000;
/// Recent errors kept per stage.
const RECENT_ERRORS: usize = 5;

/// One stage's figures since the process started.
#[derive(Debug, Clone, Default)]
pub struct StageFigures {
    pub calls: u64,
    pub failures: BTreeMap<&'static str, u64>,
    recent_micros: VecDeque<u32>,
    /// Newest last.
    pub last_errors: VecDeque<StageError>,
}

/// How a stage call failed: a short label for counting (`timeout`), and what happened,
/// formatted only when someone looks.
#[derive(Clone)]
pub struct StageFailure {
    pub label: &'static str,
    pub detail: Arc<dyn Display + Send + Sync>,
}

impl std::fmt::Debug for StageFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.label, self.detail)
    }
}

/// A failed call, as the Pipeline page lists it.
#[derive(Debug, Clone)]
pub struct StageError {
    pub at_unix_ms: u64,
    pub failure: StageFailure,
}

impl StageFigures {
    /// The `p`-th percentile (0–100) of the recent calls' durations, in milliseconds.
    pub fn percentile_ms(&self, p: f64) -> Option<f64> {
        if self.recent_micros.is_empty() {
            return None;
        }
        let mut sorted: Vec<u32> = self.recent_micros.iter().copied().collect();
        sorted.sort_unstable();
        // Nearest rank.
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        let micros = sorted[rank.clamp(1, sorted.len()) - 1];
        Some(f64::from(micros) / 1000.0)
    }

    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }
}

/// Every stage's figures, by stage name (kept across reloads: a stage is its name).
#[derive(Debug, Default)]
pub struct StageStats {
    stages: Mutex<HashMap<String, StageFigures>>,
}

impl StageStats {
    pub fn record(
        &self,
        stage: &str,
        took: Duration,
        failure: Option<&StageFailure>,
        now_unix_ms: u64,
    ) {
        let mut stages = self.stages.lock().unwrap_or_else(|e| e.into_inner());
        let figures = match stages.get_mut(stage) {
            Some(figures) => figures,
            None => stages.entry(stage.to_owned()).or_default(),
        };
        figures.calls += 1;
        if figures.recent_micros.len() == RECENT_CALLS {
            figures.recent_micros.pop_front();
        }
        figures
            .recent_micros
            .push_back(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
        if let Some(failure) = failure {
            *figures.failures.entry(failure.label).or_default() += 1;
            if figures.last_errors.len() == RECENT_ERRORS {
                figures.last_errors.pop_front();
            }
            figures.last_errors.push_back(StageError {
                at_unix_ms: now_unix_ms,
                failure: failure.clone(),
            });
        }
    }

    /// A copy of one stage's figures (default if it was never called).
    pub fn of(&self, stage: &str) -> StageFigures {
        let stages = self.stages.lock().unwrap_or_else(|e| e.into_inner());
        stages.get(stage).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_failures_and_errors_are_kept_per_stage() {
        let stats = StageStats::default();
        for ms in 1..=100 {
            stats.record("persona", Duration::from_millis(ms), None, 0);
        }
        let timeout = StageFailure {
            label: "timeout",
            detail: Arc::new("ran longer than its 300ms limit"),
        };
        for at in 0..7 {
            stats.record("weather", Duration::from_millis(300), Some(&timeout), at);
        }
        let persona = stats.of("persona");
        assert_eq!(persona.calls, 100);
        assert_eq!(persona.percentile_ms(50.0), Some(50.0));
        assert_eq!(persona.percentile_ms(99.0), Some(99.0));
        assert_eq!(persona.failed(), 0);

        let weather = stats.of("weather");
        assert_eq!(weather.failures.get("timeout"), Some(&7));
        assert_eq!(weather.last_errors.len(), RECENT_ERRORS);
        assert_eq!(weather.last_errors.back().unwrap().at_unix_ms, 6);
        assert_eq!(
            weather.last_errors[0].failure.detail.to_string(),
            "ran longer than its 300ms limit"
        );
        assert_eq!(stats.of("unknown").calls, 0);
    }
}
