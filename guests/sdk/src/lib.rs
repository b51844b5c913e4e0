//! SDK for pi-agent pipeline guests (WIT `pi-agent:pipeline@0.3.0`).
//!
//! A guest is a `cdylib` crate built for `wasm32-wasip2`. Implement [`Formatter`] (runs
//! before the LLM), [`Shaper`] (runs on its reply) or both on a unit struct, then register
//! it with exactly one of [`export_formatter!`], [`export_shaper!`] or [`export_stage!`]:
//!
//! ```ignore
//! use pi_agent_guest::{ChatContext, Formatter, Outcome, Prompt};
//!
//! struct Shout;
//!
//! impl Formatter for Shout {
//!     fn format(_ctx: ChatContext, mut prompt: Prompt) -> Outcome {
//!         if let Some(last) = prompt.messages.last_mut() {
//!             last.content = last.content.to_uppercase();
//!         }
//!         Outcome::Prompt(prompt)
//!     }
//! }
//!
//! pi_agent_guest::export_formatter!(Shout);
//! ```
//!
//! The types are those of `wit/v0.3.0/pipeline.wit`; read it for what each field means.
//! [`ChatContext`] says where a message comes from: the chat, the sender, the chat's time
//! zone (`time_zone`, an IANA name such as "Europe/Madrid", "UTC" when unknown) and, for a
//! message the bot's scheduler sent rather than a person (a `/every` task, a `/remind`
//! reminder), which task and when it was due (`scheduled`, a [`ScheduledRun`]).
//! Beyond the prompt and the reply, a guest may use what its stage is granted in
//! `pipeline.toml` — [`http`] (outgoing requests to granted origins) and [`kv`] (a private
//! key-value store) — ask the model for JSON ([`structured`]), and tell whether a message is
//! for a tool stage by its trigger words ([`words`]).

#[doc(hidden)]
pub mod bindings {
    //! Generated bindings. Not part of the SDK's API: use the re-exports.
    //!
    //! Only the two single-role worlds are generated: a guest that does both exports both,
    //! and the component gets the union (which is the `stage-guest` world). Generating the
    //! `stage-guest` world as well would define each interface's export macro twice.

    pub mod formatter {
        wit_bindgen::generate!({
            path: "../../wit/v0.3.0",
            world: "formatter-guest",
            pub_export_macro: true,
            export_macro_name: "export_formatter_world",
            default_bindings_module: "pi_agent_guest::bindings::formatter",
        });
    }

    pub mod shaper {
        wit_bindgen::generate!({
            path: "../../wit/v0.3.0",
            world: "shaper-guest",
            with: {
                "pi-agent:pipeline/types@0.3.0": crate::bindings::formatter::pi_agent::pipeline::types,
                "pi-agent:pipeline/host@0.3.0": crate::bindings::formatter::pi_agent::pipeline::host,
                "pi-agent:pipeline/kv@0.3.0": crate::bindings::formatter::pi_agent::pipeline::kv,
            },
            pub_export_macro: true,
            export_macro_name: "export_shaper_world",
            default_bindings_module: "pi_agent_guest::bindings::shaper",
        });
    }
}

pub mod http;
pub mod kv;
pub mod structured;
pub mod words;

use bindings::formatter::pi_agent::pipeline::host;

pub use bindings::formatter::pi_agent::pipeline::types::{
    ChatContext, ChatMessage, Options, Outcome, Prompt, Reply, ResponseFormat, Role, ScheduledRun,
    TextFormat,
};

/// A stage that runs before the LLM: may rewrite the prompt, answer directly, or refuse.
pub trait Formatter {
    fn format(ctx: ChatContext, prompt: Prompt) -> Outcome;
}

/// A stage that runs on the LLM's reply: called with `done = false` for partial text while
/// it streams in, and once with `done = true` for the complete reply.
pub trait Shaper {
    fn shape(ctx: ChatContext, prompt: Prompt, response: Reply, done: bool) -> Reply;
}

/// This stage's `[stage.config]` value for `key`, as text.
pub fn config(key: &str) -> Option<String> {
    host::config(key)
}

/// This stage's config value for `key` parsed as `T`, or `default` when it is missing.
/// A value that does not parse is logged as a warning and `default` is used.
pub fn config_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    match config(key) {
        None => default,
        Some(text) => text.trim().parse().unwrap_or_else(|_| {
            log::warn(&format!(
                "config key '{key}' has an invalid value '{text}'; using the default"
            ));
            default
        }),
    }
}

/// Log lines in the host's log, tagged with this stage's name.
pub mod log {
    use super::host::{Level, log};

    pub fn trace(message: &str) {
        log(Level::Trace, message);
    }
    pub fn debug(message: &str) {
        log(Level::Debug, message);
    }
    pub fn info(message: &str) {
        log(Level::Info, message);
    }
    pub fn warn(message: &str) {
        log(Level::Warn, message);
    }
    pub fn error(message: &str) {
        log(Level::Error, message);
    }
}

impl Reply {
    pub fn plain(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            format: TextFormat::Plain,
        }
    }

    pub fn html(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            format: TextFormat::Html,
        }
    }
}

impl ChatMessage {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// Exports `$t` (implementing [`Formatter`]) as a formatter-only guest.
#[macro_export]
macro_rules! export_formatter {
    ($t:ty) => {
        // Exports exist only in the wasm build; natively (unit tests, benchmarks) the crate
        // is a plain library, and this only checks that `$t` implements the trait.
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn($crate::ChatContext, $crate::Prompt) -> $crate::Outcome = <$t as $crate::Formatter>::format;
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __PiAgentExport;
            impl $crate::bindings::formatter::exports::pi_agent::pipeline::formatter::Guest for __PiAgentExport {
                fn format(ctx: $crate::ChatContext, prompt: $crate::Prompt) -> $crate::Outcome {
                    <$t as $crate::Formatter>::format(ctx, prompt)
                }
            }
            $crate::bindings::formatter::export_formatter_world!(__PiAgentExport with_types_in $crate::bindings::formatter);
        };
    };
}

/// Exports `$t` (implementing [`Shaper`]) as a shaper-only guest.
#[macro_export]
macro_rules! export_shaper {
    ($t:ty) => {
        // As in `export_formatter!`: real exports only in the wasm build.
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn($crate::ChatContext, $crate::Prompt, $crate::Reply, bool) -> $crate::Reply = <$t as $crate::Shaper>::shape;
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __PiAgentExport;
            impl $crate::bindings::shaper::exports::pi_agent::pipeline::shaper::Guest for __PiAgentExport {
                fn shape(ctx: $crate::ChatContext, prompt: $crate::Prompt, response: $crate::Reply, done: bool) -> $crate::Reply {
                    <$t as $crate::Shaper>::shape(ctx, prompt, response, done)
                }
            }
            $crate::bindings::shaper::export_shaper_world!(__PiAgentExport with_types_in $crate::bindings::shaper);
        };
    };
}

/// Exports `$t` (implementing both [`Formatter`] and [`Shaper`]) as a guest that does both.
#[macro_export]
macro_rules! export_stage {
    ($t:ty) => {
        $crate::export_formatter!($t);
        $crate::export_shaper!($t);
    };
}
