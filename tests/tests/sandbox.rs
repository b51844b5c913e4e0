//! The sandbox holds against hostile guests: each misbehaviour fails *that call* with an
//! error naming the stage and the exact reason, and the next call through the same pipeline
//! works.

use std::time::Duration;

use pi_agent::pipeline::{FailureKind, FormatOutcome, MEMORY_SLOTS, Pipeline, StageError};
use pi_agent::prompt::{ChatContext, ChatMessage, Prompt, Reply, Role, TextFormat};
use pi_agent_tests::{Scratch, guests, load};

fn prompt(text: &str) -> Prompt {
    Prompt {
        model: "test".into(),
        messages: vec![ChatMessage::new(Role::User, text)],
        options: Default::default(),
    }
}

fn format(pipeline: &Pipeline, text: &str) -> Result<FormatOutcome, StageError> {
    pipeline.format(&ChatContext::default(), prompt(text))
}

fn shape(pipeline: &Pipeline, text: &str) -> Result<Reply, StageError> {
    pipeline.shape(
        &ChatContext::default(),
        &prompt("q"),
        Reply::plain(text),
        true,
    )
}

/// A pipeline of the hostile guest as its only stage, with `limits` as TOML lines.
fn hostile(scratch: &Scratch, limits: &str) -> Pipeline {
    load(&scratch.single_stage("hostile", guests::HOSTILE, limits))
}

/// Asserts that `command` fails with `expected` and that the next call still works.
fn assert_fails_then_recovers(
    pipeline: &Pipeline,
    command: &str,
    expected: impl Fn(&FailureKind) -> bool,
) {
    let error = format(pipeline, command).expect_err(command);
    assert_eq!(error.stage, "hostile");
    assert!(
        expected(&error.kind),
        "{command}: unexpected failure {:?}",
        error.kind
    );
    assert!(
        error.to_string().starts_with("pipeline stage 'hostile' "),
        "{error}"
    );
    let next = format(pipeline, "still there?").expect("the next call works");
    assert_eq!(next, FormatOutcome::Prompt(prompt("STILL THERE?")));
}

#[test]
fn an_endless_loop_times_out() {
    let scratch = Scratch::default();
    let pipeline = hostile(&scratch, "timeout_ms = 200");
    let started = std::time::Instant::now();
    assert_fails_then_recovers(&pipeline, "loop", |k| {
        *k == FailureKind::Timeout(Duration::from_millis(200))
    });
    // Deadline precision is one epoch tick; the bound is loose because CI machines are slow.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn more_calls_at_once_than_pool_slots_wait_for_one_and_keep_their_own_deadline() {
    let scratch = Scratch::default();
    let pipeline = hostile(&scratch, "timeout_ms = 100");
    // The hostile guest has one memory: each call takes one slot.
    let callers = MEMORY_SLOTS as usize * 5 / 2;
    let failures: Vec<FailureKind> = std::thread::scope(|scope| {
        let calls: Vec<_> = (0..callers)
            .map(|_| scope.spawn(|| format(&pipeline, "loop").expect_err("loop").kind))
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    // Every call got an instance (none failed on a full pool) and timed out on its own
    // deadline, counted from when it got its slot.
    assert!(
        failures
            .iter()
            .all(|k| *k == FailureKind::Timeout(Duration::from_millis(100))),
        "{failures:?}"
    );
}

#[test]
fn unbounded_allocation_hits_the_memory_cap() {
    let scratch = Scratch::default();
    let pipeline = hostile(&scratch, "memory_limit_mib = 16");
    assert_fails_then_recovers(&pipeline, "alloc", |k| {
        *k == FailureKind::MemoryLimit { limit_mib: 16 }
    });
}

#[test]
fn a_panic_fails_with_the_panic_message() {
    let scratch = Scratch::default();
    let pipeline = hostile(&scratch, "");
    assert_fails_then_recovers(&pipeline, "panic", |k| {
        *k == FailureKind::Panic {
            message: "hostile guest panics on purpose".into(),
        }
    });
}

#[test]
fn a_100_mb_answer_cannot_even_be_built_under_the_memory_cap() {
    let scratch = Scratch::default();
    let pipeline = hostile(&scratch, "memory_limit_mib = 64");
    assert_fails_then_recovers(&pipeline, "huge:100000000", |k| {
        *k == FailureKind::MemoryLimit { limit_mib: 64 }
    });
}

#[test]
fn an_answer_over_the_output_cap_is_refused() {
    let scratch = Scratch::default();
    // Enough memory to build the 100 MB string: the output cap is what stops it.
    let pipeline = hostile(&scratch, "memory_limit_mib = 256\nmax_output_kib = 64");
    assert_fails_then_recovers(&pipeline, "huge:100000000", |k| {
        *k == FailureKind::OutputTooLarge {
            actual: 100_000_000,
            limit: 64 * 1024,
        }
    });
    // The same cap guards shapers.
    let error = shape(&pipeline, "huge:70000").unwrap_err();
    assert_eq!(
        error.kind,
        FailureKind::OutputTooLarge {
            actual: 70_000,
            limit: 64 * 1024
        }
    );
    assert_eq!(shape(&pipeline, "fine").unwrap().text, "FINE");
}

#[test]
fn files_are_out_of_reach() {
    let scratch = Scratch::default();
    let secret = scratch.path().join("secret.txt");
    std::fs::write(&secret, "token=123").unwrap();
    let pipeline = hostile(&scratch, "");
    for path in ["/etc/passwd", secret.to_str().unwrap(), "secret.txt", "."] {
        let command = format!("read-file:{path}");
        assert_fails_then_recovers(&pipeline, &command, |k| match k {
            FailureKind::Panic { message } => message.starts_with(&format!("cannot read {path}:")),
            _ => false,
        });
    }
}

#[test]
fn the_environment_is_empty() {
    // SAFETY: set before any thread of this test reads the environment.
    unsafe { std::env::set_var("PI_AGENT_TEST_SECRET", "hunter2") };
    let scratch = Scratch::default();
    let pipeline = hostile(&scratch, "");
    assert_fails_then_recovers(&pipeline, "read-env", |k| {
        *k == FailureKind::Panic {
            message: "environment is empty".into(),
        }
    });
}

#[test]
fn stage_config_reaches_the_guest() {
    let scratch = Scratch::default();
    let pipeline = hostile(&scratch, "[stage.config]\ngreeting = \"hej\"\ncount = 3");
    let answer = |key: &str| match format(&pipeline, &format!("config:{key}")).unwrap() {
        FormatOutcome::Reply { reply, .. } => reply.text,
        other => panic!("{other:?}"),
    };
    assert_eq!(answer("greeting"), "hej");
    assert_eq!(answer("count"), "3");
    assert_eq!(answer("missing"), "<unset>");
}

#[test]
fn formatters_can_reject_or_answer_directly_and_shapers_still_run() {
    let scratch = Scratch::default();
    let pipeline = load(&scratch.manifest(&format!(
        "[[stage]]\nname = \"hostile\"\nguest = {:?}\n[[stage]]\nname = \"html\"\nguest = {:?}\n",
        guests::HOSTILE,
        guests::TELEGRAM_HTML
    )));
    assert_eq!(
        format(&pipeline, "reject:not today").unwrap(),
        FormatOutcome::Rejected {
            stage: "hostile".into(),
            reason: "not today".into()
        }
    );
    let FormatOutcome::Reply { prompt, reply } = format(&pipeline, "reply:**direct**").unwrap()
    else {
        panic!()
    };
    let shaped = pipeline
        .shape(&ChatContext::default(), &prompt, reply, true)
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
