//! pi-agent: a private LLM assistant for a Raspberry Pi.
//!
//! Data moves one way through the crate:
//!
//! - [`prompt`] — the values a message carries (chat turns, prompt, reply);
//! - [`pipeline`] — user-replaceable WebAssembly guests: formatters before the LLM,
//!   shapers after it, sandboxed and independent of Telegram and Ollama;
//! - [`config`] — typed settings from the environment and `.env`;
//! - [`cli`] — the `pi-agent` command line.

pub mod cli;
pub mod config;
pub mod pipeline;
pub mod prompt;
