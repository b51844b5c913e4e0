//! Liveness for a container healthcheck: the polling loop leaves a heartbeat file in the
//! data directory, and `pi-agent health` judges it — no network, no pipeline, no database.
//!
//! A healthcheck that ran the full `doctor` would call Telegram and Ollama and compile the
//! pipeline every few minutes on a Pi. What a supervisor needs to know is narrower: is the
//! bot's own loop still turning, and has it reached Telegram lately?

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The heartbeat file's name inside `DATA_DIR`.
const FILE_NAME: &str = "heartbeat";

/// The loop beats at least once per long poll (25 s) or backoff (≤ 30 s); silence for this
/// long means it is stuck or the bot is not running.
pub const STUCK_AFTER: Duration = Duration::from_secs(120);
/// Polling has failed (Telegram unreachable, token revoked) for this long.
pub const OFFLINE_AFTER: Duration = Duration::from_secs(600);

/// Where the bot records that its polling loop is alive.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    path: PathBuf,
    last_success: Option<u64>,
}

impl Heartbeat {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join(FILE_NAME),
            last_success: None,
        }
    }

    /// Records one turn of the polling loop; `reached_telegram` if its `getUpdates` worked.
    /// Best effort: a full disk must not stop the bot, and the check will then say so.
    pub fn beat(&mut self, reached_telegram: bool) {
        let now = unix_secs(SystemTime::now());
        if reached_telegram {
            self.last_success = Some(now);
        }
        let line = format!("{now} {}\n", self.last_success.unwrap_or(0));
        // Write then rename, so the check never reads half a line.
        let temporary = self.path.with_extension("tmp");
        if let Err(e) =
            std::fs::write(&temporary, line).and_then(|()| std::fs::rename(&temporary, &self.path))
        {
            tracing::debug!("cannot write {}: {e}", self.path.display());
        }
    }
}

/// Why `pi-agent health` fails.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Unhealthy {
    #[error(
        "no heartbeat at {0}: the bot is not running, has not started polling yet, or uses another DATA_DIR"
    )]
    Missing(String),
    #[error("the heartbeat at {0} is unreadable: {1}")]
    Unreadable(String, String),
    #[error(
        "the polling loop has not run for {0} s (stuck, or the bot stopped) — see the bot's log, then restart it"
    )]
    Stuck(u64),
    #[error(
        "Telegram has not been reached for {0} — check the network and TELEGRAM_BOT_TOKEN (`pi-agent doctor`)"
    )]
    Offline(String),
}

/// Judges the heartbeat in `data_dir` at `now`: `Ok` with a one-line summary, or why not.
pub fn check(data_dir: &Path, now: SystemTime) -> Result<String, Unhealthy> {
    let path = data_dir.join(FILE_NAME);
    let shown = path.display().to_string();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Unhealthy::Missing(shown));
        }
        Err(e) => return Err(Unhealthy::Unreadable(shown, e.to_string())),
    };
    let numbers: Vec<u64> = text
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|e| Unhealthy::Unreadable(shown.clone(), format!("{e}")))?;
    let [last_beat, last_success] = numbers[..] else {
        return Err(Unhealthy::Unreadable(shown, "expected two numbers".into()));
    };
    let now = unix_secs(now);
    let since_beat = now.saturating_sub(last_beat);
    if since_beat > STUCK_AFTER.as_secs() {
        return Err(Unhealthy::Stuck(since_beat));
    }
    if last_success == 0 {
        return Err(Unhealthy::Offline("since the bot started".into()));
    }
    let since_success = now.saturating_sub(last_success);
    if since_success > OFFLINE_AFTER.as_secs() {
        return Err(Unhealthy::Offline(format!("{since_success} s")));
    }
    Ok(format!(
        "ok: polling loop alive ({since_beat} s ago), Telegram reached {since_success} s ago"
    ))
}

fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn write(dir: &Path, text: &str) {
        std::fs::write(dir.join(FILE_NAME), text).unwrap();
    }

    #[test]
    fn a_fresh_beat_after_a_successful_poll_is_healthy() {
        let dir = tempfile::tempdir().unwrap();
        let mut heartbeat = Heartbeat::new(dir.path());
        heartbeat.beat(true);
        let summary = check(dir.path(), SystemTime::now()).unwrap();
        assert!(summary.starts_with("ok: polling loop alive"), "{summary}");
    }

    #[test]
    fn no_file_means_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let error = check(dir.path(), SystemTime::now()).unwrap_err();
        assert!(matches!(error, Unhealthy::Missing(_)), "{error}");
    }

    #[test]
    fn a_silent_loop_is_stuck() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "1000 1000\n");
        assert_eq!(
            check(dir.path(), at(1000 + 121)),
            Err(Unhealthy::Stuck(121))
        );
        assert!(check(dir.path(), at(1000 + 120)).is_ok());
    }

    #[test]
    fn polls_failing_for_ten_minutes_mean_offline() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "5000 4000\n");
        assert!(check(dir.path(), at(4600)).is_ok());
        assert_eq!(
            check(dir.path(), at(4601)),
            Err(Unhealthy::Offline("601 s".into()))
        );
        write(dir.path(), "5000 0\n");
        assert!(matches!(
            check(dir.path(), at(5000)),
            Err(Unhealthy::Offline(_))
        ));
    }

    #[test]
    fn a_failed_poll_keeps_the_last_success() {
        let dir = tempfile::tempdir().unwrap();
        let mut heartbeat = Heartbeat::new(dir.path());
        heartbeat.beat(true);
        heartbeat.beat(false);
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        let numbers: Vec<u64> = text
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        assert_ne!(numbers[1], 0, "{text}");
    }

    #[test]
    fn garbage_is_reported_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "half");
        assert!(matches!(
            check(dir.path(), SystemTime::now()),
            Err(Unhealthy::Unreadable(..))
        ));
    }
}
