//! Ollama over HTTP: the client for `/api/chat` (streamed), `/api/tags`, `/api/ps` and
//! `/api/show`.
//!
//! - `wire` — Ollama's JSON and its mapping to the crate's types;
//! - `stream` — the streamed answer's wire format: NDJSON lines.

mod stream;
mod wire;

use std::sync::Arc;

use futures_util::future::BoxFuture;
use tracing::debug;

use super::answer;
use super::http::{ErrorAnswer, Server};
use super::prompt_cache::PromptCache;
use super::{
    Api, LlmBackend, LlmError, ModelInfo, ReplyStream, RunningModel, Timeouts, find_model,
};
use crate::prompt::Prompt;
use stream::NdjsonLines;
use wire::{ChatRequest, ModelList, ShowRequest, ShowResponse};

/// Where Ollama is and how long to wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OllamaSettings {
    pub base_url: String,
    /// How long Ollama keeps the model loaded after a request (`"30m"`); `None`: its default.
    pub keep_alive: Option<String>,
    pub timeouts: Timeouts,
}

impl Default for OllamaSettings {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:11434".to_owned(),
            keep_alive: None,
            timeouts: Timeouts::default(),
        }
    }
}

/// An [`LlmBackend`] talking to an Ollama server.
#[derive(Debug, Clone)]
pub struct OllamaClient {
    server: Server,
    keep_alive: Option<String>,
    /// Ollama does not say how much of a prompt it took from its cache: estimated here.
    prompt_cache: Arc<PromptCache>,
}

impl OllamaClient {
    pub fn new(settings: OllamaSettings) -> Result<Self, reqwest::Error> {
        Ok(Self {
            server: Server::new(Api::Ollama, &settings.base_url, None, settings.timeouts)?,
            keep_alive: settings.keep_alive,
            prompt_cache: Arc::default(),
        })
    }

    async fn start_chat(&self, prompt: &Prompt) -> Result<ReplyStream, LlmError> {
        let body = ChatRequest::new(prompt, self.keep_alive.as_deref());
        let request = self.server.post("/api/chat").json(&body);
        // Ollama loads the model before it answers, so the headers count as the first token.
        let status_error = |answer| status_error(answer, Some(&prompt.model));
        let answer = answer::stream(&self.server, request, status_error, NdjsonLines).await?;
        Ok(self.prompt_cache.track(prompt, answer))
    }

    async fn models(&self, path: &str) -> Result<ModelList, LlmError> {
        self.server
            .get_json(path, |answer| status_error(answer, None))
            .await
    }
}

impl LlmBackend for OllamaClient {
    fn chat(&self, prompt: &Prompt) -> BoxFuture<'_, Result<ReplyStream, LlmError>> {
        debug!(model = %prompt.model, messages = prompt.messages.len(), "ollama: chat request");
        let prompt = prompt.clone();
        Box::pin(async move { self.start_chat(&prompt).await })
    }

    fn list_models(&self) -> BoxFuture<'_, Result<Vec<ModelInfo>, LlmError>> {
        Box::pin(async {
            let list = self.models("/api/tags").await?;
            Ok(list.models.into_iter().map(ModelInfo::from).collect())
        })
    }

    fn running_models(&self) -> BoxFuture<'_, Result<Vec<RunningModel>, LlmError>> {
        Box::pin(async {
            let list = self.models("/api/ps").await?;
            Ok(list.models.into_iter().map(RunningModel::from).collect())
        })
    }

    fn context_length<'a>(
        &'a self,
        model: &'a str,
        requested: Option<u32>,
    ) -> BoxFuture<'a, Result<u32, LlmError>> {
        Box::pin(async move {
            if let Some(requested) = requested {
                // Ollama allocates what `num_ctx` asks for (and says nothing if the model was
                // trained on less): asking for the model's card would only cost a request.
                return Ok(requested);
            }
            let request = self.server.post("/api/show").json(&ShowRequest { model });
            let show: ShowResponse = self
                .server
                .json(request, "/api/show", |answer| {
                    status_error(answer, Some(model))
                })
                .await?;
            show.context_length().ok_or_else(|| {
                LlmError::Protocol(format!(
                    "/api/show does not say {model}'s context length — set OLLAMA_NUM_CTX"
                ))
            })
        })
    }

    fn check_model<'a>(&'a self, model: &'a str) -> BoxFuture<'a, Result<(), LlmError>> {
        Box::pin(async move { find_model(&self.list_models().await?, Api::Ollama, model) })
    }

    fn serving(&self) -> String {
        format!("Ollama at {}", self.server.base_url)
    }
}

/// Turns a non-2xx answer into the error that says what to do about it.
fn status_error(answer: ErrorAnswer, model: Option<&str>) -> LlmError {
    let server = Api::Ollama;
    match (answer.status, model) {
        // Ollama: `{"error":"model \"x\" not found, try pulling it first"}`.
        (404, Some(model)) if answer.message.contains("not found") => LlmError::ModelNotFound {
            server,
            model: model.to_owned(),
        },
        // Ollama's request queue is full (OLLAMA_MAX_QUEUE).
        (503, _) => LlmError::Busy {
            server,
            retry_after: answer.retry_after,
        },
        (status, _) => LlmError::Http {
            server,
            status,
            message: answer.message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::http::error_text;

    fn answer(status: u16, body: &str) -> ErrorAnswer {
        ErrorAnswer {
            status,
            message: error_text(body).unwrap_or_else(|| "no details".into()),
            retry_after: None,
        }
    }

    #[test]
    fn statuses_map_to_errors_that_say_what_to_do() {
        let missing = r#"{"error":"model \"gemma2:2b\" not found, try pulling it first"}"#;
        let model = Some("gemma2:2b");
        assert_eq!(
            status_error(answer(404, missing), model),
            LlmError::ModelNotFound {
                server: Api::Ollama,
                model: "gemma2:2b".into()
            }
        );
        assert_eq!(
            status_error(answer(404, ""), model),
            LlmError::Http {
                server: Api::Ollama,
                status: 404,
                message: "no details".into()
            }
        );
        assert_eq!(
            status_error(answer(503, "{\"error\":\"server busy\"}"), model),
            LlmError::Busy {
                server: Api::Ollama,
                retry_after: None
            }
        );
        let crashed = r#"{"error":"llama runner process has terminated"}"#;
        assert_eq!(
            status_error(answer(500, crashed), None),
            LlmError::Http {
                server: Api::Ollama,
                status: 500,
                message: "llama runner process has terminated".into()
            }
        );
    }
}
