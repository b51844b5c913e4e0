//! The last [`CAPACITY`] log lines in memory, as written to stderr (token redacted), and a
//! live feed of new ones for the dashboard's Logs page.
//!
//! Lines are kept only once [`enable`] was called (the bot with a dashboard): a CLI run or
//! a bot without a dashboard keeps nothing. With nobody watching, a line costs one copy
//! into the ring; `broadcast::send` with no receiver does nothing more.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use tokio::sync::broadcast;
use tracing::Level;

/// Lines kept for a page that opens later.
pub const CAPACITY: usize = 1000;
/// Lines a slow watcher may fall behind before it is told it missed some.
const LIVE_BACKLOG: usize = 256;

/// One log line.
#[derive(Debug, Clone)]
pub struct LogLine {
    /// Increases by one per line: a watcher resumes after the last one it saw.
    pub seq: u64,
    pub level: Level,
    pub text: String,
}

struct Ring {
    lines: VecDeque<Arc<LogLine>>,
    next_seq: u64,
}

struct LogRing {
    enabled: AtomicBool,
    ring: Mutex<Ring>,
    live: broadcast::Sender<Arc<LogLine>>,
}

static LOGS: LazyLock<LogRing> = LazyLock::new(|| LogRing {
    enabled: AtomicBool::new(false),
    ring: Mutex::new(Ring {
        lines: VecDeque::with_capacity(CAPACITY),
        next_seq: 1,
    }),
    live: broadcast::channel(LIVE_BACKLOG).0,
});

/// Starts keeping lines (the dashboard is on).
pub fn enable() {
    LOGS.enabled.store(true, Ordering::Relaxed);
}

/// Whether lines are kept.
pub fn enabled() -> bool {
    LOGS.enabled.load(Ordering::Relaxed)
}

/// Keeps one formatted line (ANSI colours removed, trailing newline trimmed).
pub fn push(level: Level, text: &str) {
    if !enabled() {
        return;
    }
    let text = strip_ansi(text.trim_end());
    let mut ring = LOGS.ring.lock().unwrap_or_else(|e| e.into_inner());
    let line = Arc::new(LogLine {
        seq: ring.next_seq,
        level,
        text,
    });
    ring.next_seq += 1;
    if ring.lines.len() == CAPACITY {
        ring.lines.pop_front();
    }
    ring.lines.push_back(line.clone());
    // Sent under the lock, so a watcher that subscribed with a snapshot sees every later
    // line exactly once.
    let _ = LOGS.live.send(line);
}

/// The kept lines, oldest first, and a receiver for every line after them.
pub fn watch() -> (Vec<Arc<LogLine>>, broadcast::Receiver<Arc<LogLine>>) {
    let ring = LOGS.ring.lock().unwrap_or_else(|e| e.into_inner());
    let receiver = LOGS.live.subscribe();
    (ring.lines.iter().cloned().collect(), receiver)
}

/// Removes terminal colour sequences (`ESC [ … letter`), which a terminal's log has.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_are_removed() {
        assert_eq!(
            strip_ansi("\u{1b}[2m2026\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m answering"),
            "2026  INFO answering"
        );
    }

    #[test]
    fn the_ring_keeps_the_newest_lines_and_feeds_watchers() {
        enable();
        let (_, mut live) = watch();
        for n in 0..CAPACITY + 5 {
            push(Level::INFO, &format!("line {n}\n"));
        }
        let (kept, _) = watch();
        assert_eq!(kept.len(), CAPACITY);
        assert_eq!(kept.last().unwrap().text, format!("line {}", CAPACITY + 4));
        assert!(kept.windows(2).all(|w| w[0].seq + 1 == w[1].seq));
        let first = live.try_recv();
        assert!(
            matches!(
                first,
                Err(broadcast::error::TryRecvError::Lagged(_)) | Ok(_)
            ),
            "a watcher sees new lines or is told it missed some"
        );
    }
}
