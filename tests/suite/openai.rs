//! End to end with an OpenAI-compatible server: the real `pi-agent run` against a fake
//! llama-server / vLLM on loopback (streamed chat completions, exactly as they send them),
//! with and without the Pi's Ollama (the harness's fake) as the fallback.

use std::time::Duration;

use pi_agent_tests::bot::{FRIEND, Harness, OWNER, PATIENCE};
use pi_agent_tests::fake_ollama;
use pi_agent_tests::fake_openai::{DEFAULT_MODEL, FakeOpenAi, Script};

const API_KEY: &str = "sk-gpu-box-key-that-must-never-leak-0123";

async fn harness() -> Harness {
    Harness::start(env!("CARGO_BIN_EXE_pi-agent-cli")).await
}

/// The settings that point the bot at `server` as its primary.
fn openai_env(server: &FakeOpenAi, key: &str) -> Vec<(&'static str, String)> {
    vec![
        ("LLM_API", "openai".into()),
        ("LLM_URL", server.url()),
        ("LLM_API_KEY", key.into()),
        ("LLM_MODEL", DEFAULT_MODEL.into()),
        // Request bodies and every step of the streams in the log: the key must be in
        // none of it.
        ("RUST_LOG", "debug".into()),
    ]
}

fn borrowed<'a>(vars: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    vars.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn replies_stream_in_from_an_openai_server_and_the_key_never_shows() {
    let mut h = harness().await;
    let gpu = FakeOpenAi::start(Some(API_KEY)).await;
    gpu.set_models(&[DEFAULT_MODEL, "llama-3.1-8b-instruct"]);
    let text = "Streaming from the GPU box, token by token. ".repeat(5);
    gpu.push_script(Script::reply(text.trim()).with_token_delay(Duration::from_millis(40)));
    let _bot = h.bot(&borrowed(&openai_env(&gpu, API_KEY)));

    h.telegram.push_message(FRIEND, FRIEND, "hi");
    let reply = h
        .wait_for_message(FRIEND, |m| m.visible_text == text.trim())
        .await;
    assert!(reply.edits >= 1, "the reply streams in: {reply:?}");
    let request = &gpu.chat_requests()[0];
    assert_eq!(request["model"], DEFAULT_MODEL);
    assert_eq!(request["stream"], true);
    assert_eq!(request["stream_options"]["include_usage"], true);
    assert_eq!(h.llm.chat_count(), 0, "Ollama is not asked");

    // /model lists what /models serves, and switches among them.
    h.telegram.push_message(FRIEND, FRIEND, "/model");
    h.wait_for_message(FRIEND, |m| {
        m.visible_text.contains("▶ qwen2.5-7b-instruct")
            && m.visible_text.contains("• llama-3.1-8b-instruct")
    })
    .await;
    h.telegram
        .push_message(FRIEND, FRIEND, "/model llama-3.1-8b-instruct");
    h.wait_for_message(FRIEND, |m| {
        m.visible_text == "This chat now uses llama-3.1-8b-instruct."
    })
    .await;
    h.telegram.push_message(FRIEND, FRIEND, "again");
    gpu.push_script(Script::reply("From the bigger one"));
    h.wait_for_message(FRIEND, |m| m.visible_text == "From the bigger one")
        .await;
    assert_eq!(gpu.chat_requests()[1]["model"], "llama-3.1-8b-instruct");

    // /status says who serves.
    h.telegram.push_message(OWNER, OWNER, "/status");
    let status = h
        .wait_for_message(OWNER, |m| m.visible_text.contains("LLM: "))
        .await;
    assert!(
        status.visible_text.contains(&format!(
            "LLM: the OpenAI-compatible server at {}",
            gpu.url()
        )),
        "{}",
        status.visible_text
    );

    let logs = h.logs();
    assert!(logs.contains("openai: chat request"), "debug logging is on");
    assert!(!logs.contains(API_KEY), "the API key leaked into the log");
    for chat in [FRIEND, OWNER] {
        for m in h.telegram.sent_messages(chat) {
            assert!(!m.text.contains(API_KEY), "{m:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_servers_errors_reach_the_user_saying_what_to_do() {
    let mut h = harness().await;
    let gpu = FakeOpenAi::start(Some(API_KEY)).await;
    let _bot = h.bot(&borrowed(&openai_env(&gpu, API_KEY)));

    // Cut mid-stream: what came is kept, then why it stopped.
    gpu.push_script(Script::error_mid_stream(3, "CUDA error: out of memory"));
    h.telegram.push_message(FRIEND, FRIEND, "one");
    h.wait_for_message(FRIEND, |m| {
        m.visible_text
            .contains("the model failed while answering: CUDA error: out of memory")
    })
    .await;

    // Rate-limited, with the server's Retry-After.
    gpu.push_script(Script::status(429, "Too many requests").with_retry_after(20));
    h.telegram.push_message(FRIEND, FRIEND, "two");
    h.wait_for_message(FRIEND, |m| {
        m.visible_text == "⚠️ the LLM server is limiting how often it answers — try again in 20 s"
    })
    .await;

    // Stopped at max_tokens: delivered, and the user told it was cut.
    gpu.push_script(Script::cut_off("A long story that goes on and"));
    h.telegram.push_message(FRIEND, FRIEND, "three");
    h.wait_for_message(FRIEND, |m| {
        m.visible_text == "A long story that goes on and"
    })
    .await;
    h.wait_for_message(FRIEND, |m| {
        m.visible_text.contains("length limit") && m.visible_text.contains("was cut off")
    })
    .await;
    assert_eq!(h.llm.chat_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_key_is_refused_and_named_but_never_shown() {
    let mut h = harness().await;
    let gpu = FakeOpenAi::start(Some(API_KEY)).await;
    let wrong = "sk-wrong-key-that-must-never-leak-either-987";
    let _bot = h.bot(&borrowed(&openai_env(&gpu, wrong)));
    h.telegram.push_message(FRIEND, FRIEND, "hi");
    h.wait_for_message(FRIEND, |m| {
        m.visible_text
            == "⚠️ the LLM server refused the API key — check LLM_API_KEY (or LLM_FALLBACK_API_KEY)"
    })
    .await;
    assert!(
        !h.logs().contains(wrong),
        "the wrong key leaked into the log"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pi_answers_while_the_gpu_box_is_off_and_the_gpu_box_once_it_is_back() {
    let mut h = harness().await;
    h.llm
        .set_default_script(fake_ollama::Script::reply("Hello from the Pi"));
    let gpu = FakeOpenAi::start(None).await;
    gpu.set_default_script(Script::reply("Hello from the GPU box"));
    let mut vars = openai_env(&gpu, "unused");
    vars.retain(|(k, _)| *k != "LLM_API_KEY");
    vars.push(("LLM_FALLBACK_URL", h.llm.url()));
    vars.push(("LLM_PROBE_SECS", "1".into()));
    vars.push(("DASHBOARD_ADDR", "127.0.0.1:0".into()));
    gpu.go_down().await;
    let bot = h.bot(&borrowed(&vars));
    let dashboard = bot.dashboard_url().await;
    // The Overview's "Serving:" line.
    let serving = || async {
        let page = reqwest::get(&dashboard)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let at = page
            .find("<span id=\"serving\">")
            .expect("the Overview says who serves");
        page[at..].split(['>', '<']).nth(2).unwrap().to_owned()
    };
    let page = serving().await;
    assert!(
        page.starts_with("The OpenAI-compatible server at"),
        "{page}"
    );
    let note = format!(
        "ℹ️ The OpenAI-compatible server at {} is unavailable — answering with gemma2:2b on \
         Ollama at {}.",
        gpu.url(),
        h.llm.url()
    );

    // Three failures in a row open the breaker; each message is answered by the Pi, after
    // the note.
    for n in 1..=3 {
        h.telegram
            .push_message(FRIEND, FRIEND, &format!("question {n}"));
        h.telegram
            .wait_for(
                |t| {
                    t.sent_messages(FRIEND)
                        .iter()
                        .filter(|m| m.visible_text == "Hello from the Pi")
                        .count()
                        == n
                },
                PATIENCE,
            )
            .await;
    }
    let sent = h.telegram.sent_messages(FRIEND);
    let notes = sent.iter().filter(|m| m.visible_text == note).count();
    assert_eq!(notes, 3, "{sent:#?}");
    assert_eq!(h.llm.chat_requests()[0]["model"], "gemma2:2b");
    h.telegram.push_message(OWNER, OWNER, "/status");
    h.wait_for_message(OWNER, |m| {
        m.visible_text
            .contains("LLM: the fallback, gemma2:2b on Ollama at")
            && m.visible_text.contains("failed 3 times in a row")
    })
    .await;
    assert!(
        h.logs()
            .contains("is left alone until a probe finds it back"),
        "{}",
        h.logs()
    );
    let page = serving().await;
    assert!(
        page.starts_with("the fallback, gemma2:2b on Ollama at"),
        "{page}"
    );

    // Back: the probe (every second) finds it, and the next message goes to it, no note.
    gpu.come_back().await;
    let back = h
        .telegram
        .wait_for(
            |_| h.logs().contains("is back: messages go to it again"),
            PATIENCE,
        )
        .await;
    assert!(back, "{}", h.logs());
    h.telegram.push_message(FRIEND, FRIEND, "question 4");
    h.wait_for_message(FRIEND, |m| m.visible_text == "Hello from the GPU box")
        .await;
    assert_eq!(gpu.chat_count(), 1);
    assert_eq!(h.llm.chat_count(), 3);
    let notes = h
        .telegram
        .sent_messages(FRIEND)
        .iter()
        .filter(|m| m.visible_text == note)
        .count();
    assert_eq!(notes, 3, "no note when the primary answers");
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_checks_both_servers_and_says_which_variable_wins() {
    let h = harness().await;
    let gpu = FakeOpenAi::start(Some(API_KEY)).await;
    let mut vars = openai_env(&gpu, API_KEY);
    vars.push(("OLLAMA_MODEL", "gemma2:2b".into()));
    vars.push(("LLM_FALLBACK_URL", h.llm.url()));
    // The harness sets OLLAMA_URL too: LLM_URL wins over it.
    let output = tokio::process::Command::from(h.command("doctor", &borrowed(&vars)))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    for line in [
        "✓ LLM_URL: set, and wins over OLLAMA_URL".to_owned(),
        "✓ LLM_MODEL: set, and wins over OLLAMA_MODEL".to_owned(),
        format!(
            "✓ LLM server: {} (openai) is up and has {DEFAULT_MODEL}",
            gpu.url()
        ),
        format!(
            "✓ fallback: {} (ollama) is up and has gemma2:2b",
            h.llm.url()
        ),
    ] {
        assert!(stdout.contains(&line), "missing {line:?} in:\n{stdout}");
    }
    assert!(!stdout.contains(API_KEY));
}
