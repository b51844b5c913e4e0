//! The language model behind the bot: a small backend trait, its Ollama and
//! OpenAI-compatible implementations, the fallback between two of them, and what every
//! backend shares (errors, events, model naming).
//!
//! - `http` — the HTTP client, error bodies and `Retry-After` both APIs share;
//! - `answer` — one streamed answer within its deadlines, whatever the wire format;
//! - `timeouts` — the waits and one answer's deadlines;
//! - `ollama`, `openai` — the two APIs;
//! - `prompt_cache` — what a server's prompt cache holds, for servers that do not say;
//! - `failover` — a primary server with a fallback and a circuit breaker.

mod answer;
mod failover;
mod http;
mod ollama;
mod openai;
mod prompt_cache;
#[cfg(any(test, feature = "test-support"))]
pub mod scripted;
mod timeouts;

pub use failover::Failover;
pub use ollama::{OllamaClient, OllamaSettings};
pub use openai::{OpenAiClient, OpenAiSettings};
pub use timeouts::Timeouts;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;

use crate::background::Background;
use crate::prompt::{GenerationOptions, Prompt};
use crate::secret::Secret;

/// A model server. Object-safe: the chat service holds an `Arc<dyn LlmBackend>`.
pub trait LlmBackend: Send + Sync + 'static {
    /// Streams the model's answer. Dropping the stream cancels generation (closes the HTTP
    /// connection). HTTP-level failures (model missing, server busy) come back here, before
    /// the stream; failures during generation come as the stream's last item.
    fn chat(&self, prompt: &Prompt) -> BoxFuture<'_, Result<ReplyStream, LlmError>>;

    /// Models the server has (Ollama: installed; OpenAI: `/models`).
    fn list_models(&self) -> BoxFuture<'_, Result<Vec<ModelInfo>, LlmError>>;

    /// Models loaded in memory right now (Ollama: `/api/ps`; an OpenAI-compatible server
    /// keeps the models it serves loaded).
    fn running_models(&self) -> BoxFuture<'_, Result<Vec<RunningModel>, LlmError>>;

    /// How many tokens of context one request for `model` gets, prompt and answer together,
    /// when it asks for `requested` (`num_ctx`; `None`: the model's own). Ollama allocates
    /// what a request asks for, up to the model's own length (`/api/show`); an
    /// OpenAI-compatible server fixed its context when it started and says so (llama-server's
    /// `/props`, vLLM's `max_model_len`), else `requested` is taken at its word.
    fn context_length<'a>(
        &'a self,
        model: &'a str,
        requested: Option<u32>,
    ) -> BoxFuture<'a, Result<u32, LlmError>>;

    /// Startup check: the server is reachable and has `model`.
    fn check_model<'a>(&'a self, model: &'a str) -> BoxFuture<'a, Result<(), LlmError>>;

    /// Which server answers now, in one line (`/status`, the dashboard).
    fn serving(&self) -> String;
}

/// The API a model server speaks (`LLM_API`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Ollama,
    /// OpenAI's chat completions: llama.cpp's `llama-server`, vLLM, any `/v1` server.
    OpenAi,
}

impl FromStr for Api {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ollama" => Ok(Api::Ollama),
            "openai" => Ok(Api::OpenAi),
            other => Err(format!("unknown API {other:?}")),
        }
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Api::Ollama => "ollama",
            Api::OpenAi => "openai",
        })
    }
}

/// One model server as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendSettings {
    pub api: Api,
    pub url: String,
    /// Sent as `Authorization: Bearer` (OpenAI-compatible servers started with a key).
    pub api_key: Option<Secret>,
    /// The model prompts name by default.
    pub model: String,
}

/// The server to use when the primary cannot answer.
#[derive(Debug, Clone, PartialEq)]
pub struct FallbackSettings {
    pub backend: BackendSettings,
    /// `LLM_FALLBACK_CONCURRENCY`: generations at once on it (a Pi runs one).
    pub concurrency: usize,
    /// `LLM_PROBE_SECS`: how often a primary the breaker stopped using is tried again.
    pub probe_every: Duration,
}

/// The model servers and generation settings (read from the environment by `config`).
#[derive(Debug, Clone, PartialEq)]
pub struct LlmConfig {
    /// `LLM_API`, `LLM_URL` (or `OLLAMA_URL`), `LLM_API_KEY`, `LLM_MODEL` (or
    /// `OLLAMA_MODEL`): the server that answers (chats may switch model with /model).
    pub primary: BackendSettings,
    /// `LLM_FALLBACK_URL`, `_API`, `_MODEL`, `_API_KEY`, `_CONCURRENCY`, `LLM_PROBE_SECS`:
    /// who answers when the primary cannot.
    pub fallback: Option<FallbackSettings>,
    /// `OLLAMA_*_TIMEOUT_SECS` (for every server, whatever its API).
    pub timeouts: Timeouts,
    /// `OLLAMA_KEEP_ALIVE`: how long Ollama keeps the model loaded after a request.
    pub keep_alive: Option<String>,
    /// `OLLAMA_TEMPERATURE`, `OLLAMA_TOP_P`, `OLLAMA_TOP_K`, `OLLAMA_NUM_CTX`,
    /// `OLLAMA_NUM_PREDICT`: generation options; unset leaves the model's default.
    pub options: GenerationOptions,
}

/// The configured backend: the primary server, behind a [`Failover`] when a fallback is set
/// (its probe runs in `background`).
pub fn connect(
    config: &LlmConfig,
    background: &Background,
) -> Result<Arc<dyn LlmBackend>, reqwest::Error> {
    let primary = backend(&config.primary, config)?;
    Ok(match &config.fallback {
        None => primary,
        Some(fallback) => Arc::new(Failover::new(
            primary,
            backend(&fallback.backend, config)?,
            fallback,
            background.clone(),
        )),
    })
}

/// One server's client, with the waits and keep-alive of `config`.
pub fn backend(
    backend: &BackendSettings,
    config: &LlmConfig,
) -> Result<Arc<dyn LlmBackend>, reqwest::Error> {
    Ok(match backend.api {
        Api::Ollama => Arc::new(OllamaClient::new(OllamaSettings {
            base_url: backend.url.clone(),
            keep_alive: config.keep_alive.clone(),
            timeouts: config.timeouts,
        })?),
        Api::OpenAi => Arc::new(OpenAiClient::new(OpenAiSettings {
            base_url: backend.url.clone(),
            api_key: backend.api_key.clone(),
            timeouts: config.timeouts,
        })?),
    })
}

/// The model's answer as it is generated: deltas, then exactly one `Done` or one error.
pub type ReplyStream = BoxStream<'static, Result<ReplyEvent, LlmError>>;

/// One step of a streamed answer.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyEvent {
    /// The fallback answers because the primary, `unavailable`, could not: with `model`
    /// on `server`. Shown to the user on its own before the answer.
    FellBack {
        unavailable: String,
        model: String,
        server: String,
    },
    /// More text, to append to what came before.
    Delta(String),
    /// The answer is complete.
    Done(GenerationStats),
}

/// What the server reports about a finished generation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenerationStats {
    /// Tokens generated.
    pub eval_count: u64,
    pub eval_duration: Duration,
    /// The prompt's tokens, all of them: Ollama's `prompt_eval_count` and OpenAI's
    /// `usage.prompt_tokens` count those served from the server's cache too.
    pub prompt_eval_count: u64,
    /// How many of them the server took from its prompt cache instead of evaluating them:
    /// as the server reports it (`prompt_tokens_details.cached_tokens`, llama-server's
    /// `timings.cache_n`), or as this client estimates it (see `prompt_cache`).
    pub prompt_cached: Option<u64>,
    /// Whether `prompt_cached` is this client's estimate rather than the server's count.
    pub prompt_cached_estimated: bool,
    /// Time spent evaluating the prompt tokens that were not cached.
    pub prompt_eval_duration: Duration,
    /// Time spent loading the model (long on a cold start).
    pub load_duration: Duration,
    pub total_duration: Duration,
    /// The answer stopped at the length limit (`OLLAMA_NUM_PREDICT`), not where the model
    /// would have ended it.
    pub cut_off: bool,
}

impl GenerationStats {
    /// The prompt tokens the server evaluated (not served from its cache).
    pub fn prompt_evaluated(&self) -> u64 {
        self.prompt_eval_count
            .saturating_sub(self.prompt_cached.unwrap_or(0))
    }

    /// Generation speed, without prompt evaluation and model loading.
    pub fn tokens_per_second(&self) -> Option<f64> {
        let seconds = self.eval_duration.as_secs_f64();
        (self.eval_count > 0 && seconds > 0.0).then(|| self.eval_count as f64 / seconds)
    }
}

/// A model installed on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// Full name with tag, e.g. `gemma2:2b`.
    pub name: String,
    pub size_bytes: u64,
    /// E.g. `2.6B`.
    pub parameter_size: Option<String>,
    /// E.g. `Q4_0`.
    pub quantization_level: Option<String>,
}

/// A model currently loaded in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningModel {
    pub name: String,
    pub size_bytes: u64,
    /// When the server will unload it if unused (RFC 3339, as the server reports it).
    pub expires_at: Option<String>,
}

/// Why a request to the model failed. `Display` is for the log; what a user reads is the
/// surface's wording of the same data (`telegram::messages`), with what to do next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    #[error("{server} server not reachable at {url}")]
    Unreachable { server: Api, url: String },
    #[error("model {model} not on the {server} server")]
    ModelNotFound { server: Api, model: String },
    #[error("the {server} server refused the API key")]
    Unauthorized { server: Api },
    #[error("the {server} server is busy (retry after {retry_after:?})")]
    Busy {
        server: Api,
        retry_after: Option<Duration>,
    },
    #[error("the {server} server is rate limiting (retry after {retry_after:?})")]
    RateLimited {
        server: Api,
        retry_after: Option<Duration>,
    },
    #[error("the {server} server answered HTTP {status}: {message}")]
    Http {
        server: Api,
        status: u16,
        message: String,
    },
    #[error("generation failed: {0}")]
    Generation(String),
    #[error("no first token within {0:?}")]
    FirstTokenTimeout(Duration),
    #[error("no token for {0:?}")]
    Stalled(Duration),
    #[error("the answer took longer than {0:?}")]
    TotalTimeout(Duration),
    #[error("the connection broke: {0}")]
    Interrupted(String),
    #[error("unexpected answer: {0}")]
    Protocol(String),
}

/// `Ok` if `model` is among the server's `listed` ones (what `check_model` checks).
fn find_model(listed: &[ModelInfo], server: Api, model: &str) -> Result<(), LlmError> {
    if listed.iter().any(|m| same_model(&m.name, model)) {
        Ok(())
    } else {
        Err(LlmError::ModelNotFound {
            server,
            model: model.to_owned(),
        })
    }
}

/// Whether two model names are the same model: an untagged name means `name:latest`, as in
/// Ollama (and in the registries it pulls from).
pub fn same_model(a: &str, b: &str) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_per_second_divides_eval_count_by_eval_time() {
        let stats = GenerationStats {
            eval_count: 20,
            eval_duration: Duration::from_secs(4),
            ..GenerationStats::default()
        };
        assert_eq!(stats.tokens_per_second(), Some(5.0));
        assert_eq!(GenerationStats::default().tokens_per_second(), None);
    }

    #[test]
    fn untagged_names_mean_latest() {
        assert!(same_model("gemma2:2b", "gemma2:2b"));
        assert!(same_model("llama3.2:latest", "llama3.2"));
        assert!(!same_model("gemma2:2b", "gemma2"));
        assert!(same_model("host:5000/ns/m", "host:5000/ns/m:latest"));
    }
}
