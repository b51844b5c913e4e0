//! Where replies go, behind object-safe traits (as `LlmBackend`), so the same service drives
//! Telegram and the terminal without a type parameter spreading through the bot.

use futures_util::future::BoxFuture;

use super::notice::{AdminNotice, Notice};
use crate::ids::ChatId;
use crate::prompt::{Reply, ScheduledRun};
use crate::zone::Zone;

/// A surface: opens a reply for each job, tells the admins, and words what the service
/// only has as data.
pub trait Replies: Send + Sync {
    /// A reply in `chat_id`, quoting its message `message_id` (the chat's own numbering, as
    /// Telegram's) if it answers one.
    fn open(&self, chat_id: ChatId, message_id: Option<i32>) -> Box<dyn ReplySink>;

    /// Tells the bot's admins something they should act on. Best effort: failures are
    /// logged, not returned.
    fn tell_admins<'a>(&'a self, notice: &'a AdminNotice) -> BoxFuture<'a, ()>;

    /// The first line of a scheduled task's reply, and the whole of a reminder: the task's
    /// `text`, and when it was due if `run` is late, in `zone`.
    fn announcement(&self, text: &str, run: &ScheduledRun, zone: &Zone) -> String;
}

/// One reply as it streams in.
pub trait ReplySink: Send {
    /// The service is working on it (Telegram: the typing indicator). Called again every
    /// few seconds until the first text arrives.
    fn working(&mut self) -> BoxFuture<'_, ()>;

    /// The reply so far, shaped with `done = false`. Paced by the service; may be skipped
    /// by the sink (e.g. while Telegram asks it to slow down).
    fn partial<'a>(&'a mut self, reply: &'a Reply) -> BoxFuture<'a, ()>;

    /// The complete reply, shaped with `done = true`. An error means it was not delivered
    /// and the job must stay pending.
    fn finish<'a>(&'a mut self, reply: &'a Reply) -> BoxFuture<'a, anyhow::Result<()>>;

    /// A short note after (or instead of) the reply: an error, "stopped".
    fn notice<'a>(&'a mut self, notice: &'a Notice) -> BoxFuture<'a, anyhow::Result<()>>;
}
