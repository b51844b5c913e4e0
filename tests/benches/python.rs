//! Benchmark: what a guest written in Python costs next to the same guest in Rust —
//! `py-persona` against `persona`, the same config and the same 10-turn prompt.
//! Run with `just bench-python`; prints a table (medians; ratios against the Rust guest
//! measured in the same run, since timings on shared machines are noisy):
//!
//! - component size, and compiled size for this machine and for aarch64;
//! - cold compile (Cranelift) for this machine and for aarch64 (cross, on this machine),
//!   and the compiling process's peak memory;
//! - load from the compile cache (checksum, map, instantiate and smoke-test);
//! - the smallest `memory_limit_mib` the guest runs under;
//! - per message: the formatter call (a fresh instance from the pool, then `format`), and
//!   a trivial Python call (uppercase one message) for what instantiation alone costs;
//! - the release bot's RSS with each as its persona stage, idle and after 30 messages.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use pi_agent::pipeline::{
    Arch, CompileCache, FormatOutcome, GuestEngine, Pipeline, StageLimits, native_compiler,
};
use pi_agent::prompt::{ChatContext, ChatMessage, Prompt, Role};
use pi_agent::store::Database;
use pi_agent_tests::bot::{FRIEND, Harness};
use pi_agent_tests::fake_ollama::Script;
use pi_agent_tests::proc_stats::{mb, rss_kb};
use pi_agent_tests::samples::sample_prompt;
use pi_agent_tests::timing::{fmt, measure};
use pi_agent_tests::{Scratch, guests, python};

const THIS_BUILD: &str = env!("CARGO_BIN_EXE_pi-agent-cli");
const COMPILES: usize = 3;
const LOADS: usize = 10;
const MESSAGES: usize = 2000;
/// Bot starts per guest, alternating, for the RSS medians.
const STARTS: usize = 3;
const CHAT_MESSAGES: usize = 30;
const SETTLE: Duration = Duration::from_secs(2);

const PERSONA_CONFIG: &str = "[stage.config]\nsystem_prompt = \"You are a concise, friendly assistant running on a Raspberry Pi.\"\nfold_system_prompt = true\n";

#[tokio::main(flavor = "current_thread")]
pub async fn main() {
    let rust = guests::PERSONA;
    let py = python(guests::PY_PERSONA);
    let scratch = Scratch::default();
    let engine = GuestEngine::new().expect("engine");
    let kv = Database::in_memory().kv();
    let arch = Arch::host().expect("aarch64 or x86_64");

    let size = |path: &str| std::fs::metadata(path).unwrap().len();
    let (rust_size, py_size) = (size(rust), size(py));
    let native = native_compiler().unwrap();
    let aarch64 = Arch::Aarch64.compiler().unwrap();
    let compile = |engine: &wasmtime::Engine, path: &str| {
        let bytes = std::fs::read(path).unwrap();
        let started = Instant::now();
        let compiled = engine.precompile_component(&bytes).unwrap();
        (started.elapsed(), compiled.len() as u64)
    };
    let compiles = |engine: &wasmtime::Engine, path: &str| {
        let runs: Vec<_> = (0..COMPILES).map(|_| compile(engine, path)).collect();
        (median(runs.iter().map(|r| r.0).collect()), runs[0].1)
    };
    let (rust_cold, rust_compiled) = compiles(&native, rust);
    let (py_cold, py_compiled) = compiles(&native, py);
    let (rust_cross, rust_cross_size) = compiles(&aarch64, rust);
    let (py_cross, py_cross_size) = compiles(&aarch64, py);
    let (rust_peak, py_peak) = (compiler_peak_kb(rust), compiler_peak_kb(py));

    let manifest = |guest: &str, extra: &str| {
        scratch.single_stage("persona", guest, &format!("{extra}\n{PERSONA_CONFIG}"))
    };
    let load = async |manifest: &Path, cache: &CompileCache| {
        Pipeline::load_file(
            engine.clone(),
            manifest,
            &StageLimits::default(),
            cache,
            &kv,
        )
        .await
    };
    let cache = CompileCache::new(scratch.path().join("cache"));
    let loads = async |guest: &str| {
        let manifest = manifest(guest, "");
        load(&manifest, &cache).await.unwrap(); // compiles into the cache
        measure_p50(LOADS, async || {
            black_box(load(&manifest, &cache).await.unwrap());
        })
        .await
    };
    let (rust_load, py_load) = (loads(rust).await, loads(py).await);
    let smallest_limit = async |guest: &str| {
        for mib in 1.. {
            let manifest = manifest(guest, &format!("memory_limit_mib = {mib}"));
            if load(&manifest, &cache).await.is_ok() {
                return mib;
            }
        }
        unreachable!()
    };
    let (rust_mib, py_mib) = (smallest_limit(rust).await, smallest_limit(py).await);

    let ctx = ChatContext::default();
    let prompt = sample_prompt();
    let per_message = async |guest: &str| {
        let pipeline = load(&manifest(guest, ""), &cache).await.unwrap();
        measure_p50(MESSAGES, async || {
            let outcome = pipeline.format(&ctx, prompt.clone()).await.unwrap();
            assert!(matches!(outcome, FormatOutcome::Prompt(_)));
            black_box(outcome);
        })
        .await
    };
    let (rust_message, py_message) = (per_message(rust).await, per_message(py).await);
    let trivial = async |guest: &str| {
        let pipeline = load(&scratch.single_stage("echo", guest, ""), &cache)
            .await
            .unwrap();
        let hello = Prompt {
            messages: vec![ChatMessage::new(Role::User, "hello")],
            ..prompt.clone()
        };
        measure_p50(MESSAGES, async || {
            black_box(pipeline.format(&ctx, hello.clone()).await.unwrap());
        })
        .await
    };
    let (rust_trivial, py_trivial) = (
        trivial(guests::HOSTILE).await,
        trivial(python(guests::PY_HOSTILE)).await,
    );

    let (rust_rss, py_rss) = bot_rss(rust, py).await;

    println!(
        "\npi-agent Python guests: py-persona (componentize-py) vs persona (Rust), same config, {}-turn prompt, {arch}",
        prompt.messages.len() - 1
    );
    println!(
        "{:<58} {:>12} {:>12} {:>8}",
        "", "Rust", "Python", "Py/Rust"
    );
    let sizes = |label: &str, r: u64, p: u64| {
        println!(
            "{label:<58} {:>12} {:>12} {:>7.0}x",
            bytes(r),
            bytes(p),
            p as f64 / r as f64
        )
    };
    let times = |label: &str, r: Duration, p: Duration| {
        println!(
            "{label:<58} {:>12} {:>12} {:>7.1}x",
            fmt(r),
            fmt(p),
            p.as_secs_f64() / r.as_secs_f64()
        )
    };
    sizes("component (.wasm)", rust_size, py_size);
    sizes(
        &format!("compiled for {arch} (this machine)"),
        rust_compiled,
        py_compiled,
    );
    sizes(
        "compiled for aarch64 (cross, on this machine)",
        rust_cross_size,
        py_cross_size,
    );
    times(
        &format!("cold compile for {arch}, median of {COMPILES}"),
        rust_cold,
        py_cold,
    );
    times(
        &format!("cold compile for aarch64 (cross), median of {COMPILES}"),
        rust_cross,
        py_cross,
    );
    sizes(
        "peak RSS of `pipeline compile` (the compiling process)",
        rust_peak << 10,
        py_peak << 10,
    );
    times(
        &format!("load from the compile cache, median of {LOADS}"),
        rust_load,
        py_load,
    );
    println!(
        "{:<58} {:>9} MiB {:>8} MiB",
        "smallest memory_limit_mib it runs under", rust_mib, py_mib
    );
    times(
        &format!("per message: format (fresh instance + call), n={MESSAGES}"),
        rust_message,
        py_message,
    );
    times(
        &format!("trivial call (instance + uppercase), n={MESSAGES}"),
        rust_trivial,
        py_trivial,
    );
    for (moment, (r, p)) in [
        "bot idle RSS (release, warm cache)",
        "bot RSS after 30 messages",
    ]
    .iter()
    .zip(rust_rss.into_iter().zip(py_rss))
    {
        println!(
            "{moment:<58} {:>12} {:>12} {:>+7.1} MB",
            mb(r),
            mb(p),
            (p as f64 - r as f64) / 1024.0
        );
    }
    println!(
        "(bot RSS: median of {STARTS} starts each, alternating; the trivial call: hostile / py-hostile)"
    );
}

/// The peak RSS (kB) of `pi-agent pipeline compile` compiling `guest` for this machine,
/// as the bot's child process does on a cache miss: its `VmHWM`, read until it exits.
fn compiler_peak_kb(guest: &str) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("guest.wasm");
    std::fs::copy(guest, &copy).unwrap();
    let mut child = std::process::Command::new(THIS_BUILD)
        .args(["pipeline", "compile"])
        .arg(&copy)
        .env_clear()
        .env("DATA_DIR", dir.path().join("data"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut peak = 0;
    loop {
        // The high-water mark only grows: the last one read before the exit is the peak.
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
            && let Some(kb) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        {
            peak = kb;
        }
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success());
            return peak;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Idle and after-30-messages RSS (kB) of the release bot with `rust`, then with `py`, as
/// its persona stage: medians of `STARTS` starts each, alternating.
async fn bot_rss(rust: &str, py: &str) -> ([u64; 2], [u64; 2]) {
    let mut runs: [Vec<[u64; 2]>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..STARTS {
        for (i, guest) in [rust, py].into_iter().enumerate() {
            runs[i].push(one_bot(guest).await);
        }
    }
    let medians = |runs: &[[u64; 2]]| {
        [0, 1].map(|moment| {
            let mut values: Vec<u64> = runs.iter().map(|r| r[moment]).collect();
            values.sort();
            values[values.len() / 2]
        })
    };
    (medians(&runs[0]), medians(&runs[1]))
}

async fn one_bot(persona: &str) -> [u64; 2] {
    let mut h = Harness::start(THIS_BUILD).await;
    let text = std::fs::read_to_string(h.scratch.default_manifest())
        .unwrap()
        .replace(&format!("{:?}", guests::PERSONA), &format!("{persona:?}"));
    h.use_manifest(h.scratch.manifest(&text));
    h.llm.set_default_script(Script::reply("Fine, **thanks**."));
    // A first start fills the compile cache (telegram-html; the Python persona is
    // precompiled); the one measured starts warm, as a Pi does after its first day.
    drop(h.polling_bot(&[]).await);
    let bot = h.polling_bot(&[]).await;
    tokio::time::sleep(SETTLE).await;
    let idle = rss_kb(bot.pid());
    for n in 0..CHAT_MESSAGES {
        h.exchange(FRIEND, &format!("message {n}"), "Fine, thanks.")
            .await;
    }
    tokio::time::sleep(SETTLE).await;
    [idle, rss_kb(bot.pid())]
}

/// The median time of `n` runs of `f`.
async fn measure_p50(n: usize, f: impl AsyncFnMut()) -> Duration {
    measure(n, f).await.p50
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn bytes(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MB", n as f64 / 1e6)
    } else {
        format!("{:.0} KB", n as f64 / 1e3)
    }
}
