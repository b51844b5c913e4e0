//! How long the bot waits for a model server, and the deadlines of one streamed answer.

use std::time::Duration;

use tokio::time::Instant;

use super::LlmError;

/// The waits every backend enforces (`OLLAMA_*_TIMEOUT_SECS`; they apply to any server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    /// Until the first token of the answer, model loading included.
    pub first_token: Duration,
    /// Between two tokens once the answer has started.
    pub idle: Duration,
    /// For the whole answer.
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            // A cold load of the model from a Pi's SD card or USB disk can take a minute.
            first_token: Duration::from_secs(120),
            idle: Duration::from_secs(30),
            total: Duration::from_secs(600),
        }
    }
}

/// Deadlines of one answer, from when it was requested.
pub struct Clock {
    first_token_at: Instant,
    total_at: Instant,
    timeouts: Timeouts,
}

impl Clock {
    pub fn start(timeouts: Timeouts) -> Self {
        let now = Instant::now();
        Self {
            first_token_at: now + timeouts.first_token,
            total_at: now + timeouts.total,
            timeouts,
        }
    }

    /// When the next token must have arrived, given when the last one did, and the error
    /// if it has not.
    pub fn deadline(&self, last_token: Option<Instant>) -> (Instant, LlmError) {
        let t = &self.timeouts;
        let (at, error) = match last_token {
            None => (
                self.first_token_at,
                LlmError::FirstTokenTimeout(t.first_token),
            ),
            Some(last) => (last + t.idle, LlmError::Stalled(t.idle)),
        };
        if self.total_at <= at {
            (self.total_at, LlmError::TotalTimeout(t.total))
        } else {
            (at, error)
        }
    }
}
