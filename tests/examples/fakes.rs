//! A fake Telegram Bot API and a fake Ollama on loopback, for checking a deployed bot from
//! the outside (`just check-docker` runs the image with docker compose against them).
//!
//! ```text
//! cargo run -p pi-agent-tests --example fakes -- ENV_FILE [--timeout SECS] [--linger SECS]
//! ```
//!
//! Starts both fakes on free loopback ports and writes ENV_FILE (atomically): the token,
//! both URLs, and the allowed and admin users — an `.env` for the bot under test. Then it
//! sends the bot one message from an allowed user, waits up to `--timeout` seconds (default
//! 120) for the answer, prints it and exits 0 — or prints what the bot did and exits 1.
//! With `--linger`, it keeps both fakes serving that long after the answer, so `pi-agent
//! doctor` can be run against them. Needs a bot with host networking to reach 127.0.0.1.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use pi_agent_tests::bot::{FRIEND, OWNER, TOKEN};
use pi_agent_tests::fake_ollama::{FakeOllama, Script};
use pi_agent_tests::fake_telegram::FakeTelegram;

/// What the fake model answers: Markdown, so the reply shows the shaper guest ran.
const REPLY: &str = "**Hello** from <the> container";
/// The reply as the user reads it, and the HTML the telegram-html guest makes of it.
const VISIBLE: &str = "Hello from <the> container";
const HTML: &str = "<b>Hello</b> from &lt;the&gt; container";
/// The persona guest folds its system prompt into the first user turn (Gemma 2 has no
/// system role): the prompt the fake model gets starts with it.
const PERSONA_START: &str = "You are a concise, friendly assistant";

struct Args {
    env_file: PathBuf,
    timeout: Duration,
    linger: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut env_file = None;
    let mut timeout = Duration::from_secs(120);
    let mut linger = Duration::ZERO;
    while let Some(arg) = args.next() {
        let mut seconds = |name: &str| -> Result<Duration, String> {
            args.next()
                .and_then(|v| v.parse().ok())
                .map(Duration::from_secs)
                .ok_or_else(|| format!("{name} needs a number of seconds"))
        };
        match arg.as_str() {
            "--timeout" => timeout = seconds("--timeout")?,
            "--linger" => linger = seconds("--linger")?,
            _ if arg.starts_with('-') => return Err(format!("unknown option {arg}")),
            _ if env_file.is_none() => env_file = Some(PathBuf::from(arg)),
            _ => return Err(format!("unexpected argument {arg}")),
        }
    }
    Ok(Args {
        env_file: env_file.ok_or("usage: fakes ENV_FILE [--timeout SECS] [--linger SECS]")?,
        timeout,
        linger,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let telegram = FakeTelegram::start(TOKEN).await;
    let ollama = FakeOllama::start().await;
    ollama.set_default_script(Script::reply(REPLY));

    let env = format!(
        "# Written by the `fakes` example: a bot configured for its fakes on loopback.\n\
         TELEGRAM_BOT_TOKEN={TOKEN}\n\
         TELEGRAM_API_URL={telegram}\n\
         TELEGRAM_ALLOWED_USERS={FRIEND}\n\
         TELEGRAM_ADMIN_USERS={OWNER}\n\
         OLLAMA_URL={ollama}\n\
         STREAM_EDIT_INTERVAL_MS=200\n\
         SHUTDOWN_GRACE_SECS=5\n\
         RUST_LOG=info\n",
        telegram = telegram.url(),
        ollama = ollama.url(),
    );
    let partial = args.env_file.with_extension("partial");
    if let Err(e) =
        std::fs::write(&partial, env).and_then(|()| std::fs::rename(&partial, &args.env_file))
    {
        eprintln!("cannot write {}: {e}", args.env_file.display());
        return ExitCode::FAILURE;
    }
    println!("fake Telegram: {}", telegram.url());
    println!("fake Ollama:   {}", ollama.url());
    println!("bot settings:  {}", args.env_file.display());

    let started = Instant::now();
    telegram.push_message(FRIEND, FRIEND, "hello from the deployment check");
    let answered = telegram
        .wait_for(
            |tg| {
                tg.sent_messages(FRIEND)
                    .iter()
                    .any(|m| m.visible_text == VISIBLE)
            },
            args.timeout,
        )
        .await;
    if !answered {
        let methods: Vec<String> = telegram.all_calls().into_iter().map(|c| c.method).collect();
        println!(
            "FAILED: no answer within {:?}.\nbot calls: {methods:?}\nmessages: {:#?}\nOllama requests: {}",
            args.timeout,
            telegram.sent_messages(FRIEND),
            ollama.chat_count(),
        );
        return ExitCode::FAILURE;
    }
    let reply = telegram
        .sent_messages(FRIEND)
        .into_iter()
        .find(|m| m.visible_text == VISIBLE)
        .expect("found above");
    let prompt = ollama.chat_requests()[0]["messages"][0]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let shaped = reply.text == HTML && reply.parse_mode.as_deref() == Some("HTML");
    let formatted = prompt.starts_with(PERSONA_START);
    println!(
        "answered in {:.1?}: {} (parse_mode {})",
        started.elapsed(),
        reply.text,
        reply.parse_mode.as_deref().unwrap_or("none")
    );
    println!("prompt: {}…", prompt.chars().take(60).collect::<String>());
    if !(shaped && formatted) {
        println!(
            "FAILED: expected the reply {HTML:?} as HTML (telegram-html guest) and a prompt \
             starting {PERSONA_START:?} (persona guest)"
        );
        return ExitCode::FAILURE;
    }
    println!("ok: one message answered through both guests");
    if !args.linger.is_zero() {
        tokio::time::sleep(args.linger).await;
    }
    ExitCode::SUCCESS
}
