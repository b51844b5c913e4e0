//! End to end: the real `pi-agent run` with the real default guests, against a fake
//! Telegram Bot API and a fake model server on loopback — every test twice, once against the
//! fake Ollama (`ollama::…`) and once against the fake OpenAI-compatible server
//! (`openai::…`), except `doctor`'s, which checks Ollama by name.

use std::time::{Duration, Instant};

use pi_agent::chat::MAX_ATTEMPTS;
use pi_agent_tests::bot::{FRIEND, Harness, OWNER, PATIENCE, RunningBot, STRANGER, TOKEN};
use pi_agent_tests::fake_llm::Backend;
use pi_agent_tests::fake_ollama::{Script, unused_url};
use pi_agent_tests::fake_telegram::{Failure, SentMessage, validate_html};
use pi_agent_tests::guests;
use pi_agent_tests::model_runner::RunnerSettings;

async fn harness(backend: Backend) -> Harness {
    Harness::with_backend(env!("CARGO_BIN_EXE_pi-agent-cli"), backend).await
}

fn user_messages(request: &serde_json::Value) -> Vec<String> {
    request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect()
}

async fn a_streamed_reply_arrives_shaped_as_html(backend: Backend) {
    let mut h = harness(backend).await;
    h.llm.push_script(
        Script::reply("**Hello** from <the> Pi & co. ".repeat(6))
            .with_token_delay(Duration::from_millis(40)),
    );
    let _bot = h.bot(&[]);
    h.telegram.push_message(FRIEND, FRIEND, "hi");
    let expected = "<b>Hello</b> from &lt;the&gt; Pi &amp; co.";
    let reply = h
        .wait_for_message(FRIEND, |m| m.text.matches("<b>Hello</b>").count() == 6)
        .await;
    assert!(reply.text.starts_with(expected), "{}", reply.text);
    assert_eq!(reply.parse_mode.as_deref(), Some("HTML"));
    assert!(validate_html(&reply.text).is_ok());
    assert!(
        reply.edits >= 1,
        "the reply streams in through edits: {reply:?}"
    );
    assert!(
        !h.telegram.calls("sendChatAction").is_empty(),
        "typing is shown while waiting"
    );
    let commands: Vec<String> = h
        .telegram
        .bot_commands()
        .into_iter()
        .map(|(c, _)| c)
        .collect();
    assert_eq!(
        commands,
        [
            "start", "help", "reset", "model", "status", "stop", "remind", "every", "tasks",
            "cancel", "timezone", "reload"
        ]
    );
    // The prompt went through the persona guest: system prompt folded into the user turn.
    let request = &h.llm.chat_requests()[0];
    assert!(
        user_messages(request)[0].starts_with("You are a concise, friendly assistant"),
        "{request}"
    );
}

async fn a_stranger_gets_only_their_id(backend: Backend) {
    let mut h = harness(backend).await;
    let _bot = h.bot(&[]);
    h.telegram.push_message(STRANGER, STRANGER, "let me in");
    let reply = h.wait_for_message(STRANGER, |_| true).await;
    assert!(
        reply.text.contains(&STRANGER.to_string()) && reply.text.contains("TELEGRAM_ALLOWED_USERS"),
        "{}",
        reply.text
    );
    h.telegram.push_message(STRANGER, STRANGER, "please?");
    h.wait_until_acknowledged().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        h.telegram.sent_messages(STRANGER).len(),
        1,
        "told once, then ignored"
    );
    assert_eq!(h.llm.chat_count(), 0, "strangers never reach the LLM");
}

async fn reset_forgets_the_history(backend: Backend) {
    let mut h = harness(backend).await;
    let _bot = h.bot(&[]);
    h.llm.push_script(Script::reply("first answer"));
    h.telegram.push_message(FRIEND, FRIEND, "first question");
    h.wait_for_message(FRIEND, |m| m.visible_text == "first answer")
        .await;
    h.llm.push_script(Script::reply("second answer"));
    h.telegram.push_message(FRIEND, FRIEND, "second question");
    h.wait_for_message(FRIEND, |m| m.visible_text == "second answer")
        .await;
    let with_history = user_messages(&h.llm.chat_requests()[1]);
    assert_eq!(
        with_history.len(),
        3,
        "history + new message: {with_history:?}"
    );

    h.telegram.push_message(FRIEND, FRIEND, "/reset");
    h.wait_for_message(FRIEND, |m| m.text.contains("forgotten"))
        .await;
    h.llm.push_script(Script::reply("third answer"));
    h.telegram.push_message(FRIEND, FRIEND, "third question");
    h.wait_for_message(FRIEND, |m| m.visible_text == "third answer")
        .await;
    let after_reset = user_messages(&h.llm.chat_requests()[2]);
    assert_eq!(after_reset.len(), 1, "{after_reset:?}");
    assert!(after_reset[0].ends_with("third question"));
}

async fn model_lists_and_switches_per_chat(backend: Backend) {
    let mut h = harness(backend).await;
    h.llm.set_installed_models(&["gemma2:2b", "qwen2.5:1.5b"]);
    let _bot = h.bot(&[]);
    h.telegram.push_message(FRIEND, FRIEND, "/model");
    h.wait_for_message(FRIEND, |m| {
        m.text.contains("This chat uses gemma2:2b") && m.text.contains("qwen2.5:1.5b")
    })
    .await;
    h.telegram.push_message(FRIEND, FRIEND, "/model llama9:70b");
    h.wait_for_message(FRIEND, |m| m.text.contains("ollama pull llama9:70b"))
        .await;
    h.telegram
        .push_message(FRIEND, FRIEND, "/model qwen2.5:1.5b");
    h.wait_for_message(FRIEND, |m| m.text.contains("now uses qwen2.5:1.5b"))
        .await;
    h.telegram.push_message(FRIEND, FRIEND, "which model?");
    h.wait_for_message(FRIEND, |m| m.visible_text.ends_with("which model?"))
        .await;
    assert_eq!(h.llm.chat_requests()[0]["model"], "qwen2.5:1.5b");
    // Another chat keeps the default.
    h.telegram.push_message(OWNER, OWNER, "and here?");
    h.wait_for_message(OWNER, |m| m.visible_text.ends_with("and here?"))
        .await;
    assert_eq!(h.llm.chat_requests()[1]["model"], "gemma2:2b");
}

async fn stop_cancels_the_running_generation(backend: Backend) {
    let mut h = harness(backend).await;
    h.llm.push_script(
        Script::reply("word ".repeat(400)).with_token_delay(Duration::from_millis(50)),
    );
    let _bot = h.bot(&[]);
    h.telegram
        .push_message(FRIEND, FRIEND, "tell me a long story");
    h.wait_for_message(FRIEND, |m| m.text.starts_with("word"))
        .await;
    h.telegram.push_message(FRIEND, FRIEND, "/stop");
    h.wait_for_message(FRIEND, |m| m.text.contains("Stopped"))
        .await;
    assert!(
        h.llm.wait_for_cancelled(1, PATIENCE).await,
        "Ollama saw the stream closed"
    );
    let partial = &h.telegram.sent_messages(FRIEND)[0];
    assert!(
        partial.visible_text.split_whitespace().count() < 400,
        "only part of the story was told"
    );
}

async fn a_10000_character_reply_is_split(backend: Backend) {
    let mut h = harness(backend).await;
    let paragraph =
        "This sentence is part of a very long answer about the Raspberry Pi. ".repeat(15);
    let reply: String = (0..10).map(|i| format!("{i} {paragraph}\n\n")).collect();
    assert!(reply.len() > 10_000);
    h.llm.push_script(Script::reply(reply.clone()));
    let _bot = h.bot(&[]);
    h.telegram
        .push_message(FRIEND, FRIEND, "tell me everything");
    let words = |t: &pi_agent_tests::fake_telegram::FakeTelegram| {
        t.sent_messages(FRIEND)
            .iter()
            .map(|m| m.visible_text.split_whitespace().count())
            .sum::<usize>()
    };
    let expected = reply.split_whitespace().count();
    let complete = h
        .telegram
        .wait_for(|t| words(t) == expected, PATIENCE)
        .await;
    assert!(
        complete,
        "nothing lost at the splits: {} of {expected} words shown",
        words(&h.telegram)
    );
    let messages = h.telegram.sent_messages(FRIEND);
    assert!(messages.len() >= 3, "{} messages", messages.len());
    for m in &messages {
        assert!(m.visible_text.encode_utf16().count() <= 4096);
        assert!(validate_html(&m.text).is_ok());
    }
}

async fn rejected_html_is_resent_as_plain_text(backend: Backend) {
    let mut h = harness(backend).await;
    h.llm.push_script(Script::reply("**bold** and `code`"));
    let _bot = h.bot(&[]);
    h.telegram.fail_next(
        "sendMessage",
        Failure::BadRequest("can't parse entities: Unsupported start tag \"b\"".into()),
    );
    h.telegram.push_message(FRIEND, FRIEND, "format something");
    let reply = h
        .wait_for_message(FRIEND, |m| m.visible_text == "bold and code")
        .await;
    assert_eq!(reply.parse_mode, None, "sent as plain text: {reply:?}");
    assert!(h.logs().contains("rejected the HTML"));
}

async fn a_429_on_an_edit_is_waited_out(backend: Backend) {
    let mut h = harness(backend).await;
    h.llm
        .push_script(Script::reply("tick ".repeat(60)).with_token_delay(Duration::from_millis(30)));
    let _bot = h.bot(&[]);
    h.telegram.fail_next(
        "editMessageText",
        Failure::TooManyRequests {
            retry_after_secs: 2,
        },
    );
    h.telegram.push_message(FRIEND, FRIEND, "count");
    h.wait_for_message(FRIEND, |m| m.visible_text.split_whitespace().count() == 60)
        .await;
    let edits = h.telegram.calls("editMessageText");
    let throttled = edits[0].at;
    assert!(
        edits[1..]
            .iter()
            .all(|e| e.at.duration_since(throttled) >= Duration::from_millis(1900)),
        "no edit within retry_after of the 429"
    );
}

async fn the_model_server_down_is_explained_and_the_bot_keeps_serving(backend: Backend) {
    let mut h = harness(backend).await;
    let url = unused_url();
    let _bot = h.bot(&[(h.llm.url_variable(), &url)]);
    h.telegram.push_message(FRIEND, FRIEND, "hello?");
    h.wait_for_message(FRIEND, |m| m.text.contains("not reachable"))
        .await;
    h.telegram.push_message(FRIEND, FRIEND, "/help");
    h.wait_for_message(FRIEND, |m| m.text.contains("/reset"))
        .await;
}

async fn an_error_mid_stream_and_a_stall_are_explained_and_the_bot_keeps_serving(backend: Backend) {
    let mut h = harness(backend).await;
    h.llm.push_script(Script::error_mid_stream(
        3,
        "llama runner process has terminated",
    ));
    h.llm.push_script(Script::stall(2));
    let _bot = h.bot(&[("OLLAMA_IDLE_TIMEOUT_SECS", "1")]);
    h.telegram.push_message(FRIEND, FRIEND, "one");
    h.wait_for_message(FRIEND, |m| {
        m.text.contains("llama runner process has terminated")
    })
    .await;
    h.telegram.push_message(FRIEND, FRIEND, "two");
    h.wait_for_message(FRIEND, |m| {
        m.text.contains("the model server stopped answering for 1s")
    })
    .await;
    h.telegram.push_message(FRIEND, FRIEND, "three");
    h.wait_for_message(FRIEND, |m| m.visible_text.ends_with("three"))
        .await;
}

async fn groups_are_answered_only_when_addressed(backend: Backend) {
    let mut h = harness(backend).await;
    let _bot = h.bot(&[]);
    let group = -4242;
    h.telegram
        .push_message(group, FRIEND, "just chatting among humans");
    h.telegram
        .push_message(group, FRIEND, "@pi_agent_test_bot what time is it?");
    let reply = h
        .wait_for_message(group, |m| m.visible_text.ends_with("time is it?"))
        .await;
    assert!(
        reply.visible_text.ends_with("\n\nwhat time is it?"),
        "the mention is removed: {}",
        reply.visible_text
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.llm.chat_count(), 1, "the unaddressed message was ignored");
}

async fn pending_messages_survive_kill_9_and_are_answered_once(backend: Backend) {
    let mut h = harness(backend).await;
    // The first run's model never answers: everything it accepted stays pending.
    h.llm
        .set_default_script(Script::reply("late").with_load_delay(Duration::from_secs(600)));
    let mut first = h.bot(&[]);
    let ids: Vec<i32> = ["one", "two", "three"]
        .iter()
        .map(|t| h.telegram.push_message(FRIEND, FRIEND, t))
        .collect();
    h.wait_until_acknowledged().await;
    first.kill();

    h.llm.set_default_script(Script::echo());
    let _second = h.bot(&[]);
    for text in ["one", "two", "three"] {
        h.wait_for_message(FRIEND, |m| {
            m.visible_text.ends_with(&format!(" {text}"))
                || m.visible_text.ends_with(&format!("\n{text}"))
        })
        .await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let answers: Vec<_> = h
        .telegram
        .sent_messages(FRIEND)
        .into_iter()
        .filter(|m| m.visible_text.starts_with("echo:"))
        .collect();
    assert_eq!(
        answers.len(),
        ids.len(),
        "each message answered exactly once: {answers:#?}"
    );
}

async fn sigterm_exits_cleanly(backend: Backend) {
    let mut h = harness(backend).await;
    let mut bot = h.bot(&[]);
    h.telegram.push_message(FRIEND, FRIEND, "/help");
    h.wait_for_message(FRIEND, |_| true).await;
    assert!(bot.terminate().success());
    assert!(h.logs().contains("stopped"));
}

async fn health_reports_whether_the_polling_loop_runs(backend: Backend) {
    async fn health(h: &Harness) -> (bool, String) {
        let output = tokio::process::Command::from(h.command("health", &[]))
            .output()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        (output.status.success(), text)
    }
    let mut h = harness(backend).await;
    let (healthy, text) = health(&h).await;
    assert!(!healthy, "no bot has run yet: {text}");
    assert!(text.contains("no heartbeat"), "{text}");

    let _bot = h.bot(&[]);
    h.telegram.push_message(FRIEND, FRIEND, "/help");
    h.wait_for_message(FRIEND, |_| true).await;
    let (healthy, text) = health(&h).await;
    assert!(healthy, "{text}");
    assert!(text.starts_with("ok: polling loop alive"), "{text}");
}

async fn the_token_never_reaches_the_log(backend: Backend) {
    let mut h = harness(backend).await;
    // Debug logging of every library, and a network error whose text carries the request URL.
    let _bot = h.bot(&[("RUST_LOG", "debug")]);
    h.telegram.fail_next("getUpdates", Failure::Drop);
    h.telegram.push_message(FRIEND, FRIEND, "hi");
    h.wait_for_message(FRIEND, |m| m.visible_text.ends_with("hi"))
        .await;
    let logs = h.logs();
    assert!(
        logs.contains("getUpdates failed (A network error: error sending request for url"),
        "the failure was logged:\n{logs}"
    );
    assert!(
        !logs.contains(TOKEN) && !logs.contains(&TOKEN[10..]),
        "the token leaked:\n{logs}"
    );
}

async fn a_busy_bot_tells_the_queue_position_and_refuses_politely_when_full(backend: Backend) {
    let mut h = harness(backend).await;
    h.llm.set_default_script(
        Script::reply("slow answer").with_load_delay(Duration::from_millis(1500)),
    );
    let _bot = h.bot(&[("QUEUE_CAPACITY", "1")]);
    h.telegram.push_message(FRIEND, FRIEND, "first");
    let running = h
        .telegram
        .wait_for(|t| !t.calls("sendChatAction").is_empty(), PATIENCE)
        .await;
    assert!(running, "the first message is being answered");
    h.telegram.push_message(OWNER, OWNER, "second");
    h.wait_for_message(OWNER, |m| m.text.contains("1 message(s) ahead of yours"))
        .await;
    h.telegram.push_message(FRIEND, FRIEND, "third");
    h.wait_for_message(FRIEND, |m| m.text.contains("too many messages"))
        .await;
    h.wait_for_message(FRIEND, |m| m.visible_text == "slow answer")
        .await;
    h.wait_for_message(OWNER, |m| m.visible_text == "slow answer")
        .await;
    assert_eq!(
        h.llm.chat_count(),
        2,
        "the refused message never reached the LLM"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_checks_everything_and_names_the_fix() {
    let h = harness(Backend::Ollama).await;
    let output = tokio::process::Command::from(h.command("doctor", &[]))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    for line in [
        "✓ configuration",
        "✓ pipeline: 2 stage(s)",
        "✓ data directory",
        "✓ Ollama",
        "✓ Telegram: token valid: @pi_agent_test_bot",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }

    let down = unused_url();
    let command = h.command(
        "doctor",
        &[
            ("OLLAMA_URL", &down),
            ("OLLAMA_MODEL", "mistral:7b"),
            ("TELEGRAM_ALLOWED_USERS", "me"),
        ],
    );
    let output = tokio::process::Command::from(command)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("✗ Ollama: Ollama is not reachable"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "✗ configuration: TELEGRAM_ALLOWED_USERS: set it to comma-separated numeric user ids"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains(TOKEN));
}

async fn chat_in_the_terminal_uses_the_same_pipeline_and_model_server(backend: Backend) {
    let h = harness(backend).await;
    h.llm.push_script(Script::reply("**Hi** there"));
    let mut command =
        tokio::process::Command::from(h.command("chat", &[("TELEGRAM_BOT_TOKEN", "")]));
    command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    use tokio::io::AsyncWriteExt;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello\n/quit\n")
        .await
        .unwrap();
    let output = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("> Hi there"),
        "the shaped reply, as plain text: {stdout}"
    );
    assert!(user_messages(&h.llm.chat_requests()[0])[0].ends_with("hello"));
}

/// Waits until chat `chat` has more than `seen` messages and the newest satisfies
/// `predicate` (a streamed reply may need edits to get there); returns it and how long
/// that took from `since`.
async fn next_message(
    h: &Harness,
    chat: i64,
    seen: usize,
    since: Instant,
    predicate: impl Fn(&SentMessage) -> bool,
) -> (SentMessage, Duration) {
    let reply = h
        .wait_for_message(chat, |m| {
            let messages = h.telegram.sent_messages(chat);
            messages.len() > seen && messages.last().is_some_and(|last| last == m) && predicate(m)
        })
        .await;
    (reply, since.elapsed())
}

async fn hostile_guests_cost_only_their_own_message_and_the_bot_keeps_serving(backend: Backend) {
    let mut h = harness(backend).await;
    let manifest = h.scratch.manifest(&format!(
        "[[stage]]\nname = \"hostile\"\nguest = {:?}\nmemory_limit_mib = 32\ntimeout_ms = 500\n\
         [[stage]]\nname = \"telegram-html\"\nguest = {:?}\n",
        guests::HOSTILE,
        guests::TELEGRAM_HTML
    ));
    h.use_manifest(manifest);
    let mut bot = h.bot(&[]);
    h.wait_until_polling().await;
    let log_size = |bot: &RunningBot| std::fs::metadata(&bot.log).unwrap().len();
    let mut report = Vec::new();
    let timeout = "ran longer than its 500ms limit";
    // (message, what the LLM answers if the message gets that far, the failure)
    for (command, llm_reply, failure) in [
        ("sleep:30000", None, timeout),
        ("sleep-loop", None, timeout),
        ("wait-forever", None, timeout),
        ("loop", None, timeout),
        ("log-flood", None, timeout),
        ("alloc", None, "needed more than its 32 MiB memory limit"),
        ("panic", None, "panicked: hostile guest panics on purpose"),
        ("exit:0", None, "exited (status 0) instead of answering"),
        // The shaper's turn: the LLM's answer is the command.
        ("shape", Some("sleep:30000"), timeout),
        ("shape", Some("sleep-loop"), timeout),
    ] {
        if let Some(reply) = llm_reply {
            h.llm.push_script(Script::reply(reply));
        }
        let label = llm_reply.map_or(command.to_owned(), |r| format!("{command} → {r}"));
        let log_before = log_size(&bot);
        let started = Instant::now();
        let seen = h.telegram.sent_messages(FRIEND).len();
        h.telegram.push_message(FRIEND, FRIEND, command);
        let (notice, took) = next_message(&h, FRIEND, seen, started, |_| true).await;
        assert!(
            notice
                .text
                .contains(&format!("pipeline stage 'hostile' {failure}")),
            "{label}: {}",
            notice.text
        );
        assert!(
            !notice.text.contains("backtrace") && !notice.text.contains("0x"),
            "{}",
            notice.text
        );
        assert!(
            took < Duration::from_secs(2),
            "{label} answered after {took:?}"
        );
        // The next message, from the same chat and from another, is answered normally.
        let mut next = Vec::new();
        for chat in [FRIEND, OWNER] {
            let started = Instant::now();
            let seen = h.telegram.sent_messages(chat).len();
            h.telegram.push_message(chat, chat, "hello");
            let (_, after) =
                next_message(&h, chat, seen, started, |m| m.visible_text == "ECHO: HELLO").await;
            assert!(after < Duration::from_secs(2), "after {label}: {after:?}");
            next.push(after);
        }
        let log_growth = log_size(&bot) - log_before;
        assert!(
            log_growth < 100 * 1024,
            "{label}: the log grew by {log_growth} bytes"
        );
        report.push(format!(
            "{label}: notice after {took:?}, next answers after {next:?}, log +{log_growth} bytes"
        ));
    }
    assert!(bot.is_running(), "the bot survived every hostile message");
    println!("{}", report.join("\n"));
}

async fn a_message_that_keeps_killing_the_bot_is_given_up_after_max_attempts(backend: Backend) {
    let mut h = harness(backend).await;
    // Ollama never answers: each run is killed in the middle of the message.
    h.llm.set_default_script(Script::stall(0));
    // The owner has talked to the bot (Telegram lets a bot write only to those who did).
    h.telegram.push_message(OWNER, OWNER, "/help");
    h.telegram
        .push_message(FRIEND, FRIEND, "the message that kills");
    for attempt in 1..=MAX_ATTEMPTS as usize {
        let mut bot = h.bot(&[]);
        let asked = h
            .telegram
            .wait_for(|_| h.llm.chat_count() == attempt, PATIENCE)
            .await;
        assert!(
            asked,
            "run {attempt} did not start the message; log:\n{}",
            h.logs()
        );
        bot.kill();
    }
    h.llm.set_default_script(Script::echo());
    let _bot = h.bot(&[]);
    h.wait_for_message(FRIEND, |m| m.text.contains("could not be processed"))
        .await;
    h.wait_for_message(OWNER, |m| {
        m.text.contains("Gave up on a message") && m.text.contains(&format!("chat {FRIEND}"))
    })
    .await;
    h.telegram.push_message(FRIEND, FRIEND, "and this one?");
    h.wait_for_message(FRIEND, |m| m.visible_text.ends_with("and this one?"))
        .await;
    assert_eq!(
        h.llm.chat_count(),
        MAX_ATTEMPTS as usize + 1,
        "the given-up message was not run again"
    );
    let count = |chat: i64, needle: &str| {
        let messages = h.telegram.sent_messages(chat);
        messages.iter().filter(|m| m.text.contains(needle)).count()
    };
    assert_eq!(
        count(FRIEND, "could not be processed"),
        1,
        "the user is told once"
    );
    assert_eq!(
        count(OWNER, "Gave up on a message"),
        1,
        "the admin is told once"
    );
}

/// SIGTERM while the polling loop waits out a 429 (Telegram asked for 10 minutes): the
/// bot stops at once instead of sleeping through it.
async fn sigterm_ends_the_wait_after_a_429_on_polling(backend: Backend) {
    let mut h = harness(backend).await;
    h.telegram.fail_next(
        "getUpdates",
        Failure::TooManyRequests {
            retry_after_secs: 600,
        },
    );
    let mut bot = h.bot(&[]);
    h.wait_until_polling().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        h.telegram.calls("getUpdates").len(),
        1,
        "waiting out the 429"
    );
    let started = Instant::now();
    assert!(bot.terminate().success());
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "stopping took {took:?}");
}

/// SIGTERM while a reply waits out a 429 on its delivery: the grace period
/// (`SHUTDOWN_GRACE_SECS` = 5 here) and a moment more, then the bot exits and the message
/// stays pending for the next start.
async fn sigterm_ends_a_delivery_waiting_out_a_429_after_the_grace_period(backend: Backend) {
    let mut h = harness(backend).await;
    // A grace period of 1 s: what the test shows is that it ends, not how long it is.
    let mut bot = h.bot(&[("SHUTDOWN_GRACE_SECS", "1")]);
    h.wait_until_polling().await;
    h.telegram.fail_next(
        "sendMessage",
        Failure::TooManyRequests {
            retry_after_secs: 600,
        },
    );
    h.telegram.push_message(FRIEND, FRIEND, "hello");
    let asked = h
        .telegram
        .wait_for(|t| !t.calls("sendMessage").is_empty(), PATIENCE)
        .await;
    assert!(asked, "log:\n{}", h.logs());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    assert!(bot.terminate().success());
    let took = started.elapsed();
    // The grace period, then at most 3 s for the background tasks, and a second to exit.
    assert!(took < Duration::from_secs(5), "stopping took {took:?}");
    assert!(h.telegram.sent_messages(FRIEND).is_empty());

    let _next = h.bot(&[]);
    h.wait_for_message(FRIEND, |m| m.visible_text.ends_with("hello"))
        .await;
}

/// The default pipeline with the weather tool added, granted `weather_url` only.
fn with_weather(h: &Harness, weather_url: &str) -> std::path::PathBuf {
    let default = std::fs::read_to_string(h.scratch.default_manifest()).unwrap();
    h.scratch.manifest(&format!(
        "{default}\n[[stage]]\nname = \"weather\"\nguest = {guest:?}\ntimeout_ms = 3000\n\
         [stage.config]\nplace = \"Berlin\"\nlatitude = 52.52\nlongitude = 13.41\napi_url = {weather_url:?}\n\
         [stage.grants]\nhttp = [{weather_url:?}]\n",
        guest = guests::WEATHER,
    ))
}

async fn the_weather_tool_puts_the_forecast_in_the_prompt_and_fails_soft(backend: Backend) {
    use pi_agent_tests::fake_weather::FakeWeather;

    let mut h = harness(backend).await;
    let weather = FakeWeather::start().await;
    h.use_manifest(with_weather(&h, &weather.url()));
    let _bot = h.bot(&[]);

    h.telegram
        .push_message(FRIEND, FRIEND, "Will it rain in Berlin tomorrow?");
    h.wait_for_message(FRIEND, |m| {
        m.visible_text.contains("Weather data for Berlin")
    })
    .await;
    let asked = user_messages(&h.llm.chat_requests()[0]).join("\n");
    assert!(
        asked.contains("Will it rain in Berlin tomorrow?")
            && asked.contains("now 4 °C, overcast")
            && asked.contains("2026-12-03: 2 to 5 °C, slight rain, 80 % chance of precipitation"),
        "{asked}"
    );
    let requests = weather.requests();
    assert_eq!(requests.len(), 1);
    assert!(
        requests[0].starts_with("/v1/forecast?current=") && requests[0].contains("latitude=52.52"),
        "{requests:?}"
    );

    // A message about something else costs no request.
    h.telegram.push_message(FRIEND, FRIEND, "Tell me a joke");
    h.wait_for_message(FRIEND, |m| m.visible_text.ends_with("Tell me a joke"))
        .await;
    assert_eq!(weather.requests().len(), 1);

    // Open-Meteo down: the answer comes anyway, without weather, and the log says why.
    drop(weather);
    h.telegram
        .push_message(FRIEND, FRIEND, "How is the weather now?");
    h.wait_for_message(FRIEND, |m| {
        m.visible_text.ends_with("How is the weather now?")
    })
    .await;
    let asked = user_messages(h.llm.chat_requests().last().unwrap());
    assert_eq!(
        asked.last().unwrap(),
        "How is the weather now?",
        "{asked:?}"
    );
    assert!(
        h.logs()
            .contains("weather: answering without it: request failed"),
        "{}",
        h.logs()
    );
}

async fn a_refused_request_costs_the_guest_its_data_not_the_user_an_answer(backend: Backend) {
    let mut h = harness(backend).await;
    let manifest = h.scratch.manifest(&format!(
        "[[stage]]\nname = \"hostile\"\nguest = {:?}\ntimeout_ms = 2000\n",
        guests::HOSTILE
    ));
    h.use_manifest(manifest);
    let _bot = h.bot(&[]);
    let secret_query = "http://127.0.0.2:9/v1/forecast?apikey=do-not-log-me";
    h.telegram
        .push_message(FRIEND, FRIEND, &format!("fetch:{secret_query}"));
    // The hostile guest shapes its own answer too: in capitals.
    h.wait_for_message(FRIEND, |m| {
        m.visible_text.contains("REQUEST REFUSED BY THE HOST")
    })
    .await;
    h.telegram.push_message(FRIEND, FRIEND, "and now?");
    h.wait_for_message(FRIEND, |m| m.visible_text.contains("AND NOW?"))
        .await;
    let logs = h.logs();
    assert!(
        logs.contains("HTTP request refused") && logs.contains("127.0.0.2:9"),
        "{logs}"
    );
    assert!(
        !logs.contains("do-not-log-me"),
        "the query string reached the log: {logs}"
    );
}

/// `count` words of filler, numbered from `from` so no two texts share more than their
/// start.
fn words(from: usize, count: usize) -> String {
    (from..from + count)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

async fn a_long_conversation_fits_the_context_and_keeps_the_cache_warm(backend: Backend) {
    let mut h = harness(backend).await;
    // A Pi with 2048 tokens of context (Ollama: OLLAMA_NUM_CTX's default; the /v1 server:
    // what its /props says), 100 000 times faster.
    h.llm.simulate(RunnerSettings {
        speedup: 100_000.0,
        ..RunnerSettings::default()
    });
    let _bot = h.bot(&[]);
    let budget = 2048 - 2048 / 8;
    for turn in 0..16 {
        // Long questions (~1 200 bytes) every third turn, answers of ~600 bytes.
        let question_words = if turn % 3 == 0 { 240 } else { 40 };
        let question = format!("Question {turn}: {}", words(turn * 1000, question_words));
        let answer = format!("Answer {turn}: {}", words(turn * 1000 + 500, 120));
        h.llm.push_script(Script::reply(answer.clone()));
        h.exchange(OWNER, &question, &answer).await;
    }
    // A message longer than the whole context is refused before any request.
    let requests = h.llm.chat_count();
    h.telegram
        .push_message(OWNER, OWNER, &format!("Too long: {}", words(0, 2500)));
    let refusal = h
        .wait_for_message(OWNER, |m| m.text.contains("too long for the model"))
        .await;
    assert!(refusal.text.contains("OLLAMA_NUM_CTX"), "{}", refusal.text);
    assert_eq!(h.llm.chat_count(), requests);

    let evaluations = h.llm.evaluations();
    assert_eq!(evaluations.len(), 16);
    for (turn, evaluation) in evaluations.iter().enumerate() {
        assert!(
            evaluation.prompt_tokens <= budget && !evaluation.overflowed(),
            "turn {turn}: {evaluation:?} (budget {budget})"
        );
    }
    // Every prompt starts with the system prompt, and one that did not start a new window
    // had only its new message evaluated: the rest came from the cache.
    let requests = h.llm.chat_requests();
    let mut cuts = 0;
    for (turn, (request, evaluation)) in requests.iter().zip(&evaluations).enumerate().skip(1) {
        let messages = user_messages(request);
        assert!(messages[0].starts_with("You are a concise"), "{messages:?}");
        let previous = user_messages(&requests[turn - 1]);
        if messages.len() == previous.len() + 2 {
            // The window grew: this prompt is the last one, its answer and the new message.
            assert_eq!(messages[..previous.len()], previous[..], "turn {turn}");
            assert!(
                evaluation.evaluated_tokens() <= evaluation.ideal_tokens + 1,
                "turn {turn}: {evaluation:?}"
            );
        } else {
            cuts += 1;
        }
    }
    assert!((1..=5).contains(&cuts), "{cuts} cuts in 16 turns");

    // The figures reach /status.
    h.telegram.push_message(OWNER, OWNER, "/status");
    let status = h
        .wait_for_message(OWNER, |m| m.text.contains("Prompt cache:"))
        .await;
    assert!(status.text.contains("First token:"), "{}", status.text);
    let estimated = matches!(backend, Backend::Ollama);
    assert_eq!(
        status.text.contains("(estimated)"),
        estimated,
        "{}",
        status.text
    );
}

/// Runs each test against both backends, as `ollama::<name>` and `openai::<name>`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod ollama {
            use super::Backend;
            $(#[tokio::test(flavor = "multi_thread")]
            async fn $name() {
                super::$name(Backend::Ollama).await
            })*
        }
        mod openai {
            use super::Backend;
            $(#[tokio::test(flavor = "multi_thread")]
            async fn $name() {
                super::$name(Backend::OpenAi).await
            })*
        }
    };
}

on_both_backends!(
    a_streamed_reply_arrives_shaped_as_html,
    a_stranger_gets_only_their_id,
    reset_forgets_the_history,
    model_lists_and_switches_per_chat,
    stop_cancels_the_running_generation,
    a_10000_character_reply_is_split,
    rejected_html_is_resent_as_plain_text,
    a_429_on_an_edit_is_waited_out,
    the_model_server_down_is_explained_and_the_bot_keeps_serving,
    an_error_mid_stream_and_a_stall_are_explained_and_the_bot_keeps_serving,
    groups_are_answered_only_when_addressed,
    pending_messages_survive_kill_9_and_are_answered_once,
    sigterm_exits_cleanly,
    health_reports_whether_the_polling_loop_runs,
    the_token_never_reaches_the_log,
    a_busy_bot_tells_the_queue_position_and_refuses_politely_when_full,
    chat_in_the_terminal_uses_the_same_pipeline_and_model_server,
    hostile_guests_cost_only_their_own_message_and_the_bot_keeps_serving,
    a_message_that_keeps_killing_the_bot_is_given_up_after_max_attempts,
    sigterm_ends_the_wait_after_a_429_on_polling,
    sigterm_ends_a_delivery_waiting_out_a_429_after_the_grace_period,
    the_weather_tool_puts_the_forecast_in_the_prompt_and_fails_soft,
    a_refused_request_costs_the_guest_its_data_not_the_user_an_answer,
    a_long_conversation_fits_the_context_and_keeps_the_cache_warm,
);
