//! Structured output: ask the model for JSON, then read it typed in a shaper.
//!
//! A formatter sets the format; the model answers in JSON; the shapers get the complete
//! JSON once (`done = true`, partial JSON is never shown) and decide what the user reads.
//!
//! ```ignore
//! // formatter
//! pi_agent_guest::structured::ask_for_schema(&mut prompt, r#"{"type":"object","properties":{"mood":{"type":"string"}},"required":["mood"]}"#);
//! // shaper
//! #[derive(serde::Deserialize)]
//! struct Mood { mood: String }
//! let Ok(Mood { mood }) = pi_agent_guest::structured::parse::<Mood>(&response) else { return response };
//! ```

use serde::de::DeserializeOwned;

use crate::{Prompt, Reply, ResponseFormat};

/// Asks for any JSON value.
pub fn ask_for_json(prompt: &mut Prompt) {
    prompt.options.format = Some(ResponseFormat::Json);
}

/// Asks for JSON matching `schema` (a JSON Schema, as JSON text). A schema that is not
/// valid JSON fails the stage's call, so check it in the guest's tests.
pub fn ask_for_schema(prompt: &mut Prompt, schema: &str) {
    prompt.options.format = Some(ResponseFormat::Schema(schema.to_owned()));
}

/// Whether the prompt asked for structured output (a shaper then sees JSON).
pub fn is_requested(prompt: &Prompt) -> bool {
    prompt.options.format.is_some()
}

/// The reply's text read as `T`.
pub fn parse<T: DeserializeOwned>(reply: &Reply) -> Result<T, serde_json::Error> {
    serde_json::from_str(&reply.text)
}
