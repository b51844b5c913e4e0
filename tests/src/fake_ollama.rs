//! A fake Ollama HTTP server for tests: scripted `/api/chat` streams, `/api/tags`, `/api/ps`,
//! `/api/show`; optionally a simulated Pi behind it ([`FakeOllama::simulate`]).
//!
//! It listens on a real loopback port, answers `/api/chat` with NDJSON the way Ollama does
//! (headers once the model is "loaded", one line per token, a final `done` line with stats),
//! records every chat request and counts the streams a client dropped before their end.
//!
//! ```text
//! let ollama = FakeOllama::start().await;  // knows `gemma2:2b`, echoes by default
//! ollama.push_script(Script::reply("Hello there").with_token_delay(Duration::from_millis(10)));
//! let settings = OllamaSettings { base_url: ollama.url(), ..OllamaSettings::default() };
//! ```

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::stream;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::model_runner::{Evaluation, ModelRunner, RunnerSettings};

/// The model the fake has installed unless told otherwise: the one the bot runs.
pub const DEFAULT_MODEL: &str = "gemma2:2b";
/// What `/api/show` says of gemma2's context unless told otherwise.
const GEMMA2_CONTEXT: u32 = 8192;
/// What the default script puts before the last user message it echoes.
pub const ECHO_PREFIX: &str = "echo: ";
/// The fake generates at this speed as far as its `done` stats say: 100 ms per token.
const EVAL_NANOS_PER_TOKEN: u64 = 100_000_000;
const PROMPT_EVAL_NANOS: u64 = 50_000_000;
const CREATED_AT: &str = "2024-08-07T03:57:33.0365888Z";

/// How the fake answers one `/api/chat` call.
#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    kind: Kind,
    load_delay: Duration,
    token_delay: Duration,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    /// Streams this text, or `ECHO_PREFIX` + the last user message.
    Reply(Option<String>),
    /// Streams `after_tokens` filler tokens, then an `{"error": …}` line, with HTTP 200.
    ErrorMidStream {
        after_tokens: usize,
        message: String,
    },
    /// Streams `after_tokens` filler tokens, then keeps the connection open, silent.
    Stall { after_tokens: usize },
    /// Answers with this status and body, no stream.
    Status { code: u16, body: String },
}

impl Script {
    fn new(kind: Kind) -> Self {
        Self {
            kind,
            load_delay: Duration::ZERO,
            token_delay: Duration::ZERO,
        }
    }

    /// Streams `text`, split into word-sized tokens (each with its leading whitespace).
    pub fn reply(text: impl Into<String>) -> Self {
        Self::new(Kind::Reply(Some(text.into())))
    }

    /// Streams `"echo: "` followed by the request's last user message (the default script).
    pub fn echo() -> Self {
        Self::new(Kind::Reply(None))
    }

    /// Streams `after_tokens` tokens `"word0 word1 …"`, then Ollama's mid-stream error line.
    pub fn error_mid_stream(after_tokens: usize, message: impl Into<String>) -> Self {
        Self::new(Kind::ErrorMidStream {
            after_tokens,
            message: message.into(),
        })
    }

    /// Streams `after_tokens` tokens `"word0 word1 …"`, then sends nothing more, forever.
    pub fn stall(after_tokens: usize) -> Self {
        Self::new(Kind::Stall { after_tokens })
    }

    /// Answers `code` with `body` as is (Ollama's bodies are `{"error":"…"}`).
    pub fn status(code: u16, body: impl Into<String>) -> Self {
        Self::new(Kind::Status {
            code,
            body: body.into(),
        })
    }

    /// Waits this long before the response headers, as Ollama does while it loads the model.
    pub fn with_load_delay(mut self, delay: Duration) -> Self {
        self.load_delay = delay;
        self
    }

    /// Waits this long before each token line, the first one included.
    pub fn with_token_delay(mut self, delay: Duration) -> Self {
        self.token_delay = delay;
        self
    }

    /// The same answer from the fake OpenAI-compatible server: a status's Ollama body
    /// becomes its error text; the load delay, the wait before the first token.
    pub fn for_openai(&self) -> crate::fake_openai::Script {
        use crate::fake_openai::Script as OpenAi;
        let script = match &self.kind {
            Kind::Reply(Some(text)) => OpenAi::reply(text.clone()),
            Kind::Reply(None) => OpenAi::echo(),
            Kind::ErrorMidStream {
                after_tokens,
                message,
            } => OpenAi::error_mid_stream(*after_tokens, message.clone()),
            Kind::Stall { after_tokens } => OpenAi::stall(*after_tokens),
            Kind::Status { code, body } => {
                let message = serde_json::from_str::<Value>(body)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| body.clone());
                OpenAi::status(*code, message)
            }
        };
        script
            .with_token_delay(self.token_delay)
            .with_first_token_delay(self.load_delay)
    }
}

/// A running fake Ollama; stops listening when dropped.
pub struct FakeOllama {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

struct Shared {
    state: Mutex<FakeState>,
    cancelled: watch::Sender<usize>,
}

struct FakeState {
    installed: Vec<String>,
    loaded: Vec<String>,
    scripts: VecDeque<Script>,
    default_script: Script,
    chat_requests: Vec<Value>,
    /// When set, answers take a Pi's time and report its prompt cache.
    runner: Option<ModelRunner>,
    /// `/api/show`'s `<architecture>.context_length`.
    context_length: u32,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, FakeState> {
        // A test that panicked while holding the lock has failed already; go on for the others.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl FakeOllama {
    /// Starts on `127.0.0.1:<free port>` with `gemma2:2b` installed, nothing loaded, no
    /// scripts queued and the echo script as default.
    pub async fn start() -> Self {
        let state = FakeState {
            installed: vec![DEFAULT_MODEL.to_owned()],
            loaded: Vec::new(),
            scripts: VecDeque::new(),
            default_script: Script::echo(),
            chat_requests: Vec::new(),
            runner: None,
            context_length: GEMMA2_CONTEXT,
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            cancelled: watch::Sender::new(0),
        });
        let app = Router::new()
            .route("/", get(|| async { "Ollama is running" }))
            .route("/api/tags", get(tags))
            .route("/api/ps", get(ps))
            .route("/api/chat", post(chat))
            .route("/api/show", post(show))
            .with_state(Arc::clone(&shared));
        let (addr, server) = crate::serve_on_loopback(app, "fake Ollama server").await;
        Self {
            addr,
            shared,
            server,
        }
    }

    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Models `/api/tags` lists; `/api/chat` answers 404 for any other.
    pub fn set_installed_models(&self, names: &[&str]) {
        self.shared.state().installed = names.iter().map(|&n| n.to_owned()).collect();
    }

    /// Models `/api/ps` lists.
    pub fn set_loaded_models(&self, names: &[&str]) {
        self.shared.state().loaded = names.iter().map(|&n| n.to_owned()).collect();
    }

    /// Queues a script for the next `/api/chat` call for an installed model.
    pub fn push_script(&self, script: Script) {
        self.shared.state().scripts.push_back(script);
    }

    /// The script used when the queue is empty.
    pub fn set_default_script(&self, script: Script) {
        self.shared.state().default_script = script;
    }

    /// From now on, answers take the simulated Pi's time, and their `done` lines report
    /// the prompt's tokens as its runner counts them (all of them, cached or not, as
    /// Ollama does) and the time it spent on the uncached ones.
    pub fn simulate(&self, settings: RunnerSettings) {
        self.shared.state().runner = Some(ModelRunner::new(settings));
    }

    /// What each answer cost the simulated runner (empty unless [`Self::simulate`]d).
    pub fn evaluations(&self) -> Vec<Evaluation> {
        let state = self.shared.state();
        state
            .runner
            .as_ref()
            .map(|r| r.evaluations().to_vec())
            .unwrap_or_default()
    }

    /// The context length `/api/show` reports for every model.
    pub fn set_context_length(&self, tokens: u32) {
        self.shared.state().context_length = tokens;
    }

    /// Every `/api/chat` request body so far, oldest first.
    pub fn chat_requests(&self) -> Vec<Value> {
        self.shared.state().chat_requests.clone()
    }

    pub fn chat_count(&self) -> usize {
        self.shared.state().chat_requests.len()
    }

    /// Answer streams whose client went away before their last line.
    pub fn cancelled_streams(&self) -> usize {
        *self.shared.cancelled.borrow()
    }

    /// Waits until at least `count` streams were cancelled; false if not `within` that time.
    pub async fn wait_for_cancelled(&self, count: usize, within: Duration) -> bool {
        let mut cancelled = self.shared.cancelled.subscribe();
        tokio::time::timeout(within, cancelled.wait_for(|&n| n >= count))
            .await
            .is_ok()
    }
}

impl Drop for FakeOllama {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A loopback URL where nothing listens: Ollama down.
pub fn unused_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local address");
    format!("http://{addr}")
}

async fn tags(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let installed = shared.state().installed.clone();
    let models: Vec<Value> = installed.iter().map(|name| model_json(name)).collect();
    Json(json!({ "models": models }))
}

async fn ps(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let loaded = shared.state().loaded.clone();
    let models: Vec<Value> = loaded
        .iter()
        .map(|name| {
            let mut model = model_json(name);
            model["size_vram"] = json!(0);
            model["expires_at"] = json!("2099-01-01T00:00:00Z");
            model
        })
        .collect();
    Json(json!({ "models": models }))
}

fn model_json(name: &str) -> Value {
    json!({
        "name": name,
        "model": name,
        "modified_at": CREATED_AT,
        "size": 1_629_518_495u64,
        "digest": "8ccf136fdd5298f3ffe2d69862750ea7fb56555fa4d5b18c04e3fa4d82ee09d7",
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": "gemma2",
            "families": ["gemma2"],
            "parameter_size": "2.6B",
            "quantization_level": "Q4_0"
        }
    })
}

async fn show(State(shared): State<Arc<Shared>>, Json(request): Json<Value>) -> Response {
    let model = request["model"].as_str().unwrap_or_default();
    let state = shared.state();
    if !state.installed.iter().any(|m| m == model) {
        let body = json!({ "error": format!("model '{model}' not found") });
        return (StatusCode::NOT_FOUND, Json(body)).into_response();
    }
    Json(json!({
        "license": "Gemma Terms of Use …",
        "modelfile": "# Modelfile generated by \"ollama show\" …",
        "parameters": "stop \"<start_of_turn>\"\nstop \"<end_of_turn>\"",
        "template": "{{- range $i, $_ := .Messages }} …",
        "details": model_json(model)["details"],
        "model_info": {
            "general.architecture": "gemma2",
            "general.parameter_count": 2_614_341_888u64,
            "gemma2.context_length": state.context_length,
            "gemma2.embedding_length": 2304,
        },
        "capabilities": ["completion"],
        "modified_at": CREATED_AT,
    }))
    .into_response()
}

async fn chat(State(shared): State<Arc<Shared>>, Json(request): Json<Value>) -> Response {
    let model = request["model"].as_str().unwrap_or_default().to_owned();
    let (mut script, simulated) = {
        let mut state = shared.state();
        state.chat_requests.push(request.clone());
        if !state.installed.contains(&model) {
            let body =
                json!({ "error": format!("model \"{model}\" not found, try pulling it first") });
            return (StatusCode::NOT_FOUND, Json(body)).into_response();
        }
        let script = state
            .scripts
            .pop_front()
            .unwrap_or_else(|| state.default_script.clone());
        let simulated = match (&mut state.runner, &script.kind) {
            (Some(runner), Kind::Reply(text)) => {
                let text = reply_text(text, &request);
                let context = request["options"]["num_ctx"]
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok());
                let evaluation = runner.run(&request["messages"], context, &text);
                Some(Simulated::new(runner, evaluation, &text))
            }
            _ => None,
        };
        (script, simulated)
    };
    let load_delay = script.load_delay;
    if let Some(simulated) = &simulated {
        script.load_delay += simulated.wait_before_first_token;
        script.token_delay = simulated.wait_per_token;
    }
    tokio::time::sleep(script.load_delay).await;
    let lines = match script.kind {
        Kind::Status { code, body } => return status_response(code, body),
        Kind::Reply(text) => {
            let text = reply_text(&text, &request);
            let mut done = done_line(&model, &request, &text, load_delay);
            if let Some(simulated) = simulated {
                simulated.report(&mut done);
            }
            Lines::finished(&model, tokens(&text), done)
        }
        Kind::ErrorMidStream {
            after_tokens,
            message,
        } => Lines::finished(&model, filler(after_tokens), json!({ "error": message })),
        Kind::Stall { after_tokens } => Lines::stalled(&model, filler(after_tokens)),
    };
    let guard = StreamGuard {
        shared,
        finished: false,
    };
    ndjson_response(lines, script.token_delay, guard)
}

fn status_response(code: u16, body: String) -> Response {
    let status = StatusCode::from_u16(code).expect("a valid HTTP status in Script::status");
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body,
    )
        .into_response()
}

/// The lines of one answer: tokens, then a last line unless the answer stalls.
struct Lines {
    tokens: VecDeque<String>,
    last: Option<String>,
}

impl Lines {
    fn finished(model: &str, tokens: Vec<String>, last: Value) -> Self {
        Self {
            tokens: token_lines(model, tokens),
            last: Some(format!("{last}\n")),
        }
    }

    fn stalled(model: &str, tokens: Vec<String>) -> Self {
        Self {
            tokens: token_lines(model, tokens),
            last: None,
        }
    }
}

fn token_lines(model: &str, tokens: Vec<String>) -> VecDeque<String> {
    let line = |token| {
        let message = json!({ "role": "assistant", "content": token });
        format!(
            "{}\n",
            json!({ "model": model, "created_at": CREATED_AT, "message": message, "done": false })
        )
    };
    tokens.into_iter().map(line).collect()
}

/// Counts the stream as cancelled if the server drops it (client gone) before its end.
struct StreamGuard {
    shared: Arc<Shared>,
    finished: bool,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.shared.cancelled.send_modify(|n| *n += 1);
        }
    }
}

fn ndjson_response(lines: Lines, token_delay: Duration, guard: StreamGuard) -> Response {
    let chunks = stream::unfold((lines, guard), move |(mut lines, mut guard)| async move {
        if let Some(token) = lines.tokens.pop_front() {
            tokio::time::sleep(token_delay).await;
            return Some((Ok::<_, Infallible>(token), (lines, guard)));
        }
        match lines.last.take() {
            Some(last) => {
                // Marked before the client can see it: a client that stops reading after the
                // last line is not cancelling anything.
                guard.finished = true;
                Some((Ok(last), (lines, guard)))
            }
            None if guard.finished => None,
            None => std::future::pending().await,
        }
    });
    let content_type = [(header::CONTENT_TYPE, "application/x-ndjson")];
    (content_type, Body::from_stream(chunks)).into_response()
}

/// The scripted text, or the echo of the request's last user message.
fn reply_text(text: &Option<String>, request: &Value) -> String {
    text.clone()
        .unwrap_or_else(|| format!("{ECHO_PREFIX}{}", last_user_message(request)))
}

/// One answer of the simulated runner: what it waits and what its `done` line says.
struct Simulated {
    evaluation: Evaluation,
    wait_before_first_token: Duration,
    wait_per_token: Duration,
    prompt_time: Duration,
    generation_time: Duration,
}

impl Simulated {
    fn new(runner: &ModelRunner, evaluation: Evaluation, text: &str) -> Self {
        let prompt_time = runner.prompt_time(&evaluation);
        let generation_time = runner.generation_time(evaluation.answer_tokens);
        let words = tokens(text).len().max(1) as u32;
        Self {
            wait_before_first_token: runner.scaled(prompt_time),
            wait_per_token: runner.scaled(generation_time) / words,
            prompt_time,
            generation_time,
            evaluation,
        }
    }

    /// Ollama's figures: every prompt token counted, the time spent on the uncached ones.
    fn report(&self, done: &mut Value) {
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        done["prompt_eval_count"] = json!(self.evaluation.prompt_tokens);
        done["prompt_eval_duration"] = json!(nanos(self.prompt_time));
        done["eval_count"] = json!(self.evaluation.answer_tokens);
        done["eval_duration"] = json!(nanos(self.generation_time));
        done["total_duration"] = json!(nanos(self.prompt_time + self.generation_time));
    }
}

fn done_line(model: &str, request: &Value, text: &str, load_delay: Duration) -> Value {
    let eval_count = tokens(text).len() as u64;
    let eval_duration = eval_count * EVAL_NANOS_PER_TOKEN;
    let load_duration = u64::try_from(load_delay.as_nanos()).unwrap_or(u64::MAX);
    json!({
        "model": model,
        "created_at": CREATED_AT,
        "message": { "role": "assistant", "content": "" },
        "done_reason": "stop",
        "done": true,
        "total_duration": load_duration + PROMPT_EVAL_NANOS + eval_duration,
        "load_duration": load_duration,
        "prompt_eval_count": prompt_words(request),
        "prompt_eval_duration": PROMPT_EVAL_NANOS,
        "eval_count": eval_count,
        "eval_duration": eval_duration,
    })
}

fn messages(request: &Value) -> impl Iterator<Item = &Value> {
    request["messages"].as_array().into_iter().flatten()
}

fn last_user_message(request: &Value) -> &str {
    let last = messages(request).filter(|m| m["role"] == "user").last();
    last.and_then(|m| m["content"].as_str()).unwrap_or_default()
}

/// Stands in for the prompt's token count.
fn prompt_words(request: &Value) -> usize {
    messages(request)
        .filter_map(|m| m["content"].as_str())
        .map(|c| c.split_whitespace().count())
        .sum()
}

/// `"word0 word1 …"` as `after_tokens` tokens.
fn filler(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            if i == 0 {
                "word0".to_owned()
            } else {
                format!(" word{i}")
            }
        })
        .collect()
}

/// Splits text into word-sized tokens, each with the whitespace before it; they join back to
/// the text.
pub fn tokens(text: &str) -> Vec<String> {
    let mut tokens: Vec<String> = Vec::new();
    let mut previous_was_space = true;
    for c in text.chars() {
        let starts_token = c.is_whitespace() && !previous_was_space;
        match tokens.last_mut() {
            Some(token) if !starts_token => token.push(c),
            _ => tokens.push(c.to_string()),
        }
        previous_was_space = c.is_whitespace();
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_join_back_to_the_text() {
        for text in [
            "Hello there, Pi 👋",
            "  two  spaces\nand a line ",
            "",
            "one",
        ] {
            assert_eq!(tokens(text).concat(), text);
        }
        assert_eq!(tokens("Hello there, Pi"), ["Hello", " there,", " Pi"]);
        assert_eq!(filler(3).concat(), "word0 word1 word2");
    }
}
