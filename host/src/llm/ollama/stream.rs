//! The streamed `/api/chat` answer: NDJSON lines read from the body's chunks and turned
//! into reply events, within the answer's deadlines (first token, idle, total).

use std::collections::VecDeque;

use futures_util::stream::{self, Stream, StreamExt};
use tokio::time::{Instant, timeout_at};
use tracing::debug;

use super::wire::ChatLine;
use crate::llm::timeouts::Clock;
use crate::llm::{LlmError, ReplyEvent, ReplyStream};

/// Turns a body's chunks into reply events, enforcing the clock's deadlines.
pub struct ReplyReader<S> {
    body: S,
    lines: LineSplitter,
    pending: VecDeque<Result<ReplyEvent, LlmError>>,
    clock: Clock,
    last_chunk: Option<Instant>,
    finished: bool,
}

impl<S, B> ReplyReader<S>
where
    S: Stream<Item = Result<B, LlmError>> + Unpin + Send + 'static,
    B: AsRef<[u8]>,
{
    pub fn new(body: S, clock: Clock) -> Self {
        let (lines, pending) = (LineSplitter::default(), VecDeque::new());
        Self {
            body,
            lines,
            pending,
            clock,
            last_chunk: None,
            finished: false,
        }
    }

    pub fn into_stream(self) -> ReplyStream {
        stream::unfold(self, |mut reader| async move {
            let event = reader.next_event().await?;
            Some((event, reader))
        })
        .boxed()
    }

    async fn next_event(&mut self) -> Option<Result<ReplyEvent, LlmError>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            if self.finished {
                return None;
            }
            match self.lines.next_line() {
                Some(line) => self.take_line(&line),
                None => self.read_chunk().await,
            }
        }
    }

    async fn read_chunk(&mut self) {
        let (deadline, timeout_error) = self.clock.deadline(self.last_chunk);
        match timeout_at(deadline, self.body.next()).await {
            Ok(Some(Ok(chunk))) => {
                self.last_chunk = Some(Instant::now());
                self.lines.push(chunk.as_ref());
            }
            Ok(Some(Err(error))) => self.fail(error),
            Ok(None) => self.end_of_body(),
            Err(_) => {
                debug!(error = %timeout_error, "ollama: reply timed out");
                self.fail(timeout_error);
            }
        }
    }

    fn end_of_body(&mut self) {
        if let Some(line) = self.lines.take_rest() {
            self.take_line(&line);
        }
        if !self.finished {
            self.fail(LlmError::Protocol(
                "the answer ended before Ollama said it was done".into(),
            ));
        }
    }

    fn take_line(&mut self, line: &[u8]) {
        let events = match serde_json::from_slice::<ChatLine>(line) {
            Ok(parsed) => parsed.into_events(),
            Err(e) => vec![Err(LlmError::Protocol(format!("unreadable line: {e}")))],
        };
        for event in events {
            match &event {
                Ok(ReplyEvent::Delta(_) | ReplyEvent::Notice(_)) => {}
                Ok(ReplyEvent::Done(stats)) => {
                    debug!(
                        eval_count = stats.eval_count,
                        tokens_per_second = stats.tokens_per_second(),
                        "ollama: reply done"
                    );
                    self.finished = true;
                }
                Err(error) => {
                    debug!(%error, "ollama: reply failed");
                    self.finished = true;
                }
            }
            self.pending.push_back(event);
        }
    }

    fn fail(&mut self, error: LlmError) {
        self.pending.push_back(Err(error));
        self.finished = true;
    }
}

/// Splits a byte stream into lines. Works on bytes, not text, because a chunk boundary may
/// fall inside a multi-byte character; blank lines are skipped.
#[derive(Default)]
struct LineSplitter {
    buffer: Vec<u8>,
}

impl LineSplitter {
    fn push(&mut self, chunk: &[u8]) {
        self.buffer.extend_from_slice(chunk);
    }

    /// The next complete line, without its line ending.
    fn next_line(&mut self) -> Option<Vec<u8>> {
        loop {
            let end = self.buffer.iter().position(|&b| b == b'\n')?;
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            if let Some(line) = non_blank(&line) {
                return Some(line);
            }
        }
    }

    /// What is left after the last line ending, if anything.
    fn take_rest(&mut self) -> Option<Vec<u8>> {
        non_blank(&std::mem::take(&mut self.buffer))
    }
}

fn non_blank(line: &[u8]) -> Option<Vec<u8>> {
    let trimmed = line.trim_ascii();
    (!trimmed.is_empty()).then(|| trimmed.to_vec())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::llm::GenerationStats;

    const STREAM: &str = concat!(
        "{\"message\":{\"role\":\"assistant\",\"content\":\"Grüß\"},\"done\":false}\n",
        "\n",
        "{\"message\":{\"role\":\"assistant\",\"content\":\" dich 👋\"},\"done\":false}\r\n",
        "{\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"eval_count\":2,",
        "\"eval_duration\":500000000,\"prompt_eval_count\":7,\"total_duration\":900000000,",
        "\"load_duration\":100000000}\n",
    );

    fn expected_events() -> Vec<Result<ReplyEvent, LlmError>> {
        let stats = GenerationStats {
            eval_count: 2,
            eval_duration: Duration::from_millis(500),
            prompt_eval_count: 7,
            prompt_eval_duration: Duration::ZERO,
            load_duration: Duration::from_millis(100),
            total_duration: Duration::from_millis(900),
            ..GenerationStats::default()
        };
        vec![
            Ok(ReplyEvent::Delta("Grüß".into())),
            Ok(ReplyEvent::Delta(" dich 👋".into())),
            Ok(ReplyEvent::Done(stats)),
        ]
    }

    async fn events_of(chunks: Vec<Vec<u8>>) -> Vec<Result<ReplyEvent, LlmError>> {
        let body = stream::iter(chunks.into_iter().map(Ok));
        let reader = ReplyReader::new(body, Clock::start(crate::llm::Timeouts::default()));
        reader.into_stream().collect().await
    }

    #[test]
    fn line_splitter_handles_a_chunk_boundary_at_every_byte() {
        let bytes = STREAM.as_bytes();
        let whole: Vec<Vec<u8>> = {
            let mut splitter = LineSplitter::default();
            splitter.push(bytes);
            std::iter::from_fn(|| splitter.next_line()).collect()
        };
        assert_eq!(whole.len(), 3);
        for cut in 0..=bytes.len() {
            let mut splitter = LineSplitter::default();
            splitter.push(&bytes[..cut]);
            let mut lines: Vec<Vec<u8>> = std::iter::from_fn(|| splitter.next_line()).collect();
            splitter.push(&bytes[cut..]);
            lines.extend(std::iter::from_fn(|| splitter.next_line()));
            assert_eq!(lines, whole, "cut at byte {cut}");
            assert_eq!(splitter.take_rest(), None);
        }
    }

    #[tokio::test]
    async fn reply_events_do_not_depend_on_chunking() {
        let bytes = STREAM.as_bytes();
        assert_eq!(events_of(vec![bytes.to_vec()]).await, expected_events());
        let byte_by_byte = bytes.iter().map(|&b| vec![b]).collect();
        assert_eq!(events_of(byte_by_byte).await, expected_events());
        for cut in 0..=bytes.len() {
            let halves = vec![bytes[..cut].to_vec(), bytes[cut..].to_vec()];
            assert_eq!(
                events_of(halves).await,
                expected_events(),
                "cut at byte {cut}"
            );
        }
    }

    #[tokio::test]
    async fn last_line_without_newline_still_counts() {
        let events = events_of(vec![STREAM.trim_end().as_bytes().to_vec()]).await;
        assert_eq!(events, expected_events());
    }

    #[tokio::test]
    async fn answer_without_done_is_a_protocol_error() {
        let events = events_of(vec![
            b"{\"message\":{\"content\":\"Hi\"},\"done\":false}\n".to_vec(),
        ])
        .await;
        assert_eq!(events[0], Ok(ReplyEvent::Delta("Hi".into())));
        assert!(
            matches!(events[1], Err(LlmError::Protocol(_))),
            "{events:?}"
        );
        assert_eq!(events.len(), 2);
    }

    #[tokio::test]
    async fn unreadable_line_is_a_protocol_error_and_ends_the_answer() {
        let events = events_of(vec![b"<html>\n{\"done\":true}\n".to_vec()]).await;
        assert!(
            matches!(events.as_slice(), [Err(LlmError::Protocol(_))]),
            "{events:?}"
        );
    }

    #[tokio::test]
    async fn error_line_ends_the_answer() {
        let chunk =
            b"{\"message\":{\"content\":\"a\"}}\n{\"error\":\"out of memory\"}\n{\"done\":true}\n";
        let events = events_of(vec![chunk.to_vec()]).await;
        let failed = Err(LlmError::Generation("out of memory".into()));
        assert_eq!(events, vec![Ok(ReplyEvent::Delta("a".into())), failed]);
    }
}
