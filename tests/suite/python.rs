//! Guests written in Python (componentize-py) run under the same sandbox as Rust guests:
//! the same limits fail them with the same one-line reasons, nothing on the host is in
//! reach (files, environment, sockets), the Python persona passes the Rust persona's
//! fixtures, and the Python shaper hides secrets, even mid-stream.

use std::time::{Duration, Instant};

use pi_agent::pipeline::{CompileSource, FailureKind, FormatOutcome, Pipeline};
use pi_agent_tests::fake_weather::FakeWeather;
use pi_agent_tests::{Scratch, direct_reply, format, guests, load, python, shape, user_prompt};

/// A pipeline of one stage named `guest` running `wasm`, under `limits` (TOML lines).
async fn single(scratch: &Scratch, wasm: &str, limits: &str) -> Pipeline {
    load(&scratch.single_stage("guest", wasm, limits)).await
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
        FormatOutcome::Prompt(user_prompt("🐍 HELLO"))
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
    let shaped = shape(&pipeline, "raise", true).await;
    assert!(matches!(
        shaped.unwrap_err().kind,
        FailureKind::Raised { .. }
    ));
    assert!(format(&pipeline, "fine").await.is_ok());
}

#[tokio::test]
async fn files_and_the_environment_are_out_of_reach() {
    // The host's own environment is never empty (cargo sets CARGO_* for every test); none
    // of it reaches a guest. (Not set here: tests share one process, and setting a variable
    // while other threads read the environment is unsound.)
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
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

#[tokio::test]
async fn a_secret_is_never_shown_half_written_while_the_reply_streams() {
    let scratch = Scratch::default();
    let pipeline = single(&scratch, python(guests::PY_REDACT), "").await;
    let key = "sk-proj-abcdefghijklmnopqrstuvwx";
    let shaped = async |text: &str, done: bool| shape(&pipeline, text, done).await.unwrap().text;
    let reply = format!("Your key is {key} and card 4111 1111 1111 1111, keep them safe.");
    let complete = shaped(&reply, true).await;
    assert_eq!(
        complete,
        "Your key is [API key hidden] and card [card number hidden], keep them safe."
    );
    // Every partial the stream may bring, cut anywhere: no part of a secret is shown, and
    // what is shown is the start of the final text (held back, never taken back).
    for end in (1..reply.len()).filter(|&end| reply.is_char_boundary(end)) {
        let shown = shaped(&reply[..end], false).await;
        assert!(
            !shown.contains("sk-") && !shown.contains("4111"),
            "{end}: {shown}"
        );
        assert!(complete.starts_with(&shown), "{end}: {shown}");
    }
}
