//! The values one message carries through the host: chat turns, the prompt for the LLM,
//! the reply for the user. Plain Rust mirrors of the WIT `types` interface, so the chat
//! service and the LLM client never touch generated bindings (the pipeline converts at its
//! edge, one adapter per WIT version).

use serde::{Deserialize, Serialize};

use crate::ids::{ChatId, TaskId, UserId};
use crate::zone::Zone;

/// Who wrote a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
        })
    }
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// Where a message comes from, as the pipeline's guests see it: assembled when the message is
/// answered, with the chat's time zone of then.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatContext {
    pub chat_id: ChatId,
    pub user_id: UserId,
    pub user_name: Option<String>,
    pub language: Option<String>,
    pub is_group: bool,
    pub unix_ms: u64,
    /// The chat's time zone (`/timezone`, else `TIMEZONE`).
    pub time_zone: Zone,
    /// Set when the scheduler, not a person, sent this message (a `/every` task's prompt,
    /// a `/remind` reminder); `None` for a user's message.
    pub scheduled: Option<ScheduledRun>,
}

/// One firing of a scheduled task, as guests see it (WIT 0.3.0 `scheduled-run`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScheduledRun {
    /// The task's id, as `/tasks` lists it.
    pub task_id: TaskId,
    /// When the task was due, in milliseconds since the Unix epoch.
    pub due_unix_ms: u64,
    /// True when it fires late: it was due while the bot was not running.
    pub late: bool,
}

/// Structured output: the model answers in JSON instead of prose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResponseFormat {
    /// Any JSON value.
    Json,
    /// JSON matching this JSON Schema (its JSON text).
    Schema(String),
}

/// Generation options for the model; `None` leaves the model's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerationOptions {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<u32>,
    pub num_predict: Option<i32>,
    pub num_ctx: Option<u32>,
    pub seed: Option<i32>,
    pub stop: Vec<String>,
    /// When set, the reply is shaped and shown only once complete.
    pub format: Option<ResponseFormat>,
}

/// What the LLM will be asked: history, oldest first, ending with the new user message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prompt {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub options: GenerationOptions,
}

/// How Telegram should read a reply's text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TextFormat {
    #[default]
    Plain,
    Html,
}

/// Text for the user.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub text: String,
    pub format: TextFormat,
}

impl Reply {
    pub fn plain(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            format: TextFormat::Plain,
        }
    }

    /// Puts the plain-text `line` above the reply (a blank line between them, none when the
    /// reply is empty), escaped if the reply is HTML.
    pub fn prepend_line(&mut self, line: &str) {
        let line = match self.format {
            TextFormat::Plain => line.to_owned(),
            TextFormat::Html => line
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;"),
        };
        self.text = if self.text.is_empty() {
            line
        } else {
            format!("{line}\n\n{}", self.text)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_above_an_html_reply_is_escaped() {
        let mut html = Reply {
            text: "<b>Hi</b>".into(),
            format: TextFormat::Html,
        };
        html.prepend_line("⏰ tea & <cake>");
        assert_eq!(html.text, "⏰ tea &amp; &lt;cake&gt;\n\n<b>Hi</b>");
        let mut empty = Reply::plain("");
        empty.prepend_line("⏰ tea & <cake>");
        assert_eq!(empty.text, "⏰ tea & <cake>");
    }
}
