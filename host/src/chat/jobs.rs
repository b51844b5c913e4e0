//! A job — a user's message, or a scheduled task's firing — accepted ([`NewJob`]), stored
//! until answered ([`PendingJob`]), its attempts counted so a job that keeps killing the
//! process is given up.

use crate::prompt::ChatContext;

/// One accepted job, before it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub chat_id: i64,
    pub kind: JobKind,
    pub user_id: i64,
    pub text: String,
    pub context: ChatContext,
    pub received_unix_ms: u64,
}

/// What a job answers, which decides the way it takes through the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// A person's message (its id in the chat): formatters, the LLM, shapers; the answer
    /// quotes it.
    Message { message_id: i32 },
    /// A scheduled task's prompt (`/every`): the same way as a message, no quote.
    TaskPrompt,
    /// A reminder's text (`/remind`): only the shapers; the LLM is not asked.
    Reminder,
}

impl JobKind {
    /// The person's message this job answers, if it answers one.
    pub fn message_id(self) -> Option<i32> {
        match self {
            Self::Message { message_id } => Some(message_id),
            Self::TaskPrompt | Self::Reminder => None,
        }
    }
}

/// A stored message not yet answered; survives restarts until it is completed.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingJob {
    /// The store's id for it; never reused.
    pub id: i64,
    /// How often a worker started on it (the process may have died each time).
    pub attempts: u32,
    pub message: NewJob,
}

impl PendingJob {
    /// The job stored as `id`, before any attempt.
    pub fn new(id: i64, message: NewJob) -> Self {
        Self {
            id,
            attempts: 0,
            message,
        }
    }
}

/// What storing a [`NewJob`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    New(i64),
    /// Already pending or already answered: acknowledge the update and do nothing.
    Duplicate,
}
