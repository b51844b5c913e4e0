//! A streaming reply in a Telegram chat: the first message as soon as there is text, then
//! edits (paced by the service), continued in new messages past 4096 characters, resent as
//! plain text if Telegram rejects the HTML, and waiting out 429s.

use std::collections::BTreeSet;

use futures_util::future::BoxFuture;
use teloxide::ApiError;
use teloxide::RequestError;
use teloxide::prelude::*;
use teloxide::types::{ChatAction, MessageId, ParseMode, ReplyParameters};

use super::text::{MESSAGE_LIMIT, html_to_plain, split_html, split_plain};
use super::{admin, backoff, messages, redact};
use crate::chat::{AdminNotice, Notice, Replies, ReplySink};
use crate::ids::UserId;
use crate::prompt::{Reply, ScheduledRun, TextFormat};
use crate::zone::Zone;

/// How often a failing final send is retried (network errors; 429s wait as told).
const DELIVERY_ATTEMPTS: u32 = 5;

/// Opens replies in Telegram.
pub struct TelegramReplies {
    bot: Bot,
    admins: BTreeSet<UserId>,
}

impl TelegramReplies {
    pub fn new(bot: Bot, admins: BTreeSet<UserId>) -> Self {
        Self { bot, admins }
    }
}

impl Replies for TelegramReplies {
    fn open(&self, chat_id: crate::ids::ChatId, message_id: Option<i32>) -> Box<dyn ReplySink> {
        Box::new(TelegramReply {
            bot: self.bot.clone(),
            chat: ChatId(chat_id.0),
            reply_to: message_id.map(MessageId),
            sent: Vec::new(),
            html_rejected: false,
            quiet_until: None,
        })
    }

    fn tell_admins<'a>(&'a self, notice: &'a AdminNotice) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            super::tell_admins(&self.bot, &self.admins, &admin::notice(notice)).await;
        })
    }

    fn announcement(&self, text: &str, run: &ScheduledRun, zone: &Zone) -> String {
        messages::announcement(text, run, zone)
    }
}

/// One message of a reply, as Telegram shows it now.
struct Sent {
    id: MessageId,
    text: String,
    html: bool,
}

pub struct TelegramReply {
    bot: Bot,
    chat: ChatId,
    /// The message answered, quoted by the reply's first message.
    reply_to: Option<MessageId>,
    sent: Vec<Sent>,
    /// Telegram refused our HTML once: the rest of this reply goes as plain text.
    html_rejected: bool,
    /// After a 429 on a partial update, skip partials until then.
    quiet_until: Option<tokio::time::Instant>,
}

impl TelegramReply {
    /// The reply's text as Telegram messages: (text, is_html) per message.
    fn chunks(&self, reply: &Reply) -> Vec<(String, bool)> {
        if reply.format == TextFormat::Html && !self.html_rejected {
            split_html(&reply.text, MESSAGE_LIMIT)
                .into_iter()
                .map(|c| (c, true))
                .collect()
        } else {
            let plain = match reply.format {
                TextFormat::Html => html_to_plain(&reply.text),
                TextFormat::Plain => reply.text.clone(),
            };
            split_plain(&plain, MESSAGE_LIMIT)
                .into_iter()
                .map(|c| (c, false))
                .collect()
        }
    }

    /// Makes Telegram show `reply`: edits messages whose text changed, sends new ones for
    /// the rest. Stops at the first error.
    async fn show(&mut self, reply: &Reply) -> Result<(), RequestError> {
        for (index, (text, html)) in self.chunks(reply).into_iter().enumerate() {
            match self.put(index, &text, html).await {
                Err(RequestError::Api(ApiError::CantParseEntities(reason))) if html => {
                    tracing::warn!(
                        chat_id = self.chat.0,
                        "Telegram rejected the HTML ({reason}); sending plain text"
                    );
                    self.html_rejected = true;
                    return Box::pin(self.show(reply)).await;
                }
                other => other?,
            }
        }
        Ok(())
    }

    /// Sends or edits message `index` of the reply.
    async fn put(&mut self, index: usize, text: &str, html: bool) -> Result<(), RequestError> {
        let parse_mode = html.then_some(ParseMode::Html);
        match self.sent.get_mut(index) {
            Some(sent) if sent.text == text && sent.html == html => Ok(()),
            Some(sent) => {
                let mut edit = self.bot.edit_message_text(self.chat, sent.id, text);
                edit.parse_mode = parse_mode;
                match super::observed("editMessageText", edit.await) {
                    Ok(_) | Err(RequestError::Api(ApiError::MessageNotModified)) => {}
                    Err(e) => return Err(e),
                }
                sent.text = text.to_owned();
                sent.html = html;
                Ok(())
            }
            None => {
                let mut send = self.bot.send_message(self.chat, text);
                send.parse_mode = parse_mode;
                if index == 0 {
                    // Quote the user's message; if it was deleted meanwhile, answer anyway.
                    send.reply_parameters = self
                        .reply_to
                        .map(|id| ReplyParameters::new(id).allow_sending_without_reply());
                }
                let message = super::observed("sendMessage", send.await)?;
                self.sent.push(Sent {
                    id: message.id,
                    text: text.to_owned(),
                    html,
                });
                Ok(())
            }
        }
    }

    /// Shows `reply`, waiting out 429s and retrying network errors, until delivered.
    async fn deliver(&mut self, reply: &Reply) -> anyhow::Result<()> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = match self.show(reply).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            let wait = match &error {
                RequestError::RetryAfter(seconds) => seconds.duration(),
                RequestError::Network(_) | RequestError::Io(_) if attempt < DELIVERY_ATTEMPTS => {
                    backoff(attempt)
                }
                _ => anyhow::bail!(
                    "cannot deliver the reply: {}",
                    redact(&error.to_string(), &self.bot)
                ),
            };
            tracing::warn!(
                chat_id = self.chat.0,
                ?wait,
                "delivery failed ({}); retrying",
                redact(&error.to_string(), &self.bot)
            );
            tokio::time::sleep(wait).await;
        }
    }
}

impl TelegramReply {
    async fn typing(&mut self) {
        let result = self
            .bot
            .send_chat_action(self.chat, ChatAction::Typing)
            .await;
        if let Err(e) = super::observed("sendChatAction", result) {
            tracing::debug!(
                "typing indicator failed: {}",
                redact(&e.to_string(), &self.bot)
            );
        }
    }

    async fn update(&mut self, reply: &Reply) {
        if self
            .quiet_until
            .is_some_and(|until| tokio::time::Instant::now() < until)
        {
            return;
        }
        match self.show(reply).await {
            Ok(()) => {}
            Err(RequestError::RetryAfter(seconds)) => {
                tracing::info!(chat_id = self.chat.0, wait = ?seconds.duration(), "Telegram asks to slow down; skipping updates");
                self.quiet_until = Some(tokio::time::Instant::now() + seconds.duration());
            }
            // A lost partial update is harmless: the next one or the final text replaces it.
            Err(e) => tracing::debug!(
                "partial update failed: {}",
                redact(&e.to_string(), &self.bot)
            ),
        }
    }

    async fn complete(&mut self, reply: &Reply) -> anyhow::Result<()> {
        if let Some(until) = self.quiet_until.take() {
            tokio::time::sleep_until(until).await;
        }
        self.deliver(reply).await
    }

    async fn note(&mut self, notice: &Notice) -> anyhow::Result<()> {
        // A notice is its own message after the reply, never an edit of it.
        let mut note = TelegramReply {
            bot: self.bot.clone(),
            chat: self.chat,
            reply_to: self.reply_to,
            sent: Vec::new(),
            html_rejected: true,
            quiet_until: self.quiet_until.take(),
        };
        note.complete(&Reply::plain(messages::notice(notice))).await
    }
}

impl ReplySink for TelegramReply {
    fn working(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(self.typing())
    }

    fn partial<'a>(&'a mut self, reply: &'a Reply) -> BoxFuture<'a, ()> {
        Box::pin(self.update(reply))
    }

    fn finish<'a>(&'a mut self, reply: &'a Reply) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.complete(reply))
    }

    fn notice<'a>(&'a mut self, notice: &'a Notice) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.note(notice))
    }
}
