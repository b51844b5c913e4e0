//! What a stage may reach beyond its sandbox, and only that: HTTP to granted origins
//! (checked per request, resolved addresses too, capped per call), a private key-value
//! store within its quota — and guests of the oldest and the newest WIT version side by side
//! (tests/suite/wit_versions.rs has every version).

use std::time::{Duration, Instant};

use pi_agent::ids::{ChatId, UserId};
use pi_agent::pipeline::{FormatOutcome, Pipeline, REQUESTS_PER_CALL, WitVersion};
use pi_agent::prompt::{ChatContext, ResponseFormat};
use pi_agent::store::{Database, Enqueued, JobKind, NewJob, Origin, Turn};
use pi_agent_tests::fake_weather::FakeWeather;
use pi_agent_tests::{Scratch, guests, load, load_with_kv, user_prompt};

/// What the hostile guest answered to `command` (it answers directly, one line per
/// request for `fetch`).
async fn ask(pipeline: &Pipeline, command: &str) -> String {
    match pipeline
        .format(&ChatContext::default(), user_prompt(command))
        .await
    {
        Ok(FormatOutcome::Reply { reply, .. }) => reply.text,
        other => panic!("{command}: expected a direct reply, got {other:?}"),
    }
}

/// `fetch:` with `urls`, one answer line per request.
async fn fetch(pipeline: &Pipeline, urls: &[String]) -> Vec<String> {
    let answer = ask(pipeline, &format!("fetch:{}", urls.join(" "))).await;
    answer.lines().map(str::to_owned).collect()
}

/// The hostile guest with a 2 s deadline and `grants` (TOML lines under `[stage.grants]`).
fn hostile_manifest(scratch: &Scratch, name: &str, grants: &str) -> std::path::PathBuf {
    scratch.single_stage(
        name,
        guests::HOSTILE,
        &format!("timeout_ms = 2000\n[stage.grants]\n{grants}"),
    )
}

fn forecast(base: &str) -> String {
    format!("{base}/v1/forecast?latitude=52.52&longitude=13.41&current=temperature_2m")
}

/// The pipeline still answers after whatever came before.
async fn assert_still_serving(pipeline: &Pipeline) {
    let next = pipeline
        .format(&ChatContext::default(), user_prompt("still there?"))
        .await
        .expect("the next call works");
    assert_eq!(next, FormatOutcome::Prompt(user_prompt("STILL THERE?")));
}

const DENIED: &str =
    "error: request refused by the host (origin not granted, or too many requests)";

#[tokio::test(flavor = "multi_thread")]
async fn only_granted_origins_are_reached_and_names_never_reach_private_addresses() {
    let weather = FakeWeather::start().await;
    let ungranted = FakeWeather::start().await;
    let port = weather.port();
    let scratch = Scratch::default();
    let grants = format!(
        "http = [\"{}\", \"http://localhost:{port}\"]",
        weather.url()
    );
    let pipeline = load(&hostile_manifest(&scratch, "hostile", &grants)).await;

    let granted = fetch(&pipeline, &[forecast(&weather.url())]).await;
    assert!(granted[0].starts_with("200 "), "{granted:?}");

    let cases = [
        (
            "another host",
            forecast(&format!("http://127.0.0.2:{port}")),
            DENIED.to_owned(),
        ),
        (
            "another port",
            forecast(&ungranted.url()),
            DENIED.to_owned(),
        ),
        (
            "a redirect to an ungranted origin",
            format!(
                "{}/redirect?to={}",
                weather.url(),
                forecast(&ungranted.url())
            ),
            DENIED.to_owned(),
        ),
        (
            "a granted name that resolves to loopback",
            forecast(&format!("http://localhost:{port}")),
            "error: request refused by the host (the name resolves to a private address)"
                .to_owned(),
        ),
    ];
    for (case, url, expected) in cases {
        assert_eq!(fetch(&pipeline, &[url]).await, [expected], "{case}");
        assert_still_serving(&pipeline).await;
    }
    assert!(
        ungranted.requests().is_empty(),
        "{:?}",
        ungranted.requests()
    );
    let reached = weather.requests();
    assert_eq!(
        reached.len(),
        2,
        "the forecast and the redirect: {reached:?}"
    );
    assert!(reached[1].starts_with("/redirect?"), "{reached:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_body_or_a_server_that_never_answers_fails_the_request_not_the_call() {
    let weather = FakeWeather::start().await;
    let scratch = Scratch::default();
    let grants = format!("http = [\"{}\"]", weather.url());
    let pipeline = load(&hostile_manifest(&scratch, "hostile", &grants)).await;

    let big = fetch(&pipeline, &[format!("{}/big", weather.url())]).await;
    assert_eq!(big.len(), 1, "{}", big[..3.min(big.len())].join("\n"));
    assert!(
        big[0].starts_with("error: request failed (HTTP response body size exceeds limit"),
        "{big:?}"
    );
    assert_still_serving(&pipeline).await;

    // The request gives up a quarter of the call's 2 s before its deadline: the guest
    // answers (without the data) instead of being stopped.
    let started = Instant::now();
    let hang = fetch(&pipeline, &[format!("{}/hang", weather.url())]).await;
    let took = started.elapsed();
    assert_eq!(
        hang,
        ["error: request failed (ErrorCode::HttpResponseTimeout)"]
    );
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_millis(2000),
        "{took:?}"
    );
    assert_still_serving(&pipeline).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_sends_at_most_four_requests() {
    let weather = FakeWeather::start().await;
    let scratch = Scratch::default();
    let grants = format!("http = [\"{}\"]", weather.url());
    let pipeline = load(&hostile_manifest(&scratch, "hostile", &grants)).await;
    let urls = vec![forecast(&weather.url()); REQUESTS_PER_CALL + 1];
    let answers = fetch(&pipeline, &urls).await;
    assert_eq!(answers.len(), 5);
    assert!(
        answers[..4].iter().all(|a| a.starts_with("200 ")),
        "{answers:?}"
    );
    assert_eq!(answers[4], DENIED);
    assert_eq!(weather.requests().len(), 4);
    // The next call has its own four.
    let again = fetch(&pipeline, &[forecast(&weather.url())]).await;
    assert!(again[0].starts_with("200 "), "{again:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_grant_every_request_is_refused() {
    let weather = FakeWeather::start().await;
    let scratch = Scratch::default();
    let pipeline = load(&scratch.single_stage("hostile", guests::HOSTILE, "")).await;
    assert_eq!(
        fetch(&pipeline, &[forecast(&weather.url())]).await,
        [DENIED]
    );
    assert!(weather.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn each_stage_has_its_own_store_within_its_quota_and_it_outlives_the_pipeline() {
    let scratch = Scratch::default();
    let database = scratch.path().join("data/pi-agent.db");
    let kv = Database::open(&database).unwrap().kv();
    let notes = hostile_manifest(&scratch, "notes", "kv_kib = 1");
    let pipeline = load_with_kv(&notes, &kv).await;
    assert_eq!(ask(&pipeline, "kv-set:city=Berlin").await, "stored");
    assert_eq!(ask(&pipeline, "kv-get:city").await, "Berlin");
    assert_eq!(ask(&pipeline, "kv-set:seen:1=x").await, "stored");
    assert_eq!(ask(&pipeline, "kv-keys:seen:").await, "seen:1");
    let too_big = format!("kv-set:essay={}", "x".repeat(1024));
    assert_eq!(
        ask(&pipeline, &too_big).await,
        "kv error: KvError::QuotaExceeded(1024)"
    );
    assert_eq!(ask(&pipeline, "kv-get:essay").await, "<none>");

    // Another stage sees nothing of it; without a grant it cannot write.
    let other = load_with_kv(&hostile_manifest(&scratch, "other", "kv_kib = 1"), &kv).await;
    assert_eq!(ask(&other, "kv-get:city").await, "<none>");
    let ungranted = load_with_kv(&scratch.single_stage("notes", guests::HOSTILE, ""), &kv).await;
    assert_eq!(ask(&ungranted, "kv-get:city").await, "<none>");
    assert_eq!(
        ask(&ungranted, "kv-set:city=Oslo").await,
        "kv error: KvError::NotGranted"
    );

    // A new pipeline (a reload) and a new process (a restart) find it again.
    drop((pipeline, other, ungranted, kv));
    let kv = Database::open(&database).unwrap().kv();
    let restarted = load_with_kv(&notes, &kv).await;
    assert_eq!(ask(&restarted, "kv-get:city").await, "Berlin");
}

/// The sandbox's kv handle reaches the `guest_kv` table and nothing else: a guest with a
/// kv grant, in a database that holds a chat's history and a pending job, finds neither —
/// not by listing every key, not by naming tables, not with SQL in its keys — and its
/// writes leave them as they were.
#[tokio::test(flavor = "multi_thread")]
async fn a_kv_guest_reaches_neither_history_nor_jobs() {
    let scratch = Scratch::default();
    let database = Database::open(&scratch.path().join("data/pi-agent.db")).unwrap();
    let (jobs, history) = (database.jobs(), database.history());
    let job = |message_id, text: &str| NewJob {
        chat_id: ChatId(7),
        kind: JobKind::Message { message_id },
        user_id: UserId(42),
        text: text.into(),
        origin: Origin::default(),
        received_unix_ms: 1,
    };
    let (Enqueued::New(answered), _) = jobs.enqueue(job(1, "my PIN is 4711")).await.unwrap() else {
        panic!("a new job")
    };
    let turn = Turn {
        user: "my PIN is 4711".into(),
        assistant: "noted: 4711".into(),
    };
    jobs.complete(answered, Some(turn)).await.unwrap();
    jobs.enqueue(job(2, "the safe code is 0815")).await.unwrap();
    let before = (
        history.window(ChatId(7)).await.unwrap(),
        jobs.pending().await.unwrap(),
    );

    let pipeline = load_with_kv(
        &hostile_manifest(&scratch, "notes", "kv_kib = 1"),
        &database.kv(),
    )
    .await;
    let mut answers = Vec::new();
    for probe in [
        "kv-keys:",
        "kv-keys:%",
        "kv-get:history",
        "kv-get:pending_jobs",
        "kv-get:' OR '1'='1",
        "kv-keys:' OR 1=1 --",
        "kv-set:x'); DELETE FROM history; DELETE FROM pending_jobs; --=1",
        "kv-set:%=everything",
        "kv-keys:",
    ] {
        answers.push(ask(&pipeline, probe).await);
    }
    assert_eq!(
        answers,
        [
            "",
            "",
            "<none>",
            "<none>",
            "<none>",
            "",
            "stored",
            "stored",
            "%,x'); DELETE FROM history; DELETE FROM pending_jobs; --",
        ],
        "the guest sees its own keys only, SQL in a key is just a key"
    );
    let after = (
        history.window(ChatId(7)).await.unwrap(),
        jobs.pending().await.unwrap(),
    );
    assert_eq!(after, before, "history and jobs are as they were");
    assert_eq!(after.0.len(), 2);
    assert_eq!(after.1.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn guests_of_the_oldest_and_newest_wit_versions_run_in_one_pipeline() {
    let scratch = Scratch::default();
    let manifest = scratch.manifest(&format!(
        "[[stage]]\nname = \"asks-for-json\"\nguest = {hostile:?}\n[stage.config]\nalways = \"json\"\n\
         [[stage]]\nname = \"shout\"\nguest = {shout:?}\n\
         [[stage]]\nname = \"persona\"\nguest = {persona:?}\n[stage.config]\nsystem_prompt = \"Be brief.\"\n",
        hostile = guests::HOSTILE,
        shout = guests::LEGACY_SHOUT,
        persona = guests::PERSONA,
    ));
    let pipeline = load(&manifest).await;
    let versions: Vec<WitVersion> = pipeline.stages().map(|s| s.wit_version).collect();
    assert_eq!(
        versions,
        [
            WitVersion("0.3.0"),
            WitVersion("0.1.0"),
            WitVersion("0.3.0")
        ]
    );

    let FormatOutcome::Prompt(out) = pipeline
        .format(&ChatContext::default(), user_prompt("hello there"))
        .await
        .unwrap()
    else {
        panic!("the formatters pass the prompt on")
    };
    let texts: Vec<&str> = out.messages.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(texts, ["Be brief.", "HELLO THERE"], "{out:?}");
    // The 0.1.0 guest cannot see the response format the 0.3.0 guest before it set, and
    // does not lose it.
    assert_eq!(out.options.format, Some(ResponseFormat::Json));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_schema_that_is_not_json_fails_the_stage() {
    let scratch = Scratch::default();
    let pipeline = load(&scratch.single_stage("hostile", guests::HOSTILE, "")).await;
    let error = pipeline
        .format(&ChatContext::default(), user_prompt("schema:{not json"))
        .await
        .unwrap_err();
    assert!(
        error.to_string().starts_with(
            "pipeline stage 'hostile' set a response format whose JSON Schema is not valid JSON"
        ),
        "{error}"
    );
    let ok = pipeline
        .format(
            &ChatContext::default(),
            user_prompt(r#"schema:{"type":"object"}"#),
        )
        .await
        .unwrap();
    let FormatOutcome::Prompt(out) = ok else {
        panic!("{ok:?}")
    };
    assert_eq!(
        out.options.format,
        Some(ResponseFormat::Schema(r#"{"type":"object"}"#.into()))
    );
}
