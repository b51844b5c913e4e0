//! What both backends share on the wire: one HTTP client per server, its transport errors,
//! error bodies, `Retry-After`, and small JSON GETs within the idle timeout.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::time::timeout;

use super::{Api, LlmError, Timeouts};
use crate::secret::Secret;

/// Longest server error text passed on to the user.
pub const MAX_ERROR_CHARS: usize = 200;

/// A model server's address, client and waits.
#[derive(Debug, Clone)]
pub struct Server {
    pub api: Api,
    http: reqwest::Client,
    /// Without a trailing slash.
    pub base_url: String,
    api_key: Option<Secret>,
    pub timeouts: Timeouts,
}

impl Server {
    pub fn new(
        api: Api,
        base_url: &str,
        api_key: Option<Secret>,
        timeouts: Timeouts,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            // Ollama is local and a GPU box is on the LAN or tailnet: a proxy from the
            // environment would only get in the way.
            .no_proxy()
            .connect_timeout(timeouts.connect)
            .build()?;
        Ok(Self {
            api,
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
            timeouts,
        })
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.authorised(self.http.get(self.url(path)))
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.authorised(self.http.post(self.url(path)))
    }

    /// A GET of `url`, which need not be under the base URL (llama-server's `/props` sits
    /// beside its `/v1`), with the server's key.
    pub fn get_absolute(&self, url: &str) -> reqwest::RequestBuilder {
        self.authorised(self.http.get(url))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    fn authorised(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.api_key {
            Some(key) => request.bearer_auth(key.expose()),
            None => request,
        }
    }

    /// Sends `request`; a non-2xx answer becomes the error `status_error` makes of it
    /// (status, body, `Retry-After`).
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
        status_error: impl FnOnce(ErrorAnswer) -> LlmError,
    ) -> Result<reqwest::Response, LlmError> {
        let response = request.send().await.map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = retry_after(response.headers());
        let body = response.text().await.unwrap_or_default();
        let reason = status.canonical_reason().unwrap_or("no details");
        Err(status_error(ErrorAnswer {
            status: status.as_u16(),
            message: error_text(&body).unwrap_or_else(|| reason.to_owned()),
            retry_after,
        }))
    }

    /// GETs a small JSON document, within the idle timeout.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        status_error: impl FnOnce(ErrorAnswer) -> LlmError,
    ) -> Result<T, LlmError> {
        self.json(self.get(path), path, status_error).await
    }

    /// The small JSON document `request` (to `path`) answers, within the idle timeout.
    pub async fn json<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        path: &str,
        status_error: impl FnOnce(ErrorAnswer) -> LlmError,
    ) -> Result<T, LlmError> {
        let load = async {
            let response = self.send(request, status_error).await?;
            let body = response
                .bytes()
                .await
                .map_err(|e| LlmError::Interrupted(root_cause(&e)))?;
            serde_json::from_slice(&body).map_err(|e| LlmError::Protocol(format!("{path}: {e}")))
        };
        let idle = self.timeouts.idle;
        timeout(idle, load)
            .await
            .map_err(|_| LlmError::Stalled(idle))?
    }

    fn transport_error(&self, error: &reqwest::Error) -> LlmError {
        if error.is_connect() {
            LlmError::Unreachable {
                server: self.api,
                url: self.base_url.clone(),
            }
        } else {
            LlmError::Interrupted(root_cause(error))
        }
    }
}

/// A non-2xx answer, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorAnswer {
    pub status: u16,
    /// The server's error text (shortened), else the status's reason.
    pub message: String,
    pub retry_after: Option<Duration>,
}

/// The error text of an error body — Ollama's `{"error": "…"}` or OpenAI's
/// `{"error": {"message": "…"}}` — else the body itself; shortened; `None` if empty.
pub fn error_text(body: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: ErrorField,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ErrorField {
        Text(String),
        Object { message: String },
    }
    let text = match serde_json::from_str::<ErrorBody>(body) {
        Ok(ErrorBody {
            error: ErrorField::Text(text) | ErrorField::Object { message: text },
        }) => text,
        Err(_) => body.trim().to_owned(),
    };
    (!text.is_empty()).then(|| shorten(&text))
}

pub fn shorten(text: &str) -> String {
    match text.char_indices().nth(MAX_ERROR_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// `Retry-After` in seconds (servers send seconds for 429 and 503; an HTTP date is taken as
/// no advice).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds))
}

/// The innermost cause: reqwest's own message ("error sending request for url …") says little.
pub fn root_cause(error: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_text_reads_both_apis_error_bodies() {
        let ollama = r#"{"error":"model \"x\" not found, try pulling it first"}"#;
        assert_eq!(
            error_text(ollama).as_deref(),
            Some("model \"x\" not found, try pulling it first")
        );
        let openai = r#"{"error":{"message":"Incorrect API key provided.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
        assert_eq!(
            error_text(openai).as_deref(),
            Some("Incorrect API key provided.")
        );
        assert_eq!(
            error_text(" Bad Gateway \n").as_deref(),
            Some("Bad Gateway")
        );
        assert_eq!(error_text(""), None);
    }

    #[test]
    fn long_error_texts_are_shortened() {
        let long = "x".repeat(1000);
        assert_eq!(
            error_text(&long).unwrap().chars().count(),
            MAX_ERROR_CHARS + 1
        );
    }

    #[test]
    fn retry_after_takes_seconds_only() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "17".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(17)));
        headers.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2026 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), None);
    }
}
