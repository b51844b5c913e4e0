//! The language model behind the bot: a small backend trait, its Ollama and
//! OpenAI-compatible implementations, the fallback between two of them, and what every
//! backend shares (errors, events, model naming).
//!
//! - `http` — the HTTP client, error bodies and `Retry-After` both APIs share;
//! - `timeouts` — the waits and one answer's deadlines;
//! - `ollama`, `openai` — the two APIs;
//! - `prompt_cache` — what a server's prompt cache holds, for servers that do not say;
//! - `failover` — a primary server with a fallback and a circuit breaker.

mod failover;
mod http;
mod ollama;
mod openai;
mod prompt_cache;
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

use crate::config::{LlmConfig, Secret};
use crate::prompt::Prompt;

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

impl Api {
    /// How the user's messages name the server.
    fn server(self) -> &'static str {
        match self {
            Api::Ollama => "Ollama",
            Api::OpenAi => "the LLM server",
        }
    }

    fn unreachable_hint(self) -> &'static str {
        match self {
            Api::Ollama => "(on the Pi: `systemctl status ollama`)",
            Api::OpenAi => "(check LLM_URL, and that the machine is on)",
        }
    }

    fn missing_model_hint(self, model: &str) -> String {
        match self {
            Api::Ollama => format!("not installed — run `ollama pull {model}`"),
            Api::OpenAi => "not served by the LLM server — /model lists the ones it serves".into(),
        }
    }

    fn log_hint(self) -> &'static str {
        match self {
            Api::Ollama => "see `journalctl -u ollama`",
            Api::OpenAi => "see the LLM server's log",
        }
    }
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

/// The configured backend: the primary server, behind a [`Failover`] when a fallback is set.
pub fn connect(config: &LlmConfig) -> Result<Arc<dyn LlmBackend>, reqwest::Error> {
    let primary = backend(&config.primary, config)?;
    Ok(match &config.fallback {
        None => primary,
        Some(fallback) => Arc::new(Failover::new(
            primary,
            backend(&fallback.backend, config)?,
            fallback,
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
    /// A line for the user about how this answer is made (the fallback server answers),
    /// shown on its own before the answer.
    Notice(String),
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

/// Why a request to the model failed. `to_string()` is shown to the user as is: each message
/// says what happened and what to do next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    #[error("{} is not reachable at {url} — is it running? {}", .server.server(), .server.unreachable_hint())]
    Unreachable { server: Api, url: String },
    #[error("model {model} is {}", .server.missing_model_hint(.model))]
    ModelNotFound { server: Api, model: String },
    #[error("{} refused the API key — check LLM_API_KEY (or LLM_FALLBACK_API_KEY)", .server.server())]
    Unauthorized { server: Api },
    #[error("{} is busy with other requests — try again {}", .server.server(), try_again(.retry_after))]
    Busy {
        server: Api,
        retry_after: Option<Duration>,
    },
    #[error("{} is limiting how often it answers — try again {}", .server.server(), try_again(.retry_after))]
    RateLimited {
        server: Api,
        retry_after: Option<Duration>,
    },
    #[error("{} answered HTTP {status}: {message} — {}", .server.server(), .server.log_hint())]
    Http {
        server: Api,
        status: u16,
        message: String,
    },
    #[error("the model failed while answering: {0} — try again")]
    Generation(String),
    #[error(
        "the model did not start answering within {0:?} (it may still be loading) — try again in a minute"
    )]
    FirstTokenTimeout(Duration),
    #[error("the model server stopped answering for {0:?} — try again")]
    Stalled(Duration),
    #[error("the answer took longer than {0:?} and was cut off — ask for something shorter")]
    TotalTimeout(Duration),
    #[error("the connection to the model server broke ({0}) — try again")]
    Interrupted(String),
    #[error("unexpected answer from the model server ({0}) — is it a compatible version?")]
    Protocol(String),
}

/// "in 30 s" when the server said when, else "shortly".
fn try_again(retry_after: &Option<Duration>) -> String {
    match retry_after {
        Some(after) => format!("in {} s", after.as_secs().max(1)),
        None => "shortly".to_owned(),
    }
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

    #[test]
    fn messages_say_what_to_do() {
        let missing = LlmError::ModelNotFound {
            server: Api::Ollama,
            model: "gemma2:2b".into(),
        };
        assert_eq!(
            missing.to_string(),
            "model gemma2:2b is not installed — run `ollama pull gemma2:2b`"
        );
        let slow = LlmError::FirstTokenTimeout(Duration::from_secs(120));
        assert!(slow.to_string().contains("within 120s"), "{slow}");
        let limited = LlmError::RateLimited {
            server: Api::OpenAi,
            retry_after: Some(Duration::from_secs(20)),
        };
        assert_eq!(
            limited.to_string(),
            "the LLM server is limiting how often it answers — try again in 20 s"
        );
        let busy = LlmError::Busy {
            server: Api::Ollama,
            retry_after: None,
        };
        assert_eq!(
            busy.to_string(),
            "Ollama is busy with other requests — try again shortly"
        );
    }
}
