//! The paragraph added to the user's message: today's and tomorrow's events, and which
//! calendar could not be read and why — named by host, never by its address.

use std::fmt::Write;

use crate::agenda::{Day, Item, Span};
use crate::source::Failure;

/// Events shown per day; past that, "and N more" (a day with more is a conference).
pub const MAX_ITEMS_PER_DAY: usize = 15;

/// `(Calendar, today Wed 2 Dec: 09:00–09:30 Stand-up. Tomorrow Thu 3 Dec: no events.)`,
/// with a sentence for each calendar in `unread`.
pub fn briefing(today: &Day, tomorrow: &Day, unread: &[Failure]) -> String {
    let mut text = format!(
        "(Calendar, today {}. Tomorrow {}.",
        day(today),
        day(tomorrow)
    );
    for failure in unread {
        let _ = write!(
            text,
            " The calendar at {} could not be read ({}).",
            failure.source, failure.why
        );
    }
    if !(today.items.is_empty() && tomorrow.items.is_empty()) {
        text.push_str(" Mention these events.");
    }
    text.push(')');
    text
}

/// The paragraph when no calendar could be read.
pub fn unreadable(failures: &[Failure]) -> String {
    let reasons: Vec<String> = failures
        .iter()
        .map(|f| format!("{}: {}", f.source, f.why))
        .collect();
    format!(
        "(The calendar could not be read ({}). Tell the user.)",
        reasons.join("; ")
    )
}

/// `Wed 2 Dec: 09:00–09:30 Stand-up; all day: Holiday`.
fn day(day: &Day) -> String {
    let mut text = day.date.format("%a %-d %b: ").to_string();
    if day.items.is_empty() {
        text.push_str("no events");
        return text;
    }
    let shown: Vec<String> = day.items.iter().take(MAX_ITEMS_PER_DAY).map(item).collect();
    text.push_str(&shown.join("; "));
    if let Some(more) = day
        .items
        .len()
        .checked_sub(MAX_ITEMS_PER_DAY)
        .filter(|&n| n > 0)
    {
        let _ = write!(text, "; and {more} more");
    }
    text
}

/// `14:00–15:00 Dentist (Main St 5)`.
fn item(item: &Item) -> String {
    let hhmm = |t: chrono::NaiveTime| t.format("%H:%M").to_string();
    let when = match item.span {
        Span::AllDay
        | Span::Timed {
            from: None,
            until: None,
        } => "all day:".to_owned(),
        Span::Timed {
            from: Some(from),
            until: Some(until),
        } if from == until => hhmm(from),
        Span::Timed {
            from: Some(from),
            until: Some(until),
        } => format!("{}–{}", hhmm(from), hhmm(until)),
        Span::Timed {
            from: Some(from),
            until: None,
        } => format!("from {}", hhmm(from)),
        Span::Timed {
            from: None,
            until: Some(until),
        } => format!("until {}", hhmm(until)),
    };
    match &item.location {
        Some(place) => format!("{when} {} ({place})", item.summary),
        None => format!("{when} {}", item.summary),
    }
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, NaiveTime};

    use super::*;

    fn day(date: &str, items: Vec<Item>) -> Day {
        Day {
            date: date.parse::<NaiveDate>().unwrap(),
            items,
        }
    }

    fn timed(from: Option<&str>, until: Option<&str>, summary: &str) -> Item {
        let time = |t: &str| NaiveTime::parse_from_str(t, "%H:%M").unwrap();
        Item {
            span: Span::Timed {
                from: from.map(time),
                until: until.map(time),
            },
            summary: summary.into(),
            location: None,
        }
    }

    #[test]
    fn the_paragraph_lists_each_day_compactly() {
        let mut dentist = timed(Some("14:00"), Some("15:00"), "Dentist");
        dentist.location = Some("Main St 5".into());
        let today = day(
            "2026-12-02",
            vec![
                timed(None, Some("01:00"), "Party"),
                timed(Some("09:00"), Some("09:30"), "Stand-up"),
                timed(Some("12:00"), Some("12:00"), "Call Mum"),
                dentist,
                timed(Some("23:00"), None, "Night train"),
            ],
        );
        let holiday = Item {
            span: Span::AllDay,
            summary: "Holiday".into(),
            location: None,
        };
        let tomorrow = day("2026-12-03", vec![holiday]);
        assert_eq!(
            briefing(&today, &tomorrow, &[]),
            "(Calendar, today Wed 2 Dec: until 01:00 Party; 09:00–09:30 Stand-up; 12:00 Call Mum; \
             14:00–15:00 Dentist (Main St 5); from 23:00 Night train. \
             Tomorrow Thu 3 Dec: all day: Holiday. Mention these events.)"
        );
    }

    #[test]
    fn empty_days_full_days_and_unread_calendars() {
        let empty = day("2026-12-02", vec![]);
        let full = day(
            "2026-12-03",
            (0..MAX_ITEMS_PER_DAY + 2)
                .map(|i| timed(Some("10:00"), Some("11:00"), &format!("Talk {i}")))
                .collect(),
        );
        let unread = [Failure::new("cal.example.org (calendar 2)", "HTTP 500", "")];
        let text = briefing(&empty, &full, &unread);
        assert!(
            text.starts_with(
                "(Calendar, today Wed 2 Dec: no events. Tomorrow Thu 3 Dec: 10:00–11:00 Talk 0;"
            ),
            "{text}"
        );
        assert!(
            text.ends_with("10:00–11:00 Talk 14; and 2 more. The calendar at cal.example.org (calendar 2) could not be read (HTTP 500). Mention these events.)"),
            "{text}"
        );
        assert_eq!(
            briefing(&empty, &day("2026-12-03", vec![]), &[]),
            "(Calendar, today Wed 2 Dec: no events. Tomorrow Thu 3 Dec: no events.)"
        );
        assert_eq!(
            unreadable(&[Failure::new("calendar.google.com", "HTTP 404", "")]),
            "(The calendar could not be read (calendar.google.com: HTTP 404). Tell the user.)"
        );
    }
}
