//! The `pi-agent pipeline` command line, run as a process the way a user runs it.

use std::path::Path;
use std::process::{Command, Output};

use pi_agent::pipeline::LOG_LINES_PER_CALL;
use pi_agent_tests::{Scratch, guests, python, repo_root};

fn pi_agent(scratch: &Scratch, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pi-agent-cli"))
        .args(args)
        .current_dir(scratch.path())
        .env_clear()
        .env("DATA_DIR", scratch.path().join("data"))
        .env("RUST_LOG", "info")
        .output()
        .expect("running pi-agent")
}

/// `pipeline run --manifest MANIFEST --message MESSAGE`.
fn run_message(scratch: &Scratch, manifest: &Path, message: &str) -> Output {
    let manifest = manifest.to_str().unwrap();
    let args = [
        "pipeline",
        "run",
        "--manifest",
        manifest,
        "--message",
        message,
    ];
    pi_agent(scratch, &args)
}

/// `pipeline check --manifest MANIFEST`.
fn check(scratch: &Scratch, manifest: &Path) -> Output {
    pi_agent(
        scratch,
        &[
            "pipeline",
            "check",
            "--manifest",
            manifest.to_str().unwrap(),
        ],
    )
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn run_prints_the_prompt_and_the_shaped_reply() {
    let scratch = Scratch::default();
    let manifest = scratch.default_manifest();
    let output = pi_agent(
        &scratch,
        &[
            "pipeline",
            "run",
            "--manifest",
            manifest.to_str().unwrap(),
            "--message",
            "hi",
            "--reply",
            "**bold** <script>",
        ],
    );
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stdout.contains("[user] You are a concise, friendly assistant"),
        "{stdout}"
    );
    assert!(stdout.contains("<b>bold</b> &lt;script&gt;"), "{stdout}");
}

#[test]
fn run_takes_history_from_a_file() {
    let scratch = Scratch::default();
    let manifest = scratch.default_manifest();
    let history = scratch.path().join("history.toml");
    std::fs::write(&history, "[[history]]\nrole = \"user\"\ncontent = \"earlier question\"\n[[history]]\nrole = \"assistant\"\ncontent = \"earlier answer\"\n").unwrap();
    let output = pi_agent(
        &scratch,
        &[
            "pipeline",
            "run",
            "--manifest",
            manifest.to_str().unwrap(),
            "--message",
            "now",
            "--history",
            history.to_str().unwrap(),
        ],
    );
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stdout.contains("(3 messages)")
            && stdout.contains("[assistant] earlier answer")
            && stdout.contains("[user] now"),
        "{stdout}"
    );
}

#[test]
fn check_lists_stages_and_reports_the_cache() {
    let scratch = Scratch::default();
    let manifest = scratch.default_manifest();
    let first = check(&scratch, &manifest);
    let (stdout, stderr) = text(&first);
    assert!(first.status.success(), "{stderr}");
    assert!(stdout.contains("2 stage(s)"), "{stdout}");
    assert!(
        stdout.lines().any(|l| l.starts_with("persona")
            && l.contains("formatter")
            && l.contains("compiled")
            && l.contains("32 MiB")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("telegram-html") && l.contains("shaper")),
        "{stdout}"
    );
    let (again, _) = text(&check(&scratch, &manifest));
    assert!(
        again.lines().filter(|l| l.contains(" cached ")).count() == 2,
        "second start uses the cache: {again}"
    );
}

#[test]
fn the_shipped_fixtures_pass() {
    let scratch = Scratch::default();
    let stdout = test_passes(&scratch, &scratch.default_manifest(), None);
    let fixtures = std::fs::read_dir(repo_root().join("guests/fixtures"))
        .unwrap()
        .count();
    assert!(
        stdout.contains(&format!("{fixtures} passed, 0 failed")),
        "{stdout}"
    );
}

#[test]
fn a_failing_fixture_fails_the_run_and_says_why() {
    let scratch = Scratch::default();
    let manifest = scratch.default_manifest();
    let dir = scratch.path().join("fixtures");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("good.toml"),
        "message = \"hi\"\nreply = \"*x*\"\n[expect.reply]\nequals = \"<i>x</i>\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("bad.toml"),
        "message = \"hi\"\nreply = \"plain\"\n[expect.reply]\ncontains = [\"<b>\"]\n",
    )
    .unwrap();
    std::fs::write(dir.join("broken.toml"), "mesage = \"typo\"\n").unwrap();
    std::fs::write(
        dir.join("reject.toml"),
        "message = \"hi\"\n[expect]\nrejected = true\n",
    )
    .unwrap();
    let output = pi_agent(
        &scratch,
        &[
            "pipeline",
            "test",
            "--manifest",
            manifest.to_str().unwrap(),
            dir.to_str().unwrap(),
        ],
    );
    let (stdout, _) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("good ") && l.contains("PASS")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("bad ") && l.contains("FAIL")),
        "{stdout}"
    );
    assert!(
        stdout.contains("reply: expected to contain \"<b>\""),
        "{stdout}"
    );
    assert!(stdout.contains("unknown field `mesage`"), "{stdout}");
    assert!(
        stdout.contains("expected a rejection, the message was accepted"),
        "{stdout}"
    );
    assert!(stdout.contains("1 passed, 3 failed"), "{stdout}");
}

#[test]
fn problems_exit_non_zero_with_a_clear_message() {
    let scratch = Scratch::default();
    let missing = scratch.path().join("nope.toml");
    let output = check(&scratch, &missing);
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("cannot read pipeline manifest") && stderr.contains("nope.toml"),
        "{stderr}"
    );

    let output = Command::new(env!("CARGO_BIN_EXE_pi-agent-cli"))
        .args(["pipeline", "check"])
        .current_dir(scratch.path())
        .env_clear()
        .env("GUEST_TIMEOUT_MS", "soon")
        .env("GUEST_MEMORY_LIMIT_MIB", "-1")
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(
        output.status.code(),
        Some(2),
        "invalid configuration exits 2"
    );
    assert!(
        stderr.contains("GUEST_TIMEOUT_MS") && stderr.contains("GUEST_MEMORY_LIMIT_MIB"),
        "{stderr}"
    );
}

#[test]
fn guest_output_log_calls_and_failures_reach_the_log_tagged_with_the_stage() {
    let scratch = Scratch::default();
    let manifest = scratch.single_stage("hostile", guests::HOSTILE, "");
    let run = |message: &str| {
        let output = run_message(&scratch, &manifest, message);
        (output.status.code(), text(&output))
    };
    let logged = |stderr: &str, needles: &[&str]| {
        stderr
            .lines()
            .any(|l| needles.iter().all(|n| l.contains(n)))
    };

    let (code, (stdout, stderr)) = run("print");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("PRINTED"),
        "the hostile shaper uppercases its own answer: {stdout}"
    );
    assert!(
        logged(
            &stderr,
            &[
                "guest: line 0 of a guest",
                "stage=hostile",
                "stream=\"stdout\""
            ]
        ),
        "{stderr}"
    );
    assert!(
        logged(&stderr, &["bytes dropped", "stage=hostile"]),
        "output past the cap is dropped and reported: {stderr}"
    );
    assert!(
        stderr.len() < 64 * 1024,
        "a flood of output is capped, got {} bytes of log",
        stderr.len()
    );

    let (code, (_, stderr)) = run("log:hello from the guest");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        logged(
            &stderr,
            &["WARN", "hello from the guest", "stage=\"hostile\""]
        ),
        "{stderr}"
    );

    let (code, (_, stderr)) = run("panic");
    assert_eq!(code, Some(1));
    assert!(
        logged(
            &stderr,
            &[
                "WARN",
                "pipeline stage 'hostile' panicked: hostile guest panics on purpose"
            ]
        ),
        "{stderr}"
    );
}

/// Guests are compiled by a child `pi-agent pipeline compile`; its reason comes back whole.
#[test]
fn a_guest_that_does_not_compile_is_refused_with_the_compilers_reason() {
    let scratch = Scratch::default();
    let junk = scratch.path().join("junk.wasm");
    std::fs::write(&junk, b"\0asmnot a component at all").unwrap();
    let manifest = scratch.single_stage("junk", junk.to_str().unwrap(), "");
    let output = check(&scratch, &manifest);
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let error = stderr.lines().last().unwrap_or_default();
    assert!(
        error.starts_with("error: stage 'junk': ")
            && error.contains("junk.wasm is not a valid WebAssembly component: ")
            && !error.ends_with("component: "),
        "{stderr}"
    );
    assert_eq!(error.matches("error: ").count(), 1, "{error}");
}

#[test]
fn a_guest_flooding_the_log_leaves_its_budget_and_one_warning() {
    let scratch = Scratch::default();
    let manifest = scratch.single_stage("hostile", guests::HOSTILE, "");
    for (message, needle) in [
        ("log-flood:100000", "flooding the log"),
        ("print", "guest: line "),
    ] {
        let output = run_message(&scratch, &manifest, message);
        let (_, stderr) = text(&output);
        assert!(output.status.success(), "{stderr}");
        let guest_lines = stderr.lines().filter(|l| l.contains(needle)).count();
        assert_eq!(guest_lines, LOG_LINES_PER_CALL, "{message}: {stderr}");
        let warnings: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("over its budget"))
            .collect();
        assert_eq!(warnings.len(), 1, "{message}: {stderr}");
        assert!(warnings[0].contains("lines,"), "{}", warnings[0]);
        assert!(
            stderr.len() < 32 * 1024,
            "{message}: {} bytes of log",
            stderr.len()
        );
    }
}

/// A guest blocked in a 30 s WASI sleep under a 500 ms deadline: `pipeline run` reports
/// the timeout right after the deadline (the bound is loose for slow CI machines).
#[test]
fn run_with_a_sleeping_guest_returns_at_its_deadline() {
    let scratch = Scratch::default();
    let manifest = scratch.single_stage("hostile", guests::HOSTILE, "timeout_ms = 500");
    // Compiled once first, so the timed run loads from the cache like a restart would.
    let compiled = check(&scratch, &manifest);
    assert!(compiled.status.success(), "{}", text(&compiled).1);
    let started = std::time::Instant::now();
    let output = run_message(&scratch, &manifest, "sleep:30000");
    let took = started.elapsed();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: pipeline stage 'hostile' ran longer than its 500ms limit"),
        "{stderr}"
    );
    assert!(took < std::time::Duration::from_secs(3), "{took:?}");
}

/// The Pi 4's kernel gives a process a 39-bit (512 GiB) address space. The pipeline, and
/// its memory cap, must work inside that: run it under `ulimit -v` of 400 GiB.
#[test]
fn the_pipeline_fits_a_39_bit_address_space() {
    let scratch = Scratch::default();
    let manifest = scratch.default_manifest();
    let hostile = scratch.single_stage("hostile", guests::HOSTILE, "memory_limit_mib = 16");
    let limit_kib = 400u64 * 1024 * 1024;
    let script = format!(
        "ulimit -v {limit_kib} && \"$0\" pipeline run --manifest {m} --message hi --reply '**bold** <script>' && \
         \"$0\" pipeline run --manifest {h} --message alloc; echo \"alloc exit $?\"",
        m = manifest.display(),
        h = hostile.display(),
    );
    let output = Command::new("bash")
        .args(["-c", &script, env!("CARGO_BIN_EXE_pi-agent-cli")])
        .current_dir(scratch.path())
        .env("DATA_DIR", scratch.path().join("data"))
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(
        stdout.contains("<b>bold</b> &lt;script&gt;"),
        "{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("alloc exit 1")
            && stderr.contains("needed more than its 16 MiB memory limit"),
        "{stdout}\n{stderr}"
    );
}

#[test]
fn check_shows_each_stages_wit_version_and_grants_but_no_secret() {
    let scratch = Scratch::default();
    let manifest = scratch.manifest(&format!(
        "[[stage]]\nname = \"old\"\nguest = {:?}\n\
         [[stage]]\nname = \"count\"\nguest = {:?}\n[stage.grants]\nkv_kib = 1\n\
         [[stage]]\nname = \"tool\"\nguest = {:?}\n[stage.config]\nkey = \"${{PI_TEST_SECRET}}\"\n\
         [stage.grants]\nhttp = [\"https://api.open-meteo.com\", \"http://127.0.0.1:8089\"]\nkv_kib = 4\n",
        guests::LEGACY_SHOUT,
        guests::LEGACY_KV,
        guests::HOSTILE,
    ));
    let output = Command::new(env!("CARGO_BIN_EXE_pi-agent-cli"))
        .args([
            "pipeline",
            "check",
            "--manifest",
            manifest.to_str().unwrap(),
        ])
        .current_dir(scratch.path())
        .env_clear()
        .env("DATA_DIR", scratch.path().join("data"))
        .env("PI_TEST_SECRET", "hunter2-must-not-show")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no line for {name}: {stdout}"))
            .to_owned()
    };
    assert!(
        line("old").contains(" 0.1.0 ") && line("old").ends_with("none"),
        "{stdout}"
    );
    assert!(
        line("count").contains(" 0.2.0 ") && line("count").ends_with("kv 1 KiB"),
        "{stdout}"
    );
    assert!(
        line("tool").contains(" 0.3.0 ")
            && line("tool")
                .ends_with("http https://api.open-meteo.com, http://127.0.0.1:8089; kv 4 KiB"),
        "{stdout}"
    );
    assert!(
        !format!("{stdout}{stderr}").contains("hunter2"),
        "{stdout}{stderr}"
    );

    // Without the secret in the environment the load fails, naming it.
    let output = check(&scratch, &manifest);
    let (_, stderr) = text(&output);
    assert!(!output.status.success());
    assert!(
        stderr.contains("stage 'tool': its config uses ${PI_TEST_SECRET}, which is not set"),
        "{stderr}"
    );
}

/// `pipeline test --manifest MANIFEST [DIR]`, which must pass; what it printed.
fn test_passes(scratch: &Scratch, manifest: &Path, dir: Option<&Path>) -> String {
    let mut args = vec!["pipeline", "test", "--manifest", manifest.to_str().unwrap()];
    args.extend(dir.map(|d| d.to_str().unwrap()));
    let output = pi_agent(scratch, &args);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    stdout
}

#[test]
fn the_python_persona_passes_the_rust_personas_fixtures() {
    let scratch = Scratch::default();
    let fixtures = repo_root().join("guests/fixtures");
    // The fixture table without its timings, for the Rust persona, then the Python one.
    let results = [guests::PERSONA, python(guests::PY_PERSONA)].map(|persona| {
        let stdout = test_passes(&scratch, &with_persona(&scratch, persona), Some(&fixtures));
        stdout
            .lines()
            .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
    });
    assert!(
        results[1].contains(&"5 passed,".to_owned()),
        "{:?}",
        results[1]
    );
    assert_eq!(
        results[0], results[1],
        "the same fixtures, the same results"
    );
}

/// The default pipeline with `persona` as its persona stage's guest.
fn with_persona(scratch: &Scratch, persona: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(scratch.default_manifest()).unwrap();
    let mut table: toml::Table = toml::from_str(&text).unwrap();
    for stage in table["stage"].as_array_mut().unwrap() {
        let stage = stage.as_table_mut().unwrap();
        if stage["name"].as_str() == Some("persona") {
            stage.insert("guest".into(), persona.into());
        }
    }
    scratch.manifest(&toml::to_string(&table).unwrap())
}

#[test]
fn the_python_shaper_passes_its_fixtures() {
    let scratch = Scratch::default();
    let manifest = scratch.manifest(&format!(
        "fixtures = {:?}\n[[stage]]\nname = \"py-redact\"\nguest = {:?}\n[[stage]]\nname = \"telegram-html\"\nguest = {:?}\n",
        repo_root().join("guests/py-redact/fixtures"),
        python(guests::PY_REDACT),
        guests::TELEGRAM_HTML
    ));
    let stdout = test_passes(&scratch, &manifest, None);
    assert!(stdout.contains("2 passed, 0 failed"), "{stdout}");
}

#[test]
fn guests_compile_ahead_of_time_for_another_architecture() {
    let scratch = Scratch::default();
    // The Rust persona: what `compile` does is the same for any component, and Cranelift
    // takes well under 0.1 s on it where the Python persona takes 4.4 s on both cores
    // (`just check-qemu` runs a Python guest compiled this way on aarch64).
    let guest = scratch.path().join("guests/persona.wasm");
    std::fs::create_dir_all(guest.parent().unwrap()).unwrap();
    std::fs::copy(guests::PERSONA, &guest).unwrap();
    let compile = |target: &str| {
        let args = [
            "pipeline",
            "compile",
            "--target",
            target,
            "guests/persona.wasm",
        ];
        let output = pi_agent(&scratch, &args);
        (output.status.success(), text(&output))
    };
    let (ok, (stdout, stderr)) = compile("aarch64");
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.starts_with("1 guest(s) for aarch64, into precompiled/ beside each:")
            && stdout.contains("guests/persona.wasm")
            && stdout.contains(" MB  compiled in "),
        "{stdout}"
    );
    let entries: Vec<_> = std::fs::read_dir(scratch.path().join("guests/precompiled"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = std::fs::read(&entries[0]).unwrap();
    // An ELF object for the 64-bit Arm architecture (e_machine 183).
    assert_eq!(&entry[..4], b"\x7fELF");
    assert_eq!(u16::from_le_bytes([entry[18], entry[19]]), 183);

    let (ok, (again, _)) = compile("aarch64");
    assert!(ok && again.contains("up to date"), "{again}");
    let (ok, (_, stderr)) = compile("riscv64");
    assert!(!ok);
    assert!(
        stderr.contains("aarch64 (a Raspberry Pi 4 or 5 with a 64-bit OS) or x86_64"),
        "{stderr}"
    );
}
