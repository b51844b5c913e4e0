//! Benchmark: a conversation on a simulated Raspberry Pi — what the user waits for before
//! the first word, turn by turn.
//!
//! The real `pi-agent run` talks to a fake Telegram and to a fake model server with a
//! simulated Pi behind it (`model_runner`): Gemma's chat template, about 4 bytes a token,
//! one cache slot holding the last prompt and answer (as Ollama's runner keeps it), prompt
//! evaluation at 20 tokens/s and generation at 2 tokens/s, waited out 1000× faster. A turn's
//! time to first token is the Pi's: the prompt tokens not served from the cache at 20/s.
//!
//! Compared in the same run, medians of 3 runs:
//! - the old window (the persona's 20 messages / 6,000 characters, sliding one exchange per
//!   turn, as shipped before round 3) against the new one (the host's window, cut in blocks),
//!   on Ollama and on an OpenAI-compatible server (llama-server's figures);
//! - history that keeps the data a formatter added (the weather, every fourth question)
//!   against history that keeps only the typed words (the same prompts replayed with the
//!   data taken out of earlier turns);
//! - a second chat writing in between (Ollama with one slot, two, two with its multi-user
//!   cache; llama-server with four), and a scheduled prompt in the same chat.
//!
//! The simulated figures are deterministic (the same prompts give the same counts), so the
//! three runs agree unless the bot's prompts differ from run to run.
//!
//! Run with `just bench-pi` (or `cargo bench -p pi-agent-tests -- pi`).

use std::time::Duration;

use pi_agent_tests::bot::{FRIEND, Harness, OWNER};
use pi_agent_tests::fake_llm::Backend;
use pi_agent_tests::fake_ollama::Script;
use pi_agent_tests::fake_weather::FakeWeather;
use pi_agent_tests::guests;
use pi_agent_tests::model_runner::{Evaluation, ModelRunner, RunnerSettings, SlotChoice};
use serde_json::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_pi-agent-cli");
const TURNS: usize = 40;
/// The summary covers turns 11–40: a window that slides is full from about the tenth.
const FROM_TURN: usize = 11;
const RUNS: usize = 3;
const SPEEDUP: f64 = 1000.0;
/// The other chat writes after this many turns of the first.
const INTERLEAVED_AT: usize = 15;

#[tokio::main(flavor = "multi_thread")]
pub async fn main() {
    let conversation = conversation();
    let (q, a) = averages(&conversation);
    println!(
        "A {TURNS}-turn conversation: questions of {q:.0} tokens and answers of {a:.0} tokens on \
         average (4 bytes a token); Pi: prompt 20 tokens/s, writing 2 tokens/s, one cache slot, \
         OLLAMA_NUM_CTX=2048.\n"
    );

    let reusing = |window| Setup {
        cache_reuse: Some(CACHE_REUSE),
        ..Setup::new(window, Backend::OpenAi)
    };
    let setups = [
        (
            "old window (persona, 20 msgs / 6,000 chars), Ollama",
            Setup::new(Window::Old, Backend::Ollama),
        ),
        (
            "new window, Ollama",
            Setup::new(Window::New, Backend::Ollama),
        ),
        (
            "new window, llama-server (LLM_API=openai)",
            Setup::new(Window::New, Backend::OpenAi),
        ),
        (
            "old window, llama-server --cache-reuse 64",
            reusing(Window::Old),
        ),
        (
            "new window, llama-server --cache-reuse 64",
            reusing(Window::New),
        ),
    ];
    let mut results: Vec<Vec<Run>> = setups.iter().map(|_| Vec::new()).collect();
    for _ in 0..RUNS {
        for (runs, (_, setup)) in results.iter_mut().zip(&setups) {
            runs.push(run(&conversation, *setup).await);
        }
    }
    let (old, new) = (&results[0], &results[1]);
    per_turn_table(&old[0], &new[0]);
    println!("\nTurns {FROM_TURN}–{TURNS}, medians of {RUNS} runs:\n");
    summary_header();
    for ((name, _), runs) in setups.iter().zip(&results) {
        summary_row(name, runs);
    }

    println!("\nA formatter's data in history (the weather tool on every fourth question):\n");
    let with_data = vec![
        run(
            &conversation,
            Setup::new(Window::NewWithWeather, Backend::Ollama),
        )
        .await,
    ];
    let kept = &with_data[0];
    summary_header();
    summary_row("history keeps the data (what the model saw)", &with_data);
    let typed = vec![replay_without_data(&kept.requests)];
    summary_row("history keeps the typed words (replayed)", &typed);
    println!(
        "  prompt evaluation over the whole conversation: {:.0} s with the data kept, {:.0} s \
         with the typed words",
        total_prompt_seconds(&kept.evaluations),
        total_prompt_seconds(&typed[0].evaluations)
    );

    let alone = &new[0][INTERLEAVED_AT];
    println!(
        "\nAnother chat writes between turns {INTERLEAVED_AT} and {} of the first (new window); \
         alone, turn {} evaluates {} tokens ({:.1} s):\n",
        INTERLEAVED_AT + 1,
        INTERLEAVED_AT + 1,
        alone.evaluated_tokens(),
        seconds(alone)
    );
    println!(
        "| server | in between | it evaluated | then turn {}: evaluated | time to first token |",
        INTERLEAVED_AT + 1
    );
    println!("|---|---|---|---|---|");
    for (setting, backend, slots, slot_choice) in [
        (
            "Ollama, OLLAMA_NUM_PARALLEL=1 (a Pi's default)",
            Backend::Ollama,
            1,
            SlotChoice::Longest,
        ),
        (
            "Ollama, OLLAMA_NUM_PARALLEL=2",
            Backend::Ollama,
            2,
            SlotChoice::Longest,
        ),
        (
            "Ollama, OLLAMA_NUM_PARALLEL=2 OLLAMA_MULTIUSER_CACHE=1",
            Backend::Ollama,
            2,
            SlotChoice::MultiUser,
        ),
        (
            "llama-server --parallel 4",
            Backend::OpenAi,
            4,
            SlotChoice::Similarity(0.1),
        ),
        (
            "llama-server --parallel 4 --slot-prompt-similarity 0.5",
            Backend::OpenAi,
            4,
            SlotChoice::Similarity(0.5),
        ),
    ] {
        let runner = RunnerSettings {
            speedup: SPEEDUP,
            slots,
            slot_choice,
            ..RunnerSettings::default()
        };
        let (other, next) =
            interleaved(&conversation, backend, runner, InBetween::AnotherChat).await;
        println!(
            "| {setting} | another chat's message | {} | {} | {:.1} s |",
            other.evaluated_tokens(),
            next.evaluated_tokens(),
            seconds(&next)
        );
    }
    let one_slot = RunnerSettings {
        speedup: SPEEDUP,
        ..RunnerSettings::default()
    };
    let (briefing, next) = interleaved(
        &conversation,
        Backend::Ollama,
        one_slot,
        InBetween::Briefing,
    )
    .await;
    println!(
        "| Ollama, OLLAMA_NUM_PARALLEL=1 | a scheduled prompt in the same chat (/every) | {} | {} | {:.1} s |",
        briefing.evaluated_tokens(),
        next.evaluated_tokens(),
        seconds(&next)
    );
}

/// What a run is set up as.
#[derive(Clone, Copy)]
struct Setup {
    window: Window,
    backend: Backend,
    /// llama-server's `--cache-reuse`.
    cache_reuse: Option<usize>,
}

#[derive(Clone, Copy, PartialEq)]
enum Window {
    /// The persona with the caps it shipped with before round 3, and a context the host's
    /// window never has to be cut for: the persona slides the window, as it did.
    Old,
    New,
    /// The new window with the weather tool in the pipeline.
    NewWithWeather,
}

impl Setup {
    const fn new(window: Window, backend: Backend) -> Self {
        Self {
            window,
            backend,
            cache_reuse: None,
        }
    }
}

/// What the issue measured: llama-server with one slot and `--cache-reuse 64`.
const CACHE_REUSE: usize = 64;

/// One run's requests and what each cost the simulated Pi.
struct Run {
    requests: Vec<Value>,
    evaluations: Vec<Evaluation>,
}

impl std::ops::Deref for Run {
    type Target = [Evaluation];
    fn deref(&self) -> &[Evaluation] {
        &self.evaluations
    }
}

async fn run(conversation: &[(String, String)], setup: Setup) -> Run {
    let mut h = Harness::with_backend(BINARY, setup.backend).await;
    let slot_choice = match setup.backend {
        Backend::Ollama => SlotChoice::Longest,
        Backend::OpenAi => SlotChoice::Similarity(0.1),
    };
    h.llm.simulate(RunnerSettings {
        speedup: SPEEDUP,
        slot_choice,
        cache_reuse: setup.cache_reuse,
        ..RunnerSettings::default()
    });
    let mut weather = None;
    let mut env = vec![("STREAM_EDIT_INTERVAL_MS", "100")];
    match setup.window {
        Window::Old => {
            let default = std::fs::read_to_string(h.scratch.default_manifest()).unwrap();
            let capped = default.replacen(
                "[stage.config]\n",
                "[stage.config]\nmax_history_messages = 20\nmax_history_chars = 6000\n",
                1,
            );
            h.use_manifest(h.scratch.manifest(&capped));
            env.push(("OLLAMA_NUM_CTX", "1000000"));
        }
        Window::NewWithWeather => {
            let default = std::fs::read_to_string(h.scratch.default_manifest()).unwrap();
            let url = weather.insert(FakeWeather::start().await).url();
            h.use_manifest(h.scratch.manifest(&format!(
                "{default}\n[[stage]]\nname = \"weather\"\nguest = {guest:?}\ntimeout_ms = 3000\n\
                 [stage.config]\nplace = \"Berlin\"\nlatitude = 52.52\nlongitude = 13.41\n\
                 api_url = {url:?}\n[stage.grants]\nhttp = [{url:?}]\n",
                guest = guests::WEATHER,
            )));
        }
        Window::New => {}
    }
    let _bot = h.polling_bot(&env).await;
    for (turn, (question, answer)) in conversation.iter().enumerate() {
        let question = match setup.window {
            Window::NewWithWeather if turn % 4 == 3 => {
                format!("{question} And what is the weather like?")
            }
            _ => question.clone(),
        };
        h.llm.push_script(Script::reply(answer.clone()));
        h.exchange(OWNER, &question, answer).await;
    }
    Run {
        requests: h.llm.chat_requests(),
        evaluations: h.llm.evaluations(),
    }
}

/// Chat `OWNER`'s turns up to `INTERLEAVED_AT + 1` with one message of chat `FRIEND` before
/// the last (both chats start with the same system prompt): what `FRIEND`'s message and
/// then `OWNER`'s next turn cost.
/// What comes between two turns of a chat.
#[derive(Clone, Copy, PartialEq)]
enum InBetween {
    /// A message of another chat (with the same system prompt).
    AnotherChat,
    /// A scheduled prompt of the same chat (`/every 1 min`, so it fires a minute later).
    Briefing,
}

async fn interleaved(
    conversation: &[(String, String)],
    backend: Backend,
    runner: RunnerSettings,
    in_between: InBetween,
) -> (Evaluation, Evaluation) {
    let mut h = Harness::with_backend(BINARY, backend).await;
    h.llm.simulate(runner);
    let _bot = h.polling_bot(&[("STREAM_EDIT_INTERVAL_MS", "100")]).await;
    for (turn, (question, answer)) in conversation.iter().take(INTERLEAVED_AT + 1).enumerate() {
        if turn == INTERLEAVED_AT {
            let (other_question, other_answer) = &conversation[TURNS - 1];
            h.llm.push_script(Script::reply(other_answer.clone()));
            match in_between {
                InBetween::AnotherChat => h.exchange(FRIEND, other_question, other_answer).await,
                InBetween::Briefing => {
                    h.telegram
                        .push_message(OWNER, OWNER, "/every 1 min A short briefing, please.");
                    let fired = h
                        .telegram
                        .wait_for(
                            |t| {
                                t.sent_messages(OWNER)
                                    .iter()
                                    .any(|m| m.visible_text.ends_with(other_answer.as_str()))
                            },
                            Duration::from_secs(90),
                        )
                        .await;
                    assert!(fired, "the briefing did not come; log:\n{}", h.logs());
                }
            }
        }
        h.llm.push_script(Script::reply(answer.clone()));
        h.exchange(OWNER, question, answer).await;
    }
    let evaluations = h.llm.evaluations();
    let [.., other, next] = &evaluations[..] else {
        unreachable!("at least two answers")
    };
    (other.clone(), next.clone())
}

/// The weather run's prompts with the weather data taken out of every earlier turn (the
/// newest message keeps it: the model answers from it), evaluated by a fresh simulated Pi
/// with the same answers. The cut points stay where the run with the data made them.
fn replay_without_data(requests: &[Value]) -> Run {
    let mut runner = ModelRunner::new(RunnerSettings::default());
    let mut stripped = Vec::new();
    for (i, request) in requests.iter().enumerate() {
        let mut request = request.clone();
        let messages = request["messages"].as_array_mut().unwrap();
        let last = messages.len() - 1;
        for message in &mut messages[..last] {
            let content = message["content"].as_str().unwrap().to_owned();
            message["content"] = without_weather(&content).into();
        }
        // The answer each prompt got is the next prompt's assistant message.
        let answer = requests
            .get(i + 1)
            .and_then(|next| {
                let next = next["messages"].as_array()?;
                next.iter().rev().nth(1)?["content"]
                    .as_str()
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        runner.run(&request["messages"], Some(2048), &answer);
        stripped.push(request);
    }
    Run {
        requests: stripped,
        evaluations: runner.evaluations().to_vec(),
    }
}

/// `text` without the weather tool's paragraph.
fn without_weather(text: &str) -> String {
    const START: &str = "\n\n(Weather data for ";
    const END: &str = "Answer from these figures.)";
    match (text.find(START), text.find(END)) {
        (Some(start), Some(end)) => format!("{}{}", &text[..start], &text[end + END.len()..]),
        _ => text.to_owned(),
    }
}

/// The Pi's wait before the first token of `evaluation`'s answer.
fn seconds(evaluation: &Evaluation) -> f64 {
    evaluation.evaluated_tokens() as f64 / RunnerSettings::default().prompt_rate
}

fn total_prompt_seconds(evaluations: &[Evaluation]) -> f64 {
    evaluations.iter().map(seconds).sum()
}

/// A turn re-read more than its new message (and the answer's end marker).
fn reread(evaluation: &Evaluation) -> bool {
    evaluation.evaluated_tokens() > evaluation.ideal_tokens + 1
}

fn per_turn_table(old: &[Evaluation], new: &[Evaluation]) {
    println!("Per turn (run 1): prompt tokens, of them evaluated, and the time to the first word");
    println!(
        "| turn | old: prompt | old: evaluated | old: first token | new: prompt | new: evaluated | new: first token | ideal |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (turn, (o, n)) in old.iter().zip(new).enumerate() {
        println!(
            "| {} | {} | {} | {:.1} s | {} | {} | {:.1} s{} | {:.1} s |",
            turn + 1,
            o.prompt_tokens,
            o.evaluated_tokens(),
            seconds(o),
            n.prompt_tokens,
            n.evaluated_tokens(),
            seconds(n),
            if reread(n) && turn > 0 { " (cut)" } else { "" },
            n.ideal_tokens as f64 / RunnerSettings::default().prompt_rate,
        );
    }
}

fn summary_header() {
    println!(
        "| | served from cache | first token: median | p90 | ideal: median | first token / ideal: median | turns that re-read history |"
    );
    println!("|---|---|---|---|---|---|---|");
}

/// One row: each figure is the median over the runs.
fn summary_row(name: &str, runs: &[impl std::ops::Deref<Target = [Evaluation]>]) {
    let figures: Vec<Summary> = runs
        .iter()
        .map(|r| Summary::of(&r[FROM_TURN - 1..]))
        .collect();
    let median = |f: fn(&Summary) -> f64| {
        let mut values: Vec<f64> = figures.iter().map(f).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let turns = TURNS - FROM_TURN + 1;
    let rereads = median(|s| s.rereads as f64);
    println!(
        "| {name} | {:.0}% | {:.1} s | {:.1} s | {:.1} s | {:.2}× | {rereads:.0} of {turns} (one per {:.1} turns) |",
        median(|s| s.cached_share) * 100.0,
        median(|s| s.ttft_median),
        median(|s| s.ttft_p90),
        median(|s| s.ideal_median),
        median(|s| s.ratio_median),
        turns as f64 / rereads.max(1.0),
    );
}

struct Summary {
    cached_share: f64,
    ttft_median: f64,
    ttft_p90: f64,
    ideal_median: f64,
    /// The median over turns of each turn's wait over its ideal.
    ratio_median: f64,
    rereads: usize,
}

impl Summary {
    fn of(turns: &[Evaluation]) -> Self {
        let prompt: u64 = turns.iter().map(|e| e.prompt_tokens).sum();
        let cached: u64 = turns.iter().map(|e| e.cached_tokens).sum();
        let ideal: Vec<f64> = turns
            .iter()
            .map(|e| e.ideal_tokens as f64 / RunnerSettings::default().prompt_rate)
            .collect();
        let ttft: Vec<f64> = turns.iter().map(seconds).collect();
        let ratios: Vec<f64> = ttft.iter().zip(&ideal).map(|(t, i)| t / i).collect();
        Self {
            cached_share: cached as f64 / prompt as f64,
            ttft_median: percentile(&ttft, 0.5),
            ttft_p90: percentile(&ttft, 0.9),
            ideal_median: percentile(&ideal, 0.5),
            ratio_median: percentile(&ratios, 0.5),
            rereads: turns.iter().filter(|e| reread(e)).count(),
        }
    }
}

/// Nearest rank.
fn percentile(values: &[f64], share: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((share * sorted.len() as f64).ceil() as usize).max(1);
    sorted[rank - 1]
}

/// Mean question and answer size, in the simulated tokens.
fn averages(conversation: &[(String, String)]) -> (f64, f64) {
    let tokens = |s: &String| s.len() as f64 / 4.0;
    let n = conversation.len() as f64;
    (
        conversation.iter().map(|(q, _)| tokens(q)).sum::<f64>() / n,
        conversation.iter().map(|(_, a)| tokens(a)).sum::<f64>() / n,
    )
}

/// Forty questions and answers of the lengths a person and a small model with a "keep
/// answers short" persona write: questions of 6–30 words, answers of 25–90.
fn conversation() -> Vec<(String, String)> {
    const WORDS: &[&str] = &[
        "the",
        "pi",
        "fan",
        "thermals",
        "runs",
        "quietly",
        "under",
        "load",
        "and",
        "a",
        "heatsink",
        "keeps",
        "it",
        "cool",
        "while",
        "ollama",
        "answers",
        "slowly",
        "because",
        "memory",
        "is",
        "small",
        "so",
        "models",
        "should",
        "stay",
        "tiny",
        "like",
        "gemma",
        "which",
        "fits",
        "in",
        "four",
        "gigabytes",
        "with",
        "room",
        "for",
        "the",
        "system",
        "garden",
        "sensors",
        "report",
        "moisture",
        "every",
        "hour",
        "to",
        "a",
        "database",
        "on",
        "an",
        "ssd",
        "that",
        "survives",
        "power",
        "cuts",
        "better",
        "than",
        "cards",
    ];
    let mut seed: u64 = 0x5eed;
    let mut next = move |range: std::ops::RangeInclusive<usize>| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        range.start() + (seed >> 33) as usize % (range.end() - range.start() + 1)
    };
    let mut sentence = move |prefix: String, words: std::ops::RangeInclusive<usize>| {
        let count = next(words);
        let body: Vec<&str> = (0..count)
            .map(|_| WORDS[next(0..=WORDS.len() - 1)])
            .collect();
        format!("{prefix} {}.", body.join(" "))
    };
    (1..=TURNS)
        .map(|turn| {
            let question = sentence(format!("Question {turn}:"), 6..=30);
            (question, sentence(format!("Answer {turn}:"), 25..=90))
        })
        .collect()
}
