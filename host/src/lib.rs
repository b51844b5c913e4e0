//! pi-agent: a private LLM assistant for a Raspberry Pi.
//!
//! Data moves one way through the crate: [`telegram`] → [`chat`] → [`pipeline`] / [`llm`]
//! → [`store`]; [`schedule`] sits beside [`telegram`], feeding [`chat`] the same jobs.
//!
//! - [`prompt`] — the values a message carries (chat turns, prompt, reply);
//! - [`telegram`] — bot I/O: long polling, commands, paced streaming replies;
//! - [`chat`] — the conversation service that joins the rest: jobs, queue, workers, and
//!   what `/status` and `/model` show;
//! - [`pipeline`] — user-replaceable WebAssembly guests: formatters before the LLM,
//!   shapers after it, sandboxed, independent of Telegram and Ollama, hot-swapped;
//! - [`llm`] — the language model: a backend trait and the streaming Ollama client;
//! - [`schedule`] — reminders and recurring prompts: parsed in the chat's time zone,
//!   stored, fired on time by one wall-clock timer into the chat service's queue;
//! - [`store`] — SQLite: history, per-chat settings, pending jobs, tasks;
//! - [`config`] — typed settings from the environment and `.env`;
//! - [`clock`] — wall-clock milliseconds, as the store and guests see them;
//! - [`health`] — the polling loop's heartbeat, for container healthchecks;
//! - [`telemetry`] — what the bot counts, for `/metrics` and the dashboard, and the log
//!   lines the dashboard shows;
//! - [`web`] — the dashboard: pages, live log, `/metrics`, behind a login;
//! - [`memory`] — giving back what start-up and reloads leave resident;
//! - [`app`] — assembles the bot; [`cli`] — the `pi-agent` command line.

pub mod app;
pub mod chat;
pub mod cli;
pub mod clock;
pub mod config;
pub mod health;
pub mod llm;
pub mod memory;
pub mod pipeline;
pub mod prompt;
pub mod schedule;
pub mod store;
pub mod telegram;
pub mod telemetry;
pub mod web;
