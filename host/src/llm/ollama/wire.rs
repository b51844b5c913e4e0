//! Ollama's JSON on the wire: the `/api/chat` request, the streamed answer's lines,
//! `/api/tags`, `/api/ps` and `/api/show`, error bodies — and their one mapping each to and
//! from the crate's own types.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::llm::http::shorten;
use crate::llm::{GenerationStats, LlmError, ModelInfo, ReplyEvent, RunningModel};
use crate::prompt::{ChatMessage, GenerationOptions, Prompt, ResponseFormat};

/// The `/api/chat` request body.
#[derive(Serialize)]
pub struct ChatRequest<'a> {
    model: &'a str,
    messages: &'a [ChatMessage],
    stream: bool,
    options: WireOptions<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<WireFormat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keep_alive: Option<&'a str>,
}

/// Ollama's `format`: `"json"`, or a JSON Schema object (sent as the schema's own JSON).
#[derive(Serialize)]
#[serde(untagged)]
enum WireFormat {
    Json(&'static str),
    Schema(serde_json::Value),
}

impl<'a> ChatRequest<'a> {
    pub fn new(prompt: &'a Prompt, keep_alive: Option<&'a str>) -> Self {
        Self {
            model: &prompt.model,
            messages: &prompt.messages,
            stream: true,
            options: WireOptions::from(&prompt.options),
            format: prompt.options.format.as_ref().and_then(wire_format),
            keep_alive,
        }
    }
}

/// A schema that is not JSON is left out (the model then answers as it likes); stages check
/// the schemas they set, so this does not happen through the pipeline.
fn wire_format(format: &ResponseFormat) -> Option<WireFormat> {
    match format {
        ResponseFormat::Json => Some(WireFormat::Json("json")),
        ResponseFormat::Schema(schema) => serde_json::from_str(schema).ok().map(WireFormat::Schema),
    }
}

/// Generation options as Ollama reads them: unset ones are left out, so the model's own
/// defaults (from its Modelfile) apply.
#[derive(Serialize)]
struct WireOptions<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    num_predict: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    num_ctx: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
}

impl<'a> From<&'a GenerationOptions> for WireOptions<'a> {
    fn from(o: &'a GenerationOptions) -> Self {
        Self {
            temperature: o.temperature,
            top_p: o.top_p,
            top_k: o.top_k,
            num_predict: o.num_predict,
            num_ctx: o.num_ctx,
            seed: o.seed,
            stop: &o.stop,
        }
    }
}

/// `/api/tags` and `/api/ps` answers; only the fields the bot shows.
#[derive(Deserialize)]
pub struct ModelList {
    #[serde(default)]
    pub models: Vec<WireModel>,
}

#[derive(Deserialize)]
pub struct WireModel {
    name: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    details: WireDetails,
    #[serde(default)]
    expires_at: Option<String>,
}

#[derive(Deserialize, Default)]
struct WireDetails {
    parameter_size: Option<String>,
    quantization_level: Option<String>,
}

impl From<WireModel> for ModelInfo {
    fn from(model: WireModel) -> Self {
        Self {
            name: model.name,
            size_bytes: model.size,
            parameter_size: model.details.parameter_size,
            quantization_level: model.details.quantization_level,
        }
    }
}

impl From<WireModel> for RunningModel {
    fn from(model: WireModel) -> Self {
        Self {
            name: model.name,
            size_bytes: model.size,
            expires_at: model.expires_at,
        }
    }
}

/// The `/api/show` request: a model's card.
#[derive(Serialize)]
pub struct ShowRequest<'a> {
    pub model: &'a str,
}

/// What the bot reads of `/api/show`: the model's metadata, whose
/// `<architecture>.context_length` is the context it was trained for.
#[derive(Deserialize)]
pub struct ShowResponse {
    #[serde(default)]
    model_info: serde_json::Map<String, serde_json::Value>,
}

impl ShowResponse {
    pub fn context_length(&self) -> Option<u32> {
        let architecture = self.model_info.get("general.architecture")?.as_str()?;
        let length = self
            .model_info
            .get(&format!("{architecture}.context_length"))?;
        u32::try_from(length.as_u64()?).ok()
    }
}

/// One NDJSON line of a streamed `/api/chat` answer.
#[derive(Deserialize)]
pub struct ChatLine {
    #[serde(default)]
    message: Option<LineMessage>,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    eval_count: u64,
    #[serde(default)]
    eval_duration: u64,
    #[serde(default)]
    prompt_eval_count: u64,
    #[serde(default)]
    prompt_eval_duration: u64,
    #[serde(default)]
    load_duration: u64,
    #[serde(default)]
    total_duration: u64,
    /// Why generation ended: `stop`, or `length` when `num_predict` cut it.
    #[serde(default)]
    done_reason: Option<String>,
}

#[derive(Deserialize)]
struct LineMessage {
    #[serde(default)]
    content: String,
}

impl ChatLine {
    /// The line's events, in order; the last one ends the answer if `done` or an error.
    pub fn into_events(self) -> Vec<Result<ReplyEvent, LlmError>> {
        if let Some(error) = self.error {
            return vec![Err(LlmError::Generation(shorten(&error)))];
        }
        let stats = self.done.then(|| self.stats());
        let delta = self.message.map(|m| m.content).filter(|c| !c.is_empty());
        let delta = delta.map(|text| Ok(ReplyEvent::Delta(text)));
        delta
            .into_iter()
            .chain(stats.map(|s| Ok(ReplyEvent::Done(s))))
            .collect()
    }

    fn stats(&self) -> GenerationStats {
        GenerationStats {
            eval_count: self.eval_count,
            eval_duration: Duration::from_nanos(self.eval_duration),
            prompt_eval_count: self.prompt_eval_count,
            // Ollama counts cached prompt tokens in `prompt_eval_count` and reports no split.
            prompt_cached: None,
            prompt_cached_estimated: false,
            prompt_eval_duration: Duration::from_nanos(self.prompt_eval_duration),
            load_duration: Duration::from_nanos(self.load_duration),
            total_duration: Duration::from_nanos(self.total_duration),
            cut_off: self.done_reason.as_deref() == Some("length"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prompt::Role;

    #[test]
    fn request_body_leaves_unset_options_out() {
        let prompt = Prompt {
            model: "gemma2:2b".into(),
            messages: vec![ChatMessage::new(Role::User, "hi")],
            options: GenerationOptions {
                num_ctx: Some(2048),
                ..GenerationOptions::default()
            },
        };
        let body = serde_json::to_value(ChatRequest::new(&prompt, None)).unwrap();
        let expected = serde_json::json!({
            "model": "gemma2:2b",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": true,
            "options": {"num_ctx": 2048},
        });
        assert_eq!(body, expected);
    }

    #[test]
    fn the_context_length_is_the_architectures() {
        let show: ShowResponse = serde_json::from_value(serde_json::json!({
            "modelfile": "# Modelfile …",
            "details": {"family": "gemma2"},
            "model_info": {
                "general.architecture": "gemma2",
                "general.parameter_count": 2_614_341_888u64,
                "gemma2.context_length": 8192,
                "gemma2.embedding_length": 2304
            },
            "capabilities": ["completion"]
        }))
        .unwrap();
        assert_eq!(show.context_length(), Some(8192));
        let bare: ShowResponse = serde_json::from_str("{}").unwrap();
        assert_eq!(bare.context_length(), None);
    }

    #[test]
    fn structured_output_reaches_ollama_as_format() {
        let mut prompt = Prompt {
            model: "gemma2:2b".into(),
            messages: vec![ChatMessage::new(Role::User, "mood?")],
            options: GenerationOptions::default(),
        };
        prompt.options.format = Some(ResponseFormat::Json);
        let body = serde_json::to_value(ChatRequest::new(&prompt, None)).unwrap();
        assert_eq!(body["format"], "json");
        let schema = r#"{"type":"object","properties":{"mood":{"type":"string"}}}"#;
        prompt.options.format = Some(ResponseFormat::Schema(schema.into()));
        let body = serde_json::to_value(ChatRequest::new(&prompt, None)).unwrap();
        assert_eq!(
            body["format"],
            serde_json::from_str::<serde_json::Value>(schema).unwrap()
        );
        assert!(body["options"].as_object().unwrap().is_empty(), "{body}");
    }
}
