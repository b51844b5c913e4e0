//! Guests written in Python (componentize-py) run under the same sandbox as Rust guests:
//! the same limits fail them with the same one-line reasons, nothing on the host is in
//! reach (files, environment, sockets), the Python persona passes the Rust persona's
//! fixtures, and the Python shaper hides secrets, even mid-stream.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use pi_agent::pipeline::{CompileSource, FailureKind, FormatOutcome, Pipeline, StageError};
use pi_agent::prompt::{ChatContext, ChatMessage, Prompt, Reply, Role};
use pi_agent_tests::fake_weather::FakeWeather;
use pi_agent_tests::{Scratch, guests, load, python, repo_root};

fn prompt(text: &str) -> Prompt {
    Prompt {
        model: "test".into(),
        messages: vec![ChatMessage::new(Role::User, text)],
        options: Default::default(),
    }
}

async fn format(pipeline: &Pipeline, text: &str) -> Result<FormatOutcome, StageError> {
    pipeline.format(&ChatContext::default(), prompt(text)).await
}

/// The direct reply a formatter answered with.
fn direct_reply(outcome: FormatOutcome) -> String {
    match outcome {
        FormatOutcome::Reply { reply, .. } => reply.text,
        other => panic!("expected a direct reply, got {other:?}"),
    }
}

/// A pipeline of one stage named `guest` running `wasm`, under `limits` (TOML lines).
async fn single(scratch: &Scratch, wasm: &str, limits: &str) -> Pipeline {
    load(&scratch.single_stage("guest", wasm, limits)).await
}

/// `pi-agent ARGS` in `scratch`, as a user runs it.
fn pi_agent(scratch: &Scratch, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pi-agent-cli"))
        .args(args)
        .current_dir(scratch.path())
        .env_clear()
        .env("DATA_DIR", scratch.path().join("data"))
        .output()
        .expect("running pi-agent")
}

#[tokio::test]
async fn a_python_guest_loads_from_its_precompiled_entry_with_role_and_version() {
    let scratch = Scratch::default();
    let pipeline = single(&scratch, python(guests::PY_HOSTILE), "").await;
    let stage = pipeline.stages().next().unwrap();
    assert_eq!(stage.source, CompileSource::Precompiled);
    assert_eq!(stage.role.to_string(), "formatter+shaper");
    assert_eq!(stage.wit_version.to_string(), "0.3.0");
    assert_eq!(
        format(&pipeline, "hello").await.unwrap(),
        FormatOutcome::Prompt(prompt("🐍 HELLO"))
    );
}

/// Each misbehaviour, by the Rust and by the Python hostile guest under the same limits,
/// fails that call with the same one-line error; the next call works.
#[tokio::test]
async fn python_and_rust_guests_misbehaving_alike_fail_alike() {
    let scratch = Scratch::default();
    let limits = "timeout_ms = 500\nmemory_limit_mib = 32";
    let rust = single(&scratch, guests::HOSTILE, limits).await;
    let py = single(&scratch, python(guests::PY_HOSTILE), limits).await;
    let cases = [
        ("loop", FailureKind::Timeout(Duration::from_millis(500))),
        (
            "sleep:30000",
            FailureKind::Timeout(Duration::from_millis(500)),
        ),
        ("alloc", FailureKind::MemoryLimit { limit_mib: 32 }),
        ("exit:1", FailureKind::Exited { code: 1 }),
    ];
    for (command, expected) in cases {
        for (language, pipeline) in [("Rust", &rust), ("Python", &py)] {
            let started = Instant::now();
            let error = format(pipeline, command).await.expect_err(command);
            assert_eq!(error.kind, expected, "{language}: {command}");
            assert_eq!(
                error.to_string(),
                format!("pipeline stage 'guest' {expected}"),
                "{language}: {command}"
            );
            assert!(
                started.elapsed() < Duration::from_millis(1500),
                "{language}: {command} took {:?}",
                started.elapsed()
            );
            assert!(format(pipeline, "still there?").await.is_ok(), "{language}");
        }
    }
}

#[tokio::test]
async fn an_exception_fails_the_call_with_its_type_and_message() {
    let scratch = Scratch::default();
    let pipeline = single(&scratch, python(guests::PY_HOSTILE), "").await;
    let error = format(&pipeline, "raise").await.unwrap_err();
    assert_eq!(
        error.kind,
        FailureKind::Raised {
            exception: "ValueError: hostile guest raises on purpose".into()
        }
    );
    assert_eq!(
        error.to_string(),
        "pipeline stage 'guest' raised ValueError: hostile guest raises on purpose"
    );
    // The same as a shaper.
    let shaped = pipeline
        .shape(
            &ChatContext::default(),
            &prompt("q"),
            Reply::plain("raise"),
            true,
        )
        .await;
    assert!(matches!(
        shaped.unwrap_err().kind,
        FailureKind::Raised { .. }
    ));
    assert!(format(&pipeline, "fine").await.is_ok());
}

#[tokio::test]
async fn files_and_the_environment_are_out_of_reach() {
    // SAFETY: set before any thread of this test reads the environment.
    unsafe { std::env::set_var("PI_AGENT_TEST_SECRET", "hunter2") };
    let scratch = Scratch::default();
    let secret = scratch.path().join("secret.txt");
    std::fs::write(&secret, "token=123").unwrap();
    let pipeline = single(&scratch, python(guests::PY_HOSTILE), "").await;

    let answer = direct_reply(format(&pipeline, "read-env").await.unwrap());
    assert_eq!(answer, "environment: {}");
    for path in ["/etc/passwd", secret.to_str().unwrap(), "secret.txt", "."] {
        let error = format(&pipeline, &format!("read-file:{path}"))
            .await
            .unwrap_err();
        let FailureKind::Raised { exception } = &error.kind else {
            panic!("{path}: {error}");
        };
        assert!(
            exception.starts_with("FileNotFoundError: ")
                && exception.ends_with(&format!("'{path}'")),
            "{path}: {exception}"
        );
    }
}

#[tokio::test]
async fn sockets_are_refused_and_no_connection_is_made() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let scratch = Scratch::default();
    let pipeline = single(&scratch, python(guests::PY_HOSTILE), "").await;

    let error = format(&pipeline, &format!("connect:127.0.0.1:{port}"))
        .await
        .unwrap_err();
    assert_eq!(
        error.kind,
        FailureKind::Raised {
            exception: "PermissionError: [Errno 2] Permission denied".into()
        }
    );
    let error = format(&pipeline, "resolve:localhost").await.unwrap_err();
    assert!(
        matches!(&error.kind, FailureKind::Raised { exception } if exception.starts_with("socket.gaierror: ")),
        "{error}"
    );
    assert_eq!(
        listener.accept().map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "nothing connected"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn python_guests_reach_granted_origins_over_wasi_http_and_nothing_else() {
    let granted = FakeWeather::start().await;
    let other = FakeWeather::start().await;
    let scratch = Scratch::default();
    let grants = format!(
        "timeout_ms = 2000\n[stage.grants]\nhttp = [{:?}]",
        granted.url()
    );
    let pipeline = single(&scratch, python(guests::PY_HOSTILE), &grants).await;
    let forecast = |base: String| {
        format!("{base}/v1/forecast?latitude=52.52&longitude=13.41&current=temperature_2m")
    };
    let command = format!(
        "fetch:{} {} ftp://files.example.org/x?key=s3cr3t",
        forecast(granted.url()),
        forecast(other.url())
    );
    let answer = direct_reply(format(&pipeline, &command).await.unwrap());
    let lines: Vec<&str> = answer.lines().collect();
    assert!(
        lines[0].starts_with("200 ") && lines[0].ends_with(" bytes"),
        "{answer}"
    );
    assert_eq!(
        lines[1..],
        [
            "error: request refused by the host (origin not granted, or too many requests)",
            "error: not an http(s) URL: ftp://files.example.org/x",
        ],
        "{answer}"
    );
    assert_eq!(granted.requests().len(), 1);
    assert!(
        other.requests().is_empty(),
        "the ungranted origin was never reached"
    );
}

#[test]
fn the_python_persona_passes_the_rust_personas_fixtures() {
    let scratch = Scratch::default();
    let fixtures = repo_root().join("guests/fixtures");
    let mut results = Vec::new();
    for persona in [guests::PERSONA, python(guests::PY_PERSONA)] {
        let manifest = with_persona(&scratch, persona);
        let output = pi_agent(
            &scratch,
            &[
                "pipeline",
                "test",
                "--manifest",
                manifest.to_str().unwrap(),
                fixtures.to_str().unwrap(),
            ],
        );
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{persona}:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        // The table without its timings.
        results.push(
            stdout
                .lines()
                .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>(),
        );
    }
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
    let output = pi_agent(
        &scratch,
        &["pipeline", "test", "--manifest", manifest.to_str().unwrap()],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("2 passed, 0 failed"), "{stdout}");
}

#[tokio::test]
async fn a_secret_is_never_shown_half_written_while_the_reply_streams() {
    let scratch = Scratch::default();
    let pipeline = single(&scratch, python(guests::PY_REDACT), "").await;
    let key = "sk-proj-abcdefghijklmnopqrstuvwx";
    let shape = async |text: &str, done: bool| {
        pipeline
            .shape(
                &ChatContext::default(),
                &prompt("q"),
                Reply::plain(text),
                done,
            )
            .await
            .unwrap()
            .text
    };
    let reply = format!("Your key is {key} and card 4111 1111 1111 1111, keep them safe.");
    let complete = shape(&reply, true).await;
    assert_eq!(
        complete,
        "Your key is [API key hidden] and card [card number hidden], keep them safe."
    );
    // Every partial the stream may bring, cut anywhere: no part of a secret is shown, and
    // what is shown is the start of the final text (held back, never taken back).
    for end in (1..reply.len()).filter(|&end| reply.is_char_boundary(end)) {
        let shown = shape(&reply[..end], false).await;
        assert!(
            !shown.contains("sk-") && !shown.contains("4111"),
            "{end}: {shown}"
        );
        assert!(complete.starts_with(&shown), "{end}: {shown}");
    }
}

#[test]
fn python_guests_compile_ahead_of_time_for_another_architecture() {
    let scratch = Scratch::default();
    let guest = scratch.path().join("guests/py-persona.wasm");
    std::fs::create_dir_all(guest.parent().unwrap()).unwrap();
    std::fs::copy(guests::PY_PERSONA, &guest).unwrap();
    let output = pi_agent(
        &scratch,
        &[
            "pipeline",
            "compile",
            "--target",
            "aarch64",
            "guests/py-persona.wasm",
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.starts_with("1 guest(s) for aarch64, into precompiled/ beside each:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("guests/py-persona.wasm") && stdout.contains(" MB  compiled in "),
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

    let again = pi_agent(
        &scratch,
        &[
            "pipeline",
            "compile",
            "--target",
            "aarch64",
            "guests/py-persona.wasm",
        ],
    );
    assert!(String::from_utf8_lossy(&again.stdout).contains("up to date"));
    let wrong = pi_agent(&scratch, &["pipeline", "compile", "--target", "riscv64"]);
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr)
            .contains("aarch64 (a Raspberry Pi 4 or 5 with a 64-bit OS) or x86_64"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
}
