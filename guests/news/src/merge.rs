//! All feeds' items as one list: newest first, each story once.

use crate::feed::Feed;

/// An item with the feed it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Headline {
    pub title: String,
    pub link: Option<String>,
    /// The feed's title.
    pub source: String,
    pub unix: Option<i64>,
}

/// What makes two titles the same headline: their words, whatever the case and the
/// punctuation between them (feeds differ in quotes, dashes and colons).
pub fn title_key(title: &str) -> String {
    title
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `feeds` merged newest first — undated items last, in their feed's order — with a story
/// that several feeds carry (the same link or the same title) kept once, as its newest copy.
pub fn merge(feeds: Vec<Feed>) -> Vec<Headline> {
    let mut all: Vec<Headline> = feeds
        .into_iter()
        .flat_map(|feed| {
            let source = feed.title;
            feed.items.into_iter().map(move |item| Headline {
                title: item.title,
                link: item.link,
                source: source.clone(),
                unix: item.unix,
            })
        })
        .collect();
    // Stable, and `None` orders before any time: reversed, undated items come last.
    all.sort_by_key(|headline| std::cmp::Reverse(headline.unix));
    let mut links = std::collections::HashSet::new();
    let mut titles = std::collections::HashSet::new();
    all.retain(|headline| {
        let new_link = headline
            .link
            .as_ref()
            .is_none_or(|link| links.insert(link.clone()));
        // Both sets learn this headline even when it goes: a third copy may share either.
        let new_title = titles.insert(title_key(&headline.title));
        new_link && new_title
    });
    all
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::feed::tests::{ATOM, RSS, at};
    use crate::feed::{Item, parse};

    /// Both fixtures, named by their titles.
    pub fn fixtures() -> Vec<Headline> {
        merge(vec![parse(RSS).unwrap(), parse(ATOM).unwrap()])
    }

    #[test]
    fn feeds_merge_newest_first_with_undated_items_last() {
        let merged = fixtures();
        let order: Vec<(&str, &str)> = merged
            .iter()
            .map(|h| (h.title.as_str(), h.source.as_str()))
            .collect();
        assert_eq!(
            order,
            [
                (
                    "Council approves new tram line & cycle lanes",
                    "Example News"
                ),
                ("Raspberry Pi 6 announced with 16 GB of RAM", "Other Feed"),
                (
                    "Storm Bert: rail services cut across the north",
                    "Example News"
                ),
                (
                    "Open-source office suite\u{2019}s users pass 10 million",
                    "Other Feed"
                ),
                ("Museum returns bronze sculptures to Benin", "Example News"),
                ("Letters: readers on the tram vote", "Example News"),
            ]
        );
    }

    #[test]
    fn a_story_in_several_feeds_is_kept_once_as_its_newest_copy() {
        let item = |title: &str, link: &str, time: &str| Item {
            title: title.into(),
            link: Some(link.into()),
            unix: Some(at(time)),
        };
        let a = Feed {
            title: "A".into(),
            items: vec![
                item("Same words", "https://a/1", "2026-12-01T10:00:00Z"),
                item(
                    "Shared link, A's title",
                    "https://shared",
                    "2026-12-01T09:00:00Z",
                ),
            ],
        };
        let b = Feed {
            title: "B".into(),
            items: vec![
                item("SAME words!", "https://b/1", "2026-12-01T11:00:00Z"),
                item(
                    "Shared link, B's title",
                    "https://shared",
                    "2026-12-01T08:00:00Z",
                ),
                item("B only", "https://b/2", "2026-12-01T07:00:00Z"),
            ],
        };
        let merged = merge(vec![a, b]);
        let kept: Vec<(&str, &str)> = merged
            .iter()
            .map(|h| (h.title.as_str(), h.source.as_str()))
            .collect();
        assert_eq!(
            kept,
            [
                ("SAME words!", "B"),
                ("Shared link, A's title", "A"),
                ("B only", "B"),
            ]
        );
    }

    #[test]
    fn titles_match_by_their_words() {
        assert_eq!(
            title_key("Storm Bert: rail services — cut!"),
            title_key("storm bert rail services cut")
        );
        assert_ne!(title_key("Rail cut"), title_key("Rail cuts"));
    }
}
