//! The last answers' figures that tell how long a user waits on a Pi: how much of each
//! prompt the model server took from its cache, and how long the first token took — for
//! `/status` and the dashboard's Overview.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

/// Answers the figures cover.
pub const RECENT: usize = 50;

/// The last [`RECENT`] answers' prompt sizes and first-token waits.
#[derive(Debug, Default)]
pub struct RecentAnswers {
    inner: Mutex<Recent>,
}

#[derive(Debug, Default)]
struct Recent {
    /// (prompt tokens, of them cached, whether the cached count is an estimate).
    prompts: VecDeque<(u64, u64, bool)>,
    first_tokens: VecDeque<Duration>,
}

/// What the last answers add up to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CacheFigures {
    /// Answers counted.
    pub answers: usize,
    /// Their prompt tokens, all of them.
    pub prompt_tokens: u64,
    /// Of which the server's cache served this share (0–1).
    pub cached_share: f64,
    /// Some of the cached counts are this bot's estimates (Ollama does not report them).
    pub estimated: bool,
}

/// First-token waits over the last answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirstTokenFigures {
    pub answers: usize,
    pub p50: Duration,
    pub p90: Duration,
}

fn push<T>(ring: &mut VecDeque<T>, value: T) {
    if ring.len() == RECENT {
        ring.pop_front();
    }
    ring.push_back(value);
}

impl RecentAnswers {
    fn lock(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn record_prompt(&self, tokens: u64, cached: u64, estimated: bool) {
        push(
            &mut self.lock().prompts,
            (tokens, cached.min(tokens), estimated),
        );
    }

    pub fn record_first_token(&self, after: Duration) {
        push(&mut self.lock().first_tokens, after);
    }

    /// `None` until an answer reported its prompt.
    pub fn cache(&self) -> Option<CacheFigures> {
        let recent = self.lock();
        let prompt_tokens: u64 = recent.prompts.iter().map(|p| p.0).sum();
        if prompt_tokens == 0 {
            return None;
        }
        let cached: u64 = recent.prompts.iter().map(|p| p.1).sum();
        Some(CacheFigures {
            answers: recent.prompts.len(),
            prompt_tokens,
            cached_share: cached as f64 / prompt_tokens as f64,
            estimated: recent.prompts.iter().any(|p| p.2),
        })
    }

    /// `None` until a first token came.
    pub fn first_token(&self) -> Option<FirstTokenFigures> {
        let mut waits: Vec<Duration> = self.lock().first_tokens.iter().copied().collect();
        if waits.is_empty() {
            return None;
        }
        waits.sort();
        // Nearest rank: the smallest wait at or above the share of answers.
        let rank = |share: f64| waits[((share * waits.len() as f64).ceil() as usize).max(1) - 1];
        Some(FirstTokenFigures {
            answers: waits.len(),
            p50: rank(0.5),
            p90: rank(0.9),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cached_share_is_of_all_prompt_tokens() {
        let recent = RecentAnswers::default();
        assert_eq!(recent.cache(), None);
        recent.record_prompt(1000, 900, true);
        recent.record_prompt(1000, 500, true);
        let figures = recent.cache().unwrap();
        assert_eq!(figures.answers, 2);
        assert!((figures.cached_share - 0.7).abs() < 1e-9);
        assert!(figures.estimated);
    }

    #[test]
    fn first_token_percentiles_over_the_last_answers() {
        let recent = RecentAnswers::default();
        assert_eq!(recent.first_token(), None);
        // 60 waits of 1..=60 s: only the last 50 (11..=60) count.
        for s in 1..=60 {
            recent.record_first_token(Duration::from_secs(s));
        }
        let figures = recent.first_token().unwrap();
        assert_eq!(figures.answers, RECENT);
        assert_eq!(figures.p50, Duration::from_secs(35));
        assert_eq!(figures.p90, Duration::from_secs(55));
    }
}
