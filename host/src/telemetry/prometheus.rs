//! `/metrics`: the `metrics` facade's recorder, installed once per process, rendered as
//! Prometheus text. The gauges are read at render time — nothing samples them otherwise.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::names;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Stage calls: from a fraction of a millisecond (a small formatter) to a timeout.
const STAGE_BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// First tokens and model loads: a warm model on a GPU box to a cold Gemma load on a Pi,
/// or a whole window re-read at 20 tokens/s.
const FIRST_TOKEN_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];

/// Whether [`install`] ran: metrics are recorded only then.
pub fn installed() -> bool {
    HANDLE.get().is_some()
}

/// Installs the Prometheus recorder as the process's `metrics` recorder (once; later calls
/// return the same handle).
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(names::STAGE_DURATION.into()), STAGE_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(names::FIRST_TOKEN.into()),
                    FIRST_TOKEN_BUCKETS,
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(names::MODEL_LOAD.into()),
                    FIRST_TOKEN_BUCKETS,
                )
            })
            .expect("bucket lists are not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Only fails if another recorder was installed first, which this module prevents.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(names::MESSAGES, "Jobs that ended, by outcome");
    describe_histogram!(names::STAGE_DURATION, Unit::Seconds, "Pipeline stage calls");
    describe_counter!(names::STAGE_FAILURES, "Failed stage calls, by kind");
    describe_histogram!(names::FIRST_TOKEN, Unit::Seconds, "Request to first token");
    describe_counter!(names::TOKENS, "Tokens the LLM generated");
    describe_counter!(
        names::PROMPT_TOKENS,
        "Prompt tokens, by kind: evaluated by the model, or served from its prompt cache"
    );
    describe_histogram!(
        names::MODEL_LOAD,
        Unit::Seconds,
        "Time the server spent loading the model before an answer"
    );
    describe_counter!(
        names::FALLBACKS,
        "Answers the fallback server gave because the primary could not"
    );
    describe_gauge!(names::QUEUE_DEPTH, "Jobs waiting or running");
    describe_counter!(
        names::TELEGRAM_REQUESTS,
        "Bot API requests, by method and outcome"
    );
    describe_counter!(names::RELOADS, "Pipeline reloads, by outcome");
    describe_gauge!(
        names::RESIDENT_MEMORY,
        Unit::Bytes,
        "The bot's resident memory"
    );
}

/// The current metrics as Prometheus text, after setting the gauges to `queue_depth` and
/// the process's `resident_bytes` now.
pub fn render(queue_depth: usize, resident_bytes: Option<u64>) -> String {
    let handle = install();
    metrics::gauge!(names::QUEUE_DEPTH).set(queue_depth as f64);
    if let Some(bytes) = resident_bytes {
        metrics::gauge!(names::RESIDENT_MEMORY).set(bytes as f64);
    }
    handle.render()
}
