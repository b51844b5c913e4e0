//! A fake OpenAI-compatible server for tests, as llama.cpp's `llama-server` and vLLM serve it under `/v1`.
//!
//! It listens on a real loopback port, checks the API key, lists models at `/v1/models` and
//! answers `/v1/chat/completions` with a server-sent-event stream byte for byte the way those
//! servers do: `: keep-alive` comments, a role chunk with `null` content, one chunk per token,
//! a `finish_reason` chunk, an optional usage chunk and `data: [DONE]`. It records every chat
//! request, counts the streams a client dropped before their end, and can go down (connections
//! refused) and come back on the same port.
//!
//! ```text
//! let gpu = FakeOpenAi::start(Some("sk-test")).await;  // knows `qwen2.5-7b-instruct`
//! gpu.push_script(Script::reply("Hello there").with_token_delay(Duration::from_millis(5)));
//! let settings = OpenAiSettings { base_url: gpu.url(), api_key: Some("sk-test".into()), .. };
//! gpu.go_down().await;   // the GPU box reboots …
//! gpu.come_back().await; // … and is back at the same URL, scripts and records kept
//! ```

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::stream;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::fake_ollama::{ECHO_PREFIX, tokens};
use crate::model_runner::{Evaluation, ModelRunner, RunnerSettings};

/// The model the fake serves unless told otherwise.
pub const DEFAULT_MODEL: &str = "qwen2.5-7b-instruct";
/// What the default script streams.
pub const DEFAULT_REPLY: &str = "Hello from the GPU box";
/// The `usage.prompt_tokens` every usage chunk reports.
pub const PROMPT_TOKENS: usize = 12;
/// The `created` timestamp of every model and chunk.
const CREATED: u64 = 1_733_000_000;
/// The comment both servers send to keep idle proxies from closing the stream.
const KEEP_ALIVE: &str = ": keep-alive\n\n";
/// A keep-alive comment follows every this many token chunks.
const KEEP_ALIVE_EVERY: usize = 3;
const DEFAULT_TOKEN_DELAY: Duration = Duration::from_millis(10);
/// How long `come_back` retries binding its old port.
const REBIND_FOR: Duration = Duration::from_secs(2);

/// How the fake answers one `/v1/chat/completions` call.
#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    kind: Kind,
    token_delay: Duration,
    first_token_delay: Duration,
    retry_after: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    /// Streams this text, or the last user message, ending with this `finish_reason`.
    Reply {
        text: Option<String>,
        finish_reason: &'static str,
    },
    /// Streams `after_tokens` filler tokens, then vLLM's mid-stream error event, no `[DONE]`.
    ErrorMidStream {
        after_tokens: usize,
        message: String,
    },
    /// Streams `after_tokens` filler tokens, then keeps the connection open, silent.
    Stall { after_tokens: usize },
    /// Answers with this status and an OpenAI error body, no stream.
    Status { code: u16, message: String },
}

impl Script {
    fn new(kind: Kind) -> Self {
        Self {
            kind,
            token_delay: DEFAULT_TOKEN_DELAY,
            first_token_delay: Duration::ZERO,
            retry_after: None,
        }
    }

    /// Streams `text`, split into word-sized tokens, and finishes with `"stop"`.
    pub fn reply(text: impl Into<String>) -> Self {
        Self::new(Kind::Reply {
            text: Some(text.into()),
            finish_reason: "stop",
        })
    }

    /// Streams `"echo: "` and the text of the request's last user message, as the fake
    /// Ollama does, and finishes with `"stop"`.
    pub fn echo() -> Self {
        Self::new(Kind::Reply {
            text: None,
            finish_reason: "stop",
        })
    }

    /// Streams `text` like [`Script::reply`] but finishes with `"length"`: `max_tokens` hit.
    pub fn cut_off(text: impl Into<String>) -> Self {
        Self::new(Kind::Reply {
            text: Some(text.into()),
            finish_reason: "length",
        })
    }

    /// Streams `after_tokens` tokens `"word0 word1 …"`, then
    /// `data: {"error":{"message":…,"type":"InternalServerError","param":null,"code":500}}` as
    /// vLLM does when generation fails, and ends the body without `[DONE]`.
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

    /// Answers `code` with `{"error":{"message":…,"type":"server_error","param":null,"code":null}}`.
    pub fn status(code: u16, message: impl Into<String>) -> Self {
        Self::new(Kind::Status {
            code,
            message: message.into(),
        })
    }

    /// Adds `Retry-After: <secs>` to a [`Script::status`] answer (as for 429 and 503); the
    /// streaming scripts ignore it.
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// Waits this long before each token chunk, the first one included (default 10 ms).
    pub fn with_token_delay(mut self, delay: Duration) -> Self {
        self.token_delay = delay;
        self
    }

    /// Waits this long after the first keep-alive, before the role chunk (default none): the
    /// prompt being processed.
    pub fn with_first_token_delay(mut self, delay: Duration) -> Self {
        self.first_token_delay = delay;
        self
    }
}

/// A running fake OpenAI-compatible server; stops listening when dropped.
pub struct FakeOpenAi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    app: Router,
    /// `None` while down; replaced by `come_back`.
    server: Mutex<Option<Serving>>,
}

/// One spell of serving: the accept loop and the signal that ends it.
struct Serving {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

struct Shared {
    api_key: Option<String>,
    state: Mutex<FakeState>,
    cancelled: watch::Sender<usize>,
}

struct FakeState {
    models: Vec<String>,
    scripts: VecDeque<Script>,
    default_script: Script,
    chat_requests: Vec<Value>,
    /// When set, the server is a simulated llama-server on a Pi: `/props`, its prompt cache
    /// in `usage` and `timings`, its context enforced.
    runner: Option<ModelRunner>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, FakeState> {
        // A test that panicked while holding the lock has failed already; go on for the others.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl FakeOpenAi {
    /// Starts on `127.0.0.1:<free port>` serving `qwen2.5-7b-instruct`, with no scripts
    /// queued and `Script::reply("Hello from the GPU box")` as default. With `api_key`, every
    /// request must carry `Authorization: Bearer <api_key>` or gets a 401.
    pub async fn start(api_key: Option<&str>) -> Self {
        let state = FakeState {
            models: vec![DEFAULT_MODEL.to_owned()],
            scripts: VecDeque::new(),
            default_script: Script::reply(DEFAULT_REPLY),
            chat_requests: Vec::new(),
            runner: None,
        };
        let shared = Arc::new(Shared {
            api_key: api_key.map(str::to_owned),
            state: Mutex::new(state),
            cancelled: watch::Sender::new(0),
        });
        let app = Router::new()
            .route("/v1/models", get(models))
            .route("/v1/chat/completions", post(chat))
            .route("/props", get(props))
            // On every path, unknown ones included, as vLLM checks the key.
            .layer(middleware::from_fn_with_state(
                Arc::clone(&shared),
                check_key,
            ))
            .with_state(Arc::clone(&shared));
        // Not `crate::serve_on_loopback`: `axum::serve` keeps serving open connections after
        // its task is aborted, and a server that went down must drop those too.
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local address");
        let server = Serving::spawn(listener, app.clone());
        Self {
            addr,
            shared,
            app,
            server: Mutex::new(Some(server)),
        }
    }

    /// Base URL with the API prefix, e.g. `http://127.0.0.1:41234/v1` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Models `/v1/models` lists; chat calls for any other get a 404 `model_not_found`.
    pub fn set_models(&self, names: &[&str]) {
        self.shared.state().models = names.iter().map(|&n| n.to_owned()).collect();
    }

    /// Queues a script for the next streaming chat call for a known model.
    /// From now on the server behaves as llama-server on a Pi with `settings`: answers take
    /// its time, report its prompt cache (`usage.prompt_tokens_details.cached_tokens`,
    /// `timings`), `/props` says its context per slot, and a prompt that does not fit is
    /// refused as llama-server refuses it.
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

    pub fn push_script(&self, script: Script) {
        self.shared.state().scripts.push_back(script);
    }

    /// The script used when the queue is empty.
    pub fn set_default_script(&self, script: Script) {
        self.shared.state().default_script = script;
    }

    /// Every `/v1/chat/completions` request body that was JSON, oldest first, refused ones
    /// included.
    pub fn chat_requests(&self) -> Vec<Value> {
        self.shared.state().chat_requests.clone()
    }

    /// How many chat requests [`FakeOpenAi::chat_requests`] holds.
    pub fn chat_count(&self) -> usize {
        self.shared.state().chat_requests.len()
    }

    /// Answer streams whose client went away (or that `go_down` cut) before their last event.
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

    /// Stops serving: closes the listening socket, so new connections are refused, and every
    /// open connection, streams included. Does nothing if already down.
    pub async fn go_down(&self) {
        let serving = self.serving().take();
        if let Some(serving) = serving {
            // Dropping the sender ends the loop just as well; sending makes the intent plain.
            let _ = serving.stop.send(());
            // Once the task has ended, the listener and every connection are closed.
            let _ = serving.task.await;
        }
    }

    /// Serves again on the same port with the same models, scripts and records, retrying the
    /// bind for up to 2 s while the port is busy. Does nothing if already up.
    pub async fn come_back(&self) {
        if self.serving().is_some() {
            return;
        }
        let deadline = Instant::now() + REBIND_FOR;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("fake OpenAI server: binding {} again: {e}", self.addr),
            }
        };
        *self.serving() = Some(Serving::spawn(listener, self.app.clone()));
    }

    fn serving(&self) -> MutexGuard<'_, Option<Serving>> {
        self.server.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for FakeOpenAi {
    fn drop(&mut self) {
        if let Some(serving) = self.serving().take() {
            // Aborting the accept loop drops its JoinSet, which aborts every open connection.
            serving.task.abort();
        }
    }
}

impl Serving {
    fn spawn(listener: TcpListener, app: Router) -> Self {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(serve(listener, app, stopped));
        Self { stop, task }
    }
}

/// Serves `app` on `listener` until `stop` fires or its sender is dropped, then closes the
/// listener and every connection, and returns once they are all gone.
async fn serve(listener: TcpListener, app: Router, mut stop: oneshot::Receiver<()>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    continue;
                };
                while connections.try_join_next().is_some() {}
                let service = TowerToHyperService::new(app.clone());
                connections.spawn(async move {
                    // An error here is a client gone mid-answer: nothing for the test to see.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            _ = &mut stop => break,
        }
    }
    drop(listener);
    connections.shutdown().await;
}

async fn check_key(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    if let Some(key) = &shared.api_key {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok());
        if given != Some(format!("Bearer {key}").as_str()) {
            let body = error_json(
                "Incorrect API key provided.",
                "invalid_request_error",
                None,
                "\"invalid_api_key\"",
            );
            return error_response(401, body);
        }
    }
    next.run(request).await
}

async fn models(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let names = shared.state().models.clone();
    let data: Vec<Value> = names
        .iter()
        .map(
            |id| json!({ "id": id, "object": "model", "created": CREATED, "owned_by": "llamacpp" }),
        )
        .collect();
    Json(json!({ "object": "list", "data": data }))
}

/// llama-server's `/props`, as far as a client reads it; 404 unless simulating one (vLLM and
/// others have no such path).
async fn props(State(shared): State<Arc<Shared>>) -> Response {
    let state = shared.state();
    let Some(runner) = &state.runner else {
        return error_response(
            404,
            error_json("File Not Found", "not_found_error", None, "404"),
        );
    };
    Json(json!({
        "default_generation_settings": {"id": 0, "n_ctx": runner.settings.context, "speculative": false, "is_processing": false},
        "total_slots": runner.settings.slots,
        "model_path": "/models/gemma-2-2b-it-Q4_0.gguf",
        "chat_template": "{{ bos_token }}{% for message in messages %}…",
        "build_info": "b6000-fake",
    }))
    .into_response()
}

async fn chat(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        let body = error_json(
            "The request body is not valid JSON.",
            "invalid_request_error",
            None,
            "null",
        );
        return error_response(400, body);
    };
    let model = request["model"].as_str().unwrap_or_default().to_owned();
    let (script, number, simulated) = {
        let mut state = shared.state();
        state.chat_requests.push(request.clone());
        if !state.models.contains(&model) {
            let message = format!("The model `{model}` does not exist.");
            let body = error_json(
                &message,
                "invalid_request_error",
                Some("model"),
                "\"model_not_found\"",
            );
            return error_response(404, body);
        }
        // The bot always streams; a plain JSON answer here would only hide a client bug.
        if request["stream"] != true {
            let body = error_json(
                "The fake OpenAI server only streams: set \"stream\": true.",
                "invalid_request_error",
                Some("stream"),
                "null",
            );
            return error_response(400, body);
        }
        let mut script = state
            .scripts
            .pop_front()
            .unwrap_or_else(|| state.default_script.clone());
        let number = state.chat_requests.len();
        let simulated = match (&mut state.runner, &script.kind) {
            (Some(runner), Kind::Reply { text, .. }) => {
                let text = reply_text(text, &request);
                let evaluation = runner.run(&request["messages"], None, &text);
                if evaluation.prompt_tokens > u64::from(evaluation.context) {
                    return exceeds_context(&evaluation);
                }
                let prompt_time = runner.prompt_time(&evaluation);
                let generation_time = runner.generation_time(evaluation.answer_tokens);
                let words = tokens(&text).len().max(1) as u32;
                script.first_token_delay += runner.scaled(prompt_time);
                script.token_delay = runner.scaled(generation_time) / words;
                Some((evaluation, prompt_time, generation_time))
            }
            _ => None,
        };
        (script, number, simulated)
    };
    let answer = Answer {
        id: format!("chatcmpl-{number}"),
        model,
    };
    let mut events = Events::new(&script);
    let stall = matches!(script.kind, Kind::Stall { .. });
    match script.kind {
        Kind::Status { code, message } => {
            let body = error_json(&message, "server_error", None, "null");
            let mut response = error_response(code, body);
            if let Some(secs) = script.retry_after {
                let retry_after = HeaderValue::from(secs);
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, retry_after);
            }
            return response;
        }
        Kind::Reply {
            text,
            finish_reason,
        } => {
            let text = reply_text(&text, &request);
            let tokens = tokens(&text);
            let count = tokens.len();
            events.tokens(&answer, tokens);
            let finish_reason = format!("\"{finish_reason}\"");
            events.push(answer.chunk(&choice("{}", &finish_reason)));
            if request["stream_options"]["include_usage"] == true {
                let usage = match &simulated {
                    None => format!(
                        "\"choices\":[],\"usage\":{{\"prompt_tokens\":{PROMPT_TOKENS},\
                         \"completion_tokens\":{count},\"total_tokens\":{}}}",
                        PROMPT_TOKENS + count
                    ),
                    Some((evaluation, prompt_time, generation_time)) => {
                        llama_server_usage(evaluation, *prompt_time, *generation_time)
                    }
                };
                events.push(answer.chunk(&usage));
            }
            events.push("data: [DONE]\n\n".to_owned());
        }
        Kind::ErrorMidStream {
            after_tokens,
            message,
        } => {
            events.tokens(&answer, filler(after_tokens));
            events.push(format!(
                "data: {}\n\n",
                error_json(&message, "InternalServerError", None, "500")
            ));
        }
        Kind::Stall { after_tokens } => events.tokens(&answer, filler(after_tokens)),
    }
    let guard = StreamGuard {
        shared,
        finished: false,
    };
    sse_response(events.queue, guard, stall)
}

/// The scripted text, or the echo of the request's last user message.
fn reply_text(text: &Option<String>, request: &Value) -> String {
    text.clone()
        .unwrap_or_else(|| format!("{ECHO_PREFIX}{}", last_user_message(request)))
}

/// llama-server's last chunk's `usage` (with the cached prompt tokens) and `timings`.
fn llama_server_usage(evaluation: &Evaluation, prompt: Duration, generation: Duration) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let usage = json!({
        "completion_tokens": evaluation.answer_tokens,
        "prompt_tokens": evaluation.prompt_tokens,
        "total_tokens": evaluation.prompt_tokens + evaluation.answer_tokens,
        "prompt_tokens_details": {"cached_tokens": evaluation.cached_tokens},
    });
    let timings = json!({
        "cache_n": evaluation.cached_tokens,
        "prompt_n": evaluation.evaluated_tokens(),
        "prompt_ms": ms(prompt),
        "predicted_n": evaluation.answer_tokens,
        "predicted_ms": ms(generation),
    });
    format!("\"choices\":[],\"usage\":{usage},\"timings\":{timings}")
}

/// llama-server's answer to a prompt longer than its context per slot.
fn exceeds_context(evaluation: &Evaluation) -> Response {
    let body = json!({"error": {
        "code": 400,
        "message": "the request exceeds the available context size, try increasing it",
        "type": "exceed_context_size_error",
        "n_prompt_tokens": evaluation.prompt_tokens,
        "n_ctx": evaluation.context,
    }});
    error_response(400, body.to_string())
}

/// What every chunk of one answer repeats.
struct Answer {
    id: String,
    model: String,
}

impl Answer {
    /// One `data:` event: the chunk's common fields followed by `tail` (its `choices`, and
    /// `usage` if any), keys in the order the servers write them.
    fn chunk(&self, tail: &str) -> String {
        format!(
            "data: {{\"id\":\"{}\",\"object\":\"chat.completion.chunk\",\"created\":{CREATED},\
             \"model\":{},{tail}}}\n\n",
            self.id,
            Value::from(self.model.as_str()),
        )
    }
}

/// `"choices"` with one choice: `delta` and `finish_reason` are raw JSON.
fn choice(delta: &str, finish_reason: &str) -> String {
    format!(
        "\"choices\":[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\
         \"finish_reason\":{finish_reason}}}]"
    )
}

/// The events of one answer, each with how long to wait before sending it.
struct Events {
    queue: VecDeque<(Duration, String)>,
    token_delay: Duration,
    first_token_delay: Duration,
}

impl Events {
    /// Starts with a keep-alive comment, sent with the headers before any work is done.
    fn new(script: &Script) -> Self {
        Self {
            queue: VecDeque::from([(Duration::ZERO, KEEP_ALIVE.to_owned())]),
            token_delay: script.token_delay,
            first_token_delay: script.first_token_delay,
        }
    }

    fn push(&mut self, event: String) {
        self.queue.push_back((Duration::ZERO, event));
    }

    /// The role chunk with `null` content, then one chunk per token and a keep-alive comment
    /// after every third one.
    fn tokens(&mut self, answer: &Answer, tokens: Vec<String>) {
        let role = choice("{\"role\":\"assistant\",\"content\":null}", "null");
        self.queue
            .push_back((self.first_token_delay, answer.chunk(&role)));
        for (i, token) in tokens.into_iter().enumerate() {
            let delta = format!("{{\"content\":{}}}", Value::from(token));
            self.queue
                .push_back((self.token_delay, answer.chunk(&choice(&delta, "null"))));
            if (i + 1) % KEEP_ALIVE_EVERY == 0 {
                self.push(KEEP_ALIVE.to_owned());
            }
        }
    }
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

/// Streams `events`; with `stall`, the body then stays open, silent, until the client goes.
fn sse_response(events: VecDeque<(Duration, String)>, guard: StreamGuard, stall: bool) -> Response {
    let chunks = stream::unfold((events, guard), move |(mut events, mut guard)| async move {
        let Some((delay, event)) = events.pop_front() else {
            if stall {
                std::future::pending::<()>().await;
            }
            return None;
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if events.is_empty() && !stall {
            // Marked before the client can see it: a client that stops reading after the
            // last event is not cancelling anything.
            guard.finished = true;
        }
        Some((Ok::<_, Infallible>(event), (events, guard)))
    });
    let content_type = [(header::CONTENT_TYPE, "text/event-stream")];
    (content_type, Body::from_stream(chunks)).into_response()
}

/// `{"error":{…}}` as both servers write it; `code` is raw JSON (`null`, `500`, `"…"`).
fn error_json(message: &str, kind: &str, param: Option<&str>, code: &str) -> String {
    let param = param.map_or_else(|| "null".to_owned(), |p| Value::from(p).to_string());
    format!(
        "{{\"error\":{{\"message\":{},\"type\":\"{kind}\",\"param\":{param},\"code\":{code}}}}}",
        Value::from(message)
    )
}

fn error_response(code: u16, body: String) -> Response {
    let status = StatusCode::from_u16(code).expect("a valid HTTP status in Script::status");
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The text of the last user message: a string, or the `text` parts of a content array.
fn last_user_message(request: &Value) -> String {
    let mut messages = request["messages"].as_array().into_iter().flatten();
    let Some(last) = messages.rfind(|m| m["role"] == "user") else {
        return String::new();
    };
    match &last["content"] {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter(|part| part["type"] == "text")
            .filter_map(|part| part["text"].as_str())
            .collect(),
        _ => String::new(),
    }
}

/// `"word0 word1 …"` as `count` tokens.
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

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sk-test";

    fn stream_request(model: &str) -> Value {
        json!({
            "model": model,
            "stream": true,
            "stream_options": { "include_usage": true },
            "messages": [
                { "role": "system", "content": "You are Pi." },
                { "role": "user", "content": "what time is it" },
            ],
        })
    }

    async fn post_chat(fake: &FakeOpenAi, body: &Value) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{}/chat/completions", fake.url()))
            .bearer_auth(KEY)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// The `data:` payloads of a stream, comments dropped.
    fn data_lines(body: &str) -> Vec<&str> {
        body.split("\n\n")
            .filter_map(|event| event.strip_prefix("data: "))
            .collect()
    }

    #[tokio::test]
    async fn a_missing_or_wrong_key_gets_401() {
        let fake = FakeOpenAi::start(Some(KEY)).await;
        let client = reqwest::Client::new();
        let models = format!("{}/models", fake.url());
        for request in [
            client.get(&models),
            client.get(&models).bearer_auth("sk-wrong"),
        ] {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 401);
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "invalid_api_key");
            assert_eq!(body["error"]["message"], "Incorrect API key provided.");
        }
        let chat = client
            .post(format!("{}/chat/completions", fake.url()))
            .json(&stream_request(DEFAULT_MODEL));
        assert_eq!(chat.send().await.unwrap().status(), 401);
        let response = client.get(&models).bearer_auth(KEY).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }

    #[tokio::test]
    async fn models_lists_the_set_names() {
        let fake = FakeOpenAi::start(None).await;
        let models = format!("{}/models", fake.url());
        let body: Value = reqwest::get(&models).await.unwrap().json().await.unwrap();
        assert_eq!(body["object"], "list");
        assert_eq!(body["data"][0]["id"], DEFAULT_MODEL);
        assert_eq!(body["data"][0]["owned_by"], "llamacpp");

        fake.set_models(&["llama-3.1-8b", "phi-4"]);
        let body: Value = reqwest::get(&models).await.unwrap().json().await.unwrap();
        let ids: Vec<&str> = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["llama-3.1-8b", "phi-4"]);
    }

    #[tokio::test]
    async fn a_reply_streams_in_the_servers_framing() {
        let fake = FakeOpenAi::start(Some(KEY)).await;
        fake.push_script(Script::reply("one two three four").with_token_delay(Duration::ZERO));
        let response = post_chat(&fake, &stream_request(DEFAULT_MODEL)).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE.as_str()],
            "text/event-stream"
        );
        let body = response.text().await.unwrap();

        assert!(body.starts_with(KEEP_ALIVE), "{body}");
        let role = body
            .find(r#""delta":{"role":"assistant","content":null}"#)
            .expect("the role chunk");
        let keep_alive = role + body[role..].find(KEEP_ALIVE).expect("a keep-alive");
        let usage = keep_alive + body[keep_alive..].find("\"usage\":").expect("usage");
        let done = usage + body[usage..].find("data: [DONE]\n\n").expect("[DONE]");
        assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
        assert!(role < keep_alive && keep_alive < usage && usage < done);

        let chunks: Vec<Value> = data_lines(&body)
            .into_iter()
            .filter(|&data| data != "[DONE]")
            .map(|data| serde_json::from_str(data).unwrap())
            .collect();
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "one two three four");
        assert_eq!(chunks[0]["id"], "chatcmpl-1");
        assert_eq!(chunks[0]["model"], DEFAULT_MODEL);
        let finish = &chunks[chunks.len() - 2];
        assert_eq!(finish["choices"][0]["finish_reason"], "stop");
        let usage = &chunks[chunks.len() - 1]["usage"];
        assert_eq!(usage["completion_tokens"], 4);
        assert_eq!(usage["total_tokens"], PROMPT_TOKENS + 4);
        assert_eq!(fake.chat_count(), 1);
        assert_eq!(fake.cancelled_streams(), 0);
    }

    #[tokio::test]
    async fn echo_cut_off_and_mid_stream_errors() {
        let fake = FakeOpenAi::start(Some(KEY)).await;
        let mut request = stream_request(DEFAULT_MODEL);
        request["stream_options"] = json!(null);

        fake.push_script(Script::echo().with_token_delay(Duration::ZERO));
        let body = post_chat(&fake, &request).await.text().await.unwrap();
        assert!(!body.contains("\"usage\""), "{body}");
        let text: String = data_lines(&body)
            .into_iter()
            .filter(|&data| data != "[DONE]")
            .filter_map(|data| {
                let chunk: Value = serde_json::from_str(data).unwrap();
                chunk["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        assert_eq!(text, format!("{ECHO_PREFIX}what time is it"));

        fake.push_script(Script::cut_off("too long"));
        let body = post_chat(&fake, &request).await.text().await.unwrap();
        assert!(body.contains(r#""finish_reason":"length""#), "{body}");

        fake.push_script(Script::error_mid_stream(2, "CUDA out of memory"));
        let body = post_chat(&fake, &request).await.text().await.unwrap();
        assert!(body.ends_with(
            "data: {\"error\":{\"message\":\"CUDA out of memory\",\"type\":\"InternalServerError\",\
             \"param\":null,\"code\":500}}\n\n"
        ));
        assert!(body.contains(r#""content":" word1""#) && !body.contains("[DONE]"));
        assert_eq!(fake.cancelled_streams(), 0);
    }

    #[tokio::test]
    async fn refusals_come_as_openai_errors() {
        let fake = FakeOpenAi::start(Some(KEY)).await;
        let response = post_chat(&fake, &stream_request("gpt-4o")).await;
        assert_eq!(response.status(), 404);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "model_not_found");
        assert_eq!(
            body["error"]["message"],
            "The model `gpt-4o` does not exist."
        );

        let mut request = stream_request(DEFAULT_MODEL);
        request["stream"] = json!(false);
        assert_eq!(post_chat(&fake, &request).await.status(), 400);

        fake.push_script(Script::status(429, "Too many requests").with_retry_after(7));
        let response = post_chat(&fake, &stream_request(DEFAULT_MODEL)).await;
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()[header::RETRY_AFTER.as_str()], "7");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["type"], "server_error");
        assert_eq!(fake.chat_count(), 3);
    }

    #[tokio::test]
    async fn a_dropped_stream_counts_as_cancelled() {
        let fake = FakeOpenAi::start(Some(KEY)).await;
        fake.push_script(
            Script::reply("a b c d e f g h").with_token_delay(Duration::from_millis(100)),
        );
        let mut response = post_chat(&fake, &stream_request(DEFAULT_MODEL)).await;
        assert!(response.chunk().await.unwrap().is_some());
        drop(response);
        assert!(fake.wait_for_cancelled(1, Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn down_refuses_connections_and_back_serves_again() {
        let fake = FakeOpenAi::start(Some(KEY)).await;
        let url = fake.url();
        // One client throughout, as the bot keeps one: its pooled connection must not survive.
        let client = reqwest::Client::new();
        let models = || client.get(format!("{url}/models")).bearer_auth(KEY).send();
        assert_eq!(models().await.unwrap().status(), 200);
        fake.push_script(Script::reply("kept across the outage"));

        fake.go_down().await;
        let error = models().await.unwrap_err();
        assert!(error.is_connect(), "{error:?}");

        fake.come_back().await;
        assert_eq!(fake.url(), url);
        assert_eq!(models().await.unwrap().status(), 200);
        let body = post_chat(&fake, &stream_request(DEFAULT_MODEL))
            .await
            .text()
            .await
            .unwrap();
        assert!(body.contains(r#""content":" outage""#), "{body}");
    }
}
