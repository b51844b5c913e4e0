//! What the bot counts. Each event is recorded once, here, into two readers: the `metrics`
//! facade (rendered as Prometheus text by [`prometheus`] for `/metrics`) and the in-memory
//! [`Stats`] the dashboard draws from — 24-hour series and per-stage figures that Prometheus
//! would otherwise need a server of its own to keep.
//!
//! Recording is a counter bump and a short, uncontended lock: nothing runs in the
//! background, and the gauges (queue depth, memory) are read when someone asks. Metric
//! handles are registered once per label set ([`handles`]), and not at all while the
//! dashboard is off.

mod answers;
mod handles;
pub mod logs;
pub mod prometheus;
mod series;
mod stages;

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use metrics::{Counter, Histogram};

use handles::Handles;

pub use answers::{CacheFigures, FirstTokenFigures, RecentAnswers};
pub use series::{BUCKET, Bucket, Series};
pub use stages::{StageError, StageFailure, StageFigures, StageStats};

/// Metric names, as `/metrics` shows them.
pub mod names {
    pub const MESSAGES: &str = "pi_agent_messages_total";
    pub const STAGE_DURATION: &str = "pi_agent_stage_duration_seconds";
    pub const STAGE_FAILURES: &str = "pi_agent_stage_failures_total";
    pub const FIRST_TOKEN: &str = "pi_agent_llm_first_token_seconds";
    pub const TOKENS: &str = "pi_agent_llm_tokens_total";
    pub const PROMPT_TOKENS: &str = "pi_agent_llm_prompt_tokens_total";
    pub const MODEL_LOAD: &str = "pi_agent_llm_model_load_seconds";
    pub const FALLBACKS: &str = "pi_agent_llm_fallbacks_total";
    pub const QUEUE_DEPTH: &str = "pi_agent_queue_depth";
    pub const TELEGRAM_REQUESTS: &str = "pi_agent_telegram_requests_total";
    pub const RELOADS: &str = "pi_agent_reloads_total";
    pub const RESIDENT_MEMORY: &str = "pi_agent_resident_memory_bytes";
}

/// How a job ended, as `pi_agent_messages_total{outcome}` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageOutcome {
    /// A reply was delivered (from the LLM, a formatter or a reminder).
    Answered,
    /// A formatter refused it; the user was told why.
    Rejected,
    /// A stage, the LLM or the store failed; the user was told.
    Failed,
    /// `/stop`: what was generated so far was delivered.
    Stopped,
    /// Started too often without finishing: dropped, user and admins told.
    GivenUp,
    /// Shutdown or an undeliverable reply: stays pending for the next start.
    Interrupted,
}

impl MessageOutcome {
    pub fn label(self) -> &'static str {
        match self {
            Self::Answered => "answered",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
            Self::Stopped => "stopped",
            Self::GivenUp => "given_up",
            Self::Interrupted => "interrupted",
        }
    }

    /// Whether the dashboard counts it among the day's errors.
    pub fn is_error(self) -> bool {
        matches!(self, Self::Failed | Self::GivenUp)
    }
}

/// The dashboard's figures since the process started.
#[derive(Default)]
pub struct Stats {
    /// Messages, errors, first-token latency and generation speed over the last 24 hours.
    pub series: Series,
    /// Per pipeline stage, by name.
    pub stages: StageStats,
    /// The last answers' prompt cache share and first-token waits.
    pub answers: RecentAnswers,
    /// The last reload, whatever triggered it.
    pub last_reload: Mutex<Option<ReloadOutcome>>,
    /// How each scheduled task's last firing ended, by task id (since the process started).
    pub task_outcomes: Mutex<HashMap<i64, TaskOutcome>>,
}

/// How a task's last firing ended, for the Tasks page.
#[derive(Debug, Clone, Copy)]
pub struct TaskOutcome {
    pub at_unix_ms: u64,
    pub outcome: &'static str,
}

/// What the last pipeline reload did, for the Pipeline page.
#[derive(Debug, Clone)]
pub struct ReloadOutcome {
    pub at_unix_ms: u64,
    pub trigger: String,
    /// The reload's report, or why it failed (the old pipeline kept serving).
    pub result: Result<String, String>,
}

static STATS: LazyLock<Stats> = LazyLock::new(Stats::default);

/// The process's figures.
pub fn stats() -> &'static Stats {
    &STATS
}

/// A job ended.
pub fn message(outcome: MessageOutcome) {
    static MESSAGES: Handles<&'static str, Counter> = Handles::new();
    let label = outcome.label();
    MESSAGES.with(|counters| {
        counters
            .entry(label)
            .or_insert_with(|| metrics::counter!(names::MESSAGES, "outcome" => label))
            .increment(1);
    });
    STATS
        .series
        .record_message(crate::clock::unix_ms(), outcome.is_error());
}

/// One call into a stage on a user's message, in its `role` (`formatter`, `shaper`): how
/// long it took and how it failed, if it did.
pub fn stage_call(stage: &str, role: &'static str, took: Duration, failure: Option<&StageFailure>) {
    /// One stage's handles, under its role's label.
    struct StageHandles {
        role: &'static str,
        duration: Histogram,
        failures: HashMap<&'static str, Counter>,
    }
    static STAGES: Handles<String, StageHandles> = Handles::new();
    STAGES.with(|stages| {
        // A reload may give a stage's name another role.
        if stages.get(stage).is_none_or(|h| h.role != role) {
            let duration = metrics::histogram!(
                names::STAGE_DURATION, "stage" => stage.to_owned(), "role" => role
            );
            let failures = HashMap::new();
            stages.insert(
                stage.to_owned(),
                StageHandles {
                    role,
                    duration,
                    failures,
                },
            );
        }
        let handles = stages.get_mut(stage).expect("registered above");
        handles.duration.record(took.as_secs_f64());
        if let Some(failure) = failure {
            let kind = failure.label;
            handles
                .failures
                .entry(kind)
                .or_insert_with(|| {
                    metrics::counter!(
                        names::STAGE_FAILURES, "stage" => stage.to_owned(), "kind" => kind
                    )
                })
                .increment(1);
        }
    });
    STATS
        .stages
        .record(stage, took, failure, crate::clock::unix_ms());
}

/// Task `task_id`'s firing ended with `outcome` (a [`MessageOutcome`]'s label, or why it
/// did not run).
pub fn task_outcome(task_id: i64, outcome: &'static str) {
    STATS
        .task_outcomes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(
            task_id,
            TaskOutcome {
                at_unix_ms: crate::clock::unix_ms(),
                outcome,
            },
        );
}

/// The LLM's first token arrived `after` the request.
pub fn first_token(after: Duration) {
    static FIRST_TOKEN: Handles<(), Histogram> = Handles::new();
    FIRST_TOKEN.only(
        || metrics::histogram!(names::FIRST_TOKEN),
        |h| h.record(after.as_secs_f64()),
    );
    STATS
        .series
        .record_first_token(crate::clock::unix_ms(), after);
    STATS.answers.record_first_token(after);
}

/// A finished answer's prompt: `tokens` in all, `cached` of them served from the server's
/// cache (`estimated` when the bot worked that out itself), and the time the server spent
/// loading the model first.
pub fn prompt_read(tokens: u64, cached: Option<u64>, estimated: bool, load: Duration) {
    static PROMPT_TOKENS: Handles<&'static str, Counter> = Handles::new();
    static MODEL_LOAD: Handles<(), Histogram> = Handles::new();
    let cached = cached.unwrap_or(0).min(tokens);
    PROMPT_TOKENS.with(|counters| {
        for (kind, count) in [("evaluated", tokens - cached), ("cached", cached)] {
            counters
                .entry(kind)
                .or_insert_with(|| metrics::counter!(names::PROMPT_TOKENS, "kind" => kind))
                .increment(count);
        }
    });
    MODEL_LOAD.only(
        || metrics::histogram!(names::MODEL_LOAD),
        |h| h.record(load.as_secs_f64()),
    );
    if tokens > 0 {
        STATS.answers.record_prompt(tokens, cached, estimated);
    }
}

/// A generation finished with `tokens` at `tokens_per_second` (when the server said).
pub fn generated(tokens: u64, tokens_per_second: Option<f64>) {
    static TOKENS: Handles<(), Counter> = Handles::new();
    TOKENS.only(|| metrics::counter!(names::TOKENS), |c| c.increment(tokens));
    if let Some(speed) = tokens_per_second {
        STATS.series.record_speed(crate::clock::unix_ms(), speed);
    }
}

/// An answer went to the fallback server because the primary could not give it.
pub fn fell_back() {
    static FALLBACKS: Handles<(), Counter> = Handles::new();
    FALLBACKS.only(|| metrics::counter!(names::FALLBACKS), |c| c.increment(1));
}

/// One Bot API request; `method` as Telegram names it (`sendMessage`).
pub fn telegram_request<T, E>(method: &'static str, result: &Result<T, E>) {
    static REQUESTS: Handles<(&'static str, &'static str), Counter> = Handles::new();
    let outcome = if result.is_ok() { "ok" } else { "error" };
    REQUESTS.with(|counters| {
        counters
            .entry((method, outcome))
            .or_insert_with(|| {
                metrics::counter!(names::TELEGRAM_REQUESTS, "method" => method, "outcome" => outcome)
            })
            .increment(1);
    });
}

/// A pipeline reload finished (`Ok` with its report, or why it failed).
pub fn reload(trigger: &str, result: Result<String, String>) {
    static RELOADS: Handles<&'static str, Counter> = Handles::new();
    let outcome = if result.is_ok() { "ok" } else { "error" };
    RELOADS.with(|counters| {
        counters
            .entry(outcome)
            .or_insert_with(|| metrics::counter!(names::RELOADS, "outcome" => outcome))
            .increment(1);
    });
    *STATS.last_reload.lock().unwrap_or_else(|e| e.into_inner()) = Some(ReloadOutcome {
        at_unix_ms: crate::clock::unix_ms(),
        trigger: trigger.to_owned(),
        result,
    });
}
