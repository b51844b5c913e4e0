//! A tool guest (WIT 0.3.0, formatter): when a message is about the user's day, it reads
//! their calendar from its iCalendar (ICS) address and adds today's and tomorrow's events
//! to the message, so the model answers from the calendar, not from memory.
//!
//! A Google Calendar is read without OAuth through its "Secret address in iCal format"
//! (the calendar's settings, "Integrate calendar"), which the owner keeps in `.env`:
//!
//! ```toml
//! [[stage]]
//! name = "calendar"
//! guest = "guests/dist/calendar.wasm"
//! timeout_ms = 5000
//! [stage.config]
//! ics_url = "${GOOGLE_CALENDAR_ICS}"
//! # timezone = "Europe/Berlin"            # what "today" means; default: the chat's zone
//! # calendars = ["${WORK_CALENDAR_ICS}"]  # more addresses (a call sends at most 4 requests)
//! # words = "calendar, agenda, plans"     # replaces the default trigger words
//! [stage.grants]
//! http = ["https://calendar.google.com"]
//! ```
//!
//! It fails soft: a calendar that cannot be fetched or read is named — by its host, never
//! by its address, whose path is the key — in the paragraph and in a warning, and the
//! message goes on.

pub mod agenda;
#[cfg(test)]
mod fixture;
pub mod ics;
pub mod paragraph;
pub mod source;

use pi_agent_guest::words::Triggers;
use pi_agent_guest::{ChatContext, Formatter, Outcome, Prompt, log};

use ics::Document;
use source::Failure;

/// Starts of words that make a message about the user's day, in the languages of the
/// people likely to run this bot; `words` in the config replaces them. "termin" also
/// starts "terminal": a false alarm costs one fetch and a paragraph the model may ignore.
pub const DEFAULT_WORDS: &[&str] = &[
    "calendar",
    "agenda",
    "schedule",
    "appointment",
    "meeting",
    "events",
    "briefing",
    "kalender",
    "termin",
    "besprechung",
    "calendrier",
    "rendez",
    "réunion",
    "calendario",
    "reunión",
    "riunione",
    "appuntament",
    "compromisso",
    "reunião",
    "afspraak",
    "vergadering",
];

struct Calendar;

impl Formatter for Calendar {
    fn format(ctx: ChatContext, mut prompt: Prompt) -> Outcome {
        let Some(last) = prompt.messages.last_mut() else {
            return Outcome::Prompt(prompt);
        };
        if !Triggers::from_config(DEFAULT_WORDS).in_text(&last.content) {
            return Outcome::Prompt(prompt);
        }
        let calendars = read_calendars();
        for failure in calendars.iter().filter_map(|c| c.as_ref().err()) {
            log::warn(&format!(
                "calendar: {} could not be read: {}; {}",
                failure.source, failure.why, failure.fix
            ));
        }
        // "Today" is the configured zone's, else the chat's (`/timezone`, `TIMEZONE`).
        let zone = configured_zone().or_else(|| ics::zone_named(&ctx.time_zone));
        let briefing = briefing(&calendars, ctx.unix_ms, zone);
        if briefing.left_out > 0 {
            log::warn(&format!(
                "calendar: left out {} events whose start or recurrence rule could not be read",
                briefing.left_out
            ));
        }
        last.content.push_str("\n\n");
        last.content.push_str(&briefing.text);
        Outcome::Prompt(prompt)
    }
}

pi_agent_guest::export_formatter!(Calendar);

/// What the stage adds to the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Briefing {
    pub text: String,
    /// Events left out because their start or RRULE could not be read.
    pub left_out: usize,
}

/// The paragraph for `calendars` (each read, or why not) at `now_ms` (milliseconds since
/// the Unix epoch), "today" being the day in `zone` — by default the first calendar's own
/// zone (`X-WR-TIMEZONE`), else UTC.
pub fn briefing(
    calendars: &[Result<Document, Failure>],
    now_ms: u64,
    zone: Option<chrono_tz::Tz>,
) -> Briefing {
    let failures: Vec<Failure> = calendars
        .iter()
        .filter_map(|c| c.as_ref().err().cloned())
        .collect();
    let documents: Vec<&Document> = calendars.iter().filter_map(|c| c.as_ref().ok()).collect();
    if documents.is_empty() {
        return Briefing {
            text: paragraph::unreadable(&failures),
            left_out: 0,
        };
    }
    let zone: rrule::Tz = zone
        .or_else(|| documents.iter().find_map(|d| d.zone()))
        .unwrap_or(chrono_tz::UTC)
        .into();
    let mut entries = Vec::new();
    let mut left_out = 0;
    for document in documents {
        let (read, unreadable) = document.entries(zone);
        entries.extend(read);
        left_out += unreadable;
    }
    let today = agenda::today(now_ms, zone);
    let ([today, tomorrow], unexpanded) = agenda::days(&entries, zone, today);
    Briefing {
        text: paragraph::briefing(&today, &tomorrow, &failures),
        left_out: left_out + unexpanded,
    }
}

/// Each configured calendar, read — or the failure that says none is configured.
fn read_calendars() -> Vec<Result<Document, Failure>> {
    let mut urls: Vec<String> = pi_agent_guest::config("ics_url").into_iter().collect();
    if let Some(list) = pi_agent_guest::config("calendars") {
        match serde_json::from_str::<Vec<String>>(&list) {
            Ok(more) => urls.extend(more),
            Err(_) => {
                let fix = "write calendars = [\"${ONE_ICS}\", \"${OTHER_ICS}\"] in [stage.config]";
                return vec![Err(Failure::new(
                    "pipeline.toml",
                    "calendars is not a list of addresses",
                    fix,
                ))];
            }
        }
    }
    if urls.is_empty() {
        let fix = "set ics_url = \"${GOOGLE_CALENDAR_ICS}\" in the stage's [stage.config] and the address in .env";
        return vec![Err(Failure::new(
            "pipeline.toml",
            "no calendar address is configured",
            fix,
        ))];
    }
    let several = urls.len() > 1;
    urls.iter()
        .enumerate()
        .map(|(i, url)| {
            let host = source::host(url.trim());
            // Several calendars usually share a host: their place in the list tells them apart.
            let name = if several {
                format!("{host} (calendar {})", i + 1)
            } else {
                host
            };
            source::read(url.trim(), &name)
        })
        .collect()
}

/// The configured `timezone`, if it is an IANA zone name.
fn configured_zone() -> Option<chrono_tz::Tz> {
    let name = pi_agent_guest::config("timezone")?;
    let zone = ics::zone_named(&name);
    if zone.is_none() {
        log::warn(&format!(
            "calendar: timezone '{name}' is not an IANA zone name (like Europe/Berlin); using the calendar's own"
        ));
    }
    zone
}

#[cfg(test)]
mod tests {
    use super::*;

    fn week() -> Result<Document, Failure> {
        Ok(Document::parse(&fixture::google(fixture::WEEK)).unwrap())
    }

    #[test]
    fn the_briefing_holds_today_and_tomorrow_in_the_calendars_zone() {
        let briefing = briefing(&[week()], fixture::NOON_2_DEC_2026, None);
        assert_eq!(
            briefing.text,
            "(Calendar, today Wed 2 Dec: 00:30–01:00 Call with Sydney; 08:00–08:05 Vitamins; \
             09:00–09:30 Stand-up; 14:00–15:00 Dentist (Main St. 5, Berlin). Tomorrow Thu 3 Dec: \
             all day: Holiday; 15:00–15:30 1:1 with Alex (moved); from 22:00 Night train. \
             Mention these events.)"
        );
        assert_eq!(briefing.left_out, 0);
        for absent in fixture::NOT_TODAY_OR_TOMORROW {
            assert!(
                !briefing.text.contains(absent),
                "{absent}: {}",
                briefing.text
            );
        }
    }

    #[test]
    fn a_given_zone_wins_over_the_calendars() {
        // Noon in Berlin is already 1 a.m. the next day in Auckland (UTC+13); an all-day
        // event stays on its date.
        let auckland = chrono_tz::Pacific::Auckland;
        let text = briefing(&[week()], fixture::NOON_2_DEC_2026, Some(auckland)).text;
        assert_eq!(
            text,
            "(Calendar, today Thu 3 Dec: all day: Holiday; 02:00–03:00 Dentist (Main St. 5, Berlin). \
             Tomorrow Fri 4 Dec: 03:00–03:30 1:1 with Alex (moved); 10:00–18:00 Night train; \
             21:00–21:30 Stand-up. Mention these events.)"
        );
    }

    #[test]
    fn calendars_that_cannot_be_read_are_named_by_host_and_the_rest_still_shows() {
        let secret =
            "https://calendar.google.com/calendar/ical/sam%40example.org/private-5ecret/basic.ics";
        let not_found = || Err(source::status_failed(&source::host(secret), 404));
        let text = briefing(&[not_found()], fixture::NOON_2_DEC_2026, None).text;
        assert_eq!(
            text,
            "(The calendar could not be read (calendar.google.com: HTTP 404). Tell the user.)"
        );
        let text = briefing(&[week(), not_found()], fixture::NOON_2_DEC_2026, None).text;
        assert!(
            text.contains("Stand-up")
                && text
                    .contains(" The calendar at calendar.google.com could not be read (HTTP 404)."),
            "{text}"
        );
        assert!(
            !text.contains("5ecret") && !text.contains("/calendar/ical"),
            "{text}"
        );
    }
}
