//! The language model behind the bot: a small backend trait, its Ollama implementation,
//! and what every backend shares (errors, events, model naming).

mod ollama;

pub use ollama::{OllamaClient, OllamaSettings};

use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;

use crate::prompt::Prompt;

/// A model server. Object-safe: the chat service holds an `Arc<dyn LlmBackend>`.
pub trait LlmBackend: Send + Sync + 'static {
    /// Streams the model's answer. Dropping the stream cancels generation (closes the HTTP
    /// connection). HTTP-level failures (model missing, server busy) come back here, before
    /// the stream; failures during generation come as the stream's last item.
    fn chat(&self, prompt: &Prompt) -> BoxFuture<'_, Result<ReplyStream, LlmError>>;

    /// Models installed locally (`/api/tags`).
    fn list_models(&self) -> BoxFuture<'_, Result<Vec<ModelInfo>, LlmError>>;

    /// Models loaded in memory right now (`/api/ps`).
    fn running_models(&self) -> BoxFuture<'_, Result<Vec<RunningModel>, LlmError>>;

    /// Startup check: the server is reachable and `model` is installed locally.
    fn check_model<'a>(&'a self, model: &'a str) -> BoxFuture<'a, Result<(), LlmError>>;
}

/// The model's answer as it is generated: deltas, then exactly one `Done` or one error.
pub type ReplyStream = BoxStream<'static, Result<ReplyEvent, LlmError>>;

/// One step of a streamed answer.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyEvent {
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
    /// Prompt tokens evaluated (those not already in the server's cache).
    pub prompt_eval_count: u64,
    pub prompt_eval_duration: Duration,
    /// Time spent loading the model (long on a cold start).
    pub load_duration: Duration,
    pub total_duration: Duration,
}

impl GenerationStats {
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
    #[error(
        "Ollama is not reachable at {url} — is it running? (on the Pi: `systemctl status ollama`)"
    )]
    Unreachable { url: String },
    #[error("model {model} is not installed — run `ollama pull {model}`")]
    ModelNotFound { model: String },
    #[error("Ollama is busy with other requests — try again shortly")]
    Busy,
    #[error("Ollama answered HTTP {status}: {message} — see `journalctl -u ollama`")]
    Http { status: u16, message: String },
    #[error("the model failed while answering: {0} — try again")]
    Generation(String),
    #[error(
        "the model did not start answering within {0:?} (it may still be loading) — try again in a minute"
    )]
    FirstTokenTimeout(Duration),
    #[error("Ollama stopped answering for {0:?} — try again")]
    Stalled(Duration),
    #[error("the answer took longer than {0:?} and was cut off — ask for something shorter")]
    TotalTimeout(Duration),
    #[error("the connection to Ollama broke ({0}) — try again")]
    Interrupted(String),
    #[error("unexpected answer from Ollama ({0}) — is it a compatible version?")]
    Protocol(String),
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
            model: "gemma2:2b".into(),
        };
        assert_eq!(
            missing.to_string(),
            "model gemma2:2b is not installed — run `ollama pull gemma2:2b`"
        );
        let slow = LlmError::FirstTokenTimeout(Duration::from_secs(120));
        assert!(slow.to_string().contains("within 120s"), "{slow}");
    }
}
