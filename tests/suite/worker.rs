//! The chat service's queue and workers, in-process and on a paused clock
//! (`tokio::time::pause`): waits and deadlines are checked to the millisecond without a
//! test sleeping. The LLM and the reply sink are in-memory fakes; the pipeline is the real
//! sandbox running the hostile test guest (it upper-cases messages and replies, and
//! misbehaves on command).

use std::time::Duration;

use pi_agent::chat::{Accepted, Enqueued, JobKind, MAX_ATTEMPTS, NewJob, Origin, PendingJob};
use pi_agent::ids::{ChatId, TaskId};
use pi_agent::llm::LlmError;
use pi_agent::llm::scripted::Answer;
use pi_agent::prompt::ScheduledRun;
use pi_agent::store::Database;
use pi_agent::zone::Zone;
use pi_agent_tests::service::{GRACE, Options, Service, Shown, database_path, new_job};
use pi_agent_tests::{Scratch, guests};
use tokio::time::Instant;

/// The hostile stage's deadline in these tests.
const STAGE_TIMEOUT: Duration = Duration::from_millis(500);

// ---- the service under test ----

/// A service with `workers` workers on the hostile pipeline, and its workers running.
async fn start(workers: usize) -> Service {
    start_with(workers, Duration::from_millis(10), async |_| {}).await
}

/// Like `start`, with the LLM echoing a word per `echo_every`, and `prepare` may fill the
/// database first.
async fn start_with(
    workers: usize,
    echo_every: Duration,
    prepare: impl AsyncFnOnce(&Database),
) -> Service {
    let scratch = Scratch::default();
    let manifest = scratch.single_stage(
        "hostile",
        guests::HOSTILE,
        &format!("timeout_ms = {}", STAGE_TIMEOUT.as_millis()),
    );
    let options = Options {
        manifest,
        workers,
        echo_every,
        zone: Zone::utc(),
    };
    Service::start(scratch, options, prepare).await
}

async fn pending(scratch: &Scratch) -> Vec<PendingJob> {
    let database = Database::open(&database_path(scratch)).unwrap();
    database.jobs().pending().await.unwrap()
}

fn finish(text: &str) -> Shown {
    Shown::Finish(text.to_owned())
}

// ---- the tests ----

#[tokio::test(start_paused = true)]
async fn a_chats_messages_are_answered_in_order_while_other_chats_go_ahead() {
    let mut s = start_with(2, Duration::from_secs(1), async |_| {}).await;
    s.send(1, "one").await;
    // Chat 1 is busy: its second message waits behind the first, free worker or not.
    assert_eq!(s.send(1, "two").await, Accepted::Queued { ahead: 1 });
    s.send(2, "three").await;
    s.answered(1, 2).await;
    s.answered(2, 1).await;
    assert_eq!(s.recorder.endings(1), [finish("RE ONE"), finish("RE TWO")]);
    assert_eq!(s.recorder.endings(2), [finish("RE THREE")]);
    let asked_at = |question: &str| {
        let asked = s.llm.asked();
        asked.iter().find(|a| a.question == question).unwrap().at
    };
    let first_done = s.recorder.shown(1)[..]
        .iter()
        .find(|(_, shown)| *shown == finish("RE ONE"))
        .unwrap()
        .0;
    // Chat 2 did not wait for chat 1's first answer; chat 1's second message did.
    assert!(asked_at("THREE") < first_done, "chat 2 went ahead");
    assert!(asked_at("TWO") >= first_done, "chat 1 kept its order");
    s.shut_down().await;
}

/// A scheduled task's firing in `chat`, as the scheduler makes it.
fn task_job(chat: i64, kind: JobKind, text: &str, late: bool) -> NewJob {
    NewJob {
        kind,
        origin: Origin {
            scheduled: Some(ScheduledRun {
                task_id: TaskId(9),
                due_unix_ms: 1_764_000_000_000,
                late,
            }),
            ..Origin::default()
        },
        ..new_job(chat, 0, text)
    }
}

#[tokio::test(start_paused = true)]
async fn a_reminder_goes_through_the_shapers_only_and_does_not_wait_for_a_busy_llm() {
    let mut s = start_with(1, Duration::from_secs(1), async |_| {}).await;
    s.send(1, "a long question").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let reminder = task_job(2, JobKind::Reminder, "tea", false);
    s.service.accept(reminder).await.unwrap();
    s.answered(2, 1).await;
    // The hostile guest upper-cases what it shapes: the reminder went through the shaper.
    assert_eq!(s.recorder.endings(2), [finish("⏰ TEA")]);
    assert!(
        s.recorder.endings(1).is_empty(),
        "delivered while the only LLM worker was still answering chat 1"
    );
    assert_eq!(s.llm.asked().len(), 1, "the LLM was not asked for it");
    s.answered(1, 1).await;
    let (_, scratch) = s.shut_down().await;
    assert!(pending(&scratch).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_scheduled_prompt_is_answered_by_the_llm_under_its_announcement() {
    let s = start(1).await;
    s.service
        .accept(task_job(3, JobKind::TaskPrompt, "good morning", true))
        .await
        .unwrap();
    s.answered(3, 1).await;
    assert_eq!(
        s.llm.asked()[0].question,
        "GOOD MORNING",
        "through the formatter"
    );
    let Shown::Finish(text) = &s.recorder.endings(3)[0] else {
        panic!("{:?}", s.recorder.shown(3))
    };
    assert!(
        text.starts_with("⏰ GOOD MORNING\n(LATE: IT WAS DUE ")
            && text.ends_with("\n\nRE GOOD MORNING"),
        "{text}"
    );
    s.shut_down().await;
}

#[tokio::test(start_paused = true)]
async fn stop_delivers_what_was_written_and_ends_the_job() {
    let mut s = start(1).await;
    s.llm.push(Answer::words(
        "one two three four five six seven eight",
        Duration::from_secs(1),
    ));
    s.send(7, "count").await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(s.service.stop(ChatId(7)), "a generation was running");
    s.answered(7, 2).await;
    assert_eq!(
        s.recorder.endings(7),
        [finish("ONE TWO THREE "), Shown::Notice("⏹ Stopped.".into())]
    );
    assert!(!s.service.stop(ChatId(7)), "nothing runs any more");
    s.send(7, "next").await;
    s.answered(7, 3).await;
    assert_eq!(s.recorder.endings(7)[2], finish("RE NEXT"));
    let (_, scratch) = s.shut_down().await;
    assert!(pending(&scratch).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn on_shutdown_a_running_answer_finishes_within_the_grace_period_and_waiting_ones_stay() {
    let mut s = start(1).await;
    s.llm.push(Answer::words("a b c", Duration::from_secs(1)));
    s.send(1, "running").await;
    // Waits: the only worker is busy.
    s.send(2, "waiting").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (took, scratch) = s.shut_down().await;
    assert!(
        took >= Duration::from_millis(2500) && took < GRACE,
        "{took:?}"
    );
    let left: Vec<String> = pending(&scratch)
        .await
        .into_iter()
        .map(|j| j.message.text)
        .collect();
    assert_eq!(
        left,
        ["waiting"],
        "the running answer was delivered, the waiting one stays"
    );
}

#[tokio::test(start_paused = true)]
async fn on_shutdown_an_answer_past_the_grace_period_is_cut_and_stays_pending_uncounted() {
    let mut s = start(1).await;
    s.llm.push(Answer::Hang);
    s.send(1, "hangs").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (took, scratch) = s.shut_down().await;
    // The grace period, and not a moment for ever.
    assert!(
        took >= GRACE && took < GRACE + Duration::from_secs(2),
        "{took:?}"
    );
    let left = pending(&scratch).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].attempts, 0, "a shutdown is not the job's fault");
}

#[tokio::test(start_paused = true)]
async fn a_guest_that_sleeps_costs_its_own_message_a_timeout_and_the_next_is_served() {
    let mut s = start(1).await;
    let started = Instant::now();
    // The hostile formatter sleeps for 30 s in a WASI call.
    s.send(1, "sleep:30000").await;
    s.send(2, "hello").await;
    s.answered(1, 1).await;
    let (at, Shown::Notice(notice)) = s.recorder.shown(1).remove(0) else {
        panic!("{:?}", s.recorder.shown(1))
    };
    assert!(
        notice.contains("pipeline stage 'hostile' ran longer than its 500ms limit"),
        "{notice}"
    );
    assert!(
        at - started <= STAGE_TIMEOUT + Duration::from_millis(50),
        "{:?}",
        at - started
    );
    s.answered(2, 1).await;
    assert_eq!(s.recorder.endings(2), [finish("RE HELLO")]);
    // The same as a shaper: the LLM's answer is the command.
    s.llm
        .push(Answer::words("sleep-loop", Duration::from_millis(10)));
    s.send(3, "shape this").await;
    s.answered(3, 1).await;
    let endings = s.recorder.endings(3);
    assert!(
        matches!(&endings[0], Shown::Notice(n) if n.contains("ran longer than its 500ms limit")),
        "{endings:?}"
    );
    s.shut_down().await;
}

#[tokio::test(start_paused = true)]
async fn a_stalled_llm_fails_that_message_and_the_next_is_served() {
    let mut s = start(1).await;
    s.llm.push(Answer::FailAfter {
        after: Duration::from_secs(120),
        error: LlmError::Stalled(Duration::from_secs(120)),
    });
    let started = Instant::now();
    s.send(1, "hello?").await;
    s.send(1, "again").await;
    s.answered(1, 2).await;
    let shown = s.recorder.shown(1);
    assert_eq!(
        shown[0],
        (
            started + Duration::from_secs(120),
            Shown::Notice("⚠️ the model server stopped answering for 120s — try again".into())
        )
    );
    assert_eq!(s.recorder.endings(1)[1], finish("RE AGAIN"));
    s.shut_down().await;
}

#[tokio::test(start_paused = true)]
async fn a_job_that_was_started_max_attempts_times_is_given_up_once() {
    let s = start_with(1, Duration::from_millis(10), async |database| {
        let jobs = database.jobs();
        let (Enqueued::New(id), _) = jobs.enqueue(new_job(42, 9, "crash me")).await.unwrap() else {
            panic!("a new job")
        };
        for _ in 0..MAX_ATTEMPTS {
            jobs.record_attempt(id).await.unwrap();
        }
    })
    .await;
    s.answered(42, 1).await;
    let endings = s.recorder.endings(42);
    assert!(
        matches!(&endings[..], [Shown::Notice(n)] if n.contains("could not be processed")),
        "{endings:?}"
    );
    let admins = s.recorder.admin_messages();
    assert_eq!(admins.len(), 1, "{admins:?}");
    assert!(admins[0].contains("chat 42"), "{admins:?}");
    assert!(s.llm.asked().is_empty(), "the job was not run again");
    let (_, scratch) = s.shut_down().await;
    assert!(pending(&scratch).await.is_empty(), "the job is gone");
}

#[tokio::test(start_paused = true)]
async fn structured_output_is_shown_only_once_complete() {
    let mut s = start(1).await;
    let json = r#"{"mood": "calm", "words": 3}"#;
    // A formatter asks for JSON ("json" makes the hostile guest do so); the tokens come
    // slowly enough for several partial updates.
    s.llm.push(Answer::words(json, Duration::from_millis(700)));
    s.send(1, "json").await;
    s.answered(1, 1).await;
    // The hostile guest's shaper (the same stage) uppercases what it is given.
    let shown: Vec<Shown> = s
        .recorder
        .shown(1)
        .into_iter()
        .map(|(_, shown)| shown)
        .collect();
    assert_eq!(
        shown,
        [finish(r#"{"MOOD": "CALM", "WORDS": 3}"#)],
        "no partial JSON is shown"
    );
    // Prose still streams.
    s.llm.push(Answer::words(
        "one two three four",
        Duration::from_millis(700),
    ));
    s.send(2, "prose").await;
    s.answered(2, 1).await;
    let shown = s.recorder.shown(2);
    assert!(
        matches!(shown.first(), Some((_, Shown::Partial(_)))) && shown.len() > 1,
        "{shown:?}"
    );
    s.shut_down().await;
}
