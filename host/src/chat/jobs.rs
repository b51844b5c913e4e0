//! A user's message as a job: accepted ([`NewJob`]), stored until answered ([`PendingJob`]),
//! its attempts counted so a message that keeps killing the process is given up.

use crate::prompt::ChatContext;

/// One accepted user message, before it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub chat_id: i64,
    pub message_id: i32,
    pub user_id: i64,
    pub text: String,
    pub context: ChatContext,
    pub received_unix_ms: u64,
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
