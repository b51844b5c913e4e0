//! The sandbox holds against hostile guests: each misbehaviour fails *that call* with an
//! error naming the stage and the exact reason, within the call's wall-clock deadline
//! whatever the guest waits on, and the next call through the same pipeline works.

use std::time::{Duration, Instant};

use pi_agent::pipeline::{FailureKind, FormatOutcome, MEMORY_SLOTS, Pipeline};
use pi_agent::prompt::{ChatContext, Reply, TextFormat};
use pi_agent_tests::{Scratch, direct_reply, format, guests, load, shape, user_prompt};

/// A pipeline of the hostile guest as its only stage, with `limits` as TOML lines.
async fn hostile(scratch: &Scratch, limits: &str) -> Pipeline {
    load(&scratch.single_stage("hostile", guests::HOSTILE, limits)).await
}

/// Asserts that `command` fails with `expected` and a short message for the user, and
/// that the next call still works.
async fn assert_fails_then_recovers(
    pipeline: &Pipeline,
    command: &str,
    expected: impl Fn(&FailureKind) -> bool,
) {
    let error = format(pipeline, command).await.expect_err(command);
    assert_eq!(error.stage, "hostile");
    assert!(
        expected(&error.kind),
        "{command}: unexpected failure {:?}",
        error.kind
    );
    let message = error.to_string();
    assert!(
        message.starts_with("pipeline stage 'hostile' "),
        "{message}"
    );
    // One short sentence: no wasm backtrace, offsets or error chains.
    assert!(
        message.len() < 160 && !message.contains('\n') && !message.contains("0x"),
        "{message}"
    );
    let next = format(pipeline, "still there?")
        .await
        .expect("the next call works");
    assert_eq!(next, FormatOutcome::Prompt(user_prompt("STILL THERE?")));
}

/// Asserts that `command`, as a formatter and as a shaper, times out at the stage's 500 ms
/// deadline, returning within it plus a loose bound for slow CI machines.
async fn assert_times_out(command: &str) {
    let scratch = Scratch::default();
    let pipeline = hostile(&scratch, "timeout_ms = 500").await;
    let timeout = FailureKind::Timeout(Duration::from_millis(500));
    let started = Instant::now();
    assert_fails_then_recovers(&pipeline, command, |k| *k == timeout).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_millis(1500),
        "{command} as a formatter: {took:?}"
    );
    let started = Instant::now();
    assert_eq!(
        shape(&pipeline, command, true).await.unwrap_err().kind,
        timeout
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "{command} as a shaper: {took:?}"
    );
}

#[tokio::test]
async fn an_endless_loop_times_out() {
    assert_times_out("loop").await;
}

#[tokio::test]
async fn a_guest_blocked_in_a_wasi_sleep_times_out() {
    assert_times_out("sleep:30000").await;
}

#[tokio::test]
async fn a_guest_sleeping_in_a_loop_times_out() {
    assert_times_out("sleep-loop").await;
}

#[tokio::test]
async fn a_guest_waiting_on_a_pollable_that_never_becomes_ready_times_out() {
    assert_times_out("wait-forever").await;
}

/// On a single-threaded runtime, as a Pi's one worker would be: while one call waits out
/// its deadline in a sleep, and another loops, other calls are answered at once.
#[tokio::test(flavor = "current_thread")]
async fn a_waiting_or_looping_guest_does_not_hold_up_other_calls() {
    let scratch = Scratch::default();
    let pipeline = hostile(&scratch, "timeout_ms = 1000").await;
    let stalled =
        async { tokio::join!(format(&pipeline, "sleep:30000"), format(&pipeline, "loop")) };
    let others = async {
        let started = Instant::now();
        for n in 0..5 {
            let outcome = format(&pipeline, &format!("hello {n}")).await.unwrap();
            assert_eq!(
                outcome,
                FormatOutcome::Prompt(user_prompt(&format!("HELLO {n}")))
            );
        }
        started.elapsed()
    };
    let ((sleeper, looper), others_took) = tokio::join!(stalled, others);
    assert!(matches!(sleeper.unwrap_err().kind, FailureKind::Timeout(_)));
    assert!(matches!(looper.unwrap_err().kind, FailureKind::Timeout(_)));
    assert!(
        others_took < Duration::from_millis(500),
        "other calls waited {others_took:?} for the stalled ones"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_calls_at_once_than_pool_slots_wait_for_one_and_keep_their_own_deadline() {
    let scratch = Scratch::default();
    let pipeline = std::sync::Arc::new(hostile(&scratch, "timeout_ms = 100").await);
    // The hostile guest has one memory: each call takes one slot.
    let callers = MEMORY_SLOTS as usize * 5 / 2;
    let calls: Vec<_> = (0..callers)
        .map(|_| {
            let pipeline = pipeline.clone();
            tokio::spawn(async move { format(&pipeline, "loop").await.expect_err("loop").kind })
        })
        .collect();
    let mut failures = Vec::new();
    for call in calls {
        failures.push(call.await.unwrap());
    }
    // Every call got an instance (none failed on a full pool) and timed out on its own
    // deadline, counted from when it got its slot.
    assert!(
        failures
            .iter()
            .all(|k| *k == FailureKind::Timeout(Duration::from_millis(100))),
        "{failures:?}"
    );
}

#[tokio::test]
async fn unbounded_allocation_hits_the_memory_cap() {
    let scratch = Scratch::default();
    let pipeline = hostile(&scratch, "memory_limit_mib = 16").await;
    assert_fails_then_recovers(&pipeline, "alloc", |k| {
        *k == FailureKind::MemoryLimit { limit_mib: 16 }
    })
    .await;
}

#[tokio::test]
async fn a_panic_fails_with_the_panic_message() {
    let scratch = Scratch::default();
    let pipeline = hostile(&scratch, "").await;
    assert_fails_then_recovers(&pipeline, "panic", |k| {
        *k == FailureKind::Panic {
            message: "hostile guest panics on purpose".into(),
        }
    })
    .await;
}

#[tokio::test]
async fn a_100_mb_answer_cannot_even_be_built_under_the_memory_cap() {
    let scratch = Scratch::default();
    let pipeline = hostile(&scratch, "memory_limit_mib = 64").await;
    assert_fails_then_recovers(&pipeline, "huge:100000000", |k| {
        *k == FailureKind::MemoryLimit { limit_mib: 64 }
    })
    .await;
}

#[tokio::test]
async fn an_answer_over_the_output_cap_is_refused() {
    let scratch = Scratch::default();
    // Enough memory to build the 100 MB string: the output cap is what stops it.
    let pipeline = hostile(&scratch, "memory_limit_mib = 256\nmax_output_kib = 64").await;
    assert_fails_then_recovers(&pipeline, "huge:100000000", |k| {
        *k == FailureKind::OutputTooLarge {
            actual: 100_000_000,
            limit: 64 * 1024,
        }
    })
    .await;
    // The same cap guards shapers.
    let error = shape(&pipeline, "huge:70000", true).await.unwrap_err();
    assert_eq!(
        error.kind,
        FailureKind::OutputTooLarge {
            actual: 70_000,
            limit: 64 * 1024
        }
    );
    assert_eq!(shape(&pipeline, "fine", true).await.unwrap().text, "FINE");
}

#[tokio::test]
async fn files_are_out_of_reach() {
    let scratch = Scratch::default();
    let secret = scratch.path().join("secret.txt");
    std::fs::write(&secret, "token=123").unwrap();
    let pipeline = hostile(&scratch, "").await;
    for path in ["/etc/passwd", secret.to_str().unwrap(), "secret.txt", "."] {
        let command = format!("read-file:{path}");
        assert_fails_then_recovers(&pipeline, &command, |k| match k {
            FailureKind::Panic { message } => message.starts_with(&format!("cannot read {path}:")),
            _ => false,
        })
        .await;
    }
}

#[tokio::test]
async fn the_environment_is_empty() {
    // The host's own environment is never empty (cargo sets CARGO_* for every test); none
    // of it reaches a guest. (Not set here: tests share one process, and setting a variable
    // while other threads read the environment is unsound.)
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
    let scratch = Scratch::default();
    let pipeline = hostile(&scratch, "").await;
    assert_fails_then_recovers(&pipeline, "read-env", |k| {
        *k == FailureKind::Panic {
            message: "environment is empty".into(),
        }
    })
    .await;
}

#[tokio::test]
async fn stage_config_reaches_the_guest() {
    let scratch = Scratch::default();
    let pipeline = hostile(&scratch, "[stage.config]\ngreeting = \"hej\"\ncount = 3").await;
    for (key, value) in [("greeting", "hej"), ("count", "3"), ("missing", "<unset>")] {
        let answer = format(&pipeline, &format!("config:{key}")).await.unwrap();
        assert_eq!(direct_reply(answer), value);
    }
}

#[tokio::test]
async fn formatters_can_reject_or_answer_directly_and_shapers_still_run() {
    let scratch = Scratch::default();
    let pipeline = load(&scratch.manifest(&format!(
        "[[stage]]\nname = \"hostile\"\nguest = {:?}\n[[stage]]\nname = \"html\"\nguest = {:?}\n",
        guests::HOSTILE,
        guests::TELEGRAM_HTML
    )))
    .await;
    assert_eq!(
        format(&pipeline, "reject:not today").await.unwrap(),
        FormatOutcome::Rejected {
            stage: "hostile".into(),
            reason: "not today".into()
        }
    );
    let FormatOutcome::Reply { prompt, reply } =
        format(&pipeline, "reply:**direct**").await.unwrap()
    else {
        panic!()
    };
    let shaped = pipeline
        .shape(&ChatContext::default(), &prompt, reply, true)
        .await
        .unwrap();
    // hostile uppercases, then telegram-html renders.
    assert_eq!(
        shaped,
        Reply {
            text: "<b>DIRECT</b>".into(),
            format: TextFormat::Html
        }
    );
}

#[tokio::test]
async fn a_guest_that_exits_is_told_apart_from_a_crash() {
    let scratch = Scratch::default();
    let pipeline = hostile(&scratch, "").await;
    // WASI 0.2's `exit` takes a result: a guest exits with status 0 or 1.
    for code in [0, 1] {
        assert_fails_then_recovers(&pipeline, &format!("exit:{code}"), |k| {
            *k == FailureKind::Exited { code }
        })
        .await;
    }
    let error = format(&pipeline, "exit:0").await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "pipeline stage 'hostile' exited (status 0) instead of answering"
    );
}

#[tokio::test]
async fn a_guest_failing_its_smoke_test_is_refused_with_a_short_reason() {
    let scratch = Scratch::default();
    // A guest that traps from its very first call: refused at load, with a short reason.
    let manifest = scratch.single_stage(
        "hostile",
        guests::HOSTILE,
        "[stage.config]\nalways = \"exit:1\"",
    );
    let error = pi_agent_tests::try_load(&manifest, &pi_agent::pipeline::CompileCache::disabled())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("exited (status 1) instead of answering"),
        "{error}"
    );
    assert!(
        !error.contains("backtrace") && !error.contains("0x"),
        "{error}"
    );
}

#[tokio::test]
async fn stdin_is_empty_and_reading_it_does_not_wait() {
    let scratch = Scratch::default();
    let pipeline = hostile(&scratch, "timeout_ms = 500").await;
    let answer = format(&pipeline, "read-stdin").await.unwrap();
    assert_eq!(direct_reply(answer), "stdin: 0 bytes");
}

#[tokio::test]
async fn an_honest_guest_working_50_ms_on_20_mib_under_a_32_mib_cap_succeeds() {
    let scratch = Scratch::default();
    let pipeline = hostile(&scratch, "memory_limit_mib = 32\ntimeout_ms = 500").await;
    for _ in 0..3 {
        let answer = format(&pipeline, "honest:50:20").await.unwrap();
        assert!(direct_reply(answer).starts_with("worked 50 ms on 20 MiB"));
    }
}

#[tokio::test]
async fn floods_of_log_lines_and_output_do_not_fail_the_call() {
    // What reaches the log is bounded: see `tests/cli.rs`, which reads it.
    let scratch = Scratch::default();
    let pipeline = hostile(&scratch, "").await;
    let answer = format(&pipeline, "log-flood:100000").await.unwrap();
    assert_eq!(direct_reply(answer), "logged 100000 lines");
    let answer = format(&pipeline, "print").await.unwrap();
    assert_eq!(direct_reply(answer), "printed");
}
