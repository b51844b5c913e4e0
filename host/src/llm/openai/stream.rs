//! The streamed chat-completions answer: Server-Sent Events (parsed by
//! `eventsource-stream`) turned into reply events, within the answer's deadlines.

use std::time::Duration;

use eventsource_stream::{Event, EventStreamError};
use futures_util::stream::{self, Stream, StreamExt};
use tokio::time::{Instant, timeout_at};
use tracing::debug;

use super::wire::{StreamEvent, Timings, Usage};
use crate::llm::http::shorten;
use crate::llm::timeouts::Clock;
use crate::llm::{GenerationStats, LlmError, ReplyEvent, ReplyStream};

/// Reads events until `data: [DONE]`, an error, or a deadline.
pub struct ReplyReader<S> {
    events: S,
    clock: Clock,
    requested: Instant,
    /// When the first and the latest token arrived.
    first_token: Option<Instant>,
    last_token: Option<Instant>,
    tokens: u64,
    usage: Option<Usage>,
    timings: Option<Timings>,
    finish_reason: Option<String>,
    finished: bool,
}

impl<S, E> ReplyReader<S>
where
    S: Stream<Item = Result<Event, EventStreamError<E>>> + Unpin + Send + 'static,
    E: std::fmt::Display,
{
    pub fn new(events: S, clock: Clock) -> Self {
        Self {
            events,
            clock,
            requested: Instant::now(),
            first_token: None,
            last_token: None,
            tokens: 0,
            usage: None,
            timings: None,
            finish_reason: None,
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
        while !self.finished {
            // Keep-alive comments and the role-only first chunk do not count as progress:
            // the deadline is the first token's until text arrives, then the idle one.
            let (deadline, timeout_error) = self.clock.deadline(self.last_token);
            let event = match timeout_at(deadline, self.events.next()).await {
                Err(_) => return self.fail(timeout_error),
                Ok(None) => return self.end_of_body(),
                Ok(Some(Err(error))) => return self.fail(read_error(error)),
                Ok(Some(Ok(event))) => event,
            };
            if let Some(reply) = self.take(&event.data) {
                return Some(reply);
            }
        }
        None
    }

    /// One event's `data`; `None` when it carries nothing for the user.
    fn take(&mut self, data: &str) -> Option<Result<ReplyEvent, LlmError>> {
        let data = data.trim();
        if data.is_empty() {
            return None;
        }
        if data == "[DONE]" {
            self.finished = true;
            return Some(Ok(ReplyEvent::Done(self.stats())));
        }
        let event: StreamEvent = match serde_json::from_str(data) {
            Ok(event) => event,
            Err(e) => return self.fail(LlmError::Protocol(format!("unreadable event: {e}"))),
        };
        if let Some(error) = event.error {
            debug!(message = %error.message, "openai: error mid-stream");
            return self.fail(LlmError::Generation(shorten(&error.message)));
        }
        if let Some(usage) = event.usage {
            self.usage = Some(usage);
        }
        if let Some(timings) = event.timings {
            self.timings = Some(timings);
        }
        let mut text = String::new();
        for choice in event.choices {
            if let Some(content) = choice.delta.content {
                text.push_str(&content);
            }
            if choice.finish_reason.is_some() {
                self.finish_reason = choice.finish_reason;
            }
        }
        if text.is_empty() {
            return None;
        }
        let now = Instant::now();
        self.first_token.get_or_insert(now);
        self.last_token = Some(now);
        self.tokens += 1;
        Some(Ok(ReplyEvent::Delta(text)))
    }

    /// A server that closes without `[DONE]` after saying why it finished is taken at its
    /// word; one that just stops broke off.
    fn end_of_body(&mut self) -> Option<Result<ReplyEvent, LlmError>> {
        if self.finished {
            return None;
        }
        self.finished = true;
        Some(match self.finish_reason {
            Some(_) => Ok(ReplyEvent::Done(self.stats())),
            None => Err(LlmError::Protocol(
                "the answer ended before the server said it was done".into(),
            )),
        })
    }

    fn fail(&mut self, error: LlmError) -> Option<Result<ReplyEvent, LlmError>> {
        debug!(%error, "openai: reply failed");
        self.finished = true;
        Some(Err(error))
    }

    /// The usage chunk's counts when the server sent one, else the chunks counted; the
    /// generation time from the first token to the last — or llama-server's own `timings`,
    /// which split the prompt into cached and evaluated tokens and time the model alone.
    fn stats(&self) -> GenerationStats {
        let measured_eval = match (self.first_token, self.last_token) {
            (Some(first), Some(last)) => last - first,
            _ => Default::default(),
        };
        let measured_prompt = self
            .first_token
            .map(|t| t - self.requested)
            .unwrap_or_default();
        let timings = self.timings.unwrap_or_default();
        let millis = |ms: Option<f64>| ms.map(|ms| Duration::from_secs_f64(ms.max(0.0) / 1000.0));
        let reported_cached = self
            .usage
            .and_then(|u| u.prompt_tokens_details)
            .and_then(|d| d.cached_tokens);
        let prompt_tokens = self
            .usage
            .map(|u| u.prompt_tokens)
            .or(timings.cache_n.zip(timings.prompt_n).map(|(c, p)| c + p))
            .unwrap_or(0);
        GenerationStats {
            eval_count: self
                .usage
                .map(|u| u.completion_tokens)
                .or(timings.predicted_n)
                .unwrap_or(self.tokens),
            eval_duration: millis(timings.predicted_ms).unwrap_or(measured_eval),
            prompt_eval_count: prompt_tokens,
            prompt_cached: reported_cached.or(timings.cache_n),
            prompt_cached_estimated: false,
            prompt_eval_duration: millis(timings.prompt_ms).unwrap_or(measured_prompt),
            load_duration: Default::default(),
            total_duration: self.requested.elapsed(),
            cut_off: self.finish_reason.as_deref() == Some("length"),
        }
    }
}

fn read_error<E: std::fmt::Display>(error: EventStreamError<E>) -> LlmError {
    match error {
        EventStreamError::Transport(e) => LlmError::Interrupted(e.to_string()),
        other => LlmError::Protocol(format!("unreadable event stream: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use eventsource_stream::Eventsource;

    use super::*;
    use crate::llm::Timeouts;

    /// As llama-server and vLLM send it: a keep-alive comment, a role chunk with null
    /// content, text, the finish reason, the usage chunk, `[DONE]`.
    const STREAM: &str = concat!(
        ": keep-alive\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,",
        "\"delta\":{\"role\":\"assistant\",\"content\":null},\"finish_reason\":null}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Grüß\"},\"finish_reason\":null}]}\n\n",
        ": keep-alive\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\" dich 👋\"},\"finish_reason\":null}]}\r\n\r\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2,\"total_tokens\":9}}\n\n",
        "data: [DONE]\n\n",
    );

    async fn events_of(chunks: Vec<Vec<u8>>) -> Vec<Result<ReplyEvent, LlmError>> {
        let body = stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
        let reader = ReplyReader::new(body.eventsource(), Clock::start(Timeouts::default()));
        reader.into_stream().collect().await
    }

    fn texts_and_end(events: &[Result<ReplyEvent, LlmError>]) -> (String, String) {
        let text = events
            .iter()
            .filter_map(|e| match e {
                Ok(ReplyEvent::Delta(t)) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        let end = match events.last() {
            Some(Ok(ReplyEvent::Done(stats))) => format!(
                "done {}/{} cut_off={}",
                stats.prompt_eval_count, stats.eval_count, stats.cut_off
            ),
            other => format!("{other:?}"),
        };
        (text, end)
    }

    #[tokio::test]
    async fn reply_events_do_not_depend_on_chunking() {
        let bytes = STREAM.as_bytes();
        let expected = (
            "Grüß dich 👋".to_owned(),
            "done 7/2 cut_off=false".to_owned(),
        );
        let whole = events_of(vec![bytes.to_vec()]).await;
        assert_eq!(whole.len(), 3, "{whole:?}");
        assert_eq!(texts_and_end(&whole), expected);
        for cut in 0..=bytes.len() {
            let halves = vec![bytes[..cut].to_vec(), bytes[cut..].to_vec()];
            assert_eq!(
                texts_and_end(&events_of(halves).await),
                expected,
                "cut at byte {cut}"
            );
        }
    }

    #[tokio::test]
    async fn llama_servers_cache_figures_are_read() {
        // llama-server's last chunk: usage with the cached tokens, and its own timings.
        let last = concat!(
            "data: {\"choices\":[],\"usage\":{\"completion_tokens\":2,\"prompt_tokens\":700,",
            "\"total_tokens\":702,\"prompt_tokens_details\":{\"cached_tokens\":650}},",
            "\"timings\":{\"cache_n\":650,\"prompt_n\":50,\"prompt_ms\":2500.0,",
            "\"prompt_per_token_ms\":50.0,\"predicted_n\":2,\"predicted_ms\":1000.0}}\n\n",
        );
        let stream = STREAM.replace(
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2,\"total_tokens\":9}}\n\n",
            last,
        );
        let events = events_of(vec![stream.into_bytes()]).await;
        let Some(Ok(ReplyEvent::Done(stats))) = events.last() else {
            panic!("{events:?}");
        };
        assert_eq!(stats.prompt_eval_count, 700);
        assert_eq!(stats.prompt_cached, Some(650));
        assert_eq!(stats.prompt_evaluated(), 50);
        assert!(!stats.prompt_cached_estimated);
        assert_eq!(stats.prompt_eval_duration, Duration::from_millis(2500));
        assert_eq!(stats.eval_duration, Duration::from_secs(1));
    }

    #[tokio::test]
    async fn length_finish_reason_marks_the_answer_cut_off() {
        let stream = STREAM.replace("\"stop\"", "\"length\"");
        let events = events_of(vec![stream.into_bytes()]).await;
        assert_eq!(texts_and_end(&events).1, "done 7/2 cut_off=true");
    }

    #[tokio::test]
    async fn an_error_event_mid_stream_ends_the_answer() {
        let body = concat!(
            "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
            "data: {\"error\":{\"message\":\"CUDA out of memory\",\"type\":\"InternalServerError\",\"param\":null,\"code\":500}}\n\n",
            "data: [DONE]\n\n",
        );
        let events = events_of(vec![body.as_bytes().to_vec()]).await;
        let failed = Err(LlmError::Generation("CUDA out of memory".into()));
        assert_eq!(events, vec![Ok(ReplyEvent::Delta("a".into())), failed]);
    }

    #[tokio::test]
    async fn a_body_that_just_stops_is_a_protocol_error() {
        let body = "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n";
        let events = events_of(vec![body.as_bytes().to_vec()]).await;
        assert_eq!(events[0], Ok(ReplyEvent::Delta("Hi".into())));
        assert!(
            matches!(events[1], Err(LlmError::Protocol(_))),
            "{events:?}"
        );
        assert_eq!(events.len(), 2);
    }

    #[tokio::test]
    async fn unreadable_data_is_a_protocol_error() {
        let events = events_of(vec![b"data: <html>\n\n".to_vec()]).await;
        assert!(
            matches!(events.as_slice(), [Err(LlmError::Protocol(_))]),
            "{events:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn keep_alives_do_not_hold_off_the_first_token_deadline() {
        let timeouts = Timeouts {
            first_token: Duration::from_secs(10),
            ..Timeouts::default()
        };
        // A keep-alive every second, forever, and never a token.
        let body = stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Some((Ok::<_, std::io::Error>(b": keep-alive\n\n".to_vec()), ()))
        })
        .boxed();
        let reader = ReplyReader::new(body.eventsource(), Clock::start(timeouts));
        let events: Vec<_> = reader.into_stream().collect().await;
        assert_eq!(
            events,
            vec![Err(LlmError::FirstTokenTimeout(Duration::from_secs(10)))]
        );
    }
}
