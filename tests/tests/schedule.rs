//! Scheduled tasks end to end: the real `pi-agent run` with the default guests, a fake
//! Telegram and a fake Ollama on loopback — reminders on time, recurring prompts through the
//! pipeline, `/tasks` and `/cancel`, tasks that came due while the bot was killed, and the
//! morning briefing with the weather, calendar and news guests against their fakes.

use std::time::{Duration, Instant};

use pi_agent_tests::bot::{FRIEND, Harness, OWNER};
use pi_agent_tests::fake_calendar::{self, FakeCalendar};
use pi_agent_tests::fake_news::{FakeNews, HEADLINES};
use pi_agent_tests::fake_ollama::Script;
use pi_agent_tests::fake_telegram::SentMessage;
use pi_agent_tests::fake_weather::FakeWeather;
use pi_agent_tests::guests;

async fn harness() -> Harness {
    Harness::start(env!("CARGO_BIN_EXE_pi-agent-cli")).await
}

/// The task id in a `/remind` or `/every` confirmation ("… (task 3, UTC time · /cancel 3)").
fn task_id(confirmation: &SentMessage) -> i64 {
    let text = &confirmation.visible_text;
    let after = text
        .split("(task ")
        .nth(1)
        .unwrap_or_else(|| panic!("no task id in {text:?}"));
    after[..after.find(',').unwrap()].parse().unwrap()
}

fn reminders(h: &Harness, chat: i64, text: &str) -> Vec<SentMessage> {
    h.telegram
        .sent_messages(chat)
        .into_iter()
        .filter(|m| m.visible_text.starts_with(&format!("⏰ {text}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reminder_arrives_on_time_through_the_shapers_and_only_once() {
    let mut h = harness().await;
    let _bot = h.bot(&[("TIMEZONE", "Europe/Madrid")]);
    h.telegram
        .push_message(FRIEND, FRIEND, "/remind in 2s **stretch** <now>");
    let confirmation = h
        .wait_for_message(FRIEND, |m| m.visible_text.contains("(task "))
        .await;
    let confirmed = Instant::now();
    // "⏰ Wed 2 Dec 17:00: …" — the exact local time understood.
    assert!(
        confirmation.visible_text.starts_with("⏰ ")
            && confirmation.visible_text.contains(": **stretch** <now>")
            && confirmation.visible_text.contains("Europe/Madrid time"),
        "{confirmation:?}"
    );
    let reminder = h
        .wait_for_message(FRIEND, |m| m.visible_text.starts_with("⏰ stretch"))
        .await;
    let after = confirmed.elapsed();
    assert!(
        (Duration::from_secs(1)..=Duration::from_secs(3)).contains(&after),
        "due in 2 s, arrived after {after:?}"
    );
    // The telegram-html shaper rendered it: bold, and the angle brackets escaped.
    assert_eq!(reminder.text, "⏰ <b>stretch</b> &lt;now&gt;");
    assert_eq!(reminder.parse_mode.as_deref(), Some("HTML"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(reminders(&h, FRIEND, "stretch").len(), 1);
    assert_eq!(h.llm.chat_count(), 0, "a reminder asks no LLM");
    let logs = h.logs();
    assert!(
        logs.contains("task fired") && logs.contains("outcome=\"queued\""),
        "one log line per firing:\n{logs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tasks_are_listed_and_cancelled_and_bad_times_are_explained() {
    let mut h = harness().await;
    let _bot = h.bot(&[]);
    h.telegram
        .push_message(FRIEND, FRIEND, "/remind tomorrow 8am call the dentist");
    let dentist = h
        .wait_for_message(FRIEND, |m| m.visible_text.contains("call the dentist"))
        .await;
    assert!(
        dentist.visible_text.contains(" 08:00: call the dentist"),
        "{dentist:?}"
    );
    h.telegram
        .push_message(FRIEND, FRIEND, "/every weekday 8:00 What is on today?");
    let weekday = h
        .wait_for_message(FRIEND, |m| m.visible_text.contains("What is on today?"))
        .await;
    assert!(
        weekday
            .visible_text
            .starts_with("⏰ every weekday at 08:00, first "),
        "{weekday:?}"
    );
    h.telegram
        .push_message(OWNER, OWNER, "/remind in 1 h not yours");
    h.wait_for_message(OWNER, |m| m.visible_text.contains("not yours"))
        .await;

    h.telegram.push_message(FRIEND, FRIEND, "/tasks");
    let listed = h
        .wait_for_message(FRIEND, |m| m.visible_text.starts_with("Tasks in this chat"))
        .await;
    let (dentist, weekday) = (task_id(&dentist), task_id(&weekday));
    let lines: Vec<&str> = listed.visible_text.lines().collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(
        lines[1].starts_with(&format!("{dentist} · "))
            || lines[2].starts_with(&format!("{dentist} · "))
    );
    assert!(
        listed
            .visible_text
            .contains(&format!("{weekday} · every weekday at 08:00, next "))
    );
    assert!(
        !listed.visible_text.contains("not yours"),
        "other chats' tasks are not shown"
    );

    h.telegram
        .push_message(FRIEND, FRIEND, &format!("/cancel {dentist}"));
    h.wait_for_message(FRIEND, |m| {
        m.visible_text == format!("Cancelled task {dentist}.")
    })
    .await;
    h.telegram.push_message(FRIEND, FRIEND, "/cancel 999");
    h.wait_for_message(FRIEND, |m| m.visible_text.contains("has no task 999"))
        .await;
    h.telegram.push_message(FRIEND, FRIEND, "/tasks");
    h.wait_for_message(FRIEND, |m| {
        m.visible_text.starts_with("Tasks in this chat") && !m.visible_text.contains("dentist")
    })
    .await;

    h.telegram
        .push_message(FRIEND, FRIEND, "/remind whenever convenient feed the cat");
    let refusal = h
        .wait_for_message(FRIEND, |m| m.visible_text.starts_with("⚠️"))
        .await;
    assert!(
        refusal.visible_text.contains("in 10 min") && refusal.visible_text.contains("tomorrow 8am"),
        "the error shows what works: {refusal:?}"
    );
    h.telegram
        .push_message(FRIEND, FRIEND, "/timezone Mars/Olympus");
    h.wait_for_message(FRIEND, |m| {
        m.visible_text.contains("unknown time zone 'Mars/Olympus'")
    })
    .await;
    h.telegram
        .push_message(FRIEND, FRIEND, "/timezone America/New_York");
    h.wait_for_message(FRIEND, |m| m.visible_text.contains("now America/New_York"))
        .await;

    h.telegram.push_message(OWNER, OWNER, "/status");
    let status = h
        .wait_for_message(OWNER, |m| m.visible_text.contains("Tasks: "))
        .await;
    assert!(
        status.visible_text.contains("Tasks: 2; next: task "),
        "{status:?}"
    );
    assert_eq!(h.llm.chat_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recurring_prompt_fires_in_two_slots_through_the_formatters() {
    let mut h = harness().await;
    h.llm.set_default_script(Script::echo());
    let _bot = h.bot(&[]);
    // Standard cron, every minute: two slots at most two minutes apart.
    h.telegram
        .push_message(FRIEND, FRIEND, "/every * * * * * How are the plants?");
    h.wait_for_message(FRIEND, |m| m.visible_text.contains("(task "))
        .await;
    let answered = |h: &Harness| {
        h.telegram
            .sent_messages(FRIEND)
            .into_iter()
            .filter(|m| m.visible_text.starts_with("⏰ How are the plants?"))
            .count()
    };
    let patience = Duration::from_secs(150);
    assert!(
        h.telegram.wait_for(|_| answered(&h) >= 2, patience).await,
        "two firings: {:#?}\n{}",
        h.telegram.sent_messages(FRIEND),
        h.logs()
    );
    let requests = h.llm.chat_requests();
    assert_eq!(requests.len(), 2);
    for request in &requests {
        let messages: Vec<&str> = request["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["content"].as_str().unwrap())
            .collect();
        // The persona formatter ran: the system prompt is folded into the first user turn.
        assert!(
            messages[0].starts_with("You are a concise")
                && messages.last().unwrap().ends_with("How are the plants?"),
            "{messages:?}"
        );
    }
    let reply = &h.telegram.sent_messages(FRIEND)[1];
    assert!(
        reply.visible_text.contains("\n\necho: "),
        "the answer follows the announcement: {reply:?}"
    );
}

/// Asks for a reminder due in 2 s, then kills the bot before it is due.
async fn remind_then_kill(h: &mut Harness, chat: i64, text: &str, grace: &str) {
    let mut bot = h.bot(&[("MISSED_TASK_GRACE", grace)]);
    h.telegram
        .push_message(chat, chat, &format!("/remind in 2s {text}"));
    h.wait_for_message(chat, |m| {
        m.visible_text.contains(&format!("{text}\n(task "))
    })
    .await;
    bot.kill();
    tokio::time::sleep(Duration::from_secs(4)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_due_while_the_bot_was_killed_fires_once_late_or_is_skipped_past_the_grace() {
    let mut h = harness().await;
    remind_then_kill(&mut h, FRIEND, "water the plants", "90m").await;
    let mut second = h.bot(&[("MISSED_TASK_GRACE", "90m")]);
    let late = h
        .wait_for_message(FRIEND, |m| {
            m.visible_text.starts_with("⏰ water the plants")
        })
        .await;
    assert!(
        late.visible_text.contains("(late: it was due "),
        "marked late: {late:?}"
    );
    // Killed once the job is completed: a kill between delivering and storing that would
    // send it again after the restart (at least once, never lost).
    tokio::time::sleep(Duration::from_secs(1)).await;
    second.kill();

    // A grace of 1 s: 4 s overdue is too old to send.
    remind_then_kill(&mut h, OWNER, "old news", "1").await;
    let _third = h.bot(&[("MISSED_TASK_GRACE", "1")]);
    let skipped = h
        .wait_for_message(OWNER, |m| m.visible_text.starts_with("⏰ Skipped"))
        .await;
    assert!(skipped.visible_text.contains("“old news”"), "{skipped:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        reminders(&h, FRIEND, "water the plants").len(),
        1,
        "fired once, not again after the next restart"
    );
    assert!(
        reminders(&h, OWNER, "old news").is_empty(),
        "skipped, not sent"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_morning_briefing_brings_weather_calendar_and_news_in_one_message() {
    let mut h = harness().await;
    let (weather, calendar, news) = (
        FakeWeather::start().await,
        FakeCalendar::start().await,
        FakeNews::start().await,
    );
    let default = std::fs::read_to_string(h.scratch.default_manifest()).unwrap();
    let manifest = h.scratch.manifest(&format!(
        "{default}
[[stage]]
name = \"weather\"
guest = {weather_guest:?}
timeout_ms = 3000
[stage.config]
place = \"Berlin\"
latitude = 52.52
longitude = 13.41
api_url = {weather_url:?}
[stage.grants]
http = [{weather_url:?}]

[[stage]]
name = \"calendar\"
guest = {calendar_guest:?}
timeout_ms = 5000
[stage.config]
ics_url = \"${{GOOGLE_CALENDAR_ICS}}\"
[stage.grants]
http = [{calendar_origin:?}]

[[stage]]
name = \"news\"
guest = {news_guest:?}
timeout_ms = 3000
[stage.config]
feeds = [\"{news_url}/rss\", \"{news_url}/atom\"]
[stage.grants]
http = [{news_url:?}]
kv_kib = 64
",
        weather_guest = guests::WEATHER,
        weather_url = weather.url(),
        calendar_guest = guests::CALENDAR,
        calendar_origin = calendar.origin(),
        news_guest = guests::NEWS,
        news_url = news.url(),
    ));
    h.use_manifest(manifest);
    h.llm.set_default_script(Script::echo());
    // The calendar's "today" is the chat's: the bot's default zone, where the fake lives.
    let ics_url = calendar.ics_url();
    let _bot = h.bot(&[
        ("TIMEZONE", fake_calendar::ZONE),
        ("GOOGLE_CALENDAR_ICS", &ics_url),
    ]);
    h.telegram
        .push_message(FRIEND, FRIEND, "/every * * * * * Good morning briefing");
    let confirmation = h
        .wait_for_message(FRIEND, |m| m.visible_text.contains("(task "))
        .await;
    let patience = Duration::from_secs(75);
    let briefed = h
        .telegram
        .wait_for(
            |t| {
                t.sent_messages(FRIEND)
                    .iter()
                    .any(|m| m.visible_text.starts_with("⏰ Good morning briefing"))
            },
            patience,
        )
        .await;
    assert!(briefed, "no briefing within a minute:\n{}", h.logs());
    h.telegram.push_message(
        FRIEND,
        FRIEND,
        &format!("/cancel {}", task_id(&confirmation)),
    );
    // Streamed in: the whole echo is there once the last headline is.
    let briefing = h
        .wait_for_message(FRIEND, |m| {
            m.visible_text.starts_with("⏰ Good morning briefing")
                && m.visible_text.contains(HEADLINES[4])
        })
        .await
        .visible_text;
    let asked = h.llm.chat_requests()[0]["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()["content"]
        .as_str()
        .unwrap()
        .to_owned();
    for text in [&asked, &briefing] {
        assert!(text.contains("now 4 °C, overcast"), "the forecast: {text}");
        for event in [
            fake_calendar::TODAY_ONE_OFF,
            fake_calendar::TODAY_WEEKLY,
            fake_calendar::TOMORROW_ALL_DAY,
        ] {
            assert!(text.contains(event), "the event {event}: {text}");
        }
        for event in fake_calendar::NOT_TODAY_OR_TOMORROW {
            assert!(
                !text.contains(event),
                "not today or tomorrow: {event}: {text}"
            );
        }
        for headline in &HEADLINES[..5] {
            assert!(text.contains(headline), "the headline {headline}: {text}");
        }
    }
    assert!(
        !h.logs().contains(fake_calendar::KEY),
        "the calendar's secret address stays out of the log"
    );
}
