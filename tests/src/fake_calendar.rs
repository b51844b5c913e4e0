//! A fake Google Calendar on `127.0.0.1:<free port>`: its secret iCal address
//! `/calendar/ical/<id>/private-<key>/basic.ics` answers a calendar written the way Google
//! writes one (`text/calendar`, CRLF, lines folded at 75 octets, a VTIMEZONE,
//! X-WR-TIMEZONE), with its events placed around the day of the request in Berlin, so a
//! test run on any day sees the same week. Any other path — a wrong key — gets Google's 404.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use jiff::ToSpan;
use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;

/// The calendar's id, as Google puts it in the address (the owner's address, escaped).
pub const CALENDAR_ID: &str = "sam.example%40gmail.com";
/// The secret part of the address: who knows it reads the calendar.
pub const KEY: &str = "5ecret0f5amca1endar0123456789ab";
/// The calendar's zone (X-WR-TIMEZONE), in which "today" is placed.
pub const ZONE: &str = "Europe/Berlin";

/// Today 14:00–15:00, a one-off (TZID).
pub const TODAY_ONE_OFF: &str = "Dentist";
/// Today 00:30–01:00 in Berlin, written in UTC: yesterday's date there, today's here.
pub const TODAY_IN_UTC: &str = "Call with Sydney";
/// Today 09:30–09:45: a weekly series on today's weekday that began six weeks ago.
pub const TODAY_WEEKLY: &str = "Team stand-up";
/// Tomorrow, all day (VALUE=DATE).
pub const TOMORROW_ALL_DAY: &str = "Public holiday";
/// Yesterday 16:00.
pub const YESTERDAY: &str = "Retro";
/// In three days, 10:00.
pub const IN_THREE_DAYS: &str = "Quarterly planning";
/// A weekly series on today's weekday whose instance today is an EXDATE.
pub const EXCLUDED_TODAY: &str = "Yoga";
/// A weekly series on today's weekday whose instance today is cancelled (a VEVENT with
/// its UID, RECURRENCE-ID today, STATUS:CANCELLED).
pub const CANCELLED_TODAY: &str = "Piano lesson";
/// What must show neither today nor tomorrow.
pub const NOT_TODAY_OR_TOMORROW: &[&str] =
    &[YESTERDAY, IN_THREE_DAYS, EXCLUDED_TODAY, CANCELLED_TODAY];

type Requests = Arc<Mutex<Vec<String>>>;

pub struct FakeCalendar {
    addr: SocketAddr,
    requests: Requests,
    server: tokio::task::JoinHandle<()>,
}

impl FakeCalendar {
    pub async fn start() -> Self {
        let requests = Requests::default();
        let app = Router::new().fallback(serve).with_state(requests.clone());
        let (addr, server) = crate::serve_on_loopback(app, "fake Google Calendar").await;
        Self {
            addr,
            requests,
            server,
        }
    }

    /// `http://127.0.0.1:<port>`, the origin to grant.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The secret iCal address.
    pub fn ics_url(&self) -> String {
        self.ics_url_with_key(KEY)
    }

    /// The address with another key, as after the owner reset it.
    pub fn ics_url_with_key(&self, key: &str) -> String {
        format!("{}{}", self.origin(), secret_path(key))
    }

    /// Each request's path, oldest first.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for FakeCalendar {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn secret_path(key: &str) -> String {
    format!("/calendar/ical/{CALENDAR_ID}/private-{key}/basic.ics")
}

async fn serve(State(requests): State<Requests>, uri: Uri) -> Response {
    requests.lock().unwrap().push(uri.path().to_owned());
    if uri.path() != secret_path(KEY) {
        let page = "<html><head><title>Not Found</title></head><body>Not Found</body></html>";
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/html; charset=UTF-8")],
            page,
        )
            .into_response();
    }
    let zone = TimeZone::get(ZONE).expect("the zone database has Europe/Berlin");
    let today = jiff::Zoned::now().with_time_zone(zone.clone()).date();
    (
        [(header::CONTENT_TYPE, "text/calendar; charset=UTF-8")],
        calendar(today, zone),
    )
        .into_response()
}

/// The calendar as Google writes it, its events placed around `today` in `zone`.
fn calendar(today: Date, zone: TimeZone) -> Vec<u8> {
    let day = |offset: i64| today + offset.days();
    let at = |date: Date, hhmm: &str| format!("{}T{hhmm}00", date.strftime("%Y%m%d"));
    let byday = weekday(today.weekday());
    let mut lines: Vec<String> = HEAD.lines().map(str::to_owned).collect();
    let mut event = |uid: &str, summary: &str, status: &str, props: &[String]| {
        lines.push("BEGIN:VEVENT".into());
        lines.extend(props.iter().cloned());
        lines.push("DTSTAMP:20261130T080000Z".into());
        lines.push(format!("UID:{uid}@google.com"));
        lines.push("CREATED:20260801T090000Z".into());
        lines.push(format!("STATUS:{status}"));
        lines.push(format!("SUMMARY:{summary}"));
        lines.push("TRANSP:OPAQUE".into());
        lines.push("END:VEVENT".into());
    };
    let berlin =
        |key: &str, date: Date, hhmm: &str| format!("{key};TZID={ZONE}:{}", at(date, hhmm));

    event(
        "standup",
        TODAY_WEEKLY,
        "CONFIRMED",
        &[
            berlin("DTSTART", day(-42), "0930"),
            berlin("DTEND", day(-42), "0945"),
            format!("RRULE:FREQ=WEEKLY;BYDAY={byday}"),
        ],
    );
    event(
        "dentist",
        TODAY_ONE_OFF,
        "CONFIRMED",
        &[
            berlin("DTSTART", today, "1400"),
            berlin("DTEND", today, "1500"),
            "LOCATION:Main St. 5\\, 10115 Berlin".into(),
            "DESCRIPTION:Bitte die Versichertenkarte mitbringen.\\nFragen: die Krone\\, \
             die Rechnung vom März – und ob der nächste Termin früher gehen würde."
                .into(),
        ],
    );
    let early = today.at(0, 30, 0, 0).to_zoned(zone).unwrap().timestamp();
    let utc = |t: jiff::Timestamp| t.strftime("%Y%m%dT%H%M%SZ").to_string();
    event(
        "sydney",
        TODAY_IN_UTC,
        "CONFIRMED",
        &[
            format!("DTSTART:{}", utc(early)),
            format!("DTEND:{}", utc(early + 30.minutes())),
        ],
    );
    event(
        "holiday",
        TOMORROW_ALL_DAY,
        "CONFIRMED",
        &[
            format!("DTSTART;VALUE=DATE:{}", day(1).strftime("%Y%m%d")),
            format!("DTEND;VALUE=DATE:{}", day(2).strftime("%Y%m%d")),
        ],
    );
    event(
        "retro",
        YESTERDAY,
        "CONFIRMED",
        &[
            berlin("DTSTART", day(-1), "1600"),
            berlin("DTEND", day(-1), "1700"),
        ],
    );
    event(
        "planning",
        IN_THREE_DAYS,
        "CONFIRMED",
        &[
            berlin("DTSTART", day(3), "1000"),
            berlin("DTEND", day(3), "1200"),
        ],
    );
    event(
        "yoga",
        EXCLUDED_TODAY,
        "CONFIRMED",
        &[
            berlin("DTSTART", day(-21), "1800"),
            berlin("DTEND", day(-21), "1900"),
            format!("RRULE:FREQ=WEEKLY;BYDAY={byday}"),
            berlin("EXDATE", today, "1800"),
        ],
    );
    event(
        "piano",
        CANCELLED_TODAY,
        "CONFIRMED",
        &[
            berlin("DTSTART", day(-28), "1700"),
            berlin("DTEND", day(-28), "1745"),
            format!("RRULE:FREQ=WEEKLY;BYDAY={byday}"),
        ],
    );
    // Google writes a cancelled instance as its own VEVENT with the series' UID.
    event(
        "piano",
        CANCELLED_TODAY,
        "CANCELLED",
        &[
            berlin("DTSTART", today, "1700"),
            berlin("DTEND", today, "1745"),
            berlin("RECURRENCE-ID", today, "1700"),
        ],
    );
    lines.push("END:VCALENDAR".into());
    let mut body = Vec::new();
    for line in &lines {
        fold(line.as_bytes(), &mut body);
    }
    body
}

/// One content line, folded as Google folds: at 75 octets, even inside a character.
fn fold(line: &[u8], out: &mut Vec<u8>) {
    let mut chunks = line.chunks(75);
    out.extend_from_slice(chunks.next().unwrap_or_default());
    for chunk in chunks {
        out.extend_from_slice(b"\r\n ");
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(b"\r\n");
}

fn weekday(day: Weekday) -> &'static str {
    match day {
        Weekday::Monday => "MO",
        Weekday::Tuesday => "TU",
        Weekday::Wednesday => "WE",
        Weekday::Thursday => "TH",
        Weekday::Friday => "FR",
        Weekday::Saturday => "SA",
        Weekday::Sunday => "SU",
    }
}

/// The head of a Google Calendar export, shared with the guest's unit-test fixtures.
const HEAD: &str = include_str!("../../guests/calendar/fixtures/google-head.ics");
