//! A test guest that misbehaves on command, to prove the sandbox holds. The command is the
//! last message's text (as a formatter) or the reply's text (as a shaper):
//!
//! `loop`, `alloc` (without bound), `panic`, `huge:<bytes>` (returns that much text),
//! `read-file:<path>`, `read-env`, `read-stdin`, `print` (floods stdout and stderr),
//! `log:<text>` (host log), `log-flood:<lines>`, `sleep:<ms>` (a blocking WASI sleep),
//! `sleep-loop` (sleeps a second at a time, for ever), `wait-forever` (blocks on a
//! pollable that never becomes ready), `exit:<status>`, `honest:<ms>:<mib>` (works that
//! long on that much memory, then answers), `config:<key>` (answers with its config
//! value), `reject:<reason>`, `reply:<text>`;
//! `fetch:<url> <url> …` (GETs each in turn through `wasi:http`, answering one line per
//! request: `<status> <bytes> bytes` or `error: …`), `kv-set:<key>=<value>`,
//! `kv-get:<key>`, `kv-keys:<prefix>`, `json` / `schema:<json>` (asks the model for
//! structured output and passes the prompt on), `context` (answers with the chat context it
//! was called with: `chat <id> zone <time zone> scheduled <task> <due> <late>`, or
//! `scheduled none`);
//! anything else is echoed uppercased, so tests can see that it ran. The config key
//! `always` names a command obeyed on every call instead (`always = "panic"`: a guest that
//! fails from its very first call).

use std::io::Read as _;
use std::time::{Duration, Instant};

use pi_agent_guest::{ChatContext, Formatter, Outcome, Prompt, Reply, Shaper};

struct Hostile;

/// Runs `command` (sent in `ctx`); `Some` is an answer that replaces the normal echo.
fn obey(ctx: &ChatContext, command: &str) -> Option<Outcome> {
    let (verb, arg) = command.split_once(':').unwrap_or((command, ""));
    let answer = |text: String| Some(Outcome::Reply(Reply::plain(text)));
    match verb {
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "alloc" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "panic" => panic!("hostile guest panics on purpose"),
        "huge" => answer("x".repeat(arg.parse().unwrap_or(100_000_000))),
        "read-file" => match std::fs::read_to_string(arg) {
            Ok(text) => answer(format!("LEAKED {arg}: {text}")),
            Err(e) => panic!("cannot read {arg}: {e}"),
        },
        "read-env" => {
            let vars: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
            if vars.is_empty() {
                panic!("environment is empty");
            }
            answer(format!("LEAKED env: {}", vars.join(" ")))
        }
        "print" => {
            for i in 0..10_000 {
                println!("line {i} of a guest that will not stop talking");
                eprintln!("line {i} of a guest that will not stop complaining");
            }
            answer("printed".into())
        }
        "log" => {
            pi_agent_guest::log::warn(arg);
            answer("logged".into())
        }
        "log-flood" => {
            let lines: u64 = arg.parse().unwrap_or(u64::MAX);
            for i in 0..lines {
                pi_agent_guest::log::warn(&format!("log line {i} of a guest flooding the log"));
            }
            answer(format!("logged {lines} lines"))
        }
        "sleep" => {
            std::thread::sleep(Duration::from_millis(arg.parse().unwrap_or(30_000)));
            answer("slept".into())
        }
        "sleep-loop" => loop {
            std::thread::sleep(Duration::from_secs(1));
        },
        // std sleeps on a `subscribe-duration` pollable; this long, the host never wakes it.
        "wait-forever" => {
            std::thread::sleep(Duration::MAX);
            answer("woke up".into())
        }
        "exit" => std::process::exit(arg.parse().unwrap_or(0)),
        "read-stdin" => {
            let mut input = String::new();
            match std::io::stdin().read_to_string(&mut input) {
                Ok(n) => answer(format!("stdin: {n} bytes")),
                Err(e) => answer(format!("stdin: {e}")),
            }
        }
        "honest" => {
            let (ms, mib) = arg.split_once(':').unwrap_or(("50", "20"));
            let (ms, mib): (u64, usize) = (ms.parse().unwrap_or(50), mib.parse().unwrap_or(20));
            let mut memory = vec![0u8; mib << 20];
            let started = Instant::now();
            let mut sum: u64 = 0;
            while started.elapsed() < Duration::from_millis(ms) {
                for (i, byte) in memory.iter_mut().enumerate().step_by(4096) {
                    *byte = byte.wrapping_add(i as u8);
                    sum = sum.wrapping_add(u64::from(*byte));
                }
            }
            answer(format!(
                "worked {ms} ms on {mib} MiB ({})",
                std::hint::black_box(sum) % 10
            ))
        }
        "config" => answer(pi_agent_guest::config(arg).unwrap_or_else(|| "<unset>".into())),
        "fetch" => {
            let lines: Vec<String> = arg
                .split_whitespace()
                .map(|url| match pi_agent_guest::http::get(url) {
                    Ok(response) => format!("{} {} bytes", response.status, response.body.len()),
                    Err(e) => format!("error: {e}"),
                })
                .collect();
            answer(lines.join("\n"))
        }
        "kv-set" => {
            let (key, value) = arg.split_once('=').unwrap_or((arg, ""));
            answer(match pi_agent_guest::kv::set(key, value) {
                Ok(()) => "stored".into(),
                Err(e) => format!("kv error: {e:?}"),
            })
        }
        "kv-get" => answer(match pi_agent_guest::kv::get(arg) {
            Ok(value) => value.unwrap_or_else(|| "<none>".into()),
            Err(e) => format!("kv error: {e:?}"),
        }),
        "kv-keys" => answer(match pi_agent_guest::kv::keys(arg) {
            Ok(keys) => keys.join(","),
            Err(e) => format!("kv error: {e:?}"),
        }),
        "context" => {
            let scheduled = match &ctx.scheduled {
                Some(run) => format!("{} {} {}", run.task_id, run.due_unix_ms, run.late),
                None => "none".into(),
            };
            answer(format!(
                "chat {} zone {} scheduled {scheduled}",
                ctx.chat_id, ctx.time_zone
            ))
        }
        "reject" => Some(Outcome::Reject(arg.into())),
        "reply" => answer(arg.into()),
        _ => None,
    }
}

/// The command for this call: the `always` config, or the message itself.
fn command(text: &str) -> String {
    pi_agent_guest::config("always").unwrap_or_else(|| text.to_owned())
}

impl Formatter for Hostile {
    fn format(ctx: ChatContext, mut prompt: Prompt) -> Outcome {
        let Some(last) = prompt.messages.last() else {
            return Outcome::Prompt(prompt);
        };
        let command = command(&last.content);
        if command == "json" {
            pi_agent_guest::structured::ask_for_json(&mut prompt);
            return Outcome::Prompt(prompt);
        }
        if let Some(schema) = command.strip_prefix("schema:") {
            pi_agent_guest::structured::ask_for_schema(&mut prompt, schema);
            return Outcome::Prompt(prompt);
        }
        let last = prompt.messages.last_mut().expect("checked above");
        if let Some(outcome) = obey(&ctx, &command) {
            return outcome;
        }
        last.content = last.content.to_uppercase();
        Outcome::Prompt(prompt)
    }
}

impl Shaper for Hostile {
    fn shape(ctx: ChatContext, _prompt: Prompt, response: Reply, _done: bool) -> Reply {
        match obey(&ctx, &command(&response.text)) {
            Some(Outcome::Reply(reply)) => reply,
            Some(Outcome::Reject(reason)) => Reply::plain(format!("rejected: {reason}")),
            Some(Outcome::Prompt(_)) | None => Reply {
                text: response.text.to_uppercase(),
                ..response
            },
        }
    }
}

pi_agent_guest::export_stage!(Hostile);
