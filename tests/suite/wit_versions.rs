//! Guests of every WIT version in one bot: a 0.3.0 guest sees exactly the chat context the
//! host has (the chat's time zone, the scheduler's run), an unknown zone reaches it as
//! "UTC", and 0.2.0 and 0.1.0 guests — plain `wit-bindgen`, no SDK — keep loading and
//! running beside it, their `kv` store included, with such a context.

use pi_agent::ids::{ChatId, TaskId, UserId};
use pi_agent::pipeline::{FormatOutcome, Pipeline, WitVersion};
use pi_agent::prompt::{ChatContext, Reply, ScheduledRun};
use pi_agent::store::Database;
use pi_agent::zone::Zone;
use pi_agent_tests::{Scratch, guests, load, load_with_kv, user_prompt};

/// A `/every` task's message in a Madrid chat, fired late after a restart.
fn scheduled_in_madrid() -> ChatContext {
    ChatContext {
        chat_id: ChatId(42),
        user_id: UserId(1001),
        time_zone: Zone::parse("Europe/Madrid").unwrap(),
        scheduled: Some(ScheduledRun {
            task_id: TaskId(7),
            due_unix_ms: 1_767_250_800_000,
            late: true,
        }),
        ..ChatContext::default()
    }
}

/// What the hostile guest answers to `context` for [`scheduled_in_madrid`].
const MADRID_CONTEXT: &str = "chat 42 zone Europe/Madrid scheduled 7 1767250800000 true";

/// The formatters' direct reply, and the prompt as the formatters before it left it.
async fn direct_reply(pipeline: &Pipeline, ctx: &ChatContext, text: &str) -> (String, String) {
    match pipeline.format(ctx, user_prompt(text)).await {
        Ok(FormatOutcome::Reply { prompt, reply }) => {
            (prompt.messages.last().unwrap().content.clone(), reply.text)
        }
        other => panic!("{text}: expected a direct reply, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_0_3_0_guest_sees_the_time_zone_and_the_scheduled_run() {
    let scratch = Scratch::default();
    let pipeline = load(&scratch.single_stage("hostile", guests::HOSTILE, "")).await;
    assert_eq!(
        pipeline.stages().next().unwrap().wit_version,
        WitVersion("0.3.0")
    );
    let ctx = scheduled_in_madrid();

    // A `/every` task's prompt reaches the formatters…
    let (_, reply) = direct_reply(&pipeline, &ctx, "context").await;
    assert_eq!(reply, MADRID_CONTEXT);
    // …and a `/remind` reminder's text the shapers.
    let shaped = pipeline
        .shape(&ctx, &user_prompt("q"), Reply::plain("context"), true)
        .await
        .unwrap();
    assert_eq!(shaped.text, MADRID_CONTEXT);

    // A person's message is not scheduled.
    let person = ChatContext {
        scheduled: None,
        ..ctx
    };
    let (_, reply) = direct_reply(&pipeline, &person, "context").await;
    assert_eq!(reply, "chat 42 zone Europe/Madrid scheduled none");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chat_without_a_zone_of_its_own_reaches_guests_in_the_default_utc() {
    let scratch = Scratch::default();
    let pipeline = load(&scratch.single_stage("hostile", guests::HOSTILE, "")).await;
    let ctx = ChatContext {
        time_zone: Zone::default(),
        ..scheduled_in_madrid()
    };
    let (_, reply) = direct_reply(&pipeline, &ctx, "context").await;
    assert_eq!(reply, "chat 42 zone UTC scheduled 7 1767250800000 true");
}

#[tokio::test(flavor = "multi_thread")]
async fn guests_of_every_wit_version_run_a_scheduled_message_in_one_pipeline() {
    let scratch = Scratch::default();
    let manifest = scratch.manifest(&format!(
        "[[stage]]\nname = \"shout\"\nguest = {shout:?}\n\
         [[stage]]\nname = \"count\"\nguest = {count:?}\n[stage.grants]\nkv_kib = 1\n\
         [[stage]]\nname = \"context\"\nguest = {hostile:?}\n[stage.config]\nalways = \"context\"\n",
        shout = guests::LEGACY_SHOUT,
        count = guests::LEGACY_KV,
        hostile = guests::HOSTILE,
    ));
    let pipeline = load(&manifest).await;
    let versions: Vec<WitVersion> = pipeline.stages().map(|s| s.wit_version).collect();
    assert_eq!(
        versions,
        [
            WitVersion("0.1.0"),
            WitVersion("0.2.0"),
            WitVersion("0.3.0")
        ]
    );

    let ctx = scheduled_in_madrid();
    // The smoke test at load was the counter's first message.
    for n in [2, 3] {
        let (formatted, reply) = direct_reply(&pipeline, &ctx, "good morning briefing").await;
        assert_eq!(formatted, format!("GOOD MORNING BRIEFING (#{n})"));
        assert_eq!(reply, MADRID_CONTEXT);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_0_2_0_guests_store_outlives_its_pipeline_and_needs_its_grant() {
    let scratch = Scratch::default();
    let kv = Database::in_memory().kv();
    let counter = scratch.single_stage("count", guests::LEGACY_KV, "[stage.grants]\nkv_kib = 1");
    let count = async |pipeline: &Pipeline| match pipeline
        .format(&ChatContext::default(), user_prompt("hi"))
        .await
    {
        Ok(FormatOutcome::Prompt(p)) => p.messages[0].content.clone(),
        other => panic!("the counter passes the prompt on, got {other:?}"),
    };

    let pipeline = load_with_kv(&counter, &kv).await;
    assert_eq!(count(&pipeline).await, "hi (#2)");
    // A reload loads (and smoke-tests) it again; the count goes on.
    let reloaded = load_with_kv(&counter, &kv).await;
    assert_eq!(count(&reloaded).await, "hi (#4)");

    let ungranted = load_with_kv(&scratch.single_stage("count", guests::LEGACY_KV, ""), &kv).await;
    assert_eq!(count(&ungranted).await, "hi (uncounted: not-granted)");
}
