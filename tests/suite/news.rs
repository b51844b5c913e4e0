//! The news guest against a fake news site on loopback: headlines of both feeds newest
//! first, each shown once per chat (its kv store), failing feeds named by host beside the
//! ones that worked, and only granted origins reached.

use std::path::PathBuf;

use pi_agent::pipeline::{FormatOutcome, Pipeline};
use pi_agent::prompt::{ChatContext, ChatMessage, Prompt, Role};
use pi_agent::store::Database;
use pi_agent_tests::fake_news::{
    ATOM_HEADLINES, ATOM_TITLE, FakeNews, HEADLINES, RSS_HEADLINES, RSS_TITLE,
};
use pi_agent_tests::{Scratch, guests, load, load_with_kv};

const ASK: &str = "Any news this morning?";
const BREAKING: &str = "Pi cluster <wins> the chess & go championship";

/// A one-stage pipeline's manifest: the news guest reading `feeds`, with `grants`.
fn manifest(scratch: &Scratch, feeds: &[String], grants: &str) -> PathBuf {
    scratch.single_stage(
        "news",
        guests::NEWS,
        &format!(
            "timeout_ms = 3000\n[stage.config]\nfeeds = {feeds:?}\nmax_items = 10\n\
             [stage.grants]\n{grants}"
        ),
    )
}

/// The user's message as the guest left it, for a message from `chat_id`.
async fn ask(pipeline: &Pipeline, chat_id: i64, text: &str) -> String {
    let prompt = Prompt {
        model: "test".into(),
        messages: vec![ChatMessage::new(Role::User, text)],
        options: Default::default(),
    };
    let context = ChatContext {
        chat_id: pi_agent::ids::ChatId(chat_id),
        ..Default::default()
    };
    match pipeline.format(&context, prompt).await {
        Ok(FormatOutcome::Prompt(prompt)) => prompt.messages.last().unwrap().content.clone(),
        other => panic!("{text}: expected the prompt to go on, got {other:?}"),
    }
}

/// Asserts that `text` lists `headlines` in this order, numbered from 1.
fn assert_lists(text: &str, headlines: &[&str]) {
    let mut from = 0;
    for (i, headline) in headlines.iter().enumerate() {
        let item = format!("{}. {headline} — ", i + 1);
        let at = text[from..]
            .find(&item)
            .unwrap_or_else(|| panic!("'{item}' missing or out of order in: {text}"));
        from += at + item.len();
    }
    // With a space before it: the last item's date ("2026-12-02. ") must not count.
    let next = format!(" {}. ", headlines.len() + 1);
    assert!(!text[from..].contains(&next), "more than listed: {text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn headlines_come_newest_first_and_each_chat_is_shown_each_once() {
    let news = FakeNews::start().await;
    let scratch = Scratch::default();
    let feeds = [
        format!("{}/rss", news.url()),
        format!("{}/atom", news.url()),
    ];
    let grants = format!("http = [\"{}\"]\nkv_kib = 64", news.url());
    let kv = Database::in_memory().kv();
    let pipeline = load_with_kv(&manifest(&scratch, &feeds, &grants), &kv).await;

    assert_eq!(ask(&pipeline, 1, "Write a poem").await, "Write a poem");
    assert!(news.requests().is_empty(), "{:?}", news.requests());

    let first = ask(&pipeline, 1, ASK).await;
    assert!(
        first.starts_with(&format!(
            "{ASK}\n\n(Headlines from {RSS_TITLE} and {ATOM_TITLE}, newest first, times in UTC: "
        )),
        "{first}"
    );
    assert_lists(&first, &HEADLINES);
    assert!(
        first.ends_with(". Mention these headlines briefly.)"),
        "{first}"
    );
    assert_eq!(news.requests(), ["/rss", "/atom"]);

    // The same chat is shown only what is new since; the escaped title reads as written.
    news.publish(BREAKING);
    let second = ask(&pipeline, 1, ASK).await;
    assert_lists(&second, &[BREAKING]);
    assert!(
        second.contains(&format!("1. {BREAKING} — {RSS_TITLE}, ")),
        "{second}"
    );
    let third = ask(&pipeline, 1, "news?").await;
    assert!(
        third.ends_with(&format!(
            "(No new headlines from {RSS_TITLE} and {ATOM_TITLE} since the last briefing. \
             Say so briefly.)"
        )),
        "{third}"
    );

    // Another chat has its own memory.
    let other_chat = ask(&pipeline, -100_200, "Nachrichten bitte").await;
    let mut all = vec![BREAKING];
    all.extend(HEADLINES);
    assert_lists(&other_chat, &all);
}

#[tokio::test(flavor = "multi_thread")]
async fn feeds_that_fail_are_named_by_host_and_the_others_still_count() {
    let news = FakeNews::start().await;
    let scratch = Scratch::default();
    let url = news.url();
    // Five feeds: a call may send four requests, so the fifth (the Atom one) is not read.
    let feeds = [
        format!("{url}/rss"),
        format!("{url}/error?token=s3cr3t"),
        format!("{url}/html"),
        format!("{url}/missing"),
        format!("{url}/atom"),
    ];
    let grants = format!("http = [\"{url}\"]\nkv_kib = 64");
    let pipeline = load_with_kv(
        &manifest(&scratch, &feeds, &grants),
        &Database::in_memory().kv(),
    )
    .await;

    let text = ask(&pipeline, 1, ASK).await;
    assert!(
        text.contains(&format!("(Headlines from {RSS_TITLE}, newest first")),
        "{text}"
    );
    assert_lists(&text, &RSS_HEADLINES);
    let host = news.host();
    assert!(
        text.contains(&format!(
            " Could not read {host} (HTTP 500), {host} (not an RSS or Atom feed: text/html) \
             and {host} (HTTP 404). Mention these headlines briefly.)"
        )),
        "{text}"
    );
    assert!(
        !text.contains("s3cr3t") && !text.contains("/error"),
        "{text}"
    );
    assert!(!text.contains(ATOM_HEADLINES[0]), "{text}");
    assert_eq!(
        news.requests(),
        ["/rss", "/error?token=s3cr3t", "/html", "/missing"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_origin_that_is_not_granted_is_named_as_refused_and_never_reached() {
    let news = FakeNews::start().await;
    let ungranted = FakeNews::start().await;
    let scratch = Scratch::default();
    let feeds = [
        format!("{}/atom", ungranted.url()),
        format!("{}/rss", news.url()),
    ];
    let grants = format!("http = [\"{}\"]\nkv_kib = 64", news.url());
    let pipeline = load_with_kv(
        &manifest(&scratch, &feeds, &grants),
        &Database::in_memory().kv(),
    )
    .await;

    let text = ask(&pipeline, 1, ASK).await;
    assert_lists(&text, &RSS_HEADLINES);
    assert!(
        text.contains(&format!(
            "Could not read {} (refused: origin not granted, or too many requests).",
            ungranted.host()
        )),
        "{text}"
    );
    assert!(
        ungranted.requests().is_empty(),
        "{:?}",
        ungranted.requests()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_feed_that_never_answers_times_out_and_the_briefing_goes_on() {
    let news = FakeNews::start().await;
    let scratch = Scratch::default();
    let feeds = [
        format!("{}/rss", news.url()),
        format!("{}/hang", news.url()),
    ];
    let grants = format!("http = [\"{}\"]", news.url());
    let pipeline = load(&manifest(&scratch, &feeds, &grants)).await;

    let text = ask(&pipeline, 1, ASK).await;
    assert_lists(&text, &RSS_HEADLINES);
    assert!(
        text.contains(&format!("Could not read {} (timed out).", news.host())),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_kv_grant_every_briefing_shows_every_headline() {
    let news = FakeNews::start().await;
    let scratch = Scratch::default();
    let feeds = [
        format!("{}/rss", news.url()),
        format!("{}/atom", news.url()),
    ];
    let grants = format!("http = [\"{}\"]", news.url());
    let pipeline = load(&manifest(&scratch, &feeds, &grants)).await;
    for _ in 0..2 {
        assert_lists(&ask(&pipeline, 1, ASK).await, &HEADLINES);
    }
}
