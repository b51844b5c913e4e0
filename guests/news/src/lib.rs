//! A tool guest (a formatter, on the SDK's WIT version): when a message asks for the news,
//! it reads the configured RSS and Atom feeds and adds their newest headlines to the
//! message, so the model briefs from today's feeds, not from memory. Each chat is shown
//! each headline once (remembered in the stage's kv store); a feed that cannot be read is
//! named, by its host, in the paragraph and in the log, and the others still count.
//!
//! ```toml
//! [[stage]]
//! name = "news"
//! guest = "guests/dist/news.wasm"
//! timeout_ms = 5000
//! [stage.config]
//! feeds = ["https://feeds.bbci.co.uk/news/world/rss.xml", "https://www.theverge.com/rss/index.xml"]
//! # max_items = 5                    # headlines per briefing
//! # utc_offset = "+01:00"            # times shown in this offset (default UTC)
//! # words = "news, headlines"        # replaces the default trigger words
//! [stage.grants]
//! http = ["https://feeds.bbci.co.uk", "https://www.theverge.com"]
//! kv_kib = 64                        # each headline once per chat (about 40 chats)
//! ```
//!
//! A call may send 4 requests: past 4 feeds, the first 4 are read and the log says so.

mod briefing;
mod feed;
mod merge;
mod seen;
mod source;
mod text;

use chrono::{FixedOffset, Offset, Utc};
use pi_agent_guest::kv::{self, KvError};
use pi_agent_guest::words::Triggers;
use pi_agent_guest::{ChatContext, Formatter, Outcome, Prompt, http, log};

use briefing::{Briefing, Clock};
use seen::Seen;
use source::MAX_FEEDS;

/// Word starts that make a message ask for the news, in the languages of the people likely
/// to run this bot; `words` in the config replaces them.
pub const DEFAULT_WORDS: &[&str] = &[
    "news",
    "headline",
    "briefing",
    "nachricht",
    "schlagzeile",
    "noticia",
    "notícia",
    "actualité",
    "notizie",
    "nieuws",
    "новост",
];

struct News;

impl Formatter for News {
    fn format(ctx: ChatContext, mut prompt: Prompt) -> Outcome {
        let Some(last) = prompt.messages.last_mut() else {
            return Outcome::Prompt(prompt);
        };
        if !Triggers::from_config(DEFAULT_WORDS).in_text(&last.content) {
            return Outcome::Prompt(prompt);
        }
        match brief(ctx.chat_id) {
            Ok(paragraph) => {
                last.content.push_str("\n\n");
                last.content.push_str(&paragraph);
            }
            Err(why) => log::warn(&format!("answering without the news: {why}")),
        }
        Outcome::Prompt(prompt)
    }
}

pi_agent_guest::export_formatter!(News);

/// The paragraph for chat `chat_id`; an error only for a configuration the owner must fix
/// (feeds that fail are named in the paragraph).
fn brief(chat_id: i64) -> Result<String, String> {
    let configured = pi_agent_guest::config("feeds")
        .ok_or("set feeds = [\"https://…/rss.xml\"] in the stage's [stage.config]".to_owned())?;
    let mut urls = source::feed_urls(&configured)?;
    if urls.len() > MAX_FEEDS {
        let skipped: Vec<&str> = urls[MAX_FEEDS..].iter().map(|u| source::host(u)).collect();
        log::warn(&format!(
            "{} feeds configured, but a call may send {MAX_FEEDS} requests: reading the first \
             {MAX_FEEDS}, skipping {}; list at most {MAX_FEEDS} in feeds",
            urls.len(),
            skipped.join(", ")
        ));
        urls.truncate(MAX_FEEDS);
    }
    let max_items = pi_agent_guest::config_or("max_items", 5usize).max(1);
    let offset: FixedOffset = pi_agent_guest::config_or("utc_offset", Utc.fix());

    let mut feeds = Vec::new();
    let mut failures = Vec::new();
    for url in &urls {
        match source::read(url, http::get(url)) {
            Ok(feed) => feeds.push(feed),
            Err(failure) => {
                log::warn(&format!(
                    "feed at {} not read: {}",
                    failure.host, failure.reason
                ));
                failures.push(failure);
            }
        }
    }
    let sources: Vec<String> = feeds.iter().map(|f| f.title.clone()).collect();
    let headlines = merge::merge(feeds);

    let key = seen::key(chat_id);
    let mut seen = match kv::get(&key) {
        Ok(stored) => Seen::decode(&stored.unwrap_or_default()),
        Err(e) => {
            log::warn(&format!("{}; every headline counts as new", kv_trouble(&e)));
            Seen::default()
        }
    };
    let shown = seen.show(&headlines, max_items);
    if !shown.is_empty() {
        // Without a grant the store reads as empty and only the write tells.
        match kv::set(&key, &seen.encode()) {
            Ok(()) => {}
            Err(KvError::NotGranted) => log::info(
                "no kv grant, so headlines are not remembered and each briefing shows them \
                 all; add kv_kib = 64 under the stage's [stage.grants] to show each once per chat",
            ),
            Err(e) => log::warn(&format!(
                "{}; these headlines may be shown again",
                kv_trouble(&e)
            )),
        }
    }
    let clock = Clock {
        now: now_unix(),
        offset,
    };
    Ok(briefing::paragraph(
        &Briefing {
            sources: &sources,
            shown: &shown,
            any: !headlines.is_empty(),
            failures: &failures,
        },
        &clock,
    ))
}

fn kv_trouble(error: &KvError) -> String {
    match error {
        KvError::NotGranted => "no kv grant".to_owned(),
        KvError::QuotaExceeded(quota) => format!(
            "the kv store is full ({quota} bytes, about 1.6 KB a chat): raise kv_kib in the \
             stage's [stage.grants]"
        ),
        KvError::Unavailable(why) => format!("the kv store is unavailable ({why})"),
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asking_for_the_news_in_several_languages_triggers_it() {
        let triggers = Triggers::new(None, DEFAULT_WORDS);
        for text in [
            "Any news today?",
            "Give me the headlines",
            "Morning briefing please",
            "Was gibt es für Nachrichten?",
            "Las noticias, por favor",
            "Quelles sont les actualités ?",
            "Ultime notizie",
            "Какие новости?",
        ] {
            assert!(triggers.in_text(text), "{text}");
        }
        for text in ["What's new?", "Renew my subscription", "Write a poem"] {
            assert!(!triggers.in_text(text), "{text}");
        }
    }
}
