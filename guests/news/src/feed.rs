//! One feed's bytes — RSS 0.9x, 1.0 or 2.0, or Atom 1.0 — read into plain items.

use std::fmt;

use atom_syndication::{Text, TextType};

use crate::text;

/// A feed as the briefing needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feed {
    /// The channel's title, on one line (may be empty).
    pub title: String,
    /// In the feed's order.
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Plain text on one line, never empty (items without a title are left out).
    pub title: String,
    pub link: Option<String>,
    /// When it was published, else updated, in seconds since the Unix epoch.
    pub unix: Option<i64>,
}

/// Why bytes are not a feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Neither an `<rss>`/`<rdf:RDF>` nor an Atom `<feed>` document (an HTML page, JSON…).
    NotAFeed,
    /// It starts like a feed but does not parse: the parser's words.
    Broken(String),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAFeed => f.write_str("not an RSS or Atom feed"),
            Self::Broken(why) => write!(f, "broken feed: {}", text::capped(why, 60)),
        }
    }
}

/// Reads `bytes` as RSS, else as Atom.
pub fn parse(bytes: &[u8]) -> Result<Feed, ParseError> {
    use atom_syndication::Error as AtomError;
    use rss::Error as RssError;

    let rss_error = match rss::Channel::read_from(bytes) {
        Ok(channel) => return Ok(from_rss(&channel)),
        Err(e) => e,
    };
    let atom_error = match atom_syndication::Feed::read_from(bytes) {
        Ok(feed) => return Ok(from_atom(&feed)),
        Err(e) => e,
    };
    // Each parser stops with `InvalidStartTag` at a root element not its own, and with `Eof`
    // on a document without one: when only one of them stopped so, the document has the
    // other's root and is that format, broken.
    match (&rss_error, &atom_error) {
        (RssError::InvalidStartTag, AtomError::InvalidStartTag)
        | (RssError::Eof, AtomError::Eof) => Err(ParseError::NotAFeed),
        (RssError::InvalidStartTag, _) => Err(ParseError::Broken(atom_error.to_string())),
        _ => Err(ParseError::Broken(rss_error.to_string())),
    }
}

fn from_rss(channel: &rss::Channel) -> Feed {
    let items = channel
        .items()
        .iter()
        .filter_map(|item| {
            let title = text::one_line(item.title()?);
            // RSS 1.0 dates its items with Dublin Core's `dc:date`, not `pubDate`.
            let date = item.pub_date().or_else(|| {
                let dc = item.dublin_core_ext()?;
                dc.dates().first().map(String::as_str)
            });
            Some(Item {
                link: item.link().map(str::to_owned),
                unix: date
                    .and_then(diligent_date_parser::parse_date)
                    .map(|d| d.timestamp()),
                title,
            })
        })
        .filter(|item| !item.title.is_empty())
        .collect();
    Feed {
        title: text::one_line(channel.title()),
        items,
    }
}

fn from_atom(feed: &atom_syndication::Feed) -> Feed {
    let items = feed
        .entries()
        .iter()
        .map(|entry| {
            // `updated` is required by Atom; the parser gives 1970 when a feed leaves it out.
            let updated = Some(entry.updated().timestamp()).filter(|&t| t != 0);
            Item {
                title: plain(entry.title()),
                link: entry
                    .links()
                    .iter()
                    .find(|link| link.rel() == "alternate")
                    .map(|link| link.href().to_owned()),
                unix: entry.published().map(|d| d.timestamp()).or(updated),
            }
        })
        .filter(|item| !item.title.is_empty())
        .collect();
    Feed {
        title: plain(feed.title()),
        items,
    }
}

/// An Atom text construct as plain text: `html` and `xhtml` ones carry markup.
fn plain(construct: &Text) -> String {
    match construct.r#type {
        TextType::Text => text::one_line(&construct.value),
        TextType::Html | TextType::Xhtml => text::html_to_text(&construct.value),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub const RSS: &[u8] = include_bytes!("../fixtures/example-news.rss");
    pub const ATOM: &[u8] = include_bytes!("../fixtures/other-feed.atom");

    /// Seconds since the epoch of an RFC 3339 time.
    pub fn at(rfc3339: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .timestamp()
    }

    #[test]
    fn rss_items_keep_their_order_titles_links_and_dates() {
        let feed = parse(RSS).unwrap();
        assert_eq!(feed.title, "Example News");
        let items: Vec<(&str, Option<i64>)> = feed
            .items
            .iter()
            .map(|i| (i.title.as_str(), i.unix))
            .collect();
        assert_eq!(
            items,
            [
                (
                    "Council approves new tram line & cycle lanes",
                    Some(at("2026-12-02T08:30:00Z"))
                ),
                (
                    "Storm Bert: rail services cut across the north",
                    Some(at("2026-12-01T18:05:00Z"))
                ),
                (
                    "Museum returns bronze sculptures to Benin",
                    Some(at("2026-11-30T07:00:00Z"))
                ),
                ("Letters: readers on the tram vote", None),
            ]
        );
        assert_eq!(
            feed.items[1].link.as_deref(),
            Some("https://news.example.org/uk/2026/12/storm-bert-rail")
        );
    }

    #[test]
    fn atom_entries_take_published_else_updated_and_the_alternate_link() {
        let feed = parse(ATOM).unwrap();
        assert_eq!(feed.title, "Other Feed");
        let pi = &feed.items[0];
        assert_eq!(pi.title, "Raspberry Pi 6 announced with 16 GB of RAM");
        assert_eq!(pi.unix, Some(at("2026-12-02T07:15:00Z")));
        assert_eq!(
            pi.link.as_deref(),
            Some("https://other.example.net/2026/12/pi-6")
        );
        let office = &feed.items[1];
        assert_eq!(
            office.title,
            "Open-source office suite\u{2019}s users pass 10 million"
        );
        assert_eq!(office.unix, Some(at("2026-12-01T11:00:00Z")));
        assert_eq!(feed.items.len(), 4);
    }

    #[test]
    fn rss_1_0_is_read_with_its_dublin_core_dates() {
        let rdf = br#"<?xml version="1.0"?>
            <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/">
              <channel rdf:about="https://a.example/"><title>RDF Site</title><link>https://a.example/</link><description>d</description></channel>
              <item rdf:about="https://a.example/1"><title>First</title><link>https://a.example/1</link><dc:date>2026-12-01T10:00:00+00:00</dc:date></item>
            </rdf:RDF>"#;
        let feed = parse(rdf).unwrap();
        assert_eq!(feed.title, "RDF Site");
        assert_eq!(feed.items[0].unix, Some(at("2026-12-01T10:00:00Z")));
    }

    #[test]
    fn what_is_not_a_feed_says_so() {
        let html = b"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Consent</title></head><body><p>Accept cookies</p></body></html>";
        assert_eq!(parse(html), Err(ParseError::NotAFeed));
        assert_eq!(parse(b"{\"version\": 1}"), Err(ParseError::NotAFeed));
        for broken in [
            &b"<rss version=\"2.0\"><channel><title>x</title><item><title>y</item>"[..],
            b"<rss version=\"2.0\"><channel><title>cut short",
            b"<feed xmlns=\"http://www.w3.org/2005/Atom\"><title>cut short",
        ] {
            let error = parse(broken);
            assert!(matches!(&error, Err(ParseError::Broken(_))), "{error:?}");
        }
        assert_eq!(ParseError::NotAFeed.to_string(), "not an RSS or Atom feed");
    }
}
