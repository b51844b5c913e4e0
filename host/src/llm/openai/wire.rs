//! OpenAI's chat-completions JSON on the wire: the streamed request, its chunks, `/models`
//! — and their one mapping each to and from the crate's own types.

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::llm::{ModelInfo, RunningModel};
use crate::prompt::{ChatMessage, Prompt, ResponseFormat};

/// The `POST /chat/completions` body: always streamed, usage asked for in the last chunk.
#[derive(Serialize)]
pub struct ChatRequest<'a> {
    model: &'a str,
    messages: &'a [ChatMessage],
    stream: bool,
    stream_options: StreamOptions,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    /// Not OpenAI's own, but llama-server and vLLM read it.
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<serde_json::Value>,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

impl<'a> ChatRequest<'a> {
    /// `num_ctx` has no counterpart: the server sets its context size when it starts.
    pub fn new(prompt: &'a Prompt) -> Self {
        let o = &prompt.options;
        Self {
            model: &prompt.model,
            messages: &prompt.messages,
            stream: true,
            stream_options: StreamOptions {
                include_usage: true,
            },
            temperature: o.temperature,
            top_p: o.top_p,
            top_k: o.top_k,
            // Ollama's -1 ("no limit") and 0 are the server's default here.
            max_tokens: o
                .num_predict
                .and_then(|n| u32::try_from(n).ok())
                .filter(|&n| n > 0),
            seed: o.seed,
            stop: &o.stop,
            response_format: o.format.as_ref().and_then(response_format),
        }
    }
}

/// A formatter's `format`: any JSON object, or JSON matching a schema. A schema that is not
/// JSON is left out, as for Ollama (stages check the schemas they set).
fn response_format(format: &ResponseFormat) -> Option<serde_json::Value> {
    match format {
        ResponseFormat::Json => Some(json!({"type": "json_object"})),
        ResponseFormat::Schema(schema) => {
            let schema: serde_json::Value = serde_json::from_str(schema).ok()?;
            Some(json!({
                "type": "json_schema",
                "json_schema": {"name": "reply", "schema": schema, "strict": true},
            }))
        }
    }
}

/// One `data:` event of the stream: a chunk, or an error a server sends mid-stream.
#[derive(Deserialize)]
pub struct StreamEvent {
    #[serde(default)]
    pub choices: Vec<Choice>,
    #[serde(default)]
    pub usage: Option<Usage>,
    /// llama-server's own figures, on its last chunk.
    #[serde(default)]
    pub timings: Option<Timings>,
    #[serde(default)]
    pub error: Option<StreamError>,
}

#[derive(Deserialize)]
pub struct Choice {
    #[serde(default)]
    pub delta: Delta,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// The first chunk carries the role and a `null` content.
#[derive(Deserialize, Default)]
pub struct Delta {
    #[serde(default)]
    pub content: Option<String>,
}

#[derive(Deserialize, Clone, Copy)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    /// OpenAI, llama-server and vLLM (`--enable-prompt-tokens-details`) say how many prompt
    /// tokens came from the cache.
    #[serde(default)]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

#[derive(Deserialize, Clone, Copy)]
pub struct PromptTokensDetails {
    #[serde(default)]
    pub cached_tokens: Option<u64>,
}

/// llama-server's `timings`: prompt tokens from the cache (`cache_n`) and evaluated
/// (`prompt_n`), tokens generated, and the time each took.
#[derive(Deserialize, Clone, Copy, Default)]
pub struct Timings {
    #[serde(default)]
    pub cache_n: Option<u64>,
    #[serde(default)]
    pub prompt_n: Option<u64>,
    #[serde(default)]
    pub prompt_ms: Option<f64>,
    #[serde(default)]
    pub predicted_n: Option<u64>,
    #[serde(default)]
    pub predicted_ms: Option<f64>,
}

/// llama-server's `GET /props`: the context of one slot (`n_ctx` over `--parallel`).
#[derive(Deserialize)]
pub struct Props {
    #[serde(default)]
    default_generation_settings: Option<GenerationSettings>,
}

#[derive(Deserialize)]
struct GenerationSettings {
    #[serde(default)]
    n_ctx: Option<u32>,
}

impl Props {
    pub fn context_length(&self) -> Option<u32> {
        self.default_generation_settings
            .as_ref()?
            .n_ctx
            .filter(|&n| n > 0)
    }
}

#[derive(Deserialize)]
pub struct StreamError {
    #[serde(default)]
    pub message: String,
}

/// `GET /models`.
#[derive(Deserialize)]
pub struct ModelList {
    #[serde(default)]
    data: Vec<WireModel>,
}

#[derive(Deserialize)]
struct WireModel {
    id: String,
    /// vLLM: the context the server gives each request of the model.
    #[serde(default)]
    max_model_len: Option<u32>,
}

impl ModelList {
    /// What the server says of `model`'s context (vLLM's `max_model_len`).
    pub fn context_length(&self, model: &str) -> Option<u32> {
        self.data
            .iter()
            .find(|m| crate::llm::same_model(&m.id, model))?
            .max_model_len
    }

    /// The servers do not say how big a model is; the size stays 0 (unknown).
    pub fn models(self) -> Vec<ModelInfo> {
        self.data
            .into_iter()
            .map(|m| ModelInfo {
                name: m.id,
                size_bytes: 0,
                parameter_size: None,
                quantization_level: None,
            })
            .collect()
    }
}

impl From<ModelInfo> for RunningModel {
    fn from(model: ModelInfo) -> Self {
        Self {
            name: model.name,
            size_bytes: model.size_bytes,
            expires_at: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prompt::{GenerationOptions, Role};

    fn prompt(options: GenerationOptions) -> Prompt {
        Prompt {
            model: "qwen2.5-7b-instruct".into(),
            messages: vec![ChatMessage::new(Role::User, "hi")],
            options,
        }
    }

    #[test]
    fn request_streams_with_usage_and_maps_the_options() {
        let body = serde_json::to_value(ChatRequest::new(&prompt(GenerationOptions {
            temperature: Some(0.5),
            num_predict: Some(256),
            num_ctx: Some(2048),
            ..GenerationOptions::default()
        })))
        .unwrap();
        let expected = json!({
            "model": "qwen2.5-7b-instruct",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": true,
            "stream_options": {"include_usage": true},
            "temperature": 0.5,
            "max_tokens": 256,
        });
        assert_eq!(body, expected);
        let unlimited = GenerationOptions {
            num_predict: Some(-1),
            ..GenerationOptions::default()
        };
        let body = serde_json::to_value(ChatRequest::new(&prompt(unlimited))).unwrap();
        assert!(body.get("max_tokens").is_none(), "{body}");
    }

    #[test]
    fn structured_output_becomes_response_format() {
        let json_only = GenerationOptions {
            format: Some(ResponseFormat::Json),
            ..GenerationOptions::default()
        };
        let body = serde_json::to_value(ChatRequest::new(&prompt(json_only))).unwrap();
        assert_eq!(body["response_format"], json!({"type": "json_object"}));
        let schema = r#"{"type":"object","properties":{"mood":{"type":"string"}}}"#;
        let with_schema = GenerationOptions {
            format: Some(ResponseFormat::Schema(schema.into())),
            ..GenerationOptions::default()
        };
        let body = serde_json::to_value(ChatRequest::new(&prompt(with_schema))).unwrap();
        assert_eq!(body["response_format"]["type"], "json_schema");
        assert_eq!(
            body["response_format"]["json_schema"]["schema"],
            serde_json::from_str::<serde_json::Value>(schema).unwrap()
        );
    }
}
