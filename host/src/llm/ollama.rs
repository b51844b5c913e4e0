//! Ollama over HTTP: `/api/chat` streamed as NDJSON, `/api/tags` and `/api/ps`.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::{self, Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::time::{Instant, timeout, timeout_at};
use tracing::debug;

use super::{
    GenerationStats, LlmBackend, LlmError, ModelInfo, ReplyEvent, ReplyStream, RunningModel,
};
use crate::prompt::{ChatMessage, GenerationOptions, Prompt};

/// Longest server error text passed on to the user.
const MAX_ERROR_CHARS: usize = 200;

/// Where Ollama is and how long to wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OllamaSettings {
    pub base_url: String,
    /// How long Ollama keeps the model loaded after a request (`"30m"`); `None`: its default.
    pub keep_alive: Option<String>,
    pub connect_timeout: Duration,
    /// Until the first line of the answer, model loading included.
    pub first_token_timeout: Duration,
    /// Between two chunks of the answer once it has started.
    pub idle_timeout: Duration,
    /// For the whole answer.
    pub total_timeout: Duration,
}

impl Default for OllamaSettings {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:11434".to_owned(),
            keep_alive: None,
            connect_timeout: Duration::from_secs(5),
            // A cold load of the model from a Pi's SD card or USB disk can take a minute.
            first_token_timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(30),
            total_timeout: Duration::from_secs(600),
        }
    }
}

/// An [`LlmBackend`] talking to an Ollama server.
#[derive(Debug, Clone)]
pub struct OllamaClient {
    http: reqwest::Client,
    settings: OllamaSettings,
}

impl OllamaClient {
    pub fn new(mut settings: OllamaSettings) -> Result<Self, reqwest::Error> {
        settings.base_url = settings.base_url.trim_end_matches('/').to_owned();
        let http = reqwest::Client::builder()
            // Ollama is local: a proxy from the environment would only get in the way.
            .no_proxy()
            .connect_timeout(settings.connect_timeout)
            .build()?;
        Ok(Self { http, settings })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.settings.base_url)
    }

    async fn start_chat(
        &self,
        request: reqwest::RequestBuilder,
        model: String,
    ) -> Result<ReplyStream, LlmError> {
        let clock = Clock::start(&self.settings);
        // Ollama loads the model before it answers, so the headers count as the first token.
        let (deadline, timeout_error) = clock.deadline(None);
        let answer = async {
            let response = request.send().await.map_err(|e| self.transport_error(&e))?;
            ensure_success(response, Some(&model)).await
        };
        let response = timeout_at(deadline, answer)
            .await
            .map_err(|_| timeout_error)??;
        let body = response
            .bytes_stream()
            .map(|chunk| chunk.map_err(|e| LlmError::Interrupted(root_cause(&e))));
        Ok(ReplyReader::new(Box::pin(body), clock).into_stream())
    }

    /// GETs a small JSON document, within `idle_timeout`.
    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, LlmError> {
        let load = async {
            let response = self.http.get(self.url(path)).send().await;
            let response =
                ensure_success(response.map_err(|e| self.transport_error(&e))?, None).await?;
            let body = response
                .bytes()
                .await
                .map_err(|e| LlmError::Interrupted(root_cause(&e)))?;
            serde_json::from_slice(&body).map_err(|e| LlmError::Protocol(format!("{path}: {e}")))
        };
        let idle = self.settings.idle_timeout;
        timeout(idle, load)
            .await
            .map_err(|_| LlmError::Stalled(idle))?
    }

    fn transport_error(&self, error: &reqwest::Error) -> LlmError {
        if error.is_connect() {
            LlmError::Unreachable {
                url: self.settings.base_url.clone(),
            }
        } else {
            LlmError::Interrupted(root_cause(error))
        }
    }
}

impl LlmBackend for OllamaClient {
    fn chat(&self, prompt: &Prompt) -> BoxFuture<'_, Result<ReplyStream, LlmError>> {
        let body = ChatRequest::new(prompt, self.settings.keep_alive.as_deref());
        debug!(model = %prompt.model, messages = prompt.messages.len(), "ollama: chat request");
        let request = self.http.post(self.url("/api/chat")).json(&body);
        Box::pin(self.start_chat(request, prompt.model.clone()))
    }

    fn list_models(&self) -> BoxFuture<'_, Result<Vec<ModelInfo>, LlmError>> {
        Box::pin(async {
            let list: ModelList = self.get_json("/api/tags").await?;
            Ok(list.models.into_iter().map(WireModel::into_info).collect())
        })
    }

    fn running_models(&self) -> BoxFuture<'_, Result<Vec<RunningModel>, LlmError>> {
        Box::pin(async {
            let list: ModelList = self.get_json("/api/ps").await?;
            Ok(list
                .models
                .into_iter()
                .map(WireModel::into_running)
                .collect())
        })
    }

    fn check_model<'a>(&'a self, model: &'a str) -> BoxFuture<'a, Result<(), LlmError>> {
        Box::pin(async move {
            let installed = self.list_models().await?;
            if installed.iter().any(|m| same_model(&m.name, model)) {
                Ok(())
            } else {
                Err(LlmError::ModelNotFound {
                    model: model.to_owned(),
                })
            }
        })
    }
}

/// Whether two model names are the same model: Ollama names an untagged model `name:latest`.
fn same_model(a: &str, b: &str) -> bool {
    fn tagged(name: &str) -> String {
        // Only the last path segment can carry the tag: a registry host may have a `:port`.
        let last_segment = name.rsplit('/').next().unwrap_or(name);
        if last_segment.contains(':') {
            name.to_owned()
        } else {
            format!("{name}:latest")
        }
    }
    tagged(a) == tagged(b)
}

/// Turns a non-2xx answer into the error that says what to do about it.
async fn ensure_success(
    response: reqwest::Response,
    model: Option<&str>,
) -> Result<reqwest::Response, LlmError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    let reason = status.canonical_reason().unwrap_or("no details");
    Err(status_error(status.as_u16(), &body, reason, model))
}

fn status_error(status: u16, body: &str, reason: &str, model: Option<&str>) -> LlmError {
    let message = error_text(body).unwrap_or_else(|| reason.to_owned());
    match (status, model) {
        // Ollama: `{"error":"model \"x\" not found, try pulling it first"}`.
        (404, Some(model)) if message.contains("not found") => LlmError::ModelNotFound {
            model: model.to_owned(),
        },
        // Ollama's request queue is full (OLLAMA_MAX_QUEUE).
        (503, _) => LlmError::Busy,
        _ => LlmError::Http { status, message },
    }
}

/// The `error` field of an Ollama error body, else the body itself; shortened; `None` if empty.
fn error_text(body: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: String,
    }
    let text = serde_json::from_str::<ErrorBody>(body)
        .map_or_else(|_| body.trim().to_owned(), |b| b.error);
    (!text.is_empty()).then(|| shorten(&text))
}

fn shorten(text: &str) -> String {
    match text.char_indices().nth(MAX_ERROR_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// The innermost cause: reqwest's own message ("error sending request for url …") says little.
fn root_cause(error: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// The `/api/chat` request body.
#[derive(Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: &'a [ChatMessage],
    stream: bool,
    options: WireOptions<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keep_alive: Option<&'a str>,
}

impl<'a> ChatRequest<'a> {
    fn new(prompt: &'a Prompt, keep_alive: Option<&'a str>) -> Self {
        Self {
            model: &prompt.model,
            messages: &prompt.messages,
            stream: true,
            options: WireOptions::from(&prompt.options),
            keep_alive,
        }
    }
}

/// Generation options as Ollama reads them: unset ones are left out, so the model's own
/// defaults (from its Modelfile) apply.
#[derive(Serialize)]
struct WireOptions<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    num_predict: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    num_ctx: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
}

impl<'a> From<&'a GenerationOptions> for WireOptions<'a> {
    fn from(o: &'a GenerationOptions) -> Self {
        Self {
            temperature: o.temperature,
            top_p: o.top_p,
            top_k: o.top_k,
            num_predict: o.num_predict,
            num_ctx: o.num_ctx,
            seed: o.seed,
            stop: &o.stop,
        }
    }
}

/// `/api/tags` and `/api/ps` answers; only the fields the bot shows.
#[derive(Deserialize)]
struct ModelList {
    #[serde(default)]
    models: Vec<WireModel>,
}

#[derive(Deserialize)]
struct WireModel {
    name: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    details: WireDetails,
    #[serde(default)]
    expires_at: Option<String>,
}

#[derive(Deserialize, Default)]
struct WireDetails {
    parameter_size: Option<String>,
    quantization_level: Option<String>,
}

impl WireModel {
    fn into_info(self) -> ModelInfo {
        ModelInfo {
            name: self.name,
            size_bytes: self.size,
            parameter_size: self.details.parameter_size,
            quantization_level: self.details.quantization_level,
        }
    }

    fn into_running(self) -> RunningModel {
        RunningModel {
            name: self.name,
            size_bytes: self.size,
            expires_at: self.expires_at,
        }
    }
}

/// One NDJSON line of a streamed `/api/chat` answer.
#[derive(Deserialize)]
struct ChatLine {
    #[serde(default)]
    message: Option<LineMessage>,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    eval_count: u64,
    #[serde(default)]
    eval_duration: u64,
    #[serde(default)]
    prompt_eval_count: u64,
    #[serde(default)]
    prompt_eval_duration: u64,
    #[serde(default)]
    load_duration: u64,
    #[serde(default)]
    total_duration: u64,
}

#[derive(Deserialize)]
struct LineMessage {
    #[serde(default)]
    content: String,
}

impl ChatLine {
    /// The line's events, in order; the last one ends the answer if `done` or an error.
    fn into_events(self) -> Vec<Result<ReplyEvent, LlmError>> {
        if let Some(error) = self.error {
            return vec![Err(LlmError::Generation(shorten(&error)))];
        }
        let stats = self.done.then(|| self.stats());
        let delta = self.message.map(|m| m.content).filter(|c| !c.is_empty());
        let delta = delta.map(|text| Ok(ReplyEvent::Delta(text)));
        delta
            .into_iter()
            .chain(stats.map(|s| Ok(ReplyEvent::Done(s))))
            .collect()
    }

    fn stats(&self) -> GenerationStats {
        GenerationStats {
            eval_count: self.eval_count,
            eval_duration: Duration::from_nanos(self.eval_duration),
            prompt_eval_count: self.prompt_eval_count,
            prompt_eval_duration: Duration::from_nanos(self.prompt_eval_duration),
            load_duration: Duration::from_nanos(self.load_duration),
            total_duration: Duration::from_nanos(self.total_duration),
        }
    }
}

/// Deadlines of one answer.
struct Clock {
    first_token_at: Instant,
    total_at: Instant,
    settings: OllamaSettings,
}

impl Clock {
    fn start(settings: &OllamaSettings) -> Self {
        let now = Instant::now();
        Self {
            first_token_at: now + settings.first_token_timeout,
            total_at: now + settings.total_timeout,
            settings: settings.clone(),
        }
    }

    /// When the next chunk must have arrived, given when the last one did, and the error
    /// if it has not.
    fn deadline(&self, last_chunk: Option<Instant>) -> (Instant, LlmError) {
        let s = &self.settings;
        let (at, error) = match last_chunk {
            None => (
                self.first_token_at,
                LlmError::FirstTokenTimeout(s.first_token_timeout),
            ),
            Some(last) => (last + s.idle_timeout, LlmError::Stalled(s.idle_timeout)),
        };
        if self.total_at <= at {
            (self.total_at, LlmError::TotalTimeout(s.total_timeout))
        } else {
            (at, error)
        }
    }
}

/// Turns a body's chunks into reply events, enforcing the clock's deadlines.
struct ReplyReader<S> {
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
    fn new(body: S, clock: Clock) -> Self {
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

    fn into_stream(self) -> ReplyStream {
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
                Ok(ReplyEvent::Delta(_)) => {}
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
    use super::*;
    use crate::prompt::Role;

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
        };
        vec![
            Ok(ReplyEvent::Delta("Grüß".into())),
            Ok(ReplyEvent::Delta(" dich 👋".into())),
            Ok(ReplyEvent::Done(stats)),
        ]
    }

    async fn events_of(chunks: Vec<Vec<u8>>) -> Vec<Result<ReplyEvent, LlmError>> {
        let body = stream::iter(chunks.into_iter().map(Ok));
        let reader = ReplyReader::new(body, Clock::start(&OllamaSettings::default()));
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

    #[test]
    fn statuses_map_to_errors_that_say_what_to_do() {
        let missing = r#"{"error":"model \"gemma2:2b\" not found, try pulling it first"}"#;
        let model = Some("gemma2:2b");
        assert_eq!(
            status_error(404, missing, "Not Found", model),
            LlmError::ModelNotFound {
                model: "gemma2:2b".into()
            }
        );
        let other_404 = status_error(404, "", "Not Found", model);
        assert_eq!(
            other_404,
            LlmError::Http {
                status: 404,
                message: "Not Found".into()
            }
        );
        assert_eq!(
            status_error(503, "{\"error\":\"server busy\"}", "", model),
            LlmError::Busy
        );
        let crashed = status_error(
            500,
            "{\"error\":\"llama runner process has terminated\"}",
            "",
            None,
        );
        let message = "llama runner process has terminated".to_owned();
        assert_eq!(
            crashed,
            LlmError::Http {
                status: 500,
                message
            }
        );
    }

    #[test]
    fn long_error_bodies_are_shortened() {
        let long = "x".repeat(1000);
        let LlmError::Http { message, .. } = status_error(502, &long, "", None) else {
            panic!()
        };
        assert_eq!(message.chars().count(), MAX_ERROR_CHARS + 1);
    }

    #[test]
    fn untagged_names_mean_latest() {
        assert!(same_model("gemma2:2b", "gemma2:2b"));
        assert!(same_model("llama3.2:latest", "llama3.2"));
        assert!(!same_model("gemma2:2b", "gemma2"));
        assert!(same_model("host:5000/ns/m", "host:5000/ns/m:latest"));
    }

    #[test]
    fn request_body_leaves_unset_options_out() {
        let prompt = Prompt {
            model: "gemma2:2b".into(),
            messages: vec![ChatMessage::new(Role::User, "hi")],
            options: GenerationOptions {
                num_ctx: Some(2048),
                ..GenerationOptions::default()
            },
        };
        let body = serde_json::to_value(ChatRequest::new(&prompt, None)).unwrap();
        let expected = serde_json::json!({
            "model": "gemma2:2b",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": true,
            "options": {"num_ctx": 2048},
        });
        assert_eq!(body, expected);
    }
}
