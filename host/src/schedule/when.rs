//! Reads when a `/remind` is due — "in 10 min", "at 18:30", "tomorrow 8am", "monday 9:00",
//! "2026-12-24 18:00" — and where its text starts; also the words `/every` shares (times of
//! day, lengths, weekdays).
//!
//! Hand-written over jiff's calendar rather than a phrase crate: interim and chrono-english
//! parse a whole string (not "the time, then the text"), read neither "in 10 min" nor "at
//! 18:30", and leave a time already past today instead of taking tomorrow's, so most of this
//! would be needed around them anyway. jiff does the date arithmetic and the zone rules.
//!
//! The grammar is `in <length>` or `[day] [at] <time>`, with the day first: a time ends the
//! `<when>`, so words after it are never read as part of it. `at 18:30 monday meeting notes`
//! is due at the next 18:30 with the text "monday meeting notes"; to name a day, put it
//! first: `monday 18:30 meeting notes`. A time alone is the next one (today if still
//! ahead, else tomorrow); `monday 9:00` is the next Monday at 9:00 (today, if it is Monday
//! and 9:00 is ahead), `next monday 9:00` the same but never today.
//!
//! Local times, on days the clock changes: one that does not exist (02:30 when 02:00 jumps
//! to 03:00) is shifted forward by the gap, to 03:30; one that happens twice (02:30 when
//! 03:00 goes back to 02:00) is the earlier, so it fires once. These are jiff's (and
//! RFC 5545's) "compatible" rule.

use jiff::civil::{Date, Weekday};
use jiff::{SignedDuration, Span, Timestamp, Zoned};

use crate::zone::Zone;

/// What a reminder's time can look like, for error messages.
const WHEN_EXAMPLES: &str = "in 10 min, at 18:30, tomorrow 8am, monday 9:00 or 2026-12-24 18:00";

/// Why a time or schedule could not be read; Display is a short sentence for the user with
/// examples of what works.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(String);

impl ParseError {
    pub(super) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Reads the time at the start of `/remind`'s argument: when it is due and the rest (the
/// reminder's text, trimmed, non-empty).
pub fn parse_when<'a>(
    input: &'a str,
    now_unix_ms: u64,
    zone: &Zone,
) -> Result<(u64, &'a str), ParseError> {
    let words = Words::new(input);
    let now = zone.local(now_unix_ms);
    let (due, used) = match words.lower().first().map(String::as_str) {
        None => {
            return Err(ParseError::new(format!(
                "say when, then what: e.g. in 10 min call mum — when can be {WHEN_EXAMPLES}"
            )));
        }
        Some("in") => after_length(&words, &now)?,
        Some("yesterday") => return Err(in_the_past("yesterday")),
        Some(_) => on_day_at(&words, &now, zone)?,
    };
    if due <= now.timestamp() {
        return Err(in_the_past(&zone.format(unix_ms(due), now_unix_ms)));
    }
    let text = words.rest(used);
    if text.is_empty() {
        return Err(ParseError::new(format!(
            "what should I remind you of? Put it after the time, e.g. {} call mum",
            words.text(0, used)
        )));
    }
    Ok((unix_ms(due), text))
}

/// `in <length>`: hours, minutes and seconds are real time (two hours across a clock change
/// are still two hours); days and weeks are calendar days, so `in 1 day` at 10:00 is 10:00
/// tomorrow even when tomorrow is 23 hours away.
fn after_length(words: &Words, now: &Zoned) -> Result<(Timestamp, usize), ParseError> {
    let Some((length, used)) = length(&words.lower()[1..])? else {
        return Err(ParseError::new(
            "in how long? e.g. in 30s, in 10 min, in 2h, in 1h30m or in 2 days",
        ));
    };
    let too_far = || ParseError::new(format!("'{}' is too far ahead", words.text(0, used + 1)));
    let due = now
        .checked_add(Span::new().try_days(length.days).map_err(|_| too_far())?)
        .and_then(|due| due.checked_add(SignedDuration::from_secs(length.seconds)))
        .map_err(|_| too_far())?;
    Ok((due.timestamp(), used + 1))
}

/// Which day a `[day] <time>` names, before the time is known.
enum Day {
    Today,
    Tomorrow,
    /// The next such weekday: today if the time is still ahead, unless `next` (never today).
    Weekday {
        day: Weekday,
        next: bool,
    },
    Date(Date),
}

/// `[on] [day] [at] <time>`; a time alone is the next one (today if still ahead, else
/// tomorrow).
fn on_day_at(words: &Words, now: &Zoned, zone: &Zone) -> Result<(Timestamp, usize), ParseError> {
    let lower = words.lower();
    let mut used = usize::from(lower[0] == "on");
    let day = match day(&lower[used..])? {
        Some((day, n)) => {
            used += n;
            Some(day)
        }
        None => None,
    };
    let day_words = words.text(0, used);
    let at = lower.get(used).is_some_and(|word| word == "at");
    used += usize::from(at);
    let Some((time, n)) = clock(&lower[used..])? else {
        return Err(match day {
            Some(_) => ParseError::new(format!(
                "'{day_words}' needs a time too, e.g. {day_words} 8am or {day_words} 18:30"
            )),
            None if at => ParseError::new("at what time? e.g. at 18:30 or at 6pm"),
            None => ParseError::new(format!(
                "'{}' is not a time I can read — start with when, e.g. {WHEN_EXAMPLES}",
                words.text(0, 1)
            )),
        });
    };
    used += n;

    let today = now.date();
    let at_on = |date: Date| time.on(date, zone);
    let next_day = |date: Date| date.tomorrow().map_err(|_| too_far_ahead());
    let due = match day {
        None => {
            let due = at_on(today)?;
            if due > now.timestamp() {
                due
            } else {
                at_on(next_day(today)?)?
            }
        }
        Some(Day::Today) => at_on(today)?,
        Some(Day::Tomorrow) => at_on(next_day(today)?)?,
        Some(Day::Weekday { day, next }) => {
            let ahead = match today.weekday().until(day) {
                0 if next => 7,
                ahead => ahead,
            };
            let date = add_days(today, ahead.into())?;
            let due = at_on(date)?;
            if due > now.timestamp() {
                due
            } else {
                at_on(add_days(date, 7)?)?
            }
        }
        Some(Day::Date(date)) => at_on(date)?,
    };
    Ok((due, used))
}

/// A day at the start of `words` and how many words it took: "today", "tomorrow",
/// "[next] monday", "2026-12-24".
fn day(words: &[String]) -> Result<Option<(Day, usize)>, ParseError> {
    let Some(first) = words.first() else {
        return Ok(None);
    };
    Ok(Some(match first.as_str() {
        "today" => (Day::Today, 1),
        "tomorrow" => (Day::Tomorrow, 1),
        "next" => match words.get(1).and_then(|word| weekday(word)) {
            Some(day) => (Day::Weekday { day, next: true }, 2),
            None => return Ok(None),
        },
        word => {
            if let Some(day) = weekday(word) {
                (Day::Weekday { day, next: false }, 1)
            } else if let Some(date) = iso_date(word)? {
                (Day::Date(date), 1)
            } else {
                return Ok(None);
            }
        }
    }))
}

/// "2026-12-24"; Err for that shape when it is no date ("2026-02-30").
fn iso_date(word: &str) -> Result<Option<Date>, ParseError> {
    let shape = word.len() == 10
        && word.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    if !shape {
        return Ok(None);
    }
    word.parse().map(Some).map_err(|_| {
        ParseError::new(format!(
            "'{word}' is not a date — write it as year-month-day, e.g. 2026-12-24 18:00"
        ))
    })
}

fn add_days(date: Date, days: i64) -> Result<Date, ParseError> {
    date.checked_add(Span::new().days(days))
        .map_err(|_| too_far_ahead())
}

fn too_far_ahead() -> ParseError {
    ParseError::new("that is too far ahead — the calendar here ends in 9999")
}

fn in_the_past(when: &str) -> ParseError {
    ParseError::new(format!(
        "{when} is in the past — a reminder needs a time ahead, e.g. {WHEN_EXAMPLES}"
    ))
}

fn unix_ms(at: Timestamp) -> u64 {
    // Only instants after `now` (itself from a u64) get here.
    u64::try_from(at.as_millisecond()).unwrap_or(0)
}

/// The input's words, lowercased for matching, with where each ends in the input so the
/// rest can be handed back exactly as typed.
pub(super) struct Words<'a> {
    input: &'a str,
    /// Byte range of each word in `input`.
    spans: Vec<(usize, usize)>,
    lower: Vec<String>,
}

impl<'a> Words<'a> {
    pub(super) fn new(input: &'a str) -> Self {
        let spans: Vec<(usize, usize)> = input
            .split_whitespace()
            .map(|word| {
                // `split_whitespace` yields subslices of `input`, so the offset is exact.
                let start = word.as_ptr() as usize - input.as_ptr() as usize;
                (start, start + word.len())
            })
            .collect();
        let lower = spans
            .iter()
            .map(|&(start, end)| input[start..end].to_lowercase())
            .collect();
        Self {
            input,
            spans,
            lower,
        }
    }

    pub(super) fn lower(&self) -> &[String] {
        &self.lower
    }

    /// Words `from..to` as typed, e.g. to quote them in an error.
    pub(super) fn text(&self, from: usize, to: usize) -> &'a str {
        let to = to.min(self.spans.len());
        if from >= to {
            return "";
        }
        &self.input[self.spans[from].0..self.spans[to - 1].1]
    }

    /// Everything after the first `used` words, trimmed.
    pub(super) fn rest(&self, used: usize) -> &'a str {
        match used.checked_sub(1).and_then(|last| self.spans.get(last)) {
            Some(&(_, end)) => self.input[end..].trim(),
            None => self.input.trim(),
        }
    }
}

/// A local time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Clock {
    pub(super) hour: u8,
    pub(super) minute: u8,
}

impl Clock {
    /// This time on `date` in `zone`, by the rule in the module doc for days the clock
    /// changes.
    pub(super) fn on(self, date: Date, zone: &Zone) -> Result<Timestamp, ParseError> {
        // `clock` only makes hours 0..=23 and minutes 0..=59, which jiff accepts.
        let local = date.at(self.hour as i8, self.minute as i8, 0, 0);
        zone.tz()
            .to_ambiguous_timestamp(local)
            .compatible()
            .map_err(|_| too_far_ahead())
    }
}

/// A time of day at the start of `words` and how many words it took: "18:30", "8:00",
/// "6pm", "6:30pm", "6 pm", "noon", "midnight". Ok(None) when it is not one, Err when it
/// looks like one but cannot be ("25:00", "13pm"). A bare number is not a time: "at 6"
/// could be either 6 o'clock.
pub(super) fn clock(words: &[String]) -> Result<Option<(Clock, usize)>, ParseError> {
    let Some(first) = words.first() else {
        return Ok(None);
    };
    match first.as_str() {
        "noon" => {
            return Ok(Some((
                Clock {
                    hour: 12,
                    minute: 0,
                },
                1,
            )));
        }
        "midnight" => return Ok(Some((Clock { hour: 0, minute: 0 }, 1))),
        _ => {}
    }
    let (number, glued) = match first
        .strip_suffix("am")
        .or_else(|| first.strip_suffix("pm"))
    {
        Some(number) => (number, Some(&first[number.len()..])),
        None => (first.as_str(), None),
    };
    let (hour, minute_digits) = match number.split_once(':') {
        Some((hour, minute)) if minute.len() == 2 => (hour, Some(minute)),
        Some(_) => return Ok(None),
        None => (number, None),
    };
    let digits = |s: &str| !s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(hour) || !minute_digits.is_none_or(digits) {
        return Ok(None);
    }
    // Both are one or two digits, so they parse.
    let hour: u8 = hour.parse().unwrap_or(u8::MAX);
    let minute: u8 = minute_digits.map_or(0, |m| m.parse().unwrap_or(u8::MAX));
    // "6 pm" as two words, but only where that can be a time: in "18:30 am I late" the
    // "am" is the text's.
    let separate = glued.is_none()
        && (1..=12).contains(&hour)
        && words
            .get(1)
            .is_some_and(|word| word == "am" || word == "pm");
    let (half, used) = match (glued, separate) {
        (Some(half), _) => (Some(half), 1),
        (None, true) => (Some(words[1].as_str()), 2),
        (None, false) => (None, 1),
    };
    let bad = || {
        ParseError::new(format!(
            "'{}' is not a time of day — use 00:00 to 23:59, or a 12-hour time like 6pm",
            words[..used].join(" ")
        ))
    };
    let hour = match half {
        None if minute_digits.is_none() => return Ok(None),
        None if hour <= 23 => hour,
        Some(_) if !(1..=12).contains(&hour) => return Err(bad()),
        Some("am") => hour % 12,
        Some(_) => hour % 12 + 12,
        None => return Err(bad()),
    };
    if minute > 59 {
        return Err(bad());
    }
    Ok(Some((Clock { hour, minute }, used)))
}

/// A length of time: calendar days (weeks count 7) and real seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Length {
    pub(super) days: i64,
    pub(super) seconds: i64,
}

/// A length at the start of `words` and how many words it took: "30s", "10 min", "2h",
/// "90 minutes", "1h30m", "1 h 30 min", "2 hours and 5 minutes", "an hour", "2 days".
/// Err only for a number too large to be a time.
pub(super) fn length(words: &[String]) -> Result<Option<(Length, usize)>, ParseError> {
    let mut total = Length::default();
    let mut used = 0;
    loop {
        // "and" only joins two parts: "2 hours and" leaves "and" to the text.
        let and = usize::from(used > 0 && words.get(used).is_some_and(|word| word == "and"));
        let Some((part, n)) = length_part(&words[used + and..])? else {
            break;
        };
        total.days = total.days.checked_add(part.days).ok_or_else(too_long)?;
        total.seconds = total
            .seconds
            .checked_add(part.seconds)
            .ok_or_else(too_long)?;
        used += and + n;
    }
    Ok((used > 0).then_some((total, used)))
}

/// One number and unit: "10 min" (two words), "an hour", or one word of glued pairs, "1h30m".
fn length_part(words: &[String]) -> Result<Option<(Length, usize)>, ParseError> {
    let Some(first) = words.first() else {
        return Ok(None);
    };
    let unit_word = words.get(1).and_then(|word| unit(word));
    if first == "a" || first == "an" {
        return unit_word.map(|unit| Ok((unit.times(1)?, 2))).transpose();
    }
    if first.bytes().all(|b| b.is_ascii_digit()) {
        return match unit_word {
            Some(unit) => Ok(Some((unit.times(number(first)?)?, 2))),
            None => Ok(None),
        };
    }
    // Glued: digits, letters, digits, letters… each letters a unit.
    let mut total = Length::default();
    let mut rest = first.as_str();
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let letters = rest[digits..]
            .bytes()
            .take_while(u8::is_ascii_alphabetic)
            .count();
        let Some(unit) = unit(&rest[digits..digits + letters]).filter(|_| digits > 0) else {
            return Ok(None);
        };
        let part = unit.times(number(&rest[..digits])?)?;
        total.days = total.days.checked_add(part.days).ok_or_else(too_long)?;
        total.seconds = total
            .seconds
            .checked_add(part.seconds)
            .ok_or_else(too_long)?;
        rest = &rest[digits + letters..];
    }
    Ok(Some((total, 1)))
}

#[derive(Debug, Clone, Copy)]
enum Unit {
    Seconds(i64),
    Days(i64),
}

impl Unit {
    fn times(self, n: i64) -> Result<Length, ParseError> {
        Ok(match self {
            Unit::Seconds(each) => Length {
                days: 0,
                seconds: n.checked_mul(each).ok_or_else(too_long)?,
            },
            Unit::Days(each) => Length {
                days: n.checked_mul(each).ok_or_else(too_long)?,
                seconds: 0,
            },
        })
    }
}

fn unit(word: &str) -> Option<Unit> {
    Some(match word {
        "s" | "sec" | "secs" | "second" | "seconds" => Unit::Seconds(1),
        "m" | "min" | "mins" | "minute" | "minutes" => Unit::Seconds(60),
        "h" | "hr" | "hrs" | "hour" | "hours" => Unit::Seconds(3600),
        "d" | "day" | "days" => Unit::Days(1),
        "w" | "wk" | "wks" | "week" | "weeks" => Unit::Days(7),
        _ => return None,
    })
}

fn number(digits: &str) -> Result<i64, ParseError> {
    digits.parse().map_err(|_| too_long())
}

fn too_long() -> ParseError {
    ParseError::new("that number is too large for a time")
}

/// "monday", "mon", "mondays" and the usual short forms ("tues", "thurs").
pub(super) fn weekday(word: &str) -> Option<Weekday> {
    Some(match word {
        "monday" | "mon" | "mondays" => Weekday::Monday,
        "tuesday" | "tue" | "tues" | "tuesdays" => Weekday::Tuesday,
        "wednesday" | "wed" | "weds" | "wednesdays" => Weekday::Wednesday,
        "thursday" | "thu" | "thur" | "thurs" | "thursdays" => Weekday::Thursday,
        "friday" | "fri" | "fridays" => Weekday::Friday,
        "saturday" | "sat" | "saturdays" => Weekday::Saturday,
        "sunday" | "sun" | "sundays" => Weekday::Sunday,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wednesday 2 December 2026, 16:23 in Madrid.
    const NOW: &str = "2026-12-02T15:23:00Z";

    fn zone(name: &str) -> Zone {
        Zone::parse(name).unwrap()
    }

    fn ms(utc: &str) -> u64 {
        utc.parse::<Timestamp>().unwrap().as_millisecond() as u64
    }

    fn utc(unix_ms: u64) -> String {
        Timestamp::from_millisecond(unix_ms as i64)
            .unwrap()
            .to_string()
    }

    /// When `input` is due, in UTC, asked at `now` (UTC) in `zone`, and its text.
    fn due_in<'a>(input: &'a str, now: &str, zone_name: &str) -> (String, &'a str) {
        let (due, text) = parse_when(input, ms(now), &zone(zone_name))
            .unwrap_or_else(|e| panic!("{input:?}: {e}"));
        (utc(due), text)
    }

    /// When `<input> x` is due, asked at NOW in Madrid.
    fn due(input: &str) -> String {
        let line = format!("{input} x");
        let (due, text) = due_in(&line, NOW, "Europe/Madrid");
        assert_eq!(text, "x", "{input:?}");
        due
    }

    fn error(input: &str, now: &str) -> String {
        parse_when(input, ms(now), &zone("Europe/Madrid"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn in_a_length_of_time() {
        assert_eq!(due("in 30s"), "2026-12-02T15:23:30Z");
        assert_eq!(due("in 10 min"), "2026-12-02T15:33:00Z");
        assert_eq!(due("in 2h"), "2026-12-02T17:23:00Z");
        assert_eq!(due("in 90 minutes"), "2026-12-02T16:53:00Z");
        assert_eq!(due("in 1h30m"), "2026-12-02T16:53:00Z");
        assert_eq!(due("in 1 h 30 min"), "2026-12-02T16:53:00Z");
        assert_eq!(due("in 2 hours and 15 minutes"), "2026-12-02T17:38:00Z");
        assert_eq!(due("in an hour"), "2026-12-02T16:23:00Z");
        assert_eq!(due("in 2 days"), "2026-12-04T15:23:00Z");
        assert_eq!(due("in 1 day"), "2026-12-03T15:23:00Z");
        assert_eq!(due("in 1 week"), "2026-12-09T15:23:00Z");
        assert_eq!(due("IN 10 MIN"), "2026-12-02T15:33:00Z");
    }

    #[test]
    fn in_keeps_the_milliseconds_of_now() {
        let now = ms(NOW) + 250;
        let (due, _) = parse_when("in 30s x", now, &Zone::utc()).unwrap();
        assert_eq!(due, now + 30_000);
    }

    #[test]
    fn a_time_of_day_alone_is_the_next_one() {
        assert_eq!(due("at 18:30"), "2026-12-02T17:30:00Z");
        assert_eq!(due("at 6pm"), "2026-12-02T17:00:00Z");
        assert_eq!(due("18:30"), "2026-12-02T17:30:00Z");
        assert_eq!(due("6:30 pm"), "2026-12-02T17:30:00Z");
        // Already past today: tomorrow.
        assert_eq!(due("at 15:00"), "2026-12-03T14:00:00Z");
        assert_eq!(due("8am"), "2026-12-03T07:00:00Z");
        assert_eq!(due("16:23"), "2026-12-03T15:23:00Z");
        assert_eq!(due("noon"), "2026-12-03T11:00:00Z");
        assert_eq!(due("midnight"), "2026-12-02T23:00:00Z");
        assert_eq!(due("12am"), "2026-12-02T23:00:00Z");
        assert_eq!(due("12pm"), "2026-12-03T11:00:00Z");
        assert_eq!(due("at 8:05am"), "2026-12-03T07:05:00Z");
    }

    #[test]
    fn today_and_tomorrow() {
        assert_eq!(due("today 18:00"), "2026-12-02T17:00:00Z");
        assert_eq!(due("tomorrow 8am"), "2026-12-03T07:00:00Z");
        assert_eq!(due("tomorrow 18:30"), "2026-12-03T17:30:00Z");
        assert_eq!(due("tomorrow at 8:00"), "2026-12-03T07:00:00Z");
        assert_eq!(due("Tomorrow At 8AM"), "2026-12-03T07:00:00Z");
    }

    #[test]
    fn weekdays_are_their_next_occurrence() {
        assert_eq!(due("monday 9:00"), "2026-12-07T08:00:00Z");
        assert_eq!(due("mon 9am"), "2026-12-07T08:00:00Z");
        assert_eq!(due("on friday at 6:30 pm"), "2026-12-04T17:30:00Z");
        // Today is Wednesday: today while the time is ahead, else in a week.
        assert_eq!(due("wednesday 18:00"), "2026-12-02T17:00:00Z");
        assert_eq!(due("wed 15:00"), "2026-12-09T14:00:00Z");
        assert_eq!(due("tuesday 9:00"), "2026-12-08T08:00:00Z");
    }

    #[test]
    fn next_weekday_is_the_coming_one_but_never_today() {
        assert_eq!(due("next monday 9:00"), "2026-12-07T08:00:00Z");
        assert_eq!(due("next wednesday 18:00"), "2026-12-09T17:00:00Z");
        assert_eq!(due("next thursday 8am"), "2026-12-03T07:00:00Z");
    }

    #[test]
    fn dates() {
        assert_eq!(due("2026-12-24 18:00"), "2026-12-24T17:00:00Z");
        assert_eq!(due("2026-12-24 6pm"), "2026-12-24T17:00:00Z");
        assert_eq!(due("on 2026-12-24 at 18:00"), "2026-12-24T17:00:00Z");
        assert_eq!(due("2027-07-01 09:00"), "2027-07-01T07:00:00Z");
    }

    #[test]
    fn the_rest_is_the_text_as_typed() {
        let (_, text) = due_in("tomorrow 8am buy candles", NOW, "UTC");
        assert_eq!(text, "buy candles");
        let (_, text) = due_in("in 10 min call mum", NOW, "UTC");
        assert_eq!(text, "call mum");
        let (_, text) = due_in("  in 10 min   Call   Mum  ", NOW, "UTC");
        assert_eq!(text, "Call   Mum");
        let (_, text) = due_in("at 18:30 shopping:\n- milk\n- eggs", NOW, "UTC");
        assert_eq!(text, "shopping:\n- milk\n- eggs");
    }

    #[test]
    fn words_after_the_time_stay_in_the_text() {
        // The day goes first; after the time, "monday" is the text's.
        let (due, text) = due_in("at 18:30 monday meeting notes", NOW, "Europe/Madrid");
        assert_eq!(
            (due.as_str(), text),
            ("2026-12-02T17:30:00Z", "monday meeting notes")
        );
        let (due, text) = due_in("monday 18:30 meeting notes", NOW, "Europe/Madrid");
        assert_eq!(
            (due.as_str(), text),
            ("2026-12-07T17:30:00Z", "meeting notes")
        );
        let (_, text) = due_in("18:30 am I late?", NOW, "UTC");
        assert_eq!(text, "am I late?");
        let (_, text) = due_in("in 10 min 5 apples", NOW, "UTC");
        assert_eq!(text, "5 apples");
        let (_, text) = due_in("in 2 hours and call back", NOW, "UTC");
        assert_eq!(text, "and call back");
        let (_, text) = due_in("tomorrow 8am tomorrow 9am", NOW, "UTC");
        assert_eq!(text, "tomorrow 9am");
    }

    #[test]
    fn the_zone_decides_the_wall_clock() {
        assert_eq!(due_in("at 18:30 x", NOW, "UTC").0, "2026-12-02T18:30:00Z");
        assert_eq!(
            due_in("at 18:30 x", NOW, "America/New_York").0,
            "2026-12-02T23:30:00Z"
        );
        // 15:23 UTC is already Thursday 00:23 in Tokyo.
        assert_eq!(
            due_in("tomorrow 8am x", NOW, "Asia/Tokyo").0,
            "2026-12-03T23:00:00Z"
        );
    }

    #[test]
    fn tomorrow_across_a_clock_change_gets_that_days_offset() {
        // Madrid springs forward on 2027-03-28 (CET +1 to CEST +2).
        let (due, _) = due_in("tomorrow 8am x", "2027-03-27T11:00:00Z", "Europe/Madrid");
        assert_eq!(due, "2027-03-28T06:00:00Z");
        // And falls back on 2026-10-25 (CEST +2 to CET +1).
        let (due, _) = due_in("tomorrow 8am x", "2026-10-24T10:00:00Z", "Europe/Madrid");
        assert_eq!(due, "2026-10-25T07:00:00Z");
        // New York falls back on 2026-11-01 (EDT -4 to EST -5).
        let (due, _) = due_in("tomorrow 8am x", "2026-10-31T16:00:00Z", "America/New_York");
        assert_eq!(due, "2026-11-01T13:00:00Z");
    }

    #[test]
    fn hours_across_a_clock_change_are_real_hours_and_days_are_calendar_days() {
        // 01:30 CET; two hours later the clock says 04:30 CEST.
        let (due, _) = due_in("in 2h x", "2027-03-28T00:30:00Z", "Europe/Madrid");
        assert_eq!(due, "2027-03-28T02:30:00Z");
        // 02:00 CEST; two hours later the clock says 03:00 CET.
        let (due, _) = due_in("in 2h x", "2026-10-25T00:00:00Z", "Europe/Madrid");
        assert_eq!(due, "2026-10-25T02:00:00Z");
        // Noon to noon, 23 real hours.
        let (due, _) = due_in("in 1 day x", "2027-03-27T11:00:00Z", "Europe/Madrid");
        assert_eq!(due, "2027-03-28T10:00:00Z");
    }

    #[test]
    fn a_time_that_does_not_exist_is_moved_on_by_the_gap() {
        // 02:30 on 2027-03-28 in Madrid does not exist: 03:30 CEST.
        let (due, _) = due_in("02:30 x", "2027-03-27T23:30:00Z", "Europe/Madrid");
        assert_eq!(due, "2027-03-28T01:30:00Z");
        let (due, _) = due_in("tomorrow 2:30am x", "2027-03-27T11:00:00Z", "Europe/Madrid");
        assert_eq!(due, "2027-03-28T01:30:00Z");
        // New York springs forward on 2027-03-14: 02:30 is 03:30 EDT.
        let (due, _) = due_in(
            "tomorrow 2:30am x",
            "2027-03-13T17:00:00Z",
            "America/New_York",
        );
        assert_eq!(due, "2027-03-14T07:30:00Z");
    }

    #[test]
    fn a_time_that_happens_twice_is_the_earlier() {
        // 02:30 on 2026-10-25 in Madrid is 00:30 UTC (CEST) and 01:30 UTC (CET).
        let (due, _) = due_in("02:30 x", "2026-10-24T22:30:00Z", "Europe/Madrid");
        assert_eq!(due, "2026-10-25T00:30:00Z");
        // Once the earlier has passed, the day's 02:30 is gone: the next is tomorrow's.
        let (due, _) = due_in("02:30 x", "2026-10-25T00:45:00Z", "Europe/Madrid");
        assert_eq!(due, "2026-10-26T01:30:00Z");
    }

    #[test]
    fn errors_say_what_works() {
        let examples = "in 10 min, at 18:30, tomorrow 8am, monday 9:00 or 2026-12-24 18:00";
        let cases = [
            ("yesterday foo", "yesterday is in the past"),
            ("at 25:00 x", "'25:00' is not a time of day"),
            (
                "in 10 min",
                "what should I remind you of? Put it after the time, e.g. in 10 min",
            ),
            ("banana", "'banana' is not a time I can read"),
            ("", "say when, then what"),
            ("today 15:00 x", "Wed 2 Dec 15:00 is in the past"),
            ("2026-01-01 10:00 x", "Thu 1 Jan 10:00 is in the past"),
            ("2026-02-30 10:00 x", "'2026-02-30' is not a date"),
            (
                "tomorrow buy candles",
                "'tomorrow' needs a time too, e.g. tomorrow 8am",
            ),
            ("next monday call", "'next monday' needs a time too"),
            ("at noonish x", "at what time?"),
            ("13pm x", "'13pm' is not a time of day"),
            ("6:75 pm x", "'6:75 pm' is not a time of day"),
            ("in x", "in how long?"),
            ("in 0 min x", "is in the past"),
            ("in 99999999 weeks x", "too far ahead"),
            ("in 99999999999999999999 min x", "too large"),
        ];
        for (input, expected) in cases {
            let error = error(input, NOW);
            assert!(error.contains(expected), "{input:?}: {error}");
        }
        for input in ["yesterday foo", "banana", "today 15:00 x"] {
            assert!(error(input, NOW).contains(examples), "{input:?}");
        }
    }

    #[test]
    fn shared_words() {
        let words = |s: &str| Words::new(s).lower().to_vec();
        let clock_of = |s: &str| {
            clock(&words(s))
                .unwrap()
                .map(|(c, n)| (c.hour, c.minute, n))
        };
        assert_eq!(clock_of("7:30"), Some((7, 30, 1)));
        assert_eq!(clock_of("9 am x"), Some((9, 0, 2)));
        assert_eq!(clock_of("23:59"), Some((23, 59, 1)));
        assert_eq!(clock_of("7"), None);
        assert_eq!(clock_of("7:3"), None);
        assert_eq!(clock_of("spam"), None);
        assert!(clock(&words("24:00")).is_err());
        let length_of = |s: &str| {
            length(&words(s))
                .unwrap()
                .map(|(l, n)| (l.days, l.seconds, n))
        };
        assert_eq!(length_of("90s"), Some((0, 90, 1)));
        assert_eq!(length_of("1d2h x"), Some((1, 7200, 1)));
        assert_eq!(length_of("a day and an hour"), Some((1, 3600, 5)));
        assert_eq!(length_of("1h30"), None);
        assert_eq!(length_of("h"), None);
        assert_eq!(length_of("10 apples"), None);
        assert_eq!(weekday("thurs"), Some(Weekday::Thursday));
        assert_eq!(weekday("sundays"), Some(Weekday::Sunday));
    }
}
