//! Benchmark: the default pipeline's per-message cost in the sandbox next to the same work
//! in native Rust, what a tool stage that fetches over HTTP adds to it (against a fake
//! Open-Meteo on loopback), and first-load time with a cold compile vs from the compile
//! cache.
//! Run with `just bench`; prints a table (medians and p99 from one run, ratios against the
//! baseline measured in the same run, since timings on shared machines are noisy).

use std::hint::black_box;
use std::time::Duration;

use pi_agent::pipeline::{CompileCache, FormatOutcome, GuestEngine, Pipeline, StageLimits};
use pi_agent::prompt::{ChatContext, Reply, Role};
use pi_agent::store::Database;
use pi_agent_tests::fake_weather::FakeWeather;
use pi_agent_tests::samples::{sample_prompt, sample_reply};
use pi_agent_tests::timing::{Stats, fmt, measure};
use pi_agent_tests::{Scratch, guests};

const MESSAGES: usize = 2000;
const LOADS: usize = 5;
/// Messages through the pipeline with the weather tool: each one a real HTTP round trip.
const FETCHES: usize = 300;

/// On one thread, as a Pi's bot runs a message: guest calls are awaited in the task.
#[tokio::main(flavor = "current_thread")]
pub async fn main() {
    let scratch = Scratch::default();
    let manifest = scratch.default_manifest();
    let engine = GuestEngine::new().expect("engine");
    let kv = Database::in_memory().kv();
    let pipeline = Pipeline::load_file(
        engine.clone(),
        &manifest,
        &StageLimits::default(),
        &CompileCache::disabled(),
        &kv,
    )
    .await
    .expect("pipeline");
    let reply = sample_reply();
    let prompt = sample_prompt();
    let ctx = ChatContext {
        chat_id: pi_agent::ids::ChatId(1),
        user_id: pi_agent::ids::UserId(1),
        ..ChatContext::default()
    };

    let wasm = measure(MESSAGES, async || {
        let FormatOutcome::Prompt(p) = pipeline.format(&ctx, prompt.clone()).await.unwrap() else {
            panic!("persona must pass the prompt on")
        };
        black_box(
            pipeline
                .shape(&ctx, &p, Reply::plain(reply.clone()), true)
                .await
                .unwrap(),
        );
    })
    .await;

    let settings = persona::Settings {
        system_prompt: Some(
            "You are a concise, friendly assistant running on a Raspberry Pi.".into(),
        ),
        // As the default pipeline configures it: no caps, the host's window kept whole.
        max_history_messages: usize::MAX,
        max_history_chars: usize::MAX,
        fold_system_prompt: true,
    };
    let guest_messages: Vec<_> = prompt
        .messages
        .iter()
        .map(|m| pi_agent_guest_message(m.role, &m.content))
        .collect();
    let native = measure(MESSAGES, async || {
        black_box(persona::apply(&settings, guest_messages.clone()));
        black_box(telegram_html::markdown_to_telegram_html(&reply));
    })
    .await;

    // The default pipeline plus the weather tool, granted the fake Open-Meteo only.
    let weather = FakeWeather::start().await;
    let with_tool = scratch.manifest(&format!(
        "{}\n[[stage]]\nname = \"weather\"\nguest = {:?}\ntimeout_ms = 3000\n\
         [stage.config]\nplace = \"Berlin\"\nlatitude = 52.52\nlongitude = 13.41\napi_url = {:?}\n\
         [stage.grants]\nhttp = [{:?}]\n",
        std::fs::read_to_string(&manifest).unwrap(),
        guests::WEATHER,
        weather.url(),
        weather.url(),
    ));
    let tool_pipeline = Pipeline::load_file(
        engine.clone(),
        &with_tool,
        &StageLimits::default(),
        &CompileCache::disabled(),
        &kv,
    )
    .await
    .expect("pipeline with the weather tool");
    let per_message = async |pipeline: &Pipeline, question: &str| {
        let mut prompt = prompt.clone();
        prompt.messages.last_mut().unwrap().content = question.to_owned();
        let FormatOutcome::Prompt(p) = pipeline.format(&ctx, prompt).await.unwrap() else {
            panic!("the formatters pass the prompt on")
        };
        black_box(
            pipeline
                .shape(&ctx, &p, Reply::plain(reply.clone()), true)
                .await
                .unwrap(),
        );
    };
    let question = "How do I read the Pi's temperature?";
    let weather_question = "What will the weather be like tomorrow?";
    let without_tool = measure(FETCHES, async || per_message(&pipeline, question).await).await;
    let tool_idle = measure(FETCHES, async || {
        per_message(&tool_pipeline, question).await
    })
    .await;
    let tool_fetching = measure(FETCHES, async || {
        per_message(&tool_pipeline, weather_question).await
    })
    .await;
    assert!(weather.requests().len() > FETCHES, "the tool fetched");

    let cold = measure(LOADS, async || {
        let dir = tempfile::tempdir().unwrap();
        black_box(
            Pipeline::load_file(
                engine.clone(),
                &manifest,
                &StageLimits::default(),
                &CompileCache::new(dir.path().to_owned()),
                &kv,
            )
            .await
            .unwrap(),
        );
    })
    .await;
    let cache = CompileCache::new(scratch.path().join("cache"));
    let load_cached = async || {
        Pipeline::load_file(
            engine.clone(),
            &manifest,
            &StageLimits::default(),
            &cache,
            &kv,
        )
        .await
        .unwrap()
    };
    load_cached().await;
    let cached = measure(LOADS, async || {
        black_box(load_cached().await);
    })
    .await;

    println!(
        "\npi-agent pipeline benchmark: default pipeline (persona + telegram-html), {} history turns, {} byte reply",
        prompt.messages.len() - 1,
        reply.len()
    );
    println!("{:<52} {:>12} {:>12}", "work", "p50", "p99");
    row(
        &format!("per message, sandboxed (instantiate both + format + shape), n={MESSAGES}"),
        &wasm,
    );
    row(
        &format!("per message, same work in native Rust, n={MESSAGES}"),
        &native,
    );
    println!(
        "{:<52} {:>12}",
        "sandbox overhead per message (p50 wasm - native)",
        fmt(wasm.p50.saturating_sub(native.p50))
    );
    println!(
        "{:<52} {:>11.1}x",
        "ratio wasm / native (p50)",
        ratio(wasm.p50, native.p50)
    );
    println!("\nwith the weather tool (WIT 0.2.0, wasi:http), a fake Open-Meteo on loopback:");
    row(
        &format!("per message, default pipeline, n={FETCHES}"),
        &without_tool,
    );
    row(
        &format!("per message, + weather, not asked, n={FETCHES}"),
        &tool_idle,
    );
    row(
        &format!("per message, + weather, fetching, n={FETCHES}"),
        &tool_fetching,
    );
    println!(
        "{:<52} {:>12}",
        "added by the tool when it fetches (p50)",
        fmt(tool_fetching.p50.saturating_sub(without_tool.p50))
    );
    println!(
        "{:<52} {:>11.2}x",
        "ratio fetching / default pipeline (p50)",
        ratio(tool_fetching.p50, without_tool.p50)
    );
    println!();
    row(&format!("first load, cold compile, n={LOADS}"), &cold);
    row(
        &format!("first load, from compile cache, n={LOADS}"),
        &cached,
    );
    println!(
        "{:<52} {:>11.1}x",
        "ratio cold / cached (p50)",
        ratio(cold.p50, cached.p50)
    );
}

fn pi_agent_guest_message(role: Role, content: &str) -> persona_types::ChatMessage {
    let role = match role {
        Role::System => persona_types::Role::System,
        Role::User => persona_types::Role::User,
        Role::Assistant => persona_types::Role::Assistant,
    };
    persona_types::ChatMessage {
        role,
        content: content.to_owned(),
    }
}

/// The SDK's types, as the native persona crate sees them.
mod persona_types {
    pub use pi_agent_guest::{ChatMessage, Role};
}

fn row(label: &str, stats: &Stats) {
    println!("{label:<52} {:>12} {:>12}", fmt(stats.p50), fmt(stats.p99));
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}
