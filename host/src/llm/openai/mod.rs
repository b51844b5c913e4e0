//! An OpenAI-compatible server over HTTP — llama.cpp's `llama-server`, vLLM, any `/v1`
//! server: streamed `POST /chat/completions`, `GET /models`, and llama-server's `/props`.
//!
//! - `wire` — the API's JSON and its mapping to the crate's types;
//! - `stream` — the streamed answer's wire format: Server-Sent Events.

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
use crate::secret::Secret;
use stream::ServerSentEvents;
use wire::{ChatRequest, ModelList, Props};

/// Where the server is (`LLM_URL`, e.g. `http://gpu-box:8000/v1`), its key, its waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAiSettings {
    pub base_url: String,
    pub api_key: Option<Secret>,
    pub timeouts: Timeouts,
}

/// An [`LlmBackend`] talking to an OpenAI-compatible server.
#[derive(Debug, Clone)]
pub struct OpenAiClient {
    server: Server,
    /// For servers that do not count the prompt tokens they took from their cache.
    prompt_cache: Arc<PromptCache>,
}

impl OpenAiClient {
    pub fn new(settings: OpenAiSettings) -> Result<Self, reqwest::Error> {
        Ok(Self {
            server: Server::new(
                Api::OpenAi,
                &settings.base_url,
                settings.api_key,
                settings.timeouts,
            )?,
            prompt_cache: Arc::default(),
        })
    }

    async fn start_chat(&self, prompt: &Prompt) -> Result<ReplyStream, LlmError> {
        let request = self
            .server
            .post("/chat/completions")
            .json(&ChatRequest::new(prompt));
        // These servers answer the headers at once and load nothing on demand: the first
        // token's deadline covers the wait for the headers and then the first text.
        let status_error = |answer| status_error(answer, Some(&prompt.model));
        let format = ServerSentEvents::requested_now();
        let answer = answer::stream(&self.server, request, status_error, format).await?;
        Ok(self.prompt_cache.track(prompt, answer))
    }

    async fn models(&self) -> Result<ModelList, LlmError> {
        self.server
            .get_json("/models", |answer| status_error(answer, None))
            .await
    }

    /// llama-server's context per slot, from `/props` beside `/v1` (`None`: not a
    /// llama-server, or it did not say).
    async fn props_context(&self) -> Option<u32> {
        let root = self.server.base_url.trim_end_matches("/v1");
        let request = self.server.get_absolute(&format!("{root}/props"));
        let props: Props = self
            .server
            .json(request, "/props", |answer| status_error(answer, None))
            .await
            .inspect_err(|e| debug!("openai: no /props: {e}"))
            .ok()?;
        props.context_length()
    }
}

impl LlmBackend for OpenAiClient {
    fn chat(&self, prompt: &Prompt) -> BoxFuture<'_, Result<ReplyStream, LlmError>> {
        debug!(model = %prompt.model, messages = prompt.messages.len(), "openai: chat request");
        let prompt = prompt.clone();
        Box::pin(async move { self.start_chat(&prompt).await })
    }

    fn list_models(&self) -> BoxFuture<'_, Result<Vec<ModelInfo>, LlmError>> {
        Box::pin(async { Ok(self.models().await?.models()) })
    }

    fn running_models(&self) -> BoxFuture<'_, Result<Vec<RunningModel>, LlmError>> {
        Box::pin(async {
            let served = self.list_models().await?;
            Ok(served.into_iter().map(RunningModel::from).collect())
        })
    }

    fn context_length<'a>(
        &'a self,
        model: &'a str,
        requested: Option<u32>,
    ) -> BoxFuture<'a, Result<u32, LlmError>> {
        Box::pin(async move {
            // The server fixed its context when it started; what it says wins over what the
            // bot was told to ask for.
            if let Some(length) = self.props_context().await {
                return Ok(length);
            }
            if let Some(length) = self.models().await?.context_length(model) {
                return Ok(length);
            }
            requested.ok_or_else(|| {
                LlmError::Protocol(format!(
                    "{} does not say how long {model}'s context is — set OLLAMA_NUM_CTX to the server's context per request",
                    self.serving()
                ))
            })
        })
    }

    fn check_model<'a>(&'a self, model: &'a str) -> BoxFuture<'a, Result<(), LlmError>> {
        Box::pin(async move { find_model(&self.list_models().await?, Api::OpenAi, model) })
    }

    fn serving(&self) -> String {
        format!("the OpenAI-compatible server at {}", self.server.base_url)
    }
}

/// Turns a non-2xx answer (OpenAI error JSON) into the error that says what to do about it.
fn status_error(answer: ErrorAnswer, model: Option<&str>) -> LlmError {
    let server = Api::OpenAi;
    match (answer.status, model) {
        (401 | 403, _) => LlmError::Unauthorized { server },
        // `{"error":{"message":"The model `x` does not exist.","code":"model_not_found"}}`
        (404, Some(model)) if answer.message.contains("model") => LlmError::ModelNotFound {
            server,
            model: model.to_owned(),
        },
        (429, _) => LlmError::RateLimited {
            server,
            retry_after: answer.retry_after,
        },
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
    use std::time::Duration;

    use super::*;

    fn answer(status: u16, message: &str, retry_after: Option<u64>) -> ErrorAnswer {
        ErrorAnswer {
            status,
            message: message.into(),
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    #[test]
    fn statuses_map_to_errors_that_say_what_to_do() {
        let server = Api::OpenAi;
        let model = Some("qwen");
        assert_eq!(
            status_error(answer(401, "Incorrect API key provided.", None), model),
            LlmError::Unauthorized { server }
        );
        assert_eq!(
            status_error(answer(404, "The model `qwen` does not exist.", None), model),
            LlmError::ModelNotFound {
                server,
                model: "qwen".into()
            }
        );
        assert_eq!(
            status_error(answer(429, "Too Many Requests", Some(20)), model),
            LlmError::RateLimited {
                server,
                retry_after: Some(Duration::from_secs(20))
            }
        );
        assert_eq!(
            status_error(answer(503, "loading model", Some(5)), model),
            LlmError::Busy {
                server,
                retry_after: Some(Duration::from_secs(5))
            }
        );
        assert_eq!(
            status_error(answer(404, "Not Found", None), None),
            LlmError::Http {
                server,
                status: 404,
                message: "Not Found".into()
            }
        );
    }
}
