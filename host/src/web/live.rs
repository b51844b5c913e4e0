//! `/logs/stream`: the log ring's lines, then each new one as it is written, as
//! Server-Sent Events, at or above the level asked for (`?level=warn`).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::Query;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use tracing::Level;

use super::State;
use crate::telemetry::logs::{self, LogLine};

#[derive(Debug, Deserialize)]
pub struct Filter {
    level: Option<String>,
}

/// The least severe level shown: `error`, `warn`, `info` (default) or `debug`.
fn threshold(filter: &Filter) -> Level {
    filter
        .level
        .as_deref()
        .and_then(|l| l.parse().ok())
        .unwrap_or(Level::INFO)
}

fn event(line: &LogLine) -> Event {
    let data = serde_json::json!({ "level": line.level.as_str(), "text": line.text });
    Event::default()
        .event("line")
        .id(line.seq.to_string())
        .data(data.to_string())
}

pub async fn stream(
    state: State,
    Query(filter): Query<Filter>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let wanted = threshold(&filter);
    // In tracing, a more verbose level is the greater one.
    let shown = move |line: &LogLine| line.level <= wanted;
    let (kept, receiver) = logs::watch();
    let backlog: Vec<Event> = kept.iter().filter(|l| shown(l)).map(|l| event(l)).collect();
    let live = stream::unfold(receiver, move |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(line) if shown(&line) => return Some((event(&line), receiver)),
                Ok(_) => continue,
                Err(RecvError::Lagged(missed)) => {
                    let note = Event::default().event("missed").data(missed.to_string());
                    return Some((note, receiver));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    // Ends at shutdown: an open stream would otherwise hold the server's graceful stop.
    let shutdown = state.shutdown.clone();
    let events = stream::iter(backlog)
        .chain(live)
        .take_until(async move { shutdown.cancelled().await })
        .map(Ok);
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_filter_from_the_most_severe() {
        let at = |level: &str| Filter {
            level: Some(level.into()),
        };
        assert_eq!(threshold(&at("warn")), Level::WARN);
        assert_eq!(threshold(&Filter { level: None }), Level::INFO);
        assert_eq!(threshold(&at("nonsense")), Level::INFO);
        assert!(Level::ERROR <= Level::WARN && Level::DEBUG > Level::INFO);
    }
}
