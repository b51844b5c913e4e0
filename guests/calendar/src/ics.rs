//! Reading an iCalendar (RFC 5545) document the way Google Calendar exports it: its events,
//! each start and end resolved to an instant in its own time zone, or to a day.

use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, TimeDelta, TimeZone};
use icalendar::{Component, Property};
use rrule::Tz;

/// When an event starts or ends: a day (all-day events, `VALUE=DATE`) or an instant, kept
/// in its zone so a weekly 09:30 stays 09:30 across a DST change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Day(NaiveDate),
    At(DateTime<Tz>),
}

/// One VEVENT: a single event, a recurring series, or one changed instance of a series.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub uid: String,
    pub summary: String,
    pub location: Option<String>,
    pub start: When,
    pub end: Option<When>,
    /// The RRULE's value (`FREQ=WEEKLY;BYDAY=WE`), expanded later.
    pub rule: Option<String>,
    pub exdates: Vec<When>,
    /// Set on an instance that replaces the series' occurrence at this time.
    pub recurrence_id: Option<When>,
    pub cancelled: bool,
}

/// A parsed calendar.
#[derive(Debug)]
pub struct Document {
    calendar: icalendar::Calendar,
}

impl Document {
    /// Reads `body`, an HTTP answer that should be an iCalendar file. The error says in a
    /// few words what it is instead.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let text = String::from_utf8_lossy(&unfold(body)).into_owned();
        if !text.trim_start().starts_with("BEGIN:VCALENDAR") {
            return Err("the answer is not an iCalendar file".into());
        }
        let calendar = text.parse::<icalendar::Calendar>().map_err(|e| {
            let first_line: String = e
                .lines()
                .next()
                .unwrap_or_default()
                .chars()
                .take(120)
                .collect();
            format!("its iCalendar text does not parse ({first_line})")
        })?;
        Ok(Self { calendar })
    }

    /// The calendar's own zone (`X-WR-TIMEZONE`), if it names one that exists.
    pub fn zone(&self) -> Option<chrono_tz::Tz> {
        self.calendar.get_timezone().and_then(zone_named)
    }

    /// The events, with times that name no zone read in `floating`; and how many VEVENTs
    /// were left out because their start could not be read.
    pub fn entries(&self, floating: Tz) -> (Vec<Entry>, usize) {
        let mut entries = Vec::new();
        let mut unreadable = 0;
        for event in self.calendar.events() {
            match entry(event, floating) {
                Some(e) => entries.push(e),
                None => unreadable += 1,
            }
        }
        (entries, unreadable)
    }
}

/// Content lines unfolded (RFC 5545 3.1) on bytes, before decoding: Google folds at 75
/// octets, which may split a multi-byte character.
fn unfold(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let fold = match &body[i..] {
            [b'\r', b'\n', b' ' | b'\t', ..] => 3,
            [b'\n', b' ' | b'\t', ..] => 2,
            _ => 0,
        };
        if fold == 0 {
            out.push(body[i]);
            i += 1;
        } else {
            i += fold;
        }
    }
    out
}

fn entry(event: &icalendar::Event, floating: Tz) -> Option<Entry> {
    let text = |key: &str| {
        event
            .property_value(key)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let when = |key: &str| {
        event
            .properties()
            .get(key)
            .and_then(|p| whens(p, floating).into_iter().next())
    };
    let exdates = event
        .multi_properties()
        .get("EXDATE")
        .into_iter()
        .flatten()
        .flat_map(|p| whens(p, floating))
        .collect();
    Some(Entry {
        uid: text("UID").unwrap_or_default(),
        summary: text("SUMMARY").unwrap_or_else(|| "(no title)".into()),
        location: text("LOCATION"),
        start: when("DTSTART")?,
        end: when("DTEND"),
        rule: text("RRULE"),
        exdates,
        recurrence_id: when("RECURRENCE-ID"),
        cancelled: text("STATUS").is_some_and(|s| s.eq_ignore_ascii_case("CANCELLED")),
    })
}

/// A date or date-time property's values (EXDATE may list several, comma-separated).
fn whens(property: &Property, floating: Tz) -> Vec<When> {
    let param = |key: &str| property.params().get(key).map(|p| p.value().to_owned());
    let is_date = param("VALUE").is_some_and(|v| v.eq_ignore_ascii_case("DATE"));
    let zone = param("TZID")
        .and_then(|name| zone_named(&name))
        .map(Tz::Tz)
        // A zone name chrono-tz does not know (Outlook's "W. Europe Standard Time" comes with
        // its own VTIMEZONE, not read here): the calendar's zone is the best guess.
        .unwrap_or(floating);
    property
        .value()
        .split(',')
        .filter_map(|value| parse_when(value.trim(), is_date, zone))
        .collect()
}

/// `20261202` (a day), `20261202T090000Z` (UTC) or `20261202T090000` (on `zone`'s clock).
pub fn parse_when(value: &str, is_date: bool, zone: Tz) -> Option<When> {
    if is_date || value.len() == 8 {
        return NaiveDate::parse_from_str(value, "%Y%m%d")
            .ok()
            .map(When::Day);
    }
    let (clock, utc) = match value.strip_suffix('Z') {
        Some(clock) => (clock, true),
        None => (value, false),
    };
    let naive = NaiveDateTime::parse_from_str(clock, "%Y%m%dT%H%M%S").ok()?;
    Some(When::At(if utc {
        Tz::UTC.from_utc_datetime(&naive)
    } else {
        local(zone, naive)
    }))
}

/// An IANA zone name (`Europe/Berlin`), as TZID parameters and X-WR-TIMEZONE give it.
pub fn zone_named(name: &str) -> Option<chrono_tz::Tz> {
    name.trim().trim_matches('"').parse().ok()
}

/// `naive` on `zone`'s clock, as RFC 5545 3.3.5 reads it on DST change days: a time that
/// happens twice is the first, a time skipped by the change is read with the offset from
/// before it (02:30 on a spring-forward day in Berlin is 03:30 summer time).
pub fn local(zone: Tz, naive: NaiveDateTime) -> DateTime<Tz> {
    match zone.from_local_datetime(&naive) {
        LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => at,
        LocalResult::None => {
            let hour = TimeDelta::hours(1);
            let before = zone.from_local_datetime(&(naive - hour)).earliest();
            before.map_or_else(|| Tz::UTC.from_utc_datetime(&naive), |at| at + hour)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;

    fn berlin() -> Tz {
        Tz::Tz(chrono_tz::Europe::Berlin)
    }

    fn entries(events: &str) -> Vec<Entry> {
        let document = Document::parse(&fixture::google(events)).unwrap();
        let (entries, unreadable) = document.entries(berlin());
        assert_eq!(unreadable, 0);
        entries
    }

    fn at(zone: Tz, text: &str) -> When {
        let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").unwrap();
        When::At(local(zone, naive))
    }

    #[test]
    fn a_google_export_reads_with_its_zone_folded_lines_and_escaped_text() {
        let document = Document::parse(&fixture::google(fixture::WEEK)).unwrap();
        assert_eq!(document.zone(), Some(chrono_tz::Europe::Berlin));
        let (entries, unreadable) = document.entries(berlin());
        assert_eq!((entries.len(), unreadable), (15, 0));
        let dentist = entries
            .iter()
            .find(|e| e.uid == "dentist@google.com")
            .unwrap();
        assert_eq!(dentist.location.as_deref(), Some("Main St. 5, Berlin"));
        assert_eq!(dentist.start, at(berlin(), "2026-12-02 14:00"));
        assert_eq!(dentist.end, Some(at(berlin(), "2026-12-02 15:00")));
        assert_eq!((dentist.rule.as_deref(), dentist.cancelled), (None, false));
    }

    #[test]
    fn folding_may_split_a_character_and_text_escapes_are_undone() {
        // "Café" folded between the two bytes of "é", as a 75-octet folder may do.
        let mut body = fixture::google(
            "BEGIN:VEVENT\nUID:x\nDTSTART:20261202T090000Z\nSUMMARY:Caf\u{e9} \\; Bar\\nand more\nEND:VEVENT\n",
        );
        let e_acute = body.windows(2).position(|w| w == "é".as_bytes()).unwrap();
        body.splice(e_acute + 1..e_acute + 1, b"\r\n ".iter().copied());
        let document = Document::parse(&body).unwrap();
        let (entries, _) = document.entries(berlin());
        assert_eq!(entries[0].summary, "Café ; Bar\nand more");
    }

    #[test]
    fn times_are_read_in_their_zone_utc_or_the_floating_zone() {
        let entries = entries(
            "BEGIN:VEVENT\nUID:a\nDTSTART;TZID=America/New_York:20261202T090000\nEND:VEVENT\n\
             BEGIN:VEVENT\nUID:b\nDTSTART:20261202T090000Z\nEND:VEVENT\n\
             BEGIN:VEVENT\nUID:c\nDTSTART:20261202T090000\nEND:VEVENT\n\
             BEGIN:VEVENT\nUID:d\nDTSTART;TZID=W. Europe Standard Time:20261202T090000\nEND:VEVENT\n\
             BEGIN:VEVENT\nUID:e\nDTSTART;VALUE=DATE:20261202\nEND:VEVENT\n",
        );
        let utc = |e: &Entry| match e.start {
            When::At(at) => at.with_timezone(&Tz::UTC).format("%H:%M").to_string(),
            When::Day(day) => day.to_string(),
        };
        let starts: Vec<String> = entries.iter().map(utc).collect();
        // New York is UTC-5 in December, Berlin (the floating zone, and the guess for an
        // unknown TZID) UTC+1.
        assert_eq!(starts, ["14:00", "09:00", "08:00", "08:00", "2026-12-02"]);
        assert_eq!(entries[0].summary, "(no title)");
    }

    #[test]
    fn recurrence_exceptions_and_status_are_read() {
        let entries = entries(fixture::WEEK);
        let yoga = entries.iter().find(|e| e.uid == "yoga@google.com").unwrap();
        assert_eq!(yoga.rule.as_deref(), Some("FREQ=WEEKLY;BYDAY=WE"));
        assert_eq!(
            yoga.exdates,
            [
                at(berlin(), "2026-11-25 18:00"),
                at(berlin(), "2026-12-02 18:00")
            ]
        );
        let moved = entries
            .iter()
            .find(|e| e.uid == "alex@google.com" && e.recurrence_id.is_some())
            .unwrap();
        assert_eq!(moved.recurrence_id, Some(at(berlin(), "2026-12-03 11:00")));
        let cancelled: Vec<&str> = entries
            .iter()
            .filter(|e| e.cancelled)
            .map(|e| e.uid.as_str())
            .collect();
        assert_eq!(cancelled, ["piano@google.com", "lunch@google.com"]);
    }

    #[test]
    fn dst_change_days_follow_rfc_5545() {
        // Spring forward in Berlin, 29 March 2026: 02:30 does not exist and is 03:30 CEST.
        let skipped = NaiveDateTime::parse_from_str("2026-03-29 02:30", "%Y-%m-%d %H:%M").unwrap();
        assert_eq!(
            local(berlin(), skipped).to_rfc3339(),
            "2026-03-29T03:30:00+02:00"
        );
        // Fall back, 25 October 2026: 02:30 happens twice; it is the first (CEST).
        let twice = NaiveDateTime::parse_from_str("2026-10-25 02:30", "%Y-%m-%d %H:%M").unwrap();
        assert_eq!(
            local(berlin(), twice).to_rfc3339(),
            "2026-10-25T02:30:00+02:00"
        );
    }

    #[test]
    fn what_is_not_a_calendar_says_so() {
        let html = b"<!DOCTYPE html><html><body>Sign in</body></html>";
        assert_eq!(
            Document::parse(html).unwrap_err(),
            "the answer is not an iCalendar file"
        );
        let broken = b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMMARY:x\r\n";
        let error = Document::parse(broken).unwrap_err();
        assert!(
            error.starts_with("its iCalendar text does not parse"),
            "{error}"
        );
        // An event whose start cannot be read is counted, not fatal.
        let document = Document::parse(&fixture::google(
            "BEGIN:VEVENT\nUID:a\nDTSTART:tomorrow\nEND:VEVENT\nBEGIN:VEVENT\nUID:b\nDTSTART:20261202T090000Z\nEND:VEVENT\n",
        ))
        .unwrap();
        let (entries, unreadable) = document.entries(berlin());
        assert_eq!((entries.len(), unreadable), (1, 1));
    }
}
