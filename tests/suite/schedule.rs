//! Scheduled tasks. End to end, the real `pi-agent run` with the default guests, a fake
//! Telegram and a fake Ollama on loopback: a reminder on time, `/tasks` and `/cancel`, tasks
//! that came due while the bot was killed. In process, on a clock the test moves forward
//! (recurring tasks come due at minute boundaries; waiting for real ones cost minutes): a
//! recurring prompt in two slots through the formatters, and the morning briefing with the
//! weather, calendar and news guests against their fakes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pi_agent::chat::Origin;
use pi_agent::ids::{ChatId, UserId};
use pi_agent::schedule::{Creator, ScheduleConfig, Scheduler};
use pi_agent::zone::Zone;

use pi_agent_tests::bot::{FRIEND, Harness, OWNER};
use pi_agent_tests::fake_calendar::{self, FakeCalendar};
use pi_agent_tests::fake_news::{FakeNews, HEADLINES};
use pi_agent_tests::fake_telegram::SentMessage;
use pi_agent_tests::fake_weather::FakeWeather;
use pi_agent_tests::manual_clock::ManualClock;
use pi_agent_tests::service::{Options, Service, Shown};
use pi_agent_tests::{Scratch, guests};
use tokio_util::sync::CancellationToken;

/// How long an in-process test waits for an answer once its task is due (real time: the
/// guests fetch from the fakes).
const PATIENCE: Duration = Duration::from_secs(30);

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

// Real time, 2 s: the one test of the system's wall-clock timer (timerfd) firing a task in
// the real bot.
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

// Real time, about 10 s: a process killed and started again reads the system's clock, which
// no test can move; the reminders are due in 2 s and the bot stays down for 4.
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

// ---- in process, on a clock the test moves ----

/// A scheduler for `service`'s chats on a clock the test moves, firing until dropped.
struct MovedScheduler {
    scheduler: Arc<Scheduler>,
    clock: Arc<ManualClock>,
    _stop: tokio_util::sync::DropGuard,
}

impl MovedScheduler {
    fn start(service: &Service) -> Self {
        let clock = Arc::new(ManualClock::default());
        let config = ScheduleConfig {
            missed_grace: Duration::from_secs(6 * 60 * 60),
        };
        let scheduler = Scheduler::new(
            service.service.clone(),
            service.database.tasks(),
            config,
            clock.clone(),
        );
        let stop = CancellationToken::new();
        tokio::spawn(scheduler.clone().run(stop.clone()));
        Self {
            scheduler,
            clock,
            _stop: stop.drop_guard(),
        }
    }

    /// `/every <args>` from `chat`.
    async fn every(&self, chat: i64, args: &str) {
        let creator = Creator {
            chat_id: ChatId(chat),
            user_id: UserId(chat),
            origin: Origin::default(),
        };
        self.scheduler.every(creator, args).await.unwrap();
    }

    /// Moves the clock to the next minute, when `* * * * *` is due.
    fn next_minute(&self) {
        self.clock.advance_to_next_minute(Duration::from_millis(50));
    }
}

fn finished(service: &Service, chat: i64) -> Vec<String> {
    service
        .recorder
        .endings(chat)
        .into_iter()
        .map(|shown| match shown {
            Shown::Finish(text) => text,
            other => panic!("not an answer: {other:?}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recurring_prompt_fires_in_two_slots_through_the_formatters() {
    let scratch = Scratch::default();
    let options = Options {
        manifest: scratch.default_manifest(),
        workers: 1,
        echo_every: Duration::from_millis(1),
        zone: Zone::utc(),
    };
    let s = Service::start(scratch, options, async |_| {}).await;
    let tasks = MovedScheduler::start(&s);
    // Standard cron, every minute.
    tasks.every(FRIEND, "* * * * * How are the plants?").await;
    for slot in 1..=2 {
        tasks.next_minute();
        s.answered_within(FRIEND, slot, PATIENCE).await;
    }
    let asked: Vec<String> = s.llm.asked().into_iter().map(|a| a.question).collect();
    // The persona formatter ran: its system prompt is folded into the chat's first turn;
    // the second firing follows the first in the chat's history.
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert!(asked[0].starts_with("You are a concise"), "{asked:?}");
    assert!(asked[0].ends_with("\n\nHow are the plants?"), "{asked:?}");
    assert_eq!(asked[1], "How are the plants?");
    // Each answer follows its announcement (the scripted model echoes the question).
    let answers = finished(&s, FRIEND);
    assert!(
        answers[0].starts_with("⏰ How are the plants?\n\nre You are a concise"),
        "{answers:?}"
    );
    assert_eq!(
        answers[1],
        "⏰ How are the plants?\n\nre How are the plants?"
    );
    s.shut_down().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_morning_briefing_brings_weather_calendar_and_news_in_one_message() {
    let (weather, calendar, news) = (
        FakeWeather::start().await,
        FakeCalendar::start().await,
        FakeNews::start().await,
    );
    let scratch = Scratch::default();
    let default = std::fs::read_to_string(scratch.default_manifest()).unwrap();
    let manifest = scratch.manifest(&format!(
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
ics_url = {ics_url:?}
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
        ics_url = calendar.ics_url(),
        calendar_origin = calendar.origin(),
        news_guest = guests::NEWS,
        news_url = news.url(),
    ));
    // The calendar's "today" is the chat's: the default zone, where the fake lives.
    let options = Options {
        manifest,
        workers: 1,
        echo_every: Duration::from_millis(1),
        zone: Zone::parse(fake_calendar::ZONE).unwrap(),
    };
    let s = Service::start(scratch, options, async |_| {}).await;
    let tasks = MovedScheduler::start(&s);
    tasks.every(FRIEND, "* * * * * Good morning briefing").await;
    tasks.next_minute();
    s.answered_within(FRIEND, 1, PATIENCE).await;

    let asked = s.llm.asked()[0].question.clone();
    // As Telegram shows it: the telegram-html shaper escaped it.
    let briefing = finished(&s, FRIEND)
        .remove(0)
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    assert!(
        briefing.starts_with("⏰ Good morning briefing"),
        "{briefing}"
    );
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
    s.shut_down().await;
}
