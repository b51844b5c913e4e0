//! Ollama's streamed `/api/chat` answer: NDJSON lines, each one [`ChatLine`], cut from the
//! body's chunks (a chunk may end inside a line, even inside a character).

use futures_util::stream::{self, BoxStream, StreamExt};

use super::wire::ChatLine;
use crate::llm::LlmError;
use crate::llm::answer::{Body, Decoded, WireFormat};

/// Ollama's wire format for [`crate::llm::answer`].
pub struct NdjsonLines;

impl WireFormat for NdjsonLines {
    type Frame = Vec<u8>;

    const SPEAKER: &'static str = "Ollama";

    fn frames(body: Body) -> BoxStream<'static, Result<Vec<u8>, LlmError>> {
        let state = (body, LineSplitter::default(), false);
        stream::unfold(state, |(mut body, mut lines, mut ended)| async move {
            loop {
                if let Some(line) = lines.next_line() {
                    return Some((Ok(line), (body, lines, ended)));
                }
                if ended {
                    return None;
                }
                match body.next().await {
                    Some(Ok(chunk)) => lines.push(&chunk),
                    Some(Err(error)) => return Some((Err(error), (body, lines, true))),
                    None => {
                        ended = true;
                        if let Some(rest) = lines.take_rest() {
                            return Some((Ok(rest), (body, lines, ended)));
                        }
                    }
                }
            }
        })
        .boxed()
    }

    /// Every line is the model at work: Ollama sends one per token, and none while it
    /// loads or reads the prompt.
    fn decode(&mut self, line: Vec<u8>) -> Decoded {
        let events = match serde_json::from_slice::<ChatLine>(&line) {
            Ok(parsed) => parsed.into_events(),
            Err(e) => vec![Err(LlmError::Protocol(format!("unreadable line: {e}")))],
        };
        Decoded {
            events,
            progress: true,
        }
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
    use crate::llm::answer;
    use crate::llm::timeouts::Clock;
    use crate::llm::{GenerationStats, ReplyEvent};

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
        let body = stream::iter(chunks.into_iter().map(|c| Ok(c.into()))).boxed();
        let clock = Clock::start(crate::llm::Timeouts::default());
        answer::read(body, clock, NdjsonLines).collect().await
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
