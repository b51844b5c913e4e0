//! What the chat service has to tell people besides an answer — as data. The surfaces
//! render it in their own words (`telegram::messages` for a chat, `telegram::admin` for the
//! admins, the terminal for `pi-agent chat`); this room writes no user-facing text.

use super::window::TooLong;
use crate::ids::{ChatId, TaskId};
use crate::llm::LlmError;
use crate::pipeline::StageError;

/// A note to a chat: after an answer, or instead of one.
#[derive(Debug, Clone)]
pub enum Notice {
    /// A formatter refused the message; `reason` is the guest's, for the user.
    Rejected { reason: String },
    /// A pipeline stage failed on the message.
    StageFailed(StageError),
    /// The model server failed, before any text or after some.
    LlmFailed(LlmError),
    /// The database failed while the message was being prepared; it was not answered.
    DatabaseFailed,
    /// The message does not fit the model's context.
    TooLong(TooLong),
    /// The user stopped the answer (`/stop`); what was written so far stands.
    Stopped,
    /// The answer reached the length limit: `OLLAMA_NUM_PREDICT` when set, else the
    /// server's own limit or the end of its context.
    CutOff { num_predict_set: bool },
    /// The bot stopped while answering this message several times: it was dropped.
    GivenUp,
    /// The primary model server could not answer: another answers (failover).
    FellBack {
        unavailable: String,
        model: String,
        server: String,
    },
    /// A scheduled task was due while the bot was not running, too long ago to send now.
    TaskSkipped {
        task_id: TaskId,
        text: String,
        /// When it was due, in the chat's zone ("Tue 24 Dec 18:00").
        was_due: String,
    },
}

/// A note to the bot's admins: something they should act on.
#[derive(Debug, Clone)]
pub enum AdminNotice {
    /// A job was dropped after killing the bot `attempts` times.
    GaveUp {
        chat_id: ChatId,
        job: GivenUpJob,
        attempts: u32,
    },
    /// A pipeline reload failed; the old pipeline keeps serving.
    ReloadFailed { trigger: String, error: String },
}

/// Which job was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GivenUpJob {
    Message { message_id: i32 },
    Task { task_id: TaskId },
    UnknownTask,
}
