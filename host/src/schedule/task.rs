//! A scheduled task as it is stored: what it sends, to which chat, and when next.

use crate::chat::JobKind;
use crate::prompt::ChatContext;

/// What a task sends when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    /// `/remind`: its text, through the shapers only.
    Reminder,
    /// `/every`: its prompt, through formatters, the LLM and shapers.
    Prompt,
}

impl TaskKind {
    /// The kind of job a firing of this task becomes.
    pub fn job_kind(self) -> JobKind {
        match self {
            Self::Reminder => JobKind::Reminder,
            Self::Prompt => JobKind::TaskPrompt,
        }
    }
}

/// A task before it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    pub chat_id: i64,
    pub kind: TaskKind,
    pub text: String,
    /// `Recurrence::to_spec`; `None`: fires once.
    pub recurrence: Option<String>,
    pub next_due_unix_ms: u64,
    /// The context of the message that created it: who, in which chat.
    pub context: ChatContext,
    pub created_unix_ms: u64,
}

impl NewTask {
    /// The task's recurrence, read from its stored spec; `None` for a one-off task.
    pub fn recurrence(&self) -> Option<Result<super::Recurrence, super::ParseError>> {
        self.recurrence.as_deref().map(super::Recurrence::from_spec)
    }
}

/// A stored task.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// The id `/tasks` shows and `/cancel` takes; never reused.
    pub id: i64,
    pub task: NewTask,
}
