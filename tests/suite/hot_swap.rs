//! Swapping guests while the bot runs: the real `pi-agent run` watches its pipeline's
//! files, and a new pipeline is used only once it loaded completely; a broken one is
//! refused, the admins are told, and the old one keeps serving.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pi_agent::pipeline::PRECOMPILED_DIR;
use pi_agent_tests::bot::{FRIEND, Harness, OWNER, PATIENCE};
use pi_agent_tests::fake_ollama::Script;
use pi_agent_tests::{guests, python};

/// A directory with `fmt.wasm` (the formatter under test) and a manifest using it before
/// the telegram-html shaper.
struct SwapDir {
    dir: PathBuf,
}

impl SwapDir {
    fn new(h: &Harness, formatter: &str) -> Self {
        let dir = h.scratch.path().join("swap");
        std::fs::create_dir_all(&dir).unwrap();
        let swap = Self { dir };
        swap.replace_formatter(&std::fs::read(formatter).unwrap());
        swap.write_manifest("");
        swap
    }

    fn manifest(&self) -> PathBuf {
        self.dir.join("pipeline.toml")
    }

    /// Rewrites the manifest, with `config` as the formatter's `[stage.config]` lines.
    fn write_manifest(&self, config: &str) {
        let text = format!(
            "[[stage]]\nname = \"fmt\"\nguest = \"fmt.wasm\"\n[stage.config]\n{config}\n[[stage]]\nname = \"html\"\nguest = {:?}\n",
            guests::TELEGRAM_HTML
        );
        replace_atomically(&self.manifest(), text.as_bytes());
    }

    fn replace_formatter(&self, bytes: &[u8]) {
        replace_atomically(&self.dir.join("fmt.wasm"), bytes);
    }

    /// Copies what `pipeline compile` left beside `guest` into `precompiled/` here, as a
    /// deployment to a Pi does before the guest itself.
    fn copy_precompiled(&self, guest: &str) {
        let from = Path::new(guest).parent().unwrap().join(PRECOMPILED_DIR);
        let to = self.dir.join(PRECOMPILED_DIR);
        std::fs::create_dir_all(&to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap().path();
            replace_atomically(
                &to.join(entry.file_name().unwrap()),
                &std::fs::read(&entry).unwrap(),
            );
        }
    }
}

/// What `just build-guests` does: write a temporary file, rename it into place.
fn replace_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Puts a broken pipeline in place.
type BreakIt<'a> = Box<dyn Fn() + 'a>;

async fn harness_with(formatter: &str) -> (Harness, SwapDir) {
    let mut h = Harness::start(env!("CARGO_BIN_EXE_pi-agent-cli")).await;
    let swap = SwapDir::new(&h, formatter);
    h.use_manifest(swap.manifest());
    (h, swap)
}

fn reloads(h: &Harness) -> usize {
    h.logs().matches("pipeline reloaded in").count()
}

async fn wait_for_reloads(h: &Harness, count: usize) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while reloads(h) < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no reload; log:\n{}",
            h.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends `text` and waits for the complete echo; returns what the user saw.
async fn ask(h: &Harness, text: &str) -> String {
    h.telegram.push_message(FRIEND, FRIEND, text);
    let lower = text.to_lowercase();
    h.wait_for_message(FRIEND, |m| {
        m.visible_text.to_lowercase() == format!("echo: {lower}")
    })
    .await
    .visible_text
}

#[tokio::test(flavor = "multi_thread")]
async fn a_formatter_swapped_mid_stream_serves_every_message_wholly_old_or_new() {
    // Old pipeline: hostile uppercases the message and (as a shaper) the reply. New one:
    // persona (no system prompt configured) leaves the message alone.
    let (mut h, swap) = harness_with(guests::HOSTILE).await;
    h.llm
        .set_default_script(Script::echo().with_token_delay(Duration::from_millis(30)));
    let _bot = h.bot(&[]);
    h.wait_until_polling().await; // the file watch is on before polling starts
    let texts: Vec<String> = (0..8).map(|i| format!("message number {i}")).collect();
    for (i, text) in texts.iter().enumerate() {
        h.telegram.push_message(FRIEND, FRIEND, text);
        if i == 3 {
            swap.replace_formatter(&std::fs::read(guests::PERSONA).unwrap());
        }
    }
    for text in &texts {
        let upper = text.to_uppercase();
        let reply = h
            .wait_for_message(FRIEND, |m| {
                m.visible_text == format!("echo: {text}")
                    || m.visible_text == format!("ECHO: {upper}")
            })
            .await;
        assert!(!reply.visible_text.contains('⚠'), "{reply:?}");
    }
    wait_for_reloads(&h, 1).await;
    assert_eq!(
        ask(&h, "after the swap").await,
        "echo: after the swap",
        "the new formatter serves"
    );
    let answers = h
        .telegram
        .sent_messages(FRIEND)
        .iter()
        .filter(|m| m.visible_text.to_lowercase().starts_with("echo: "))
        .count();
    assert_eq!(answers, texts.len() + 1, "none lost, none failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_guest_swapped_in_serves_the_next_message_without_compiling_on_the_pi() {
    let (mut h, swap) = harness_with(guests::PERSONA).await;
    let _bot = h.bot(&[]);
    h.wait_until_polling().await;
    assert_eq!(ask(&h, "before the swap").await, "echo: before the swap");
    // py-hostile uppercases the message with a snake in front and, as a shaper, the reply.
    swap.copy_precompiled(python(guests::PY_HOSTILE));
    swap.replace_formatter(&std::fs::read(guests::PY_HOSTILE).unwrap());
    wait_for_reloads(&h, 1).await;
    h.telegram.push_message(FRIEND, FRIEND, "after the swap");
    h.wait_for_message(FRIEND, |m| m.visible_text == "🐍 ECHO: 🐍 AFTER THE SWAP")
        .await;
    assert!(
        h.logs().contains("fmt (formatter+shaper, ") && h.logs().contains(", precompiled)"),
        "the Python guest came from precompiled/, not Cranelift: {}",
        h.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_guests_are_refused_admins_are_told_and_a_fix_is_picked_up() {
    let (mut h, swap) = harness_with(guests::HOSTILE).await;
    let _bot = h.bot(&[]);
    // The admin's chat must exist before the bot can write to it.
    h.telegram.push_message(OWNER, OWNER, "/help");
    h.wait_for_message(OWNER, |m| m.text.contains("/reset"))
        .await;

    let not_a_stage = std::fs::read(guests::NOT_A_STAGE).unwrap();
    let cases: [(&str, BreakIt); 3] = [
        (
            "is not a valid WebAssembly component",
            Box::new(|| swap.replace_formatter(b"\0asm garbage bytes")),
        ),
        (
            "exports neither a formatter nor a shaper",
            Box::new(|| swap.replace_formatter(&not_a_stage)),
        ),
        (
            "smoke test of",
            Box::new(|| {
                swap.replace_formatter(&std::fs::read(guests::HOSTILE).unwrap());
                swap.write_manifest("always = \"panic\"");
            }),
        ),
    ];
    for (n, (problem, break_it)) in cases.iter().enumerate() {
        break_it();
        let told = h
            .wait_for_message(OWNER, |m| {
                m.text.contains("Pipeline reload failed") && m.text.contains(problem)
            })
            .await;
        assert!(
            told.text.contains("stage 'fmt'"),
            "names the stage: {}",
            told.text
        );
        // hostile is also a shaper: the old pipeline's replies are all uppercase.
        assert_eq!(
            ask(&h, &format!("still there {n}?")).await,
            format!("ECHO: STILL THERE {n}?"),
            "the old pipeline serves"
        );
    }
    let failures = h
        .telegram
        .sent_messages(OWNER)
        .iter()
        .filter(|m| m.text.contains("Pipeline reload failed"))
        .count();
    assert_eq!(
        failures,
        3,
        "one message per failure: {:#?}",
        h.telegram.sent_messages(OWNER)
    );
    assert!(
        h.logs()
            .contains("pipeline reload failed, the old pipeline keeps serving")
    );

    // The fix: a good guest and a clean manifest.
    swap.write_manifest("");
    swap.replace_formatter(&std::fs::read(guests::PERSONA).unwrap());
    wait_for_reloads(&h, 1).await;
    assert_eq!(ask(&h, "fixed?").await, "echo: fixed?");
}

#[tokio::test(flavor = "multi_thread")]
async fn rapid_writes_cause_few_reloads_and_end_on_the_last_version() {
    let (mut h, swap) = harness_with(guests::HOSTILE).await;
    let _bot = h.bot(&[]);
    h.telegram.push_message(FRIEND, FRIEND, "config:version");
    // hostile answers with its config value, and as a shaper uppercases it.
    h.wait_for_message(FRIEND, |m| m.visible_text == "<UNSET>")
        .await;
    for version in 1..=20 {
        swap.write_manifest(&format!("version = \"v{version}\""));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_for_reloads(&h, 1).await;
    tokio::time::sleep(Duration::from_secs(1)).await; // let any trailing reload finish
    h.telegram.push_message(FRIEND, FRIEND, "config:version");
    h.wait_for_message(FRIEND, |m| m.visible_text == "V20")
        .await;
    let count = reloads(&h);
    assert!((1..=4).contains(&count), "20 writes caused {count} reloads");
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_by_command_and_by_sighup() {
    let (mut h, _swap) = harness_with(guests::HOSTILE).await;
    let bot = h.bot(&[]);
    h.telegram.push_message(FRIEND, FRIEND, "/reload");
    h.wait_for_message(FRIEND, |m| m.text.contains("for the bot's admins"))
        .await;
    h.telegram.push_message(OWNER, OWNER, "/reload");
    let report = h
        .wait_for_message(OWNER, |m| m.text.starts_with("✅ pipeline reloaded in"))
        .await;
    assert!(
        report.text.contains("fmt (formatter+shaper, ") && report.text.contains("unchanged"),
        "{}",
        report.text
    );

    let status = std::process::Command::new("kill")
        .args(["-HUP", &bot.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_for_reloads(&h, 2).await;
    assert!(h.logs().contains("trigger=\"SIGHUP\""), "{}", h.logs());
    h.telegram.push_message(OWNER, OWNER, "/status");
    h.wait_for_message(OWNER, |m| {
        m.text.contains("Pipeline: fmt (formatter+shaper, ")
            && m.text.contains(", WIT 0.3.0, loaded")
    })
    .await;
}
