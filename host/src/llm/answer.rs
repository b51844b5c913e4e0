//! One streamed answer, whatever the wire: the request sent within the first token's
//! deadline, the body cut into frames (an NDJSON line, a Server-Sent Event), each frame
//! read within the answer's deadlines and decoded by the backend's [`WireFormat`] into reply
//! events, until one of them ends the answer. A backend writes only its format.

use std::collections::VecDeque;

use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt};
use tokio::time::{Instant, timeout_at};
use tracing::debug;

use super::http::{ErrorAnswer, Server, root_cause};
use super::timeouts::Clock;
use super::{LlmError, ReplyEvent, ReplyStream};

/// The response body as it arrives.
pub type Body = BoxStream<'static, Result<Bytes, LlmError>>;

/// How one API streams an answer.
pub trait WireFormat: Send + 'static {
    /// What the body is cut into.
    type Frame: Send + 'static;

    /// Who speaks it, for logs and errors ("Ollama", "the server").
    const SPEAKER: &'static str;

    /// Cuts the body into frames.
    fn frames(body: Body) -> BoxStream<'static, Result<Self::Frame, LlmError>>;

    /// The reply events one frame carries, and whether it counts as the model making
    /// progress (which moves the deadline from the first token's to the idle one).
    fn decode(&mut self, frame: Self::Frame) -> Decoded;

    /// The body ended without an event that ends the answer: the `Done` the format can
    /// still make of what it read, if the server finished in its own way.
    fn end_of_body(&mut self) -> Option<ReplyEvent> {
        None
    }
}

/// What one frame said.
pub struct Decoded {
    pub events: Vec<Result<ReplyEvent, LlmError>>,
    pub progress: bool,
}

/// Sends a chat `request` and streams its answer in `format`: the headers must come within
/// the first token's deadline, the rest within the answer's.
pub async fn stream<F: WireFormat>(
    server: &Server,
    request: reqwest::RequestBuilder,
    status_error: impl FnOnce(ErrorAnswer) -> LlmError,
    format: F,
) -> Result<ReplyStream, LlmError> {
    let clock = Clock::start(server.timeouts);
    let (deadline, timeout_error) = clock.deadline(None);
    let response = timeout_at(deadline, server.send(request, status_error))
        .await
        .map_err(|_| timeout_error)??;
    let body = response
        .bytes_stream()
        .map(|chunk| chunk.map_err(|e| LlmError::Interrupted(root_cause(&e))))
        .boxed();
    Ok(read(body, clock, format))
}

/// The reply events of `body`, read in `format` within `clock`'s deadlines.
pub fn read<F: WireFormat>(body: Body, clock: Clock, format: F) -> ReplyStream {
    let reader = Reader {
        frames: F::frames(body),
        format,
        clock,
        last_progress: None,
        pending: VecDeque::new(),
        finished: false,
    };
    stream::unfold(reader, |mut reader| async move {
        let event = reader.next_event().await?;
        Some((event, reader))
    })
    .boxed()
}

struct Reader<F: WireFormat> {
    frames: BoxStream<'static, Result<F::Frame, LlmError>>,
    format: F,
    clock: Clock,
    last_progress: Option<Instant>,
    pending: VecDeque<Result<ReplyEvent, LlmError>>,
    finished: bool,
}

impl<F: WireFormat> Reader<F> {
    async fn next_event(&mut self) -> Option<Result<ReplyEvent, LlmError>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            if self.finished {
                return None;
            }
            self.read_frame().await;
        }
    }

    async fn read_frame(&mut self) {
        let (deadline, timeout_error) = self.clock.deadline(self.last_progress);
        match timeout_at(deadline, self.frames.next()).await {
            Ok(Some(Ok(frame))) => {
                let decoded = self.format.decode(frame);
                if decoded.progress {
                    self.last_progress = Some(Instant::now());
                }
                decoded.events.into_iter().for_each(|e| self.take(e));
            }
            Ok(Some(Err(error))) => self.take(Err(error)),
            Ok(None) => match self.format.end_of_body() {
                Some(done) => self.take(Ok(done)),
                None => self.take(Err(LlmError::Protocol(format!(
                    "the answer ended before {} said it was done",
                    F::SPEAKER
                )))),
            },
            Err(_) => self.take(Err(timeout_error)),
        }
    }

    /// Queues `event`; an error or `Done` ends the answer, and nothing after it is passed on.
    fn take(&mut self, event: Result<ReplyEvent, LlmError>) {
        if self.finished {
            return;
        }
        match &event {
            Ok(ReplyEvent::Delta(_) | ReplyEvent::FellBack { .. }) => {}
            Ok(ReplyEvent::Done(stats)) => {
                debug!(
                    server = F::SPEAKER,
                    eval_count = stats.eval_count,
                    tokens_per_second = stats.tokens_per_second(),
                    "reply done"
                );
                self.finished = true;
            }
            Err(error) => {
                debug!(server = F::SPEAKER, %error, "reply failed");
                self.finished = true;
            }
        }
        self.pending.push_back(event);
    }
}
