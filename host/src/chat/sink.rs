//! Where replies go, behind a trait so the same service drives Telegram and the terminal.

use std::future::Future;

use crate::prompt::Reply;

/// Opens a reply for each job and sends one-off notices.
pub trait Replies: Send + Sync + 'static {
    type Sink: ReplySink;

    /// A reply in `chat_id`, quoting its message `message_id` (the chat's own numbering, as
    /// Telegram's) if it answers one.
    fn open(&self, chat_id: i64, message_id: Option<i32>) -> Self::Sink;

    /// Tells the bot's admins something they should act on (in Telegram: a message to
    /// each). Best effort: failures are logged, not returned.
    fn tell_admins(&self, text: &str) -> impl Future<Output = ()> + Send;
}

/// One reply as it streams in.
pub trait ReplySink: Send + 'static {
    /// The service is working on it (Telegram: the typing indicator). Called again every
    /// few seconds until the first text arrives.
    fn working(&mut self) -> impl Future<Output = ()> + Send;

    /// The reply so far, shaped with `done = false`. Paced by the service; may be skipped
    /// by the sink (e.g. while Telegram asks it to slow down).
    fn partial(&mut self, reply: &Reply) -> impl Future<Output = ()> + Send;

    /// The complete reply, shaped with `done = true`. An error means it was not delivered
    /// and the job must stay pending.
    fn finish(&mut self, reply: &Reply) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// A short plain-text note after (or instead of) the reply: an error, "stopped".
    fn notice(&mut self, text: &str) -> impl Future<Output = anyhow::Result<()>> + Send;
}
