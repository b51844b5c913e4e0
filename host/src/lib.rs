//! pi-agent: a private LLM assistant for a Raspberry Pi.
//!
//! # Rooms and which way they depend
//!
//! Each module below is a room; a room imports only the rooms on its line, and nothing
//! imports back up the list. The map is checked: `tests/suite/rooms.rs` reads every
//! `crate::` path under `host/src/` (outside `#[cfg(test)]`) and fails when the code and
//! this map disagree, or when the map has a circle.
//!
//! ```text
//! clock, ids, zone, secret, background, memory, health   (leaves: import no room)
//! prompt    → ids, zone
//! telemetry → clock
//! store     → clock, ids, prompt
//! llm       → background, prompt, secret, telemetry
//! pipeline  → background, memory, prompt, store, telemetry
//! chat      → clock, ids, llm, pipeline, prompt, store, telemetry, zone
//! schedule  → chat, clock, ids, prompt, store, telemetry, zone
//! telegram  → background, chat, clock, health, ids, llm, pipeline, prompt, schedule, secret, store, telemetry, zone
//! web       → background, chat, clock, ids, memory, pipeline, schedule, secret, store, telemetry, zone
//! config    → chat, ids, llm, pipeline, prompt, schedule, secret, store, telegram, web, zone
//! app       → background, chat, clock, config, health, llm, memory, pipeline, schedule, store, telegram, web
//! cli       → app, background, chat, clock, config, health, ids, llm, pipeline, prompt, store, telegram, telemetry, zone
//! ```
//!
//! A message moves down the middle: [`telegram`] hands it to [`chat`], which runs it
//! through [`pipeline`] and [`llm`] and keeps it in [`store`]; [`schedule`] feeds [`chat`]
//! the same jobs. Each room owns its settings struct; [`config`] only reads the
//! environment and fills them in, so it sits near the top, not under everyone.
//!
//! - [`clock`] — wall-clock milliseconds, as the store and guests see them, and the wall
//!   clock the scheduler sleeps on;
//! - [`ids`] — the chat, user, job and task ids, as types that cannot be swapped;
//! - [`zone`] — a chat's time zone;
//! - [`secret`] — a value that never prints (tokens, passwords);
//! - [`background`] — the bot's background tasks and the one signal that stops them;
//! - [`memory`] — giving back what start-up and reloads leave resident;
//! - [`health`] — the polling loop's heartbeat, for container healthchecks;
//! - [`prompt`] — the values a message carries (chat turns, prompt, reply);
//! - [`telemetry`] — what the bot counts, for `/metrics` and the dashboard, and the log
//!   lines the dashboard shows;
//! - [`store`] — SQLite, behind one narrow handle per table (see its table of owners);
//! - [`llm`] — the language model: a backend trait, the Ollama and OpenAI-style clients,
//!   failover;
//! - [`pipeline`] — user-replaceable WebAssembly guests: formatters before the LLM,
//!   shapers after it, sandboxed, independent of Telegram and Ollama, hot-swapped;
//! - [`chat`] — the conversation service: jobs, queue, workers, the history window,
//!   per-chat preferences, and the notices it raises (as data, worded elsewhere);
//! - [`schedule`] — reminders and recurring prompts: parsed in the chat's time zone,
//!   stored, fired on time by one wall-clock timer into the chat service's queue;
//! - [`telegram`] — bot I/O: long polling, commands, paced streaming replies, and every
//!   sentence a user reads;
//! - [`web`] — the dashboard: pages, live log, `/metrics`, behind a login;
//! - [`config`] — typed settings from the environment and `.env`;
//! - [`app`] — assembles the bot; [`cli`] — the `pi-agent` command line.

pub mod app;
pub mod background;
pub mod chat;
pub mod cli;
pub mod clock;
pub mod config;
pub mod health;
pub mod ids;
pub mod llm;
pub mod memory;
pub mod pipeline;
pub mod prompt;
pub mod schedule;
pub mod secret;
pub mod store;
pub mod telegram;
pub mod telemetry;
pub mod web;
pub mod zone;
