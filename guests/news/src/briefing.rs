//! The paragraph added to the user's message: the headlines to mention, which feeds could
//! not be read, and what the model should do with it — compact, as it costs context.

use chrono::{DateTime, Days, FixedOffset};

use crate::merge::Headline;
use crate::source::Failure;
use crate::text::capped;

/// Longest title shown, in characters; longer ones end in "…".
const TITLE_CHARS: usize = 100;
/// Longest feed name shown.
const SOURCE_CHARS: usize = 40;

/// Now, and the offset the chat's times are shown in.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub now: i64,
    pub offset: FixedOffset,
}

impl Clock {
    fn local(&self, unix: i64) -> Option<DateTime<FixedOffset>> {
        DateTime::from_timestamp(unix, 0).map(|t| t.with_timezone(&self.offset))
    }

    /// "14:05" today, "yesterday 18:05", else the date.
    fn when(&self, unix: i64) -> String {
        let (Some(then), Some(now)) = (self.local(unix), self.local(self.now)) else {
            return String::new();
        };
        let day = then.date_naive();
        if day == now.date_naive() {
            then.format("%H:%M").to_string()
        } else if Some(day) == now.date_naive().checked_sub_days(Days::new(1)) {
            then.format("yesterday %H:%M").to_string()
        } else {
            then.format("%Y-%m-%d").to_string()
        }
    }

    fn zone(&self) -> String {
        match self.offset.local_minus_utc() {
            0 => "UTC".to_owned(),
            _ => format!("UTC{}", self.offset),
        }
    }
}

/// What one briefing found.
#[derive(Debug, Clone, Copy)]
pub struct Briefing<'a> {
    /// The feeds that were read, by name.
    pub sources: &'a [String],
    /// The headlines to mention, newest first.
    pub shown: &'a [Headline],
    /// Whether the feeds had any headline (when none is shown: all were shown before).
    pub any: bool,
    pub failures: &'a [Failure],
}

/// The paragraph, in parentheses, as weather's: data for the model, not words for the user.
pub fn paragraph(briefing: &Briefing, clock: &Clock) -> String {
    let sources = and_list(briefing.sources.iter().map(|s| capped(s, SOURCE_CHARS)));
    let failures = and_list(
        briefing
            .failures
            .iter()
            .map(|f| format!("{} ({})", f.host, f.reason)),
    );
    if briefing.sources.is_empty() {
        return format!(
            "(The news could not be fetched: {failures}. Say that the news is unavailable right now.)"
        );
    }
    let failed = if failures.is_empty() {
        String::new()
    } else {
        format!(" Could not read {failures}.")
    };
    if briefing.shown.is_empty() {
        let what = if briefing.any {
            format!("No new headlines from {sources} since the last briefing.")
        } else {
            format!("No headlines from {sources} right now.")
        };
        return format!("({what}{failed} Say so briefly.)");
    }
    let times = if briefing.shown.iter().any(|h| h.unix.is_some()) {
        format!(", times in {}", clock.zone())
    } else {
        String::new()
    };
    let items: Vec<String> = briefing
        .shown
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let mut item = format!(
                "{}. {} — {}",
                i + 1,
                capped(&h.title, TITLE_CHARS),
                capped(&h.source, SOURCE_CHARS)
            );
            if let Some(unix) = h.unix {
                item.push_str(", ");
                item.push_str(&clock.when(unix));
            }
            item
        })
        .collect();
    format!(
        "(Headlines from {sources}, newest first{times}: {}.{failed} Mention these headlines briefly.)",
        items.join("; ")
    )
}

/// "a", "a and b", "a, b and c".
fn and_list(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    match items.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::tests::at;
    use crate::merge::tests::fixtures;

    fn clock(now: &str, offset_hours: i32) -> Clock {
        Clock {
            now: at(now),
            offset: FixedOffset::east_opt(offset_hours * 3600).unwrap(),
        }
    }

    fn sources() -> Vec<String> {
        vec!["Example News".into(), "Other Feed".into()]
    }

    #[test]
    fn the_paragraph_lists_the_headlines_newest_first_with_local_times() {
        let merged = fixtures();
        let briefing = Briefing {
            sources: &sources(),
            shown: &merged[..5],
            any: true,
            failures: &[],
        };
        assert_eq!(
            paragraph(&briefing, &clock("2026-12-02T11:00:00Z", 1)),
            "(Headlines from Example News and Other Feed, newest first, times in UTC+01:00: \
             1. Council approves new tram line & cycle lanes — Example News, 09:30; \
             2. Raspberry Pi 6 announced with 16 GB of RAM — Other Feed, 08:15; \
             3. Storm Bert: rail services cut across the north — Example News, yesterday 19:05; \
             4. Open-source office suite\u{2019}s users pass 10 million — Other Feed, yesterday 12:00; \
             5. Museum returns bronze sculptures to Benin — Example News, 2026-11-30. \
             Mention these headlines briefly.)"
        );
    }

    #[test]
    fn failures_are_named_beside_the_headlines_that_came() {
        let merged = fixtures();
        let failures = [
            Failure {
                host: "feeds.example.com".into(),
                reason: "HTTP 500".into(),
            },
            Failure {
                host: "slow.example".into(),
                reason: "timed out".into(),
            },
        ];
        let briefing = Briefing {
            sources: &sources()[..1],
            shown: &merged[5..],
            any: true,
            failures: &failures,
        };
        assert_eq!(
            paragraph(&briefing, &clock("2026-12-02T11:00:00Z", 0)),
            "(Headlines from Example News, newest first: 1. Letters: readers on the tram vote — \
             Example News. Could not read feeds.example.com (HTTP 500) and slow.example \
             (timed out). Mention these headlines briefly.)"
        );
        let nothing_read = Briefing {
            sources: &[],
            shown: &[],
            any: false,
            failures: &failures[..1],
        };
        assert_eq!(
            paragraph(&nothing_read, &clock("2026-12-02T11:00:00Z", 0)),
            "(The news could not be fetched: feeds.example.com (HTTP 500). Say that the news is \
             unavailable right now.)"
        );
    }

    #[test]
    fn when_every_headline_was_shown_it_says_so() {
        let briefing = Briefing {
            sources: &sources(),
            shown: &[],
            any: true,
            failures: &[],
        };
        let clock = clock("2026-12-02T11:00:00Z", 0);
        assert_eq!(
            paragraph(&briefing, &clock),
            "(No new headlines from Example News and Other Feed since the last briefing. \
             Say so briefly.)"
        );
        let empty = Briefing {
            any: false,
            ..briefing
        };
        assert_eq!(
            paragraph(&empty, &clock),
            "(No headlines from Example News and Other Feed right now. Say so briefly.)"
        );
    }

    #[test]
    fn long_titles_are_cut() {
        let long = Headline {
            title: "word ".repeat(40),
            link: None,
            source: "A feed whose name goes on and on and on and on".into(),
            unix: None,
        };
        let text = paragraph(
            &Briefing {
                sources: &["A".into()],
                shown: &[long],
                any: true,
                failures: &[],
            },
            &clock("2026-12-02T11:00:00Z", 0),
        );
        let item = text.split("1. ").nth(1).unwrap();
        let (title, source) = item.split_once(" — ").unwrap();
        assert_eq!(title.chars().count(), TITLE_CHARS);
        assert!(title.ends_with("word…"), "{title}");
        assert!(
            source.starts_with("A feed whose name goes on and on and on…"),
            "{source}"
        );
    }
}
