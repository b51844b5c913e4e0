//! The calendar tool against a fake Google Calendar: today's and tomorrow's events reach the
//! prompt (recurring ones included, excluded and cancelled ones not), a wrong secret address
//! is named as the calendar failing while the message goes on, and the address's key shows
//! neither in the prompt nor in the log.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{SystemTime, UNIX_EPOCH};

use pi_agent::pipeline::FormatOutcome;
use pi_agent::prompt::ChatContext;
use pi_agent_tests::fake_calendar::{self, FakeCalendar};
use pi_agent_tests::{Scratch, guests, load, user_prompt};

/// The calendar stage reading `ics_url` (a `${NAME}` or an address), granted `grants`.
fn manifest(scratch: &Scratch, ics_url: &str, grants: &str) -> PathBuf {
    scratch.single_stage(
        "calendar",
        guests::CALENDAR,
        &format!(
            // The fake's "today" is Berlin's, and these runs have no chat zone (it is UTC).
            "timeout_ms = 5000\n[stage.config]\nics_url = {ics_url:?}\ntimezone = {:?}\n[stage.grants]\n{grants}",
            fake_calendar::ZONE
        ),
    )
}

/// `pipeline run --message MESSAGE` as a process, the address in GOOGLE_CALENDAR_ICS.
async fn run(scratch: &Scratch, manifest: &Path, address: &str, message: &str) -> (String, String) {
    let output: Output = tokio::process::Command::new(env!("CARGO_BIN_EXE_pi-agent-cli"))
        .args(["pipeline", "run", "--manifest"])
        .arg(manifest)
        .args(["--message", message])
        .current_dir(scratch.path())
        .env_clear()
        .env("DATA_DIR", scratch.path().join("data"))
        .env("RUST_LOG", "info")
        .env("GOOGLE_CALENDAR_ICS", address)
        .output()
        .await
        .expect("running pi-agent");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stdout}\n{stderr}");
    (stdout, stderr)
}

fn now() -> ChatContext {
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    ChatContext {
        unix_ms: u64::try_from(unix_ms).unwrap(),
        ..ChatContext::default()
    }
}

/// The user's message as the stage left it.
async fn formatted(manifest: &Path, message: &str) -> String {
    let pipeline = load(manifest).await;
    match pipeline.format(&now(), user_prompt(message)).await.unwrap() {
        FormatOutcome::Prompt(out) => out.messages.last().unwrap().content.clone(),
        other => panic!("the calendar passes the prompt on, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_prompt_carries_todays_and_tomorrows_events_and_the_key_stays_secret() {
    let calendar = FakeCalendar::start().await;
    let scratch = Scratch::default();
    let grants = format!("http = [{:?}]", calendar.origin());
    let manifest = manifest(&scratch, "${GOOGLE_CALENDAR_ICS}", &grants);
    let message = "What's on my calendar?";
    let (stdout, stderr) = run(&scratch, &manifest, &calendar.ics_url(), message).await;

    let (today, tomorrow) = stdout
        .split_once("(Calendar, today ")
        .and_then(|(_, briefing)| briefing.split_once(" Tomorrow "))
        .unwrap_or_else(|| panic!("no briefing in the prompt:\n{stdout}"));
    for event in [
        fake_calendar::TODAY_IN_UTC,
        fake_calendar::TODAY_WEEKLY,
        fake_calendar::TODAY_ONE_OFF,
    ] {
        assert!(today.contains(event), "{event}: {stdout}");
    }
    assert!(
        today.contains("00:30–01:00 Call with Sydney; 09:30–09:45 Team stand-up; 14:00–15:00 Dentist (Main St. 5, 10115 Berlin)."),
        "{stdout}"
    );
    assert!(
        tomorrow.contains("all day: Public holiday") && tomorrow.contains("Mention these events.)"),
        "{stdout}"
    );
    for absent in fake_calendar::NOT_TODAY_OR_TOMORROW {
        assert!(!stdout.contains(absent), "{absent}: {stdout}");
    }
    assert!(stdout.contains(message), "{stdout}");
    assert_eq!(calendar.requests().len(), 1);
    assert!(
        !format!("{stdout}{stderr}").contains(fake_calendar::KEY),
        "{stdout}\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_key_fails_the_calendar_named_by_host_and_the_message_goes_on() {
    let calendar = FakeCalendar::start().await;
    let scratch = Scratch::default();
    let grants = format!("http = [{:?}]", calendar.origin());
    let manifest = manifest(&scratch, "${GOOGLE_CALENDAR_ICS}", &grants);
    let wrong = calendar.ics_url_with_key("0ld5ecretkey");
    let (stdout, stderr) = run(&scratch, &manifest, &wrong, "Any meetings today?").await;

    let host = calendar.origin().replace("http://", "");
    assert!(stdout.contains("Any meetings today?"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "(The calendar could not be read ({host}: HTTP 404). Tell the user.)"
        )),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!(
            "calendar: {host} could not be read: HTTP 404; the secret address is wrong or was reset"
        )),
        "{stderr}"
    );
    let everything = format!("{stdout}{stderr}");
    assert!(
        !everything.contains("0ld5ecretkey") && !everything.contains("private-"),
        "{everything}"
    );
    assert_eq!(calendar.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_about_something_else_costs_no_request() {
    let calendar = FakeCalendar::start().await;
    let scratch = Scratch::default();
    let grants = format!("http = [{:?}]", calendar.origin());
    let manifest = manifest(&scratch, &calendar.ics_url(), &grants);
    assert_eq!(
        formatted(&manifest, "Tell me a joke").await,
        "Tell me a joke"
    );
    assert!(calendar.requests().is_empty(), "{:?}", calendar.requests());
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_grant_the_request_is_refused_and_the_paragraph_says_so() {
    let calendar = FakeCalendar::start().await;
    let scratch = Scratch::default();
    let manifest = manifest(&scratch, &calendar.ics_url(), "");
    let text = formatted(&manifest, "my agenda for tomorrow?").await;
    assert!(
        text.starts_with("my agenda for tomorrow?\n\n(The calendar could not be read (127.0.0.1:")
            && text.contains("request refused by the host"),
        "{text}"
    );
    assert!(!text.contains(fake_calendar::KEY), "{text}");
    assert!(calendar.requests().is_empty());
}
