//! The OpenAI API's streamed chat completion: Server-Sent Events (parsed by
//! `eventsource-stream`) whose `data` is a chunk of the answer, `[DONE]` at the end.

use std::time::Duration;

use eventsource_stream::{EventStreamError, Eventsource};
use futures_util::stream::{BoxStream, StreamExt};
use tokio::time::Instant;
use tracing::debug;

use super::wire::{StreamEvent, Timings, Usage};
use crate::llm::answer::{Body, Decoded, WireFormat};
use crate::llm::http::shorten;
use crate::llm::{GenerationStats, LlmError, ReplyEvent};

/// The OpenAI API's wire format for [`crate::llm::answer`], and what it has read so far
/// for the answer's figures.
pub struct ServerSentEvents {
    requested: Instant,
    /// When the first and the latest text arrived.
    first_token: Option<Instant>,
    last_token: Option<Instant>,
    tokens: u64,
    usage: Option<Usage>,
    timings: Option<Timings>,
    finish_reason: Option<String>,
}

impl ServerSentEvents {
    /// For an answer requested now (the prompt's time is measured from here).
    pub fn requested_now() -> Self {
        Self {
            requested: Instant::now(),
            first_token: None,
            last_token: None,
            tokens: 0,
            usage: None,
            timings: None,
            finish_reason: None,
        }
    }

    /// One event's `data`: the events it carries for the user, if any.
    fn take(&mut self, data: &str) -> Option<Result<ReplyEvent, LlmError>> {
        let data = data.trim();
        if data.is_empty() {
            return None;
        }
        if data == "[DONE]" {
            return Some(Ok(ReplyEvent::Done(self.stats())));
        }
        let event: StreamEvent = match serde_json::from_str(data) {
            Ok(event) => event,
            Err(e) => return Some(Err(LlmError::Protocol(format!("unreadable event: {e}")))),
        };
        if let Some(error) = event.error {
            debug!(message = %error.message, "openai: error mid-stream");
            return Some(Err(LlmError::Generation(shorten(&error.message))));
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

impl WireFormat for ServerSentEvents {
    type Frame = String;

    const SPEAKER: &'static str = "the server";

    fn frames(body: Body) -> BoxStream<'static, Result<String, LlmError>> {
        body.eventsource()
            .map(|event| event.map(|e| e.data).map_err(read_error))
            .boxed()
    }

    /// Only text is progress: keep-alive comments and the role-only first chunk do not
    /// hold off the first token's deadline.
    fn decode(&mut self, data: String) -> Decoded {
        let event = self.take(&data);
        let progress = matches!(event, Some(Ok(ReplyEvent::Delta(_))));
        Decoded {
            events: event.into_iter().collect(),
            progress,
        }
    }

    /// A server that closes without `[DONE]` after saying why it finished is taken at its
    /// word; one that just stops broke off.
    fn end_of_body(&mut self) -> Option<ReplyEvent> {
        self.finish_reason
            .is_some()
            .then(|| ReplyEvent::Done(self.stats()))
    }
}

fn read_error(error: EventStreamError<LlmError>) -> LlmError {
    match error {
        EventStreamError::Transport(error) => error,
        other => LlmError::Protocol(format!("unreadable event stream: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use futures_util::stream;

    use super::*;
    use crate::llm::Timeouts;
    use crate::llm::answer;
    use crate::llm::timeouts::Clock;

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
        let body = stream::iter(chunks.into_iter().map(|c| Ok(c.into()))).boxed();
        let clock = Clock::start(Timeouts::default());
        answer::read(body, clock, ServerSentEvents::requested_now())
            .collect()
            .await
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
            Some((Ok(b": keep-alive\n\n".as_slice().into()), ()))
        })
        .boxed();
        let answer = answer::read(
            body,
            Clock::start(timeouts),
            ServerSentEvents::requested_now(),
        );
        let events: Vec<_> = answer.collect().await;
        assert_eq!(
            events,
            vec![Err(LlmError::FirstTokenTimeout(Duration::from_secs(10)))]
        );
    }
}
