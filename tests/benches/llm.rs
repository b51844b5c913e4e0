//! Benchmark: first-token latency the host adds on the OpenAI path (SSE through
//! `eventsource-stream`) and on the Ollama path (NDJSON), against the two fakes on loopback
//! with equal delays (none: each sends its first token as soon as it is asked, so the
//! timer's jitter does not drown the microseconds measured). Each path's
//! baseline is the same request sent with plain reqwest, stopping at the first body chunk
//! that carries text — what any client pays for the fake and loopback HTTP — measured in
//! the same run, interleaved, in alternating order. Run with `just bench-llm` (or
//! `cargo bench -p pi-agent-tests -- llm`).

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use pi_agent::llm::{
    LlmBackend, OllamaClient, OllamaSettings, OpenAiClient, OpenAiSettings, ReplyEvent, Timeouts,
};
use pi_agent::prompt::{ChatMessage, GenerationOptions, Prompt, Role};
use pi_agent_tests::fake_ollama::{self, FakeOllama};
use pi_agent_tests::fake_openai::{self, FakeOpenAi};

const ROUNDS: usize = 1000;
const WARM_UP: usize = 50;
/// When each fake sends its first token, after the request.
const FIRST_TOKEN_AFTER: Duration = Duration::ZERO;

#[tokio::main(flavor = "multi_thread")]
pub async fn main() {
    let ollama = FakeOllama::start().await;
    ollama.set_default_script(
        fake_ollama::Script::reply("one two three").with_token_delay(FIRST_TOKEN_AFTER),
    );
    let openai = FakeOpenAi::start(None).await;
    openai.set_models(&[fake_ollama::DEFAULT_MODEL]);
    openai.set_default_script(
        fake_openai::Script::reply("one two three").with_token_delay(FIRST_TOKEN_AFTER),
    );
    let ollama_client = OllamaClient::new(OllamaSettings {
        base_url: ollama.url(),
        ..OllamaSettings::default()
    })
    .unwrap();
    let openai_client = OpenAiClient::new(OpenAiSettings {
        base_url: openai.url(),
        api_key: None,
        timeouts: Timeouts::default(),
    })
    .unwrap();
    let prompt = Prompt {
        model: fake_ollama::DEFAULT_MODEL.to_owned(),
        messages: vec![ChatMessage::new(Role::User, "count to three")],
        options: GenerationOptions::default(),
    };
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let ollama_raw = || {
        let body = serde_json::json!({
            "model": prompt.model, "messages": [{"role": "user", "content": "count to three"}],
            "stream": true,
        });
        raw_first_token(
            http.post(format!("{}/api/chat", ollama.url())).json(&body),
            "\"content\":\"one",
        )
    };
    let openai_raw = || {
        let body = serde_json::json!({
            "model": prompt.model, "messages": [{"role": "user", "content": "count to three"}],
            "stream": true, "stream_options": {"include_usage": true},
        });
        raw_first_token(
            http.post(format!("{}/chat/completions", openai.url()))
                .json(&body),
            "\"content\":\"one",
        )
    };

    let mut samples: [Vec<Duration>; 4] = Default::default();
    for round in 0..WARM_UP + ROUNDS {
        // Which of a pair goes first alternates: the second finds the fake's connection
        // task just woken, which is worth tens of microseconds.
        let (ollama_host, ollama_base, openai_host, openai_base);
        if round % 2 == 0 {
            ollama_host = client_first_token(&ollama_client, &prompt).await;
            ollama_base = ollama_raw().await;
            openai_host = client_first_token(&openai_client, &prompt).await;
            openai_base = openai_raw().await;
        } else {
            ollama_base = ollama_raw().await;
            ollama_host = client_first_token(&ollama_client, &prompt).await;
            openai_base = openai_raw().await;
            openai_host = client_first_token(&openai_client, &prompt).await;
        }
        let measured = [ollama_host, ollama_base, openai_host, openai_base];
        if round >= WARM_UP {
            for (sample, took) in samples.iter_mut().zip(measured) {
                sample.push(took);
            }
        }
    }
    let [ollama_host, ollama_base, openai_host, openai_base] = samples.map(median);

    println!(
        "\npi-agent LLM backends: first token, fakes on loopback sending it {FIRST_TOKEN_AFTER:?} \
         after the request (median of {ROUNDS}, interleaved)"
    );
    println!(
        "{:<10} {:>16} {:>18} {:>14} {:>8}",
        "path", "through the host", "plain reqwest", "host adds", "ratio"
    );
    for (path, host, base) in [
        ("Ollama", ollama_host, ollama_base),
        ("OpenAI", openai_host, openai_base),
    ] {
        println!(
            "{path:<10} {:>13.3} ms {:>15.3} ms {:>11.1} µs {:>8.3}",
            ms(host),
            ms(base),
            (host.as_secs_f64() - base.as_secs_f64()) * 1e6,
            host.as_secs_f64() / base.as_secs_f64()
        );
    }
    // The two fakes frame and pace their streams differently: compare each path with its
    // own baseline, not the paths' totals with each other.
}

/// From the request to the first text the backend's stream yields.
async fn client_first_token(client: &dyn LlmBackend, prompt: &Prompt) -> Duration {
    let started = Instant::now();
    let mut stream = client.chat(prompt).await.expect("the fake answers");
    while let Some(event) = stream.next().await {
        if let ReplyEvent::Delta(_) = event.expect("no error") {
            return started.elapsed();
        }
    }
    panic!("no token")
}

/// From the request to the first body chunk that holds `marker`.
async fn raw_first_token(request: reqwest::RequestBuilder, marker: &str) -> Duration {
    let started = Instant::now();
    let mut body = request
        .send()
        .await
        .expect("the fake answers")
        .bytes_stream();
    let mut seen = Vec::new();
    while let Some(chunk) = body.next().await {
        seen.extend_from_slice(&chunk.expect("a chunk"));
        if String::from_utf8_lossy(&seen).contains(marker) {
            return started.elapsed();
        }
    }
    panic!("no token in {}", String::from_utf8_lossy(&seen))
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
