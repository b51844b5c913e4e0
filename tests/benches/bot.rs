//! Benchmark: the real `pi-agent run` (release build) against the fake Telegram and the fake
//! Ollama on loopback. Reports (does not assert) the bot's idle memory, and its memory and
//! added latency with 50 chats writing at once, next to a minimal long-poll client measured
//! over the same fake in the same run. Run with `cargo bench -p pi-agent-tests -- bot`.
//!
//! Definitions:
//! - idle RSS: `VmRSS` of `/proc/<pid>/status`, 2 s after the bot's first `getUpdates`.
//! - host-added latency, per chat: (arrival at the fake Telegram of the bot's first
//!   `sendMessage` to that chat carrying reply text) − (the instant just before the test pushed
//!   the user's message) − (the fake Ollama's delay before its first token: load delay + one
//!   token delay). Typing indicators and "⏳ … ahead of yours" notices do not count as reply
//!   text.
//! - baseline, per chat: the same push → `sendMessage` arrival, for a client that long-polls
//!   `getUpdates` and, per update, immediately sends a `sendMessage` (hand-written HTTP/1.1
//!   over keep-alive connections, one per concurrent request; no LLM, no storage).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pi_agent_tests::bot::{Harness, PATIENCE, TOKEN};
use pi_agent_tests::fake_ollama::Script;
use pi_agent_tests::fake_telegram::{Call, FakeTelegram};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const BINARY: &str = env!("CARGO_BIN_EXE_pi-agent-cli");
/// Private chats 2001..=2050; each id is both the chat and the user.
const FIRST_CHAT: i64 = 2001;
const CHATS: i64 = 50;
const ROUNDS: usize = 3;
const IDLE_BOTS: usize = 3;
const IDLE_WAIT: Duration = Duration::from_secs(2);
/// The fake Ollama waits this long before its response headers ...
const LOAD_DELAY: Duration = Duration::from_millis(100);
/// ... and this long before every token line, the first one included.
const TOKEN_DELAY: Duration = Duration::from_millis(5);
const FIRST_TOKEN_DELAY: Duration = LOAD_DELAY.saturating_add(TOKEN_DELAY);
const REPLY_TOKENS: usize = 40;
const ROUND_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::main(flavor = "multi_thread")]
pub async fn main() {
    let mut h = Harness::start(BINARY).await;

    // 1. Idle: three fresh bots one after the other (same data directory, as restarts on a
    //    Pi: the first compiles the guests, the others load them from the compile cache).
    let mut idle = Vec::new();
    for _ in 0..IDLE_BOTS {
        let polls_before = h.telegram.calls("getUpdates").len();
        let spawned = Instant::now();
        let bot = h.bot(&[]);
        let pid = bot.pid();
        let polling = h
            .telegram
            .wait_for(|t| t.calls("getUpdates").len() > polls_before, PATIENCE)
            .await;
        assert!(polling, "the bot never polled; log:\n{}", h.logs());
        let startup = spawned.elapsed();
        tokio::time::sleep(IDLE_WAIT).await;
        let memory = Memory::read(pid);
        idle.push((memory, startup));
        drop(bot);
    }

    // 2. Fifty chats at once, three rounds on one bot.
    let users: Vec<String> = chats().map(|id| id.to_string()).collect();
    let users = users.join(",");
    let polls_before = h.telegram.calls("getUpdates").len();
    let bot = h.bot(&[
        ("TELEGRAM_ALLOWED_USERS", users.as_str()),
        ("LLM_CONCURRENCY", "50"),
        ("QUEUE_CAPACITY", "100"),
        ("STREAM_EDIT_INTERVAL_MS", "100"),
    ]);
    let pid = bot.pid();
    let polling = h
        .telegram
        .wait_for(|t| t.calls("getUpdates").len() > polls_before, PATIENCE)
        .await;
    assert!(polling, "the bot never polled; log:\n{}", h.logs());
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut rounds = Vec::new();
    let mut hwm_reset_works = true;
    for round in 1..=ROUNDS {
        let reply = reply_text(round);
        h.llm.set_default_script(
            Script::reply(reply.clone())
                .with_load_delay(LOAD_DELAY)
                .with_token_delay(TOKEN_DELAY),
        );
        hwm_reset_works &= reset_peak(pid);
        let sampler = RssSampler::start(pid);
        let pushed: Vec<(i64, Instant)> = chats()
            .map(|chat| {
                let at = Instant::now();
                h.telegram.push_message(
                    chat,
                    chat,
                    &format!("round {round}: hello from chat {chat}"),
                );
                (chat, at)
            })
            .collect();
        let done = h
            .telegram
            .wait_for(
                |t| {
                    chats().all(|chat| {
                        t.sent_messages(chat)
                            .iter()
                            .any(|m| m.visible_text == reply)
                    })
                },
                ROUND_TIMEOUT,
            )
            .await;
        let burst = pushed[0].1.elapsed();
        assert!(
            done,
            "round {round}: not every chat got its whole reply; log:\n{}",
            h.logs()
        );
        let sampled_peak = sampler.stop();
        let during = Memory::read(pid);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = Memory::read(pid);

        let sends = h.telegram.calls("sendMessage");
        let typing = h.telegram.calls("sendChatAction");
        let prefix = first_token(round);
        let mut latencies = Vec::new();
        let mut to_typing = Vec::new();
        let mut notices = 0;
        let mut to_notice = Vec::new();
        for &(chat, at) in &pushed {
            let to_chat = |call: &&Call| chat_of(call) == Some(chat) && call.at >= at;
            let first = sends
                .iter()
                .filter(to_chat)
                .find(|c| c.params["text"].as_str().unwrap_or("").starts_with(&prefix))
                .expect("a reply was sent");
            latencies.push(ms(first.at - at) - ms(FIRST_TOKEN_DELAY));
            let is_notice = |c: &&Call| c.params["text"].as_str().unwrap_or("").starts_with('⏳');
            notices += sends.iter().filter(to_chat).filter(is_notice).count();
            if let Some(n) = sends.iter().filter(to_chat).find(is_notice) {
                to_notice.push(ms(n.at - at));
            }
            if let Some(t) = typing.iter().find(to_chat) {
                to_typing.push(ms(t.at - at));
            }
        }
        rounds.push(Round {
            latencies,
            to_typing,
            to_notice,
            notices,
            peak_kb: if hwm_reset_works {
                during.hwm_kb
            } else {
                sampled_peak
            },
            sampled_peak_kb: sampled_peak,
            after_kb: after.rss_kb,
            burst,
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let bot_log = h.logs();
    drop(bot);

    // 3. Baseline: a minimal long-poll client over a fresh fake Telegram, same pushes.
    let baseline = baseline().await;

    report(&idle, &rounds, &baseline, hwm_reset_works, &bot_log);
}

fn chats() -> impl Iterator<Item = i64> {
    FIRST_CHAT..FIRST_CHAT + CHATS
}

fn first_token(round: usize) -> String {
    format!("R{round}")
}

/// `R<round> w1 w2 … w39`: 40 tokens for the fake Ollama's word-sized tokenizer.
fn reply_text(round: usize) -> String {
    let mut text = first_token(round);
    for i in 1..REPLY_TOKENS {
        text.push_str(&format!(" w{i}"));
    }
    text
}

fn chat_of(call: &Call) -> Option<i64> {
    match &call.params["chat_id"] {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

struct Round {
    /// Host-added latency per chat, ms.
    latencies: Vec<f64>,
    /// Push → first typing indicator per chat, ms.
    to_typing: Vec<f64>,
    /// Push → "⏳ … ahead of yours" notice, for the chats that got one, ms.
    to_notice: Vec<f64>,
    /// "⏳ … ahead of yours" notices sent in this round.
    notices: usize,
    peak_kb: u64,
    sampled_peak_kb: u64,
    after_kb: u64,
    /// First push → last chat's complete reply.
    burst: Duration,
}

#[derive(Clone, Copy)]
struct Memory {
    rss_kb: u64,
    hwm_kb: u64,
}

impl Memory {
    fn read(pid: u32) -> Self {
        let status =
            std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the bot's status");
        Self {
            rss_kb: status_kb(&status, "VmRSS:").expect("VmRSS"),
            hwm_kb: status_kb(&status, "VmHWM:").expect("VmHWM"),
        }
    }
}

fn status_kb(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

/// Resets VmHWM to the current RSS (`echo 5 > /proc/<pid>/clear_refs`, Linux ≥ 4.0).
fn reset_peak(pid: u32) -> bool {
    let before = Memory::read(pid);
    if std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_err() {
        return false;
    }
    Memory::read(pid).hwm_kb <= before.hwm_kb
}

/// Reads VmRSS every 5 ms, as a cross-check of VmHWM (and the fallback without it).
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let thread = std::thread::spawn({
            let (stop, peak) = (stop.clone(), peak.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(Memory::read(pid).rss_kb, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        });
        Self { stop, peak, thread }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("sampler");
        self.peak.load(Ordering::Relaxed)
    }
}

/// One HTTP/1.1 keep-alive connection to the fake Telegram.
struct Conn {
    stream: BufReader<TcpStream>,
    host: String,
}

impl Conn {
    async fn connect(host: &str) -> Self {
        let stream = TcpStream::connect(host).await.expect("connecting");
        stream.set_nodelay(true).expect("nodelay");
        Self {
            stream: BufReader::new(stream),
            host: host.to_owned(),
        }
    }

    /// `POST /bot<token>/<method>` with a JSON body; returns `result`.
    async fn call(&mut self, method: &str, body: &Value) -> Value {
        let body = body.to_string();
        let request = format!(
            "POST /bot{TOKEN}/{method} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.host,
            body.len()
        );
        self.stream
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .expect("writing");
        let mut status = String::new();
        self.stream.read_line(&mut status).await.expect("reading");
        assert!(status.starts_with("HTTP/1.1 200"), "{method}: {status:?}");
        let mut length = None;
        loop {
            let mut line = String::new();
            let n = self.stream.read_line(&mut line).await.expect("reading");
            assert!(n > 0, "connection closed mid-response");
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse::<usize>().ok();
            }
        }
        let mut response = vec![0; length.expect("a Content-Length")];
        self.stream
            .read_exact(&mut response)
            .await
            .expect("reading");
        let mut response: Value = serde_json::from_slice(&response).expect("JSON");
        assert_eq!(response["ok"], true, "{method}: {response}");
        response["result"].take()
    }
}

/// Long-polls `getUpdates` and answers every update at once with a `sendMessage`.
async fn baseline_client(host: String) {
    let pool: Arc<Mutex<Vec<Conn>>> = Arc::default();
    let mut poll = Conn::connect(&host).await;
    let mut offset = 0;
    loop {
        let updates = poll
            .call("getUpdates", &json!({ "offset": offset, "timeout": 25 }))
            .await;
        for update in updates.as_array().into_iter().flatten() {
            offset = update["update_id"].as_i64().expect("update_id") + 1;
            let message = &update["message"];
            let (chat, id) = (message["chat"]["id"].clone(), message["message_id"].clone());
            let (pool, host) = (pool.clone(), host.clone());
            tokio::spawn(async move {
                let idle = pool.lock().unwrap().pop();
                let mut conn = match idle {
                    Some(conn) => conn,
                    None => Conn::connect(&host).await,
                };
                let body = json!({
                    "chat_id": chat, "text": "ok",
                    "reply_parameters": { "message_id": id, "allow_sending_without_reply": true },
                });
                conn.call("sendMessage", &body).await;
                pool.lock().unwrap().push(conn);
            });
        }
    }
}

/// Push → `sendMessage` arrival per chat, ms, over all rounds.
async fn baseline() -> Vec<f64> {
    let telegram = FakeTelegram::start(TOKEN).await;
    let url = telegram.url();
    let host = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    let client = tokio::spawn(baseline_client(host));
    let polling = telegram
        .wait_for(|t| !t.calls("getUpdates").is_empty(), PATIENCE)
        .await;
    assert!(polling, "the baseline client never polled");
    let mut latencies = Vec::new();
    for round in 1..=ROUNDS {
        let pushed: Vec<(i64, Instant)> = chats()
            .map(|chat| {
                let at = Instant::now();
                telegram.push_message(
                    chat,
                    chat,
                    &format!("round {round}: hello from chat {chat}"),
                );
                (chat, at)
            })
            .collect();
        let done = telegram
            .wait_for(
                |t| chats().all(|chat| t.sent_messages(chat).len() >= round),
                ROUND_TIMEOUT,
            )
            .await;
        assert!(done, "baseline round {round} incomplete");
        let sends = telegram.calls("sendMessage");
        for &(chat, at) in &pushed {
            let first = sends
                .iter()
                .find(|c| chat_of(c) == Some(chat) && c.at >= at)
                .expect("a baseline reply");
            latencies.push(ms(first.at - at));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    client.abort();
    latencies
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

struct Stats {
    p50: f64,
    p99: f64,
    max: f64,
}

impl Stats {
    fn of(values: &[f64]) -> Self {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        Self {
            p50: v[n / 2],
            p99: v[(n * 99 / 100).min(n - 1)],
            max: v[n - 1],
        }
    }
}

fn median<T: Copy + PartialOrd>(values: impl IntoIterator<Item = T>) -> T {
    let mut v: Vec<T> = values.into_iter().collect();
    v.sort_by(|a, b| a.partial_cmp(b).expect("comparable"));
    v[v.len() / 2]
}

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

fn latency_row(label: &str, values: &[f64]) {
    let s = Stats::of(values);
    println!("{label:<64} {:>9.1} {:>9.1} {:>9.1}", s.p50, s.p99, s.max);
}

fn report(
    idle: &[(Memory, Duration)],
    rounds: &[Round],
    baseline: &[f64],
    hwm_reset_works: bool,
    bot_log: &str,
) {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "\npi-agent bot benchmark: release `pi-agent run` (default pipeline) vs fake Telegram + fake Ollama on loopback, {cpus} CPUs"
    );
    // One row: a label, the median of the figures, then each figure.
    let row = |label: &str, figures: &[String], median: String, note: &str| {
        println!("{label:<64} {median:>12}   [{}]{note}", figures.join(", "));
    };
    let memory_row = |label: &str, kb: Vec<u64>, note: &str| {
        let figures: Vec<String> = kb.iter().map(|&k| mb(k)).collect();
        row(label, &figures, mb(median(kb)), note);
    };
    println!("{:<64} {:>12}   each", "memory", "median");
    memory_row(
        &format!("idle RSS (VmRSS 2 s after first getUpdates), {IDLE_BOTS} fresh bots"),
        idle.iter().map(|(m, _)| m.rss_kb).collect(),
        "   target ≤ 20 MB",
    );
    memory_row(
        "idle VmHWM (peak since start, pipeline load included)",
        idle.iter().map(|(m, _)| m.hwm_kb).collect(),
        "",
    );
    let starts: Vec<f64> = idle.iter().map(|(_, d)| ms(*d)).collect();
    row(
        "start → first getUpdates (1st compiles guests, then cache)",
        &starts
            .iter()
            .map(|t| format!("{t:.0} ms"))
            .collect::<Vec<_>>(),
        format!("{:.0} ms", median(starts.iter().copied())),
        "",
    );
    let peak_label = if hwm_reset_works {
        "peak RSS during a burst (VmHWM, reset before each round)"
    } else {
        "peak RSS during a burst (VmRSS sampled every 5 ms)"
    };
    memory_row(peak_label, rounds.iter().map(|r| r.peak_kb).collect(), "");
    memory_row(
        "  cross-check: VmRSS sampled every 5 ms, max",
        rounds.iter().map(|r| r.sampled_peak_kb).collect(),
        "",
    );
    memory_row(
        "RSS 1 s after a burst (VmRSS)",
        rounds.iter().map(|r| r.after_kb).collect(),
        "",
    );

    let n = rounds.len() * CHATS as usize;
    println!(
        "\n{CHATS} chats at once, {} rounds on one bot: LLM_CONCURRENCY=50 (no queueing behind the LLM, so it does not mask host overhead), STREAM_EDIT_INTERVAL_MS=100, QUEUE_CAPACITY=100; fake Ollama: {REPLY_TOKENS}-token reply, first token after {} ms ({} ms load + {} ms token)",
        rounds.len(),
        FIRST_TOKEN_DELAY.as_millis(),
        LOAD_DELAY.as_millis(),
        TOKEN_DELAY.as_millis()
    );
    println!(
        "{:<64} {:>9} {:>9} {:>9}",
        "latency, ms", "p50", "p99", "max"
    );
    let all: Vec<f64> = rounds.iter().flat_map(|r| r.latencies.clone()).collect();
    latency_row(
        &format!("host-added: push → first reply text − first-token delay, n={n}"),
        &all,
    );
    for (i, r) in rounds.iter().enumerate() {
        latency_row(&format!("  round {}, n={CHATS}", i + 1), &r.latencies);
    }
    let typing: Vec<f64> = rounds.iter().flat_map(|r| r.to_typing.clone()).collect();
    latency_row(
        &format!(
            "push → first typing indicator (sendChatAction), n={}",
            typing.len()
        ),
        &typing,
    );
    let notice: Vec<f64> = rounds.iter().flat_map(|r| r.to_notice.clone()).collect();
    if !notice.is_empty() {
        latency_row(
            &format!("push → \"⏳ … ahead of yours\" notice, n={}", notice.len()),
            &notice,
        );
    }
    latency_row(
        &format!(
            "baseline: minimal long-poll client, push → sendMessage, n={}",
            baseline.len()
        ),
        baseline,
    );
    let bot_p50 = Stats::of(&all).p50;
    let base_p50 = Stats::of(baseline).p50;
    println!(
        "{:<64} {:>8.1}x",
        "ratio host-added / baseline (p50)",
        bot_p50 / base_p50.max(1e-3)
    );
    println!(
        "{:<64} {:>9.1}   target ≤ 50 ms",
        "host-added p50, ms", bot_p50
    );
    println!(
        "{:<64} {:>9}",
        "burst: first push → last complete reply, median of rounds",
        format!("{:.0} ms", median(rounds.iter().map(|r| ms(r.burst))))
    );
    println!(
        "{:<64} {:>9}",
        "\"⏳ … ahead of yours\" notices sent, per round",
        rounds
            .iter()
            .map(|r| r.notices.to_string())
            .collect::<Vec<_>>()
            .join("/")
    );
    let warnings = bot_log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .count();
    println!(
        "{:<64} {:>9}",
        "WARN/ERROR lines in the bots' logs (all 4 bots)", warnings
    );
}
