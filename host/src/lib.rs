//! pi-agent: a private LLM assistant for a Raspberry Pi.
//!
//! Data moves one way through the crate:
//!
//! - [`prompt`] — the values a message carries (chat turns, prompt, reply);
//! - [`pipeline`] — user-replaceable WebAssembly guests: formatters before the LLM,
//!   shapers after it, sandboxed and independent of Telegram and Ollama;
//! - [`llm`] — the language model: a backend trait and the streaming Ollama client;
//! - [`telegram`] — bot I/O: long polling, commands, paced streaming replies;
//! - [`chat`] — the conversation service that joins them: queue, workers, history;
//! - [`store`] — SQLite: history, per-chat settings, pending jobs;
//! - [`reload`] — swapping guests while the bot runs (file watch, SIGHUP, `/reload`);
//! - [`config`] — typed settings from the environment and `.env`;
//! - [`health`] — the polling loop's heartbeat, for container healthchecks;
//! - [`memory`] — giving back what start-up and reloads leave resident;
//! - [`app`] — assembles the bot; [`cli`] — the `pi-agent` command line.

pub mod app;
pub mod chat;
pub mod cli;
pub mod config;
pub mod health;
pub mod llm;
pub mod memory;
pub mod pipeline;
pub mod prompt;
pub mod reload;
pub mod store;
pub mod telegram;
