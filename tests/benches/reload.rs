//! Benchmark: how long after `just build-guests` renames a new guest into place the bot
//! serves the first message with it — with the guest already in the compile cache, and
//! with a guest never seen before (compiled on the spot). Run with `just bench`.

use std::path::Path;
use std::time::{Duration, Instant};

use pi_agent_tests::bot::{FRIEND, Harness};
use pi_agent_tests::guests;

const ROUNDS: usize = 5;

#[tokio::main]
pub async fn main() {
    let mut h = Harness::start(env!("CARGO_BIN_EXE_pi-agent-cli")).await;
    let dir = h.scratch.path().join("swap");
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = dir.join("pipeline.toml");
    let text = format!(
        "[[stage]]\nname = \"fmt\"\nguest = \"fmt.wasm\"\n[[stage]]\nname = \"html\"\nguest = {:?}\n",
        guests::TELEGRAM_HTML
    );
    std::fs::write(&manifest, text).unwrap();
    // persona passes the message through; hostile uppercases it (and the reply).
    let persona = std::fs::read(guests::PERSONA).unwrap();
    let hostile = std::fs::read(guests::HOSTILE).unwrap();
    replace(&dir, &persona);
    h.use_manifest(manifest);
    let _bot = h.bot(&[]);
    h.wait_until_polling().await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut n = 0;
    let mut cached = Vec::new();
    let mut uncached = Vec::new();
    for round in 0..ROUNDS {
        // Both versions were loaded before from round 1 on: cache hits.
        for (bytes, upper) in [(&hostile, true), (&persona, false)] {
            let took = swap_and_ask(&h, &dir, bytes, upper, &mut n).await;
            if round > 0 {
                cached.push(took);
            }
        }
        // A build nobody has compiled yet: the same guest with a unique custom section.
        let fresh = with_custom_section(&hostile, round);
        uncached.push(swap_and_ask(&h, &dir, &fresh, true, &mut n).await);
        swap_and_ask(&h, &dir, &persona, false, &mut n).await;
    }
    cached.sort();
    uncached.sort();
    println!(
        "\npi-agent hot swap benchmark: rename of a new formatter → first reply from it (debounce 300 ms included)"
    );
    println!(
        "{:<44} {:>10} {:>10} {:>10}",
        "guest", "median", "min", "max"
    );
    for (label, times) in [
        ("already compiled (cache hit)", &cached),
        ("never seen before (compiled now)", &uncached),
    ] {
        let ms = |d: &Duration| format!("{} ms", d.as_millis());
        println!(
            "{label:<44} {:>10} {:>10} {:>10}",
            ms(&times[times.len() / 2]),
            ms(&times[0]),
            ms(times.last().unwrap())
        );
    }
}

/// Renames `bytes` into place as the formatter, then asks until a reply comes from it.
async fn swap_and_ask(
    h: &Harness,
    dir: &Path,
    bytes: &[u8],
    upper: bool,
    n: &mut usize,
) -> Duration {
    let started = Instant::now();
    replace(dir, bytes);
    loop {
        *n += 1;
        let text = format!("ping {n}");
        h.telegram.push_message(FRIEND, FRIEND, &text);
        let answer = h
            .wait_for_message(FRIEND, |m| {
                m.visible_text.to_lowercase() == format!("echo: {text}")
            })
            .await;
        if answer.visible_text.starts_with("ECHO") == upper {
            return started.elapsed();
        }
    }
}

fn replace(dir: &Path, bytes: &[u8]) {
    let tmp = dir.join("fmt.wasm.tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dir.join("fmt.wasm")).unwrap();
}

/// `component` with a custom section appended: the same code, a new content hash.
fn with_custom_section(component: &[u8], round: usize) -> Vec<u8> {
    let name = b"pi-agent-bench";
    let payload = round.to_le_bytes();
    let size = 1 + name.len() + payload.len();
    let mut out = component.to_vec();
    out.push(0); // custom section id
    out.push(u8::try_from(size).unwrap()); // LEB128 of a small number is the number
    out.push(u8::try_from(name.len()).unwrap());
    out.extend_from_slice(name);
    out.extend_from_slice(&payload);
    out
}
