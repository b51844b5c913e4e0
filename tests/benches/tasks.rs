//! Benchmark: what 1,000 scheduled tasks across 100 chats cost the idle bot — the real
//! `pi-agent run` (release build) against the fake Telegram and Ollama on loopback. The
//! scheduler keeps no task in memory and sleeps on one timer until the next is due, so
//! neither its CPU time nor its memory should grow with the number of tasks.
//! Run with `just bench-tasks` (or `cargo bench -p pi-agent-tests -- tasks`).
//!
//! Idle CPU is measured over `IDLE` with nothing to do but the long polls (the fake
//! Telegram holds each `getUpdates` for 2 s, so the bot polls more often than against the
//! real one, where it waits 25 s): the same before and after the tasks are added, a
//! baseline measured in the same run. Each phase is measured `ROUNDS` times; medians.

use std::time::Duration;

use pi_agent_tests::bot::{Harness, PATIENCE};
use pi_agent_tests::proc_stats::{cpu_time, mb, rss_kb};

const CHATS: i64 = 100;
const TASKS_PER_CHAT: i64 = 10;
/// Private chats 4001..=4100; each id is both the chat and the user.
const FIRST_CHAT: i64 = 4001;
const IDLE: Duration = Duration::from_secs(10);
const ROUNDS: usize = 3;
const SETTLE: Duration = Duration::from_secs(3);

#[tokio::main(flavor = "multi_thread")]
pub async fn main() {
    let mut h = Harness::start(env!("CARGO_BIN_EXE_pi-agent-cli")).await;
    let allowed = (FIRST_CHAT..FIRST_CHAT + CHATS)
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let bot = h.bot(&[("TELEGRAM_ALLOWED_USERS", &allowed)]);
    h.wait_until_polling().await;
    tokio::time::sleep(SETTLE).await;
    let pid = bot.pid();
    let before = idle(pid).await;

    // Half reminders, half recurring prompts, all far off: nothing fires during the run.
    for chat in FIRST_CHAT..FIRST_CHAT + CHATS {
        for n in 0..TASKS_PER_CHAT {
            let command = if n % 2 == 0 {
                format!("/remind 2030-01-0{} 09:00 reminder {n}", 1 + n / 2)
            } else {
                format!("/every 0 3 29 2 * leap-day prompt {n}")
            };
            h.telegram.push_message(chat, chat, &command);
        }
    }
    let total = (CHATS * TASKS_PER_CHAT) as usize;
    let confirmed = |t: &pi_agent_tests::fake_telegram::FakeTelegram| {
        (FIRST_CHAT..FIRST_CHAT + CHATS)
            .map(|c| {
                t.sent_messages(c)
                    .iter()
                    .filter(|m| m.visible_text.contains("(task "))
                    .count()
            })
            .sum::<usize>()
    };
    let added = h
        .telegram
        .wait_for(|t| confirmed(t) == total, PATIENCE * 6)
        .await;
    assert!(
        added,
        "{} of {total} tasks confirmed",
        confirmed(&h.telegram)
    );
    tokio::time::sleep(SETTLE).await;
    let after = idle(pid).await;

    println!("\npi-agent scheduler benchmark: release `pi-agent run`, idle, fakes on loopback");
    println!(
        "{:<34} {:>14} {:>14}",
        "",
        "no tasks",
        format!("{total} tasks")
    );
    println!(
        "{:<34} {:>13.2}% {:>13.2}%",
        format!("idle CPU (median of {ROUNDS} × {IDLE:?})"),
        before.cpu_percent,
        after.cpu_percent
    );
    println!(
        "{:<34} {:>14} {:>14}",
        "RSS (median)",
        mb(before.rss_kb),
        mb(after.rss_kb)
    );
    println!(
        "RSS growth: {:+.2} MB; idle CPU ratio tasks/no tasks: {:.2}",
        (after.rss_kb as f64 - before.rss_kb as f64) / 1024.0,
        after.cpu_percent / before.cpu_percent.max(0.01)
    );
}

struct Idle {
    cpu_percent: f64,
    rss_kb: u64,
}

/// CPU share and resident memory over `ROUNDS` idle periods, medians.
async fn idle(pid: u32) -> Idle {
    let mut cpu = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..ROUNDS {
        let start = cpu_time(pid);
        tokio::time::sleep(IDLE).await;
        cpu.push((cpu_time(pid) - start).as_secs_f64() / IDLE.as_secs_f64() * 100.0);
        rss.push(rss_kb(pid));
    }
    cpu.sort_by(f64::total_cmp);
    rss.sort_unstable();
    Idle {
        cpu_percent: cpu[ROUNDS / 2],
        rss_kb: rss[ROUNDS / 2],
    }
}
