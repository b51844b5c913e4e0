//! When a recurring `/every` task runs: at a local time on chosen weekdays ("day 07:30",
//! "weekday 8:00", "mon 9am"), at a fixed interval from its creation ("2h", "90 min"), or
//! on a 5-field cron pattern ("30 7 * * 1-5"), evaluated in the chat's zone by croner.
//!
//! On days the clock changes, a local time runs once a day: 02:30 that does not exist runs
//! at 03:30 (moved on by the gap), 02:30 that happens twice runs at the earlier, as for
//! `/remind` (see `when`). Cron follows croner, which follows cron itself: a fixed time in
//! the gap runs as soon as the gap ends (03:00), one in the overlap runs once; patterns with
//! a wildcard hour run every hour that exists.

use jiff::civil::Weekday;

use super::when::{self, ParseError, Words};
use crate::zone::Zone;

const SCHEDULE_EXAMPLES: &str =
    "day 07:30, weekday 8:00, monday 9:00, 2h, 30 min, or cron like 30 7 * * 1-5";

/// The shortest interval: a bot is not a busy loop.
const MIN_INTERVAL_SECONDS: u64 = 60;

/// Monday to Friday, as a `Daily::weekdays` mask.
const WORKDAYS: u8 = 0b001_1111;
const WEEKEND: u8 = 0b110_0000;
const EVERY_DAY: u8 = 0b111_1111;

/// Day names in `to_spec`, Monday first like the mask's bits.
const SPEC_DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recurrence {
    /// At `hour:minute` local time on each day in `weekdays`: bit 0 is Monday … bit 6
    /// Sunday.
    Daily { weekdays: u8, hour: u8, minute: u8 },
    /// Every `seconds` of real time after `anchor_unix_ms`, when the task was made.
    Interval { seconds: u64, anchor_unix_ms: u64 },
    /// A standard 5-field cron pattern (minute hour day-of-month month day-of-week), words
    /// separated by single spaces.
    Cron { pattern: String },
}

impl Recurrence {
    /// Reads `/every`'s argument: the schedule and the rest (the prompt, trimmed,
    /// non-empty). Intervals are anchored at `now_unix_ms`.
    pub fn parse(input: &str, now_unix_ms: u64) -> Result<(Self, &str), ParseError> {
        let words = Words::new(input);
        let lower = words.lower();
        let Some(first) = lower.first() else {
            return Err(ParseError::new(format!(
                "say how often, then what: e.g. day 07:30 Good morning — how often can be \
                 {SCHEDULE_EXAMPLES}"
            )));
        };
        let days = match first.as_str() {
            "day" | "daily" | "everyday" => Some(EVERY_DAY),
            "weekday" | "weekdays" => Some(WORKDAYS),
            "weekend" | "weekends" => Some(WEEKEND),
            word => when::weekday(word).map(mask),
        };
        let (recurrence, used) = if let Some(weekdays) = days {
            let at = usize::from(lower.get(1).is_some_and(|word| word == "at"));
            let Some((time, n)) = when::clock(&lower[1 + at..])? else {
                let day = words.text(0, 1);
                return Err(ParseError::new(format!(
                    "'{day}' needs a time, e.g. {day} 7:30 or {day} 8am"
                )));
            };
            let daily = Recurrence::Daily {
                weekdays,
                hour: time.hour,
                minute: time.minute,
            };
            (daily, 1 + at + n)
        } else if let Some((length, n)) = when::length(lower)? {
            // Days are exact here (86 400 s): an interval is real time, whatever the zone.
            let seconds = length
                .days
                .checked_mul(86_400)
                .and_then(|days| days.checked_add(length.seconds))
                .and_then(|seconds| u64::try_from(seconds).ok())
                .ok_or_else(|| ParseError::new("that interval is too long"))?;
            if seconds < MIN_INTERVAL_SECONDS {
                return Err(ParseError::new(format!(
                    "every {} is too often — the shortest interval is 1 min",
                    words.text(0, n)
                )));
            }
            let interval = Recurrence::Interval {
                seconds,
                anchor_unix_ms: now_unix_ms,
            };
            (interval, n)
        } else {
            (cron_at_start(&words, now_unix_ms)?, 5)
        };
        let prompt = words.rest(used);
        if prompt.is_empty() {
            return Err(ParseError::new(format!(
                "what should I do then? Put the prompt after the schedule, e.g. {} Good \
                 morning",
                words.text(0, used)
            )));
        }
        Ok((recurrence, prompt))
    }

    /// The first slot strictly after `after_unix_ms`, in `zone` (intervals ignore the
    /// zone). None only if there is none (an impossible cron).
    pub fn next_after(&self, after_unix_ms: u64, zone: &Zone) -> Option<u64> {
        match self {
            Recurrence::Daily {
                weekdays,
                hour,
                minute,
            } => {
                let time = when::Clock {
                    hour: *hour,
                    minute: *minute,
                };
                if *weekdays & EVERY_DAY == 0 || *hour > 23 || *minute > 59 {
                    return None;
                }
                let after = zone.local(after_unix_ms);
                // One candidate per local date, so a day never gets two slots, even when
                // its time happens twice; the eighth date covers today's slot having passed.
                let mut date = after.date();
                for _ in 0..8 {
                    if *weekdays & mask(date.weekday()) != 0 {
                        let slot = time.on(date, zone).ok()?;
                        if slot > after.timestamp() {
                            return u64::try_from(slot.as_millisecond()).ok();
                        }
                    }
                    date = date.tomorrow().ok()?;
                }
                None
            }
            Recurrence::Interval {
                seconds,
                anchor_unix_ms,
            } => {
                let every = seconds.checked_mul(1000).filter(|&ms| ms > 0)?;
                // Slots are anchor + k·every for k ≥ 1: the first one interval after creation.
                let k = after_unix_ms.saturating_sub(*anchor_unix_ms) / every + 1;
                k.checked_mul(every)?.checked_add(*anchor_unix_ms)
            }
            Recurrence::Cron { pattern } => {
                let cron = cron_parser().parse(pattern).ok()?;
                let after = zone.local(after_unix_ms);
                let next = cron.find_next_occurrence(&after, false).ok()?;
                u64::try_from(next.timestamp().as_millisecond()).ok()
            }
        }
    }

    /// Text stored in SQLite; `from_spec(to_spec())` round-trips exactly.
    pub fn to_spec(&self) -> String {
        match self {
            Recurrence::Daily {
                weekdays,
                hour,
                minute,
            } => {
                let days: Vec<&str> = (0..7)
                    .filter(|bit| weekdays & (1 << bit) != 0)
                    .map(|bit| SPEC_DAYS[bit])
                    .collect();
                format!("daily {} {hour:02}:{minute:02}", days.join(","))
            }
            Recurrence::Interval {
                seconds,
                anchor_unix_ms,
            } => format!("interval {seconds} {anchor_unix_ms}"),
            Recurrence::Cron { pattern } => format!("cron {pattern}"),
        }
    }

    pub fn from_spec(spec: &str) -> Result<Self, ParseError> {
        let unreadable = || ParseError::new(format!("unreadable stored schedule '{spec}'"));
        let (kind, rest) = spec.split_once(' ').ok_or_else(unreadable)?;
        match kind {
            "daily" => {
                let (days, time) = rest.split_once(' ').ok_or_else(unreadable)?;
                let mut weekdays = 0;
                for day in days.split(',') {
                    let bit = SPEC_DAYS.iter().position(|d| *d == day);
                    weekdays |= 1 << bit.ok_or_else(unreadable)?;
                }
                let (hour, minute) = time.split_once(':').ok_or_else(unreadable)?;
                let hour: u8 = hour.parse().map_err(|_| unreadable())?;
                let minute: u8 = minute.parse().map_err(|_| unreadable())?;
                if hour > 23 || minute > 59 {
                    return Err(unreadable());
                }
                Ok(Recurrence::Daily {
                    weekdays,
                    hour,
                    minute,
                })
            }
            "interval" => {
                let (seconds, anchor) = rest.split_once(' ').ok_or_else(unreadable)?;
                let seconds: u64 = seconds.parse().map_err(|_| unreadable())?;
                if seconds < MIN_INTERVAL_SECONDS {
                    return Err(unreadable());
                }
                Ok(Recurrence::Interval {
                    seconds,
                    anchor_unix_ms: anchor.parse().map_err(|_| unreadable())?,
                })
            }
            "cron" => {
                cron_parser().parse(rest).map_err(|_| unreadable())?;
                Ok(Recurrence::Cron {
                    pattern: rest.to_owned(),
                })
            }
            _ => Err(unreadable()),
        }
    }

    /// For /tasks and confirmations: "every day at 07:30", "every weekday at 08:00",
    /// "every Monday at 09:00", "every 2 h", "cron 30 7 * * 1-5".
    pub fn describe(&self) -> String {
        match self {
            Recurrence::Daily {
                weekdays,
                hour,
                minute,
            } => {
                let days = match *weekdays {
                    EVERY_DAY => "day".to_owned(),
                    WORKDAYS => "weekday".to_owned(),
                    mask => {
                        let names: Vec<String> = (0..7)
                            .filter(|bit| mask & (1 << bit) != 0)
                            .filter_map(|bit| Weekday::from_monday_zero_offset(bit).ok())
                            .map(|day| format!("{day:?}"))
                            .collect();
                        join_and(&names)
                    }
                };
                format!("every {days} at {hour:02}:{minute:02}")
            }
            Recurrence::Interval { seconds, .. } => {
                // The largest unit that divides it: "every 90 min", not "every 1.5 h".
                let (count, unit) = [(86_400, "d"), (3600, "h"), (60, "min")]
                    .into_iter()
                    .find(|(size, _)| seconds % size == 0)
                    .map_or((*seconds, "s"), |(size, unit)| (seconds / size, unit));
                format!("every {count} {unit}")
            }
            Recurrence::Cron { pattern } => format!("cron {pattern}"),
        }
    }
}

/// The weekday's bit in a `Daily::weekdays` mask.
fn mask(day: Weekday) -> u8 {
    1 << day.to_monday_zero_offset()
}

/// "Monday", "Monday and Friday", "Monday, Wednesday and Friday".
fn join_and(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Standard cron only: five fields, no seconds or years (croner would take either), and
/// Sunday is 0 or 7.
fn cron_parser() -> croner::parser::CronParser {
    use croner::parser::{CronParser, Seconds, Year};
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
}

/// The first five words as a cron pattern, or the error for a schedule that is none of the
/// forms.
fn cron_at_start(words: &Words, now_unix_ms: u64) -> Result<Recurrence, ParseError> {
    use croner::parser::{CronParser, Seconds, Year};
    let lower = words.lower();
    // With seconds, the sixth field would be read as the prompt's first word: refuse such
    // a pattern rather than run it at the wrong times.
    let with_seconds = CronParser::builder()
        .seconds(Seconds::Required)
        .year(Year::Disallowed)
        .build();
    if lower.get(..6).is_some_and(|six| {
        looks_like_cron_field(&six[5]) && with_seconds.parse(&six.join(" ")).is_ok()
    }) {
        return Err(ParseError::new(format!(
            "'{}' looks like cron with 6 fields — use 5: minute hour day-of-month month \
             day-of-week, e.g. 30 7 * * 1-5 Good morning",
            words.text(0, 6)
        )));
    }
    let five = lower.get(..5).map(|five| five.join(" "));
    if let Some(cron) = five.and_then(|five| cron_parser().parse(&five).ok()) {
        // Said now rather than found out by the scheduler when it asks for a first slot.
        let now = Zone::utc().local(now_unix_ms);
        if cron.find_next_occurrence(&now, false).is_err() {
            return Err(ParseError::new(format!(
                "'{}' never happens — e.g. the 30th of February",
                words.text(0, 5)
            )));
        }
        // As typed (croner reads names in any case), single-spaced.
        let pattern = (0..5).map(|i| words.text(i, i + 1)).collect::<Vec<_>>();
        return Ok(Recurrence::Cron {
            pattern: pattern.join(" "),
        });
    }
    let first = words.text(0, 1);
    if looks_like_cron_field(&lower[0]) {
        return Err(ParseError::new(format!(
            "'{}' is not a cron schedule I can read — cron takes 5 fields: minute hour \
             day-of-month month day-of-week, e.g. 30 7 * * 1-5 Good morning",
            words.text(0, 5)
        )));
    }
    Err(ParseError::new(format!(
        "'{first}' is not a schedule I can read — try {SCHEDULE_EXAMPLES}"
    )))
}

/// Digits and `* , - / ?` only ("30", "*/5", "1-5"), or a list or range of names
/// ("mon-fri"): what a cron field is made of, and no word of a prompt.
fn looks_like_cron_field(word: &str) -> bool {
    let numeric = word.bytes().all(|b| b"0123456789*,-/?".contains(&b));
    let names = word.len() > 3
        && word.contains(['-', ','])
        && word
            .split(['-', ',', '/'])
            .all(|part| part.len() == 3 && part.bytes().all(|b| b.is_ascii_alphabetic()));
    !word.is_empty() && (numeric || names)
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;

    use super::*;

    /// Wednesday 2 December 2026, 16:23 in Madrid.
    const NOW: &str = "2026-12-02T15:23:00Z";

    fn ms(utc: &str) -> u64 {
        utc.parse::<Timestamp>().unwrap().as_millisecond() as u64
    }

    fn utc(unix_ms: u64) -> String {
        Timestamp::from_millisecond(unix_ms as i64)
            .unwrap()
            .to_string()
    }

    fn madrid() -> Zone {
        Zone::parse("Europe/Madrid").unwrap()
    }

    /// `<input> Good morning` read at NOW.
    fn parse(input: &str) -> Recurrence {
        let line = format!("{input} Good morning");
        let (recurrence, prompt) =
            Recurrence::parse(&line, ms(NOW)).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(prompt, "Good morning", "{input:?}");
        recurrence
    }

    /// The first `n` slots after `from` in `zone`, each asked strictly after the last.
    fn slots(recurrence: &Recurrence, from: &str, zone: &Zone, n: usize) -> Vec<String> {
        let mut at = ms(from);
        (0..n)
            .map(|_| {
                at = recurrence.next_after(at, zone).unwrap();
                utc(at)
            })
            .collect()
    }

    fn error(input: &str) -> String {
        Recurrence::parse(input, ms(NOW)).unwrap_err().to_string()
    }

    #[test]
    fn every_day_at_a_time() {
        let daily = Recurrence::Daily {
            weekdays: EVERY_DAY,
            hour: 7,
            minute: 30,
        };
        for input in ["day 07:30", "daily 7:30", "day at 7:30am", "everyday 7:30"] {
            assert_eq!(parse(input), daily, "{input:?}");
        }
        assert_eq!(
            slots(&daily, NOW, &madrid(), 2),
            ["2026-12-03T06:30:00Z", "2026-12-04T06:30:00Z"]
        );
        // Still ahead today: today.
        assert_eq!(
            slots(&parse("day 18:00"), NOW, &madrid(), 1),
            ["2026-12-02T17:00:00Z"]
        );
    }

    #[test]
    fn weekdays_weekends_and_named_days() {
        let workdays = parse("weekday 8:00");
        assert_eq!(parse("weekdays 8:00"), workdays);
        assert_eq!(
            workdays,
            Recurrence::Daily {
                weekdays: WORKDAYS,
                hour: 8,
                minute: 0
            }
        );
        // Wednesday 16:23: Thursday, Friday, then Monday.
        assert_eq!(
            slots(&workdays, NOW, &madrid(), 3),
            [
                "2026-12-03T07:00:00Z",
                "2026-12-04T07:00:00Z",
                "2026-12-07T07:00:00Z"
            ]
        );
        assert_eq!(
            slots(&parse("weekend 10:00"), NOW, &madrid(), 3),
            [
                "2026-12-05T09:00:00Z",
                "2026-12-06T09:00:00Z",
                "2026-12-12T09:00:00Z"
            ]
        );
        let mondays = parse("monday 9:00");
        assert_eq!(parse("mon 9am"), mondays);
        assert_eq!(parse("Mondays at 9:00"), mondays);
        assert_eq!(
            slots(&mondays, NOW, &madrid(), 2),
            ["2026-12-07T08:00:00Z", "2026-12-14T08:00:00Z"]
        );
        // Today's weekday with the time still ahead is today.
        assert_eq!(
            slots(&parse("wed 18:00"), NOW, &madrid(), 1),
            ["2026-12-02T17:00:00Z"]
        );
    }

    #[test]
    fn intervals_count_from_creation() {
        let now = ms(NOW);
        let cases = [
            ("2h", 7200),
            ("30m", 1800),
            ("90 min", 5400),
            ("1d", 86_400),
            ("1h30m", 5400),
            ("60s", 60),
        ];
        for (input, seconds) in cases {
            let expected = Recurrence::Interval {
                seconds,
                anchor_unix_ms: now,
            };
            assert_eq!(parse(input), expected, "{input:?}");
        }
        let two_hours = parse("2h");
        assert_eq!(two_hours.next_after(now, &madrid()), Some(now + 7_200_000));
        assert_eq!(
            two_hours.next_after(now - 5, &madrid()),
            Some(now + 7_200_000)
        );
        assert_eq!(
            two_hours.next_after(now + 7_199_999, &madrid()),
            Some(now + 7_200_000)
        );
        assert_eq!(
            two_hours.next_after(now + 7_200_000, &madrid()),
            Some(now + 14_400_000)
        );
        // After a pause, the next slot on the original grid.
        assert_eq!(
            two_hours.next_after(now + 36_000_001, &madrid()),
            Some(now + 43_200_000)
        );
    }

    #[test]
    fn intervals_are_real_time_and_ignore_the_zone() {
        // Created 12:00 CET the day before Madrid springs forward: a day is 24 real hours.
        let (daily, _) = Recurrence::parse("1d x", ms("2027-03-27T11:00:00Z")).unwrap();
        for zone in [madrid(), Zone::utc()] {
            assert_eq!(
                slots(&daily, "2027-03-27T11:00:00Z", &zone, 2),
                ["2027-03-28T11:00:00Z", "2027-03-29T11:00:00Z"]
            );
        }
    }

    #[test]
    fn intervals_under_a_minute_are_refused() {
        let error = error("10s ping");
        assert!(error.contains("every 10s is too often"), "{error}");
        assert!(error.contains("shortest interval is 1 min"), "{error}");
        assert!(Recurrence::parse("59 seconds x", 0).is_err());
        assert!(Recurrence::parse("0 min x", 0).is_err());
    }

    #[test]
    fn cron_in_the_zone() {
        let (cron, prompt) = Recurrence::parse("30 7 * * 1-5 Good morning", ms(NOW)).unwrap();
        assert_eq!(prompt, "Good morning");
        assert_eq!(
            cron,
            Recurrence::Cron {
                pattern: "30 7 * * 1-5".into()
            }
        );
        // Wednesday 16:23 Madrid: Thursday, Friday, Monday at 07:30 CET.
        assert_eq!(
            slots(&cron, NOW, &madrid(), 3),
            [
                "2026-12-03T06:30:00Z",
                "2026-12-04T06:30:00Z",
                "2026-12-07T06:30:00Z"
            ]
        );
        let at = |pattern: &str, n| {
            let (cron, _) = Recurrence::parse(&format!("{pattern} x"), ms(NOW)).unwrap();
            slots(&cron, NOW, &madrid(), n)
        };
        assert_eq!(at("0 9 * * MON", 1), ["2026-12-07T08:00:00Z"]);
        assert_eq!(at("0 9 * * sun,7", 1), ["2026-12-06T08:00:00Z"]);
        assert_eq!(
            at("*/20 16-17 * * *", 3),
            [
                "2026-12-02T15:40:00Z",
                "2026-12-02T16:00:00Z",
                "2026-12-02T16:20:00Z"
            ]
        );
        assert_eq!(at("0 12 1,15 jan-mar *", 1), ["2027-01-01T11:00:00Z"]);
        assert_eq!(at("0 0 29 2 *", 1), ["2028-02-28T23:00:00Z"]);
    }

    #[test]
    fn impossible_cron_is_refused_and_has_no_slot() {
        let error = error("0 0 30 2 * x");
        assert!(error.contains("'0 0 30 2 *' never happens"), "{error}");
        let cron = Recurrence::Cron {
            pattern: "0 0 30 2 *".into(),
        };
        assert_eq!(cron.next_after(ms(NOW), &madrid()), None);
        let garbage = Recurrence::Cron {
            pattern: "not cron".into(),
        };
        assert_eq!(garbage.next_after(ms(NOW), &madrid()), None);
    }

    #[test]
    fn six_field_and_malformed_cron_say_what_is_expected() {
        let expected = "5: minute hour day-of-month month day-of-week";
        let error_of = error("0 30 7 * * 1-5 Good morning");
        assert!(
            error_of.contains("looks like cron with 6 fields"),
            "{error_of}"
        );
        assert!(error_of.contains(expected), "{error_of}");
        let error_of = error("0 0 7 * * mon-fri Good morning");
        assert!(error_of.contains("6 fields"), "{error_of}");
        for input in ["61 7 * * * x", "30 7 * * x", "*/5 * *", "30 7 * * 8 x"] {
            let error_of = error(input);
            assert!(
                error_of.contains("cron takes 5 fields"),
                "{input:?}: {error_of}"
            );
        }
    }

    #[test]
    fn local_times_run_once_a_day_across_clock_changes() {
        let night = parse("day 02:30");
        // Madrid springs forward on 2027-03-28: 02:30 does not exist and runs at 03:30 CEST.
        assert_eq!(
            slots(&night, "2027-03-26T12:00:00Z", &madrid(), 3),
            [
                "2027-03-27T01:30:00Z",
                "2027-03-28T01:30:00Z",
                "2027-03-29T00:30:00Z"
            ]
        );
        // It falls back on 2026-10-25: 02:30 happens twice and runs at the first (CEST).
        assert_eq!(
            slots(&night, "2026-10-23T12:00:00Z", &madrid(), 3),
            [
                "2026-10-24T00:30:00Z",
                "2026-10-25T00:30:00Z",
                "2026-10-26T01:30:00Z"
            ]
        );
        // Asked during the repeated hour, after the first 02:30: not again that day.
        assert_eq!(
            night
                .next_after(ms("2026-10-25T01:15:00Z"), &madrid())
                .map(utc),
            Some("2026-10-26T01:30:00Z".to_owned())
        );
        // New York: 2027-03-14 has no 02:30 (03:30 EDT); 2026-11-01 has two (first, EDT).
        let new_york = Zone::parse("America/New_York").unwrap();
        assert_eq!(
            slots(&night, "2027-03-13T12:00:00Z", &new_york, 2),
            ["2027-03-14T07:30:00Z", "2027-03-15T06:30:00Z"]
        );
        let (one_thirty, _) = Recurrence::parse("daily 1:30 x", 0).unwrap();
        assert_eq!(
            slots(&one_thirty, "2026-10-31T12:00:00Z", &new_york, 2),
            ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]
        );
    }

    #[test]
    fn cron_across_clock_changes_follows_cron() {
        let (cron, _) = Recurrence::parse("30 2 * * * x", 0).unwrap();
        // No 02:30 on 2027-03-28: as soon as the gap ends, 03:00 CEST.
        assert_eq!(
            slots(&cron, "2027-03-27T12:00:00Z", &madrid(), 2),
            ["2027-03-28T01:00:00Z", "2027-03-29T00:30:00Z"]
        );
        // Two on 2026-10-25: once, at the first.
        assert_eq!(
            slots(&cron, "2026-10-24T12:00:00Z", &madrid(), 2),
            ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]
        );
    }

    #[test]
    fn next_after_is_strictly_after() {
        let zone = madrid();
        for input in [
            "day 07:30 x",
            "weekday 8:00 x",
            "2h x",
            "30 7 * * 1-5 x",
            "*/5 * * * * x",
        ] {
            let (recurrence, _) = Recurrence::parse(input, ms(NOW)).unwrap();
            let slot = recurrence.next_after(ms(NOW), &zone).unwrap();
            let next = recurrence.next_after(slot, &zone).unwrap();
            assert!(next > slot, "{input:?}");
            assert_eq!(
                recurrence.next_after(slot - 1, &zone),
                Some(slot),
                "{input:?}"
            );
            assert_eq!(
                recurrence.next_after(next - 1, &zone),
                Some(next),
                "{input:?}"
            );
        }
    }

    #[test]
    fn specs_round_trip() {
        let cases = [
            ("day 07:30", "daily mon,tue,wed,thu,fri,sat,sun 07:30"),
            ("weekday 8:00", "daily mon,tue,wed,thu,fri 08:00"),
            ("weekend 10:00", "daily sat,sun 10:00"),
            ("mon 9am", "daily mon 09:00"),
            ("90 min", "interval 5400 1796224980000"),
            ("30 7 * * MON-FRI", "cron 30 7 * * MON-FRI"),
        ];
        for (input, spec) in cases {
            let recurrence = parse(input);
            assert_eq!(recurrence.to_spec(), spec, "{input:?}");
            assert_eq!(Recurrence::from_spec(spec), Ok(recurrence), "{input:?}");
        }
        let odd = Recurrence::Daily {
            weekdays: 0b101_0101,
            hour: 23,
            minute: 59,
        };
        assert_eq!(Recurrence::from_spec(&odd.to_spec()), Ok(odd));
    }

    #[test]
    fn bad_specs_are_errors() {
        for spec in [
            "",
            "daily",
            "daily mon 24:00",
            "daily xyz 07:30",
            "interval 10 0",
            "interval 60",
            "cron 0 0 7 * * *",
            "hourly",
        ] {
            let error = Recurrence::from_spec(spec).unwrap_err();
            assert!(
                error.to_string().contains("unreadable stored schedule"),
                "{spec:?}"
            );
        }
    }

    #[test]
    fn descriptions() {
        let cases = [
            ("day 07:30", "every day at 07:30"),
            ("weekday 8:00", "every weekday at 08:00"),
            ("weekend 10:00", "every Saturday and Sunday at 10:00"),
            ("monday 9:00", "every Monday at 09:00"),
            ("2h", "every 2 h"),
            ("90 min", "every 90 min"),
            ("1d", "every 1 d"),
            ("90s", "every 90 s"),
            ("30 7 * * 1-5", "cron 30 7 * * 1-5"),
        ];
        for (input, description) in cases {
            assert_eq!(parse(input).describe(), description, "{input:?}");
        }
        let odd = Recurrence::Daily {
            weekdays: 0b001_0101,
            hour: 9,
            minute: 0,
        };
        assert_eq!(
            odd.describe(),
            "every Monday, Wednesday and Friday at 09:00"
        );
    }

    #[test]
    fn errors_say_what_works() {
        let examples =
            "day 07:30, weekday 8:00, monday 9:00, 2h, 30 min, or cron like 30 7 * * 1-5";
        let cases = [
            ("", "say how often, then what"),
            ("banana split", "'banana' is not a schedule I can read"),
            ("day Good morning", "'day' needs a time, e.g. day 7:30"),
            ("weekday 25:00 x", "'25:00' is not a time of day"),
            (
                "day 07:30",
                "what should I do then? Put the prompt after the schedule, e.g. day 07:30",
            ),
            ("2h", "e.g. 2h Good morning"),
            ("30 7 * * 1-5", "e.g. 30 7 * * 1-5 Good morning"),
        ];
        for (input, expected) in cases {
            let error = error(input);
            assert!(error.contains(expected), "{input:?}: {error}");
        }
        assert!(error("banana").contains(examples));
    }
}
