//! Which headlines a chat was already shown, as the stage's kv store keeps them: one key per
//! chat holding 48-bit hashes of the titles' words, newest first, at most [`REMEMBERED`].
//!
//! Eight characters a headline: a chat's full memory is 1.6 KB, so the suggested
//! `kv_kib = 64` keeps about 40 chats. A hash, not the title: the store needs to know
//! only whether a title was shown, and a collision (about one in 10¹² per new headline)
//! would hide one headline once.

use crate::merge::{Headline, title_key};

/// Headlines remembered per chat; older ones may be shown again.
pub const REMEMBERED: usize = 200;

/// Characters per stored hash: 8 × 6 bits.
const WIDTH: usize = 8;
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The kv key of `chat_id`'s memory.
pub fn key(chat_id: i64) -> String {
    format!("seen:{chat_id}")
}

/// One chat's shown headlines, newest first.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Seen(Vec<u64>);

impl Seen {
    /// Reads a stored value; what is not a hash in it (a damaged value) is dropped.
    pub fn decode(stored: &str) -> Self {
        let hashes = stored
            .as_bytes()
            .chunks_exact(WIDTH)
            .filter_map(|chunk| {
                chunk.iter().try_fold(0u64, |hash, &c| {
                    let digit = ALPHABET.iter().position(|&a| a == c)?;
                    Some(hash << 6 | digit as u64)
                })
            })
            .take(REMEMBERED)
            .collect();
        Self(hashes)
    }

    pub fn encode(&self) -> String {
        let mut stored = String::with_capacity(self.0.len() * WIDTH);
        for hash in &self.0 {
            for i in (0..WIDTH).rev() {
                stored.push(ALPHABET[(hash >> (6 * i) & 63) as usize] as char);
            }
        }
        stored
    }

    /// The newest `max` of `headlines` (newest first) not shown before, remembered as shown.
    pub fn show(&mut self, headlines: &[Headline], max: usize) -> Vec<Headline> {
        let shown: Vec<Headline> = headlines
            .iter()
            .filter(|h| !self.contains(&h.title))
            .take(max)
            .cloned()
            .collect();
        self.remember(shown.iter().map(|h| h.title.as_str()));
        shown
    }

    fn contains(&self, title: &str) -> bool {
        self.0.contains(&hash(title))
    }

    /// Remembers `titles` (newest first) as the newest shown, forgetting the oldest past
    /// [`REMEMBERED`].
    fn remember<'a>(&mut self, titles: impl IntoIterator<Item = &'a str>) {
        let mut newest = Vec::with_capacity(REMEMBERED);
        for hash in titles.into_iter().map(hash).chain(self.0.iter().copied()) {
            if newest.len() == REMEMBERED {
                break;
            }
            if !newest.contains(&hash) {
                newest.push(hash);
            }
        }
        self.0 = newest;
    }
}

/// FNV-1a (stable across builds and Rust versions, unlike std's hasher) of the title's
/// words, folded to 48 bits.
fn hash(title: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in title_key(title).bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash ^ hash >> 48) & ((1 << 48) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_title_is_known_after_a_round_trip_through_the_store() {
        let mut seen = Seen::default();
        seen.remember(["Council approves new tram line", "Pi 6 announced"]);
        let stored = seen.encode();
        assert_eq!(stored.len(), 2 * WIDTH);
        let read = Seen::decode(&stored);
        assert_eq!(read, seen);
        assert!(
            read.contains("Pi 6 announced") && read.contains("COUNCIL approves new tram line!")
        );
        assert!(!read.contains("Storm Bert"));
    }

    #[test]
    fn memory_is_bounded_and_forgets_the_oldest() {
        let mut seen = Seen::default();
        let titles: Vec<String> = (0..REMEMBERED + 50).map(|i| format!("story {i}")).collect();
        for batch in titles.chunks(5) {
            seen.remember(batch.iter().map(String::as_str));
        }
        assert_eq!(seen.0.len(), REMEMBERED);
        assert_eq!(seen.encode().len(), REMEMBERED * WIDTH);
        assert!(seen.contains(&titles[REMEMBERED + 49]) && seen.contains(&titles[50]));
        assert!(!seen.contains(&titles[49]) && !seen.contains(&titles[0]));
    }

    #[test]
    fn showing_a_title_again_moves_it_up_instead_of_storing_it_twice() {
        let mut seen = Seen::default();
        seen.remember(["a", "b"]);
        seen.remember(["b"]);
        assert_eq!(seen.0, [hash("b"), hash("a")]);
    }

    #[test]
    fn a_damaged_value_keeps_what_it_can() {
        let mut seen = Seen::default();
        seen.remember(["kept"]);
        let damaged = format!("{}!!!!!!!!abc", seen.encode());
        assert_eq!(Seen::decode(&damaged), seen);
        assert_eq!(Seen::decode(""), Seen::default());
    }

    fn titles(headlines: &[Headline]) -> Vec<&str> {
        headlines.iter().map(|h| h.title.as_str()).collect()
    }

    #[test]
    fn a_chat_is_shown_only_what_it_was_not_shown_before() {
        let merged = crate::merge::tests::fixtures();
        let mut chat = Seen::default();
        let first = chat.show(&merged, 4);
        assert_eq!(titles(&first), titles(&merged[..4]));
        // Stored and read back between two messages, as the kv store does.
        let mut chat = Seen::decode(&chat.encode());
        let second = chat.show(&merged, 4);
        assert_eq!(titles(&second), titles(&merged[4..]));
        assert!(Seen::decode(&chat.encode()).show(&merged, 4).is_empty());

        let mut other_chat = Seen::default();
        assert_eq!(other_chat.show(&merged, 10), merged);
    }

    #[test]
    fn each_chat_has_its_own_key() {
        assert_eq!(key(42), "seen:42");
        assert_eq!(key(-1001234), "seen:-1001234");
    }
}
