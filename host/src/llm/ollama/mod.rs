//! Ollama over HTTP: the client for `/api/chat` (streamed), `/api/tags` and `/api/ps`.
//!
//! - `wire` — Ollama's JSON and its mapping to the crate's types;
//! - `stream` — the streamed answer's NDJSON lines, read within the answer's deadlines.

mod stream;
mod wire;

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;
use tokio::time::{timeout, timeout_at};
use tracing::debug;

use super::{LlmBackend, LlmError, ModelInfo, ReplyStream, RunningModel, same_model};
use crate::prompt::Prompt;
use stream::{Clock, ReplyReader};
use wire::{ChatRequest, ModelList, error_text};

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
            Ok(list.models.into_iter().map(ModelInfo::from).collect())
        })
    }

    fn running_models(&self) -> BoxFuture<'_, Result<Vec<RunningModel>, LlmError>> {
        Box::pin(async {
            let list: ModelList = self.get_json("/api/ps").await?;
            Ok(list.models.into_iter().map(RunningModel::from).collect())
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

/// The innermost cause: reqwest's own message ("error sending request for url …") says little.
fn root_cause(error: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::MAX_ERROR_CHARS;

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
}
