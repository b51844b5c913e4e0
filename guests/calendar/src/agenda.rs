//! What each day holds: every event's occurrences that overlap it — recurring series
//! expanded (RRULE), with EXDATEs and changed or cancelled instances (RECURRENCE-ID)
//! applied — in the order a person reads a day.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta, TimeZone};
use rrule::{RRule, Tz, Unvalidated};

use crate::ics::{Entry, When, local};

/// Occurrences taken per series and window. The window is a few days, so only a series
/// repeating every few minutes comes near it.
const MAX_OCCURRENCES: u16 = 500;

/// One event as a day shows it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Item {
    pub span: Span,
    pub summary: String,
    pub location: Option<String>,
}

/// When an event happens on the day. Ordered as the day is read: all-day events first,
/// then by start (one that began the day before first), then by end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Span {
    /// An all-day event, or a timed one that covers the whole day.
    AllDay,
    /// On the day's clock: `from` is `None` when it began on an earlier day, `until` when
    /// it ends on a later one; `from == until` for an event with no length.
    Timed {
        from: Option<NaiveTime>,
        until: Option<NaiveTime>,
    },
}

/// One day of the agenda.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Day {
    pub date: NaiveDate,
    pub items: Vec<Item>,
}

/// The `N` days from `first` in `zone`, and how many recurring series were left out
/// because their RRULE could not be expanded.
pub fn days<const N: usize>(entries: &[Entry], zone: Tz, first: NaiveDate) -> ([Day; N], usize) {
    let date = |i: usize| first + TimeDelta::days(i as i64);
    let window = (midnight(zone, first), midnight(zone, date(N)));
    let (occurrences, unexpanded) = occurrences(entries, window);
    let days = std::array::from_fn(|i| {
        let date = date(i);
        let mut items: Vec<Item> = occurrences
            .iter()
            .filter_map(|(entry, occurs)| {
                Some(Item {
                    span: occurs.span_on(date, zone)?,
                    summary: entry.summary.clone(),
                    location: entry.location.clone(),
                })
            })
            .collect();
        items.sort();
        // The same event in two calendars (an invitation, a shared calendar) once.
        items.dedup();
        Day { date, items }
    });
    (days, unexpanded)
}

/// The day `now_ms` (milliseconds since the Unix epoch) falls on in `zone`.
pub fn today(now_ms: u64, zone: Tz) -> NaiveDate {
    let utc = DateTime::from_timestamp_millis(i64::try_from(now_ms).unwrap_or(i64::MAX))
        .unwrap_or_default();
    utc.with_timezone(&zone).date_naive()
}

/// When the day `date` begins in `zone` (where DST skips midnight, the first instant of it).
fn midnight(zone: Tz, date: NaiveDate) -> DateTime<Tz> {
    local(zone, date.and_time(NaiveTime::MIN))
}

/// An occurrence: days for all-day events, instants for the others; the end is exclusive.
#[derive(Debug, Clone, Copy)]
enum Occurs {
    Days(NaiveDate, NaiveDate),
    Times(DateTime<Tz>, DateTime<Tz>),
}

impl Occurs {
    fn starting(start: When, length: TimeDelta) -> Self {
        match start {
            When::Day(day) => Self::Days(day, day.checked_add_signed(length).unwrap_or(day)),
            When::At(at) => Self::Times(at, at.checked_add_signed(length).unwrap_or(at)),
        }
    }

    /// How it shows on `date` in `zone`, if it happens then.
    fn span_on(self, date: NaiveDate, zone: Tz) -> Option<Span> {
        match self {
            Self::Days(start, end) => (start <= date && date < end).then_some(Span::AllDay),
            Self::Times(start, end) => {
                let (day_start, day_end) = (midnight(zone, date), midnight(zone, date.succ_opt()?));
                let overlaps = if start == end {
                    day_start <= start && start < day_end
                } else {
                    start < day_end && end > day_start
                };
                if !overlaps {
                    return None;
                }
                let from = (start >= day_start).then(|| start.with_timezone(&zone).time());
                let until = (end <= day_end).then(|| end.with_timezone(&zone).time());
                Some(match (from, until) {
                    (None, None) => Span::AllDay,
                    (from, until) => Span::Timed { from, until },
                })
            }
        }
    }
}

/// Every occurrence that may touch `window` (a little more: `span_on` decides), and how
/// many series could not be expanded.
fn occurrences(
    entries: &[Entry],
    window: (DateTime<Tz>, DateTime<Tz>),
) -> (Vec<(&Entry, Occurs)>, usize) {
    // A series' instances that another VEVENT with its UID replaces (moves, retitles or
    // cancels): that VEVENT stands for them.
    let mut replaced: HashMap<&str, Vec<When>> = HashMap::new();
    for entry in entries {
        if let Some(id) = entry.recurrence_id {
            replaced.entry(entry.uid.as_str()).or_default().push(id);
        }
    }
    let mut found = Vec::new();
    let mut unexpanded = 0;
    for entry in entries.iter().filter(|e| !e.cancelled) {
        let length = length(entry);
        let rule = entry
            .rule
            .as_deref()
            .filter(|_| entry.recurrence_id.is_none());
        let Some(rule) = rule else {
            found.push((entry, Occurs::starting(entry.start, length)));
            continue;
        };
        let Ok(starts) = expand(entry.start, rule, length, window) else {
            unexpanded += 1;
            continue;
        };
        let skipped = replaced.get(entry.uid.as_str());
        let skipped = entry.exdates.iter().chain(skipped.into_iter().flatten());
        let skipped: Vec<&When> = skipped.collect();
        for start in starts {
            if !skipped.iter().any(|s| same_instance(**s, start)) {
                found.push((entry, Occurs::starting(start, length)));
            }
        }
    }
    (found, unexpanded)
}

/// How long each occurrence lasts: DTEND minus DTSTART (RFC 5545 3.6.1; an all-day event
/// without DTEND is one day, a timed one an instant).
fn length(entry: &Entry) -> TimeDelta {
    match (entry.start, entry.end) {
        (When::At(start), Some(When::At(end))) => (end - start).max(TimeDelta::zero()),
        (When::Day(start), Some(When::Day(end))) => (end - start).max(TimeDelta::days(1)),
        (When::Day(_), _) => TimeDelta::days(1),
        (When::At(_), _) => TimeDelta::zero(),
    }
}

/// Whether an EXDATE or RECURRENCE-ID names the occurrence starting at `start`. A date
/// against a timed series names that day's occurrence, as lenient readers do.
fn same_instance(named: When, start: When) -> bool {
    match (named, start) {
        (When::Day(day), When::At(at)) => at.date_naive() == day,
        (named, start) => named == start,
    }
}

/// The starts of `rule`'s occurrences from `start` that may touch `window`.
fn expand(
    start: When,
    rule: &str,
    length: TimeDelta,
    (from, to): (DateTime<Tz>, DateTime<Tz>),
) -> Result<Vec<When>, rrule::RRuleError> {
    // All-day series run on UTC midnights, whose dates are the days themselves; the
    // window gets a day's margin either side for them, and `span_on` decides.
    let (dt_start, all_day) = match start {
        When::At(at) => (at, false),
        When::Day(day) => (
            Tz::UTC.from_utc_datetime(&day.and_time(NaiveTime::MIN)),
            true,
        ),
    };
    let mut rule: RRule<Unvalidated> = rule.parse()?;
    // RFC 5545: an UNTIL without `Z` is on DTSTART's clock (always, for all-day series);
    // rrule reads it on the machine's, and wants UTC beside a zoned DTSTART.
    if let Some(until) = rule.get_until().filter(|u| u.timezone().is_local()) {
        let until = local(dt_start.timezone(), until.naive_local()).with_timezone(&Tz::UTC);
        rule = rule.until(until);
    }
    let margin = TimeDelta::days(1);
    let starts = rule
        .build(dt_start)?
        .after(from - length - margin)
        .before(to + margin)
        .all(MAX_OCCURRENCES)
        .dates;
    Ok(starts
        .into_iter()
        .map(|at| {
            if all_day {
                When::Day(at.date_naive())
            } else {
                When::At(at)
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;
    use crate::ics::Document;

    fn berlin() -> Tz {
        Tz::Tz(chrono_tz::Europe::Berlin)
    }

    fn date(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    /// Each day as `HH:MM-HH:MM summary` lines (`all day summary`, `…` for an open end).
    fn agenda<const N: usize>(events: &str, zone: Tz, first: &str) -> [Vec<String>; N] {
        let document = Document::parse(&fixture::google(events)).unwrap();
        let (entries, _) = document.entries(zone);
        let (days, unexpanded) = days::<N>(&entries, zone, date(first));
        assert_eq!(unexpanded, 0);
        days.map(|day| {
            let hhmm =
                |t: Option<NaiveTime>| t.map_or("…".into(), |t| t.format("%H:%M").to_string());
            day.items
                .iter()
                .map(|item| match item.span {
                    Span::AllDay => format!("all day {}", item.summary),
                    Span::Timed { from, until } => {
                        format!("{}-{} {}", hhmm(from), hhmm(until), item.summary)
                    }
                })
                .collect()
        })
    }

    #[test]
    fn today_and_tomorrow_in_a_google_week() {
        let [today, tomorrow] = agenda(fixture::WEEK, berlin(), "2026-12-02");
        assert_eq!(
            today,
            [
                "00:30-01:00 Call with Sydney",
                "08:00-08:05 Vitamins",
                "09:00-09:30 Stand-up",
                "14:00-15:00 Dentist",
            ]
        );
        assert_eq!(
            tomorrow,
            [
                "all day Holiday",
                "15:00-15:30 1:1 with Alex (moved)",
                "22:00-… Night train"
            ]
        );
        let [after] = agenda(fixture::WEEK, berlin(), "2026-12-04");
        assert_eq!(after, ["…-06:00 Night train", "09:00-09:30 Stand-up"]);
    }

    #[test]
    fn the_zone_decides_what_today_holds() {
        // In UTC the call with Sydney is on the 1st, the stand-up at 08:00 (09:00 in Berlin).
        let [today] = agenda(fixture::WEEK, Tz::UTC, "2026-12-02");
        assert_eq!(
            today,
            [
                "07:00-07:05 Vitamins",
                "08:00-08:30 Stand-up",
                "13:00-14:00 Dentist"
            ]
        );
        assert_eq!(
            super::today(fixture::NOON_2_DEC_2026, berlin()),
            date("2026-12-02")
        );
        let auckland = Tz::Tz(chrono_tz::Pacific::Auckland);
        assert_eq!(
            super::today(fixture::NOON_2_DEC_2026, auckland),
            date("2026-12-03")
        );
    }

    #[test]
    fn daily_count_and_until_end_a_series() {
        let series = "BEGIN:VEVENT\nUID:d\nDTSTART;TZID=Europe/Berlin:20261130T080000\nRRULE:FREQ=DAILY;COUNT=3\nSUMMARY:Pills\nEND:VEVENT\n\
                      BEGIN:VEVENT\nUID:u\nDTSTART;TZID=Europe/Berlin:20261126T100000\nRRULE:FREQ=DAILY;UNTIL=20261201T225959Z\nSUMMARY:Course\nEND:VEVENT\n\
                      BEGIN:VEVENT\nUID:f\nDTSTART;TZID=Europe/Berlin:20261126T100000\nRRULE:FREQ=DAILY;UNTIL=20261203T100000\nSUMMARY:Floating until\nEND:VEVENT\n";
        let [second, third, fourth] = agenda(series, berlin(), "2026-12-01");
        assert_eq!(
            second,
            [
                "08:00-08:00 Pills",
                "10:00-10:00 Course",
                "10:00-10:00 Floating until"
            ]
        );
        assert_eq!(third, ["08:00-08:00 Pills", "10:00-10:00 Floating until"]);
        assert_eq!(fourth, ["10:00-10:00 Floating until"]);
    }

    #[test]
    fn a_weekly_series_keeps_its_local_time_across_dst_changes() {
        let sunday = "BEGIN:VEVENT\nUID:s\nDTSTART;TZID=Europe/Berlin:20260301T090000\nDTEND;TZID=Europe/Berlin:20260301T100000\nRRULE:FREQ=WEEKLY;BYDAY=SU\nSUMMARY:Run\nEND:VEVENT\n\
                      BEGIN:VEVENT\nUID:n\nDTSTART;TZID=Europe/Berlin:20260329T023000\nDTEND;TZID=Europe/Berlin:20260329T033000\nSUMMARY:In the gap\nEND:VEVENT\n\
                      BEGIN:VEVENT\nUID:l\nDTSTART;TZID=Europe/Berlin:20260329T233000\nDTEND;TZID=Europe/Berlin:20260330T003000\nSUMMARY:Late\nEND:VEVENT\n";
        // 29 March 2026 has 23 hours in Berlin.
        let [spring, monday] = agenda(sunday, berlin(), "2026-03-29");
        assert_eq!(
            spring,
            ["03:30-03:30 In the gap", "09:00-10:00 Run", "23:30-… Late"]
        );
        assert_eq!(monday, ["…-00:30 Late"]);
        let [autumn] = agenda(sunday, berlin(), "2026-10-25");
        assert_eq!(autumn, ["09:00-10:00 Run"]);
        let [in_utc] = agenda(sunday, Tz::UTC, "2026-10-25");
        assert_eq!(in_utc, ["08:00-09:00 Run"]);
    }

    #[test]
    fn exdates_and_replaced_instances_leave_the_series() {
        let series = "BEGIN:VEVENT\nUID:w\nDTSTART;TZID=Europe/Berlin:20261104T180000\nRRULE:FREQ=WEEKLY;BYDAY=WE,TH\nEXDATE;TZID=Europe/Berlin:20261202T180000\nSUMMARY:Yoga\nEND:VEVENT\n\
                      BEGIN:VEVENT\nUID:w\nRECURRENCE-ID;TZID=Europe/Berlin:20261203T180000\nDTSTART;TZID=Europe/Berlin:20261203T190000\nSUMMARY:Yoga (later)\nEND:VEVENT\n\
                      BEGIN:VEVENT\nUID:w\nRECURRENCE-ID:20261209T170000Z\nDTSTART;TZID=Europe/Berlin:20261209T180000\nSTATUS:CANCELLED\nSUMMARY:Yoga\nEND:VEVENT\n";
        let [wed, thu, _, _, _, _, _, next_wed, next_thu] = agenda(series, berlin(), "2026-12-02");
        assert!(wed.is_empty(), "EXDATE: {wed:?}");
        assert_eq!(thu, ["19:00-19:00 Yoga (later)"]);
        assert!(
            next_wed.is_empty(),
            "a cancelled instance, named in UTC: {next_wed:?}"
        );
        assert_eq!(next_thu, ["18:00-18:00 Yoga"]);
    }

    #[test]
    fn all_day_events_cover_their_days_and_recur() {
        let days = "BEGIN:VEVENT\nUID:t\nDTSTART;VALUE=DATE:20261201\nDTEND;VALUE=DATE:20261204\nSUMMARY:Trip\nEND:VEVENT\n\
                    BEGIN:VEVENT\nUID:b\nDTSTART;VALUE=DATE:20001203\nRRULE:FREQ=YEARLY\nSUMMARY:Birthday\nEND:VEVENT\n\
                    BEGIN:VEVENT\nUID:g\nDTSTART;VALUE=DATE:20261102\nDTEND;VALUE=DATE:20261103\nRRULE:FREQ=WEEKLY;UNTIL=20261207;BYDAY=WE,TH\nEXDATE;VALUE=DATE:20261203\nSUMMARY:Bins\nEND:VEVENT\n\
                    BEGIN:VEVENT\nUID:o\nDTSTART;TZID=Europe/Berlin:20261201T120000\nDTEND;TZID=Europe/Berlin:20261203T120000\nSUMMARY:Offsite\nEND:VEVENT\n";
        let [wed, thu, fri] = agenda(days, berlin(), "2026-12-02");
        assert_eq!(wed, ["all day Bins", "all day Offsite", "all day Trip"]);
        assert_eq!(thu, ["all day Birthday", "all day Trip", "…-12:00 Offsite"]);
        assert!(fri.is_empty(), "{fri:?}");
    }

    #[test]
    fn a_rule_that_does_not_parse_is_counted_not_fatal() {
        let document = Document::parse(&fixture::google(
            "BEGIN:VEVENT\nUID:x\nDTSTART:20261202T090000Z\nRRULE:FREQ=SOMETIMES\nSUMMARY:Odd\nEND:VEVENT\n\
             BEGIN:VEVENT\nUID:y\nDTSTART:20261202T100000Z\nSUMMARY:Fine\nEND:VEVENT\n",
        ))
        .unwrap();
        let (entries, _) = document.entries(Tz::UTC);
        let ([day], unexpanded) = days::<1>(&entries, Tz::UTC, date("2026-12-02"));
        assert_eq!((day.items.len(), unexpanded), (1, 1));
    }
}
