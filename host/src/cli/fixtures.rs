//! Fixture files for `pipeline test`: one TOML file per case — a message, optional
//! history, the fake LLM's reply, and what the prompt and the shaped reply must look like.
//!
//! ```toml
//! message = "hi"                         # what the user sends
//! reply = "**bold** <script>"            # optional: the fake LLM's answer
//!
//! [[history]]                            # optional earlier turns, oldest first
//! role = "user"                          # user | assistant | system
//! content = "hello"
//!
//! [expect.prompt]                        # the LLM's prompt as "role: content" blocks
//! contains = ["system: You are"]
//! not_contains = ["secret"]
//! messages = 2                           # optional: number of messages
//!
//! [expect.reply]                         # the shaped reply text
//! equals = "<b>bold</b> &lt;script&gt;"
//! format = "html"                        # optional: plain | html
//!
//! [expect]
//! rejected = true                        # a formatter must refuse the message
//! [expect.rejection]                     # checks on the refusal's reason
//! contains = ["not allowed"]
//! ```
//!
//! Every check is optional; a fixture with none only has to run without a guest failing.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;

use crate::prompt::{ChatMessage, Prompt, Reply, TextFormat};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    pub message: String,
    pub reply: Option<String>,
    #[serde(default)]
    pub history: Vec<ChatMessage>,
    #[serde(default)]
    pub expect: Expectations,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectations {
    pub prompt: Option<PromptCheck>,
    pub reply: Option<ReplyCheck>,
    pub rejected: Option<bool>,
    pub rejection: Option<TextCheck>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextCheck {
    pub equals: Option<String>,
    #[serde(default)]
    pub contains: Vec<String>,
    #[serde(default)]
    pub not_contains: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptCheck {
    #[serde(flatten)]
    pub text: TextCheck,
    pub messages: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyCheck {
    #[serde(flatten)]
    pub text: TextCheck,
    pub format: Option<TextFormat>,
}

/// Earlier turns only: the format `pipeline run --history` reads (a fixture file works too).
#[derive(Debug, Deserialize)]
struct HistoryFile {
    #[serde(default)]
    history: Vec<ChatMessage>,
}

pub fn read_history(path: &Path) -> anyhow::Result<Vec<ChatMessage>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read history file {}", path.display()))?;
    let file: HistoryFile = toml::from_str(&text)
        .with_context(|| format!("history file {} is not valid", path.display()))?;
    Ok(file.history)
}

/// The fixture files in `dir`, sorted by name.
pub fn load_dir(dir: &Path) -> anyhow::Result<Vec<(PathBuf, anyhow::Result<Fixture>)>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read fixture directory {}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    Ok(paths
        .into_iter()
        .map(|p| {
            let f = load(&p);
            (p, f)
        })
        .collect())
}

fn load(path: &Path) -> anyhow::Result<Fixture> {
    let text = std::fs::read_to_string(path)?;
    toml::from_str(&text).map_err(|e| anyhow::anyhow!("not a valid fixture: {e}"))
}

/// What one message did in the pipeline.
#[derive(Debug)]
pub enum Run {
    /// Formatters passed it to the LLM with this prompt; `shaped` is the fake reply after the
    /// shapers, when there was one.
    Asked {
        prompt: Prompt,
        shaped: Option<Reply>,
    },
    /// A formatter answered directly; `shaped` is that answer after the shapers.
    Answered { prompt: Prompt, shaped: Reply },
    /// A formatter refused.
    Rejected { stage: String, reason: String },
}

/// The prompt as text, one "role: content" block per message.
pub fn prompt_text(prompt: &Prompt) -> String {
    prompt
        .messages
        .iter()
        .map(|m| format!("{}: {}", m.role, m.content))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Checks `run` against `expect`; returns every failed expectation.
pub fn evaluate(expect: &Expectations, run: &Run) -> Vec<String> {
    let mut failures = Vec::new();
    let (prompt, shaped) = match run {
        Run::Rejected { stage, reason } => {
            if expect.rejected != Some(true) {
                failures.push(format!("rejected by stage '{stage}': {reason}"));
            }
            if let Some(check) = &expect.rejection {
                check_text("rejection", check, reason, &mut failures);
            }
            return failures;
        }
        Run::Asked { prompt, shaped } => (prompt, shaped.as_ref()),
        Run::Answered { prompt, shaped } => (prompt, Some(shaped)),
    };
    if expect.rejected == Some(true) {
        failures.push("expected a rejection, the message was accepted".into());
    }
    if let Some(check) = &expect.prompt {
        check_text("prompt", &check.text, &prompt_text(prompt), &mut failures);
        if let Some(n) = check.messages.filter(|n| *n != prompt.messages.len()) {
            failures.push(format!(
                "prompt: expected {n} messages, got {}",
                prompt.messages.len()
            ));
        }
    }
    if let Some(check) = &expect.reply {
        match shaped {
            None => {
                failures.push("reply: expectations given but the fixture has no `reply`".into())
            }
            Some(reply) => {
                check_text("reply", &check.text, &reply.text, &mut failures);
                if let Some(format) = check.format.filter(|f| *f != reply.format) {
                    failures.push(format!(
                        "reply: expected format {format:?}, got {:?}",
                        reply.format
                    ));
                }
            }
        }
    }
    failures
}

fn check_text(what: &str, check: &TextCheck, actual: &str, failures: &mut Vec<String>) {
    if let Some(expected) = check.equals.as_deref().filter(|e| *e != actual) {
        failures.push(format!(
            "{what}: expected exactly {expected:?}, got {actual:?}"
        ));
    }
    for needle in check
        .contains
        .iter()
        .filter(|n| !actual.contains(n.as_str()))
    {
        failures.push(format!(
            "{what}: expected to contain {needle:?}, got {actual:?}"
        ));
    }
    for needle in check
        .not_contains
        .iter()
        .filter(|n| actual.contains(n.as_str()))
    {
        failures.push(format!(
            "{what}: expected not to contain {needle:?}, got {actual:?}"
        ));
    }
}
