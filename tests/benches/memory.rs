//! Benchmark: the memory of the real `pi-agent run` (release build) over a Pi owner's first
//! day, against the fake Telegram and the fake Ollama on loopback. Prints one table row per
//! moment, one column per binary: this build's, and with `PI_AGENT_BEFORE=<path>` another
//! one (say, a build of an earlier commit) measured the same way in the same run.
//! Run with `just memory` (or `cargo bench -p pi-agent-tests -- memory`).
//!
//! Moments, all `VmRSS` of `/proc/<pid>/status` unless said otherwise:
//! - first start, cold compile cache: 10 s after the first `getUpdates`;
//! - restart, warm cache: 2 s after the first `getUpdates` of a second bot;
//! - after 30 messages: 2 s after the 30th reply (one chat, one message at a time);
//! - after a hot swap that recompiles: a guest replaced by a new build (a custom section
//!   appended, so its hash is new), 10 s after the bot logged the reload;
//! - 50 chats at once: peak (`VmHWM`, reset just before) while 50 chats write at once with
//!   the default settings (one answer at a time), until every chat has its reply.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pi_agent_tests::Scratch;
use pi_agent_tests::bot::{FRIEND, Harness, PATIENCE, RunningBot};
use pi_agent_tests::fake_ollama::Script;
use pi_agent_tests::guests;
use pi_agent_tests::proc_stats::{self, mb, status_kb};

const THIS_BUILD: &str = env!("CARGO_BIN_EXE_pi-agent-cli");
const AFTER_COMPILE: Duration = Duration::from_secs(10);
const SETTLE: Duration = Duration::from_secs(2);
const MESSAGES: usize = 30;
/// Private chats 3001..=3050; each id is both the chat and the user.
const FIRST_CHAT: i64 = 3001;
const CHATS: i64 = 50;

const MOMENTS: [&str; 5] = [
    "first start, cold compile cache (10 s after)",
    "restart, warm compile cache",
    "after 30 messages",
    "after a hot swap that recompiles (10 s after)",
    "50 chats at once, peak",
];

#[tokio::main(flavor = "multi_thread")]
pub async fn main() {
    let mut columns = vec![("this build".to_owned(), measure(THIS_BUILD).await)];
    if let Some(before) = std::env::var("PI_AGENT_BEFORE")
        .ok()
        .filter(|b| !b.is_empty())
    {
        let before: &'static str = before.leak();
        columns.insert(0, ("before".to_owned(), measure(before).await));
    }
    println!(
        "\npi-agent memory benchmark: release `pi-agent run`, default pipeline, fakes on loopback"
    );
    print!("{:<48}", "RSS");
    for (name, _) in &columns {
        print!(" {name:>12}");
    }
    println!();
    for (row, moment) in MOMENTS.iter().enumerate() {
        print!("{moment:<48}");
        for (_, values) in &columns {
            print!(" {:>12}", mb(values[row]));
        }
        println!();
    }
}

/// The five moments for one binary, in kB.
async fn measure(binary: &'static str) -> Vec<u64> {
    let mut h = Harness::start(binary).await;
    let guests_dir = h.scratch.path().join("guests");
    let manifest = own_guests_manifest(&h.scratch, &guests_dir);
    h.use_manifest(manifest);
    h.llm.set_default_script(Script::reply("Fine, **thanks**."));

    let cold = {
        let bot = h.polling_bot(&[]).await;
        tokio::time::sleep(AFTER_COMPILE).await;
        rss_kb(&bot)
    };

    let bot = h.polling_bot(&[]).await;
    tokio::time::sleep(SETTLE).await;
    let warm = rss_kb(&bot);

    for n in 0..MESSAGES {
        h.exchange(FRIEND, &format!("message {n}"), "Fine, thanks.")
            .await;
    }
    tokio::time::sleep(SETTLE).await;
    let after_messages = rss_kb(&bot);

    let reloads = reload_count(&bot);
    let shaper = guests_dir.join("telegram-html.wasm");
    let mut rebuilt = std::fs::read(&shaper).unwrap();
    append_custom_section(&mut rebuilt, "pi-agent-bench", b"a new build");
    let tmp = guests_dir.join(".telegram-html.wasm.tmp");
    std::fs::write(&tmp, &rebuilt).unwrap();
    std::fs::rename(&tmp, &shaper).unwrap();
    let reloaded = h
        .telegram
        .wait_for(|_| reload_count(&bot) > reloads, PATIENCE)
        .await;
    assert!(reloaded, "no reload; log:\n{}", h.logs());
    tokio::time::sleep(AFTER_COMPILE).await;
    let after_swap = rss_kb(&bot);
    drop(bot);

    let users: Vec<String> = chats().map(|c| c.to_string()).collect();
    let users = users.join(",");
    let bot = h
        .polling_bot(&[
            ("TELEGRAM_ALLOWED_USERS", users.as_str()),
            ("QUEUE_CAPACITY", "64"),
        ])
        .await;
    tokio::time::sleep(SETTLE).await;
    std::fs::write(format!("/proc/{}/clear_refs", bot.pid()), "5").expect("resetting VmHWM");
    for chat in chats() {
        h.telegram.push_message(chat, chat, "hello");
    }
    let done = h
        .telegram
        .wait_for(
            |t| {
                chats().all(|c| {
                    t.sent_messages(c)
                        .iter()
                        .any(|m| m.visible_text == "Fine, thanks.")
                })
            },
            Duration::from_secs(120),
        )
        .await;
    assert!(done, "not every chat was answered; log:\n{}", h.logs());
    let peak = status_kb(bot.pid(), "VmHWM:");
    vec![cold, warm, after_messages, after_swap, peak]
}

/// A manifest like the default one, with copies of the guests in `dir`, so the benchmark
/// can replace them.
fn own_guests_manifest(scratch: &Scratch, dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let mut text = std::fs::read_to_string(scratch.default_manifest()).unwrap();
    for (name, built) in [
        ("persona", guests::PERSONA),
        ("telegram-html", guests::TELEGRAM_HTML),
    ] {
        let copy = dir.join(format!("{name}.wasm"));
        std::fs::copy(built, &copy).unwrap();
        text = text.replace(
            &format!("{built:?}"),
            &format!("{:?}", copy.display().to_string()),
        );
    }
    scratch.manifest(&text)
}

fn reload_count(bot: &RunningBot) -> usize {
    let log = std::fs::read_to_string(&bot.log).unwrap_or_default();
    log.matches("pipeline reloaded in").count()
}

/// Appends a custom section: the same guest to run, a new content hash to compile.
fn append_custom_section(component: &mut Vec<u8>, name: &str, payload: &[u8]) {
    let mut body = Vec::new();
    leb128(&mut body, name.len());
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(payload);
    component.push(0);
    leb128(component, body.len());
    component.extend_from_slice(&body);
}

fn leb128(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn chats() -> impl Iterator<Item = i64> {
    FIRST_CHAT..FIRST_CHAT + CHATS
}

fn rss_kb(bot: &RunningBot) -> u64 {
    proc_stats::rss_kb(bot.pid())
}
