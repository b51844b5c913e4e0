//! Benchmark: what the dashboard costs. Idle resident memory of the real `pi-agent run`
//! (release build, fakes on loopback) with the dashboard off (`DASHBOARD_ADDR=`) and on
//! (`127.0.0.1:0`), alternating starts in the same run, medians; and the nanoseconds one
//! recording call takes — without a recorder (dashboard off) and with the Prometheus
//! recorder installed — against a plain atomic add measured in the same run.
//! Run with `just bench-dashboard` (or `cargo bench -p pi-agent-tests -- dashboard`).

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pi_agent::pipeline::{FailureKind, Role};
use pi_agent::telemetry::{self, MessageOutcome};
use pi_agent_tests::bot::{Harness, PATIENCE, RunningBot};
use pi_agent_tests::proc_stats::{mb, rss_kb};

/// Bot starts per setting.
const STARTS: usize = 5;
const SETTLE: Duration = Duration::from_secs(3);
/// Calls per timed round, and rounds per figure.
const CALLS: u32 = 200_000;
const ROUNDS: usize = 11;

#[tokio::main(flavor = "multi_thread")]
pub async fn main() {
    let memory = idle_memory().await;
    let recording = recording_costs();

    println!("\npi-agent dashboard benchmark: release `pi-agent run`, idle, fakes on loopback");
    println!(
        "{:<46} {:>10} {:>10}",
        format!("idle RSS, median of {STARTS} starts"),
        "RSS",
        "vs off"
    );
    let off = memory.off;
    for (label, kb) in [
        ("dashboard off (DASHBOARD_ADDR=)", memory.off),
        ("dashboard on, nobody watching", memory.on),
        (
            "dashboard on, after a page view and a scrape",
            memory.viewed,
        ),
    ] {
        println!(
            "{label:<46} {:>10} {:>+7.2} MB",
            mb(kb),
            (kb as f64 - off as f64) / 1024.0
        );
    }

    println!(
        "\nrecording one event, ns per call (median of {ROUNDS} rounds × {CALLS} calls; \
         baseline: one relaxed atomic add)"
    );
    println!(
        "{:<34} {:>14} {:>8} {:>20} {:>8}",
        "", "no recorder", "ratio", "Prometheus recorder", "ratio"
    );
    for row in &recording {
        println!(
            "{:<34} {:>14.1} {:>7.1}× {:>20.1} {:>7.1}×",
            row.name,
            row.without_ns,
            row.without_ns / row.baseline_ns,
            row.with_ns,
            row.with_ns / row.baseline_ns
        );
    }
}

struct Memory {
    off: u64,
    on: u64,
    viewed: u64,
}

/// Starts the bot `STARTS` times with the dashboard off and on, alternating, and reads its
/// resident memory once it idles; with the dashboard on, again after one Overview page and
/// one `/metrics` scrape.
async fn idle_memory() -> Memory {
    let mut h = Harness::start(env!("CARGO_BIN_EXE_pi-agent-cli")).await;
    let http = reqwest::Client::new();
    let (mut off, mut on, mut viewed) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..STARTS {
        let mut bot = start_idle(&mut h, "").await;
        off.push(rss_kb(bot.pid()));
        bot.terminate();

        let mut bot = start_idle(&mut h, "127.0.0.1:0").await;
        on.push(rss_kb(bot.pid()));
        let base = bot.dashboard_url().await;
        for path in ["/", "/metrics"] {
            let response = http.get(format!("{base}{path}")).send().await.unwrap();
            assert!(response.status().is_success(), "{path}: {response:?}");
            response.text().await.unwrap();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        viewed.push(rss_kb(bot.pid()));
        bot.terminate();
    }
    Memory {
        off: median(off),
        on: median(on),
        viewed: median(viewed),
    }
}

/// A bot with `DASHBOARD_ADDR=dashboard`, polling and settled.
async fn start_idle(h: &mut Harness, dashboard: &str) -> RunningBot {
    let polls_before = h.telegram.calls("getUpdates").len();
    let bot = h.bot(&[("DASHBOARD_ADDR", dashboard)]);
    let polling = h
        .telegram
        .wait_for(|t| t.calls("getUpdates").len() > polls_before, PATIENCE)
        .await;
    assert!(polling, "the bot did not start; log:\n{}", h.logs());
    tokio::time::sleep(SETTLE).await;
    bot
}

struct Recording {
    name: &'static str,
    baseline_ns: f64,
    without_ns: f64,
    with_ns: f64,
}

/// Each recording function the bot calls per message, timed before and after the
/// Prometheus recorder is installed (the order the bot itself goes through: it installs
/// the recorder when the dashboard starts).
fn recording_costs() -> Vec<Recording> {
    let events: [(&'static str, fn()); 4] = [
        ("telemetry::stage_call", || {
            telemetry::stage_call(
                black_box("persona"),
                Role::Formatter.label(),
                black_box(Duration::from_micros(350)),
                None,
            )
        }),
        ("telemetry::stage_call (failed)", || {
            // As the pipeline records one: the failure's kind kept for the Pipeline page.
            let kind = FailureKind::Timeout(Duration::from_secs(2));
            let failure = telemetry::StageFailure {
                label: kind.label(),
                detail: std::sync::Arc::new(kind),
            };
            telemetry::stage_call(
                black_box("persona"),
                Role::Formatter.label(),
                black_box(Duration::from_millis(2)),
                Some(&failure),
            )
        }),
        ("telemetry::message", || {
            telemetry::message(black_box(MessageOutcome::Answered))
        }),
        ("telemetry::telegram_request", || {
            telemetry::telegram_request("sendMessage", black_box(&Ok::<(), ()>(())))
        }),
    ];
    let without: Vec<(f64, f64)> = events
        .iter()
        .map(|(_, event)| (ns_per_call(atomic_add), ns_per_call(*event)))
        .collect();
    telemetry::prometheus::install();
    events
        .iter()
        .zip(without)
        .map(|((name, event), (baseline_before, without_ns))| {
            let baseline_after = ns_per_call(atomic_add);
            Recording {
                name,
                baseline_ns: (baseline_before + baseline_after) / 2.0,
                without_ns,
                with_ns: ns_per_call(*event),
            }
        })
        .collect()
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn atomic_add() {
    COUNTER.fetch_add(black_box(1), Ordering::Relaxed);
}

/// Median nanoseconds per call of `event` over `ROUNDS` rounds of `CALLS` calls.
fn ns_per_call(event: fn()) -> f64 {
    let mut rounds: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..CALLS {
                event();
            }
            started.elapsed().as_nanos() as f64 / f64::from(CALLS)
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[ROUNDS / 2]
}

fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values[values.len() / 2]
}
