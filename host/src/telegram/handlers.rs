//! The bot's one dptree `schema()`: who may talk to it, its commands, and chat messages.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use teloxide::dispatching::{HandlerExt, UpdateFilterExt, UpdateHandler};
use teloxide::prelude::*;
use teloxide::types::{Me, MessageEntityKind, ReplyParameters};
use teloxide::utils::command::BotCommands;

use super::settings::TelegramConfig;
use super::{admin, messages};
use crate::background::Background;
use crate::chat::{Accepted, ChatService, JobKind, NewJob, Origin};
use crate::clock;
use crate::ids::{ChatId, TaskId, UserId};
use crate::pipeline::Reloader;
use crate::schedule::{Creator, Scheduler};

pub type Service = Arc<ChatService>;
pub type Tasks = Arc<Scheduler>;

/// How often a stranger is told their id at most: enough to add them, too rare to spam.
const STRANGER_REPLY_EVERY: Duration = Duration::from_secs(600);

#[derive(BotCommands, Clone, Debug, PartialEq)]
#[command(
    rename_rule = "lowercase",
    description = "I'm a private assistant running on a Raspberry Pi. Just write to me. Commands:"
)]
pub enum Command {
    #[command(description = "start chatting")]
    Start,
    #[command(description = "what I can do")]
    Help,
    #[command(description = "forget this chat's history")]
    Reset,
    #[command(
        description = "list models, or switch this chat: /model gemma2:2b (/model default to go back)"
    )]
    Model(String),
    #[command(description = "health of the bot, Ollama and the pipeline (admins)")]
    Status,
    #[command(description = "stop the answer being written")]
    Stop,
    #[command(description = "remind me: /remind in 10 min tea, /remind tomorrow 8am call Ana")]
    Remind(String),
    #[command(
        description = "a prompt on a schedule: /every day 07:30 Good morning briefing (or weekday 8:00, monday 9:00, 2h, cron)"
    )]
    Every(String),
    #[command(description = "this chat's reminders and scheduled prompts")]
    Tasks,
    #[command(description = "cancel a task: /cancel 3")]
    Cancel(String),
    #[command(description = "this chat's time zone: /timezone Europe/Madrid")]
    Timezone(String),
    #[command(description = "reload the guest pipeline now (admins)")]
    Reload,
}

/// Who may do what, and strangers recently told their id.
pub struct Access {
    config: TelegramConfig,
    strangers_told: Mutex<HashMap<UserId, Instant>>,
}

impl Access {
    pub fn new(config: TelegramConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            strangers_told: Mutex::new(HashMap::new()),
        })
    }

    fn allowed(&self, message: &Message) -> bool {
        message
            .from
            .as_ref()
            .is_some_and(|user| self.config.is_allowed(user_id(user)))
    }

    fn is_admin(&self, message: &Message) -> bool {
        message
            .from
            .as_ref()
            .is_some_and(|user| self.config.is_admin(user_id(user)))
    }

    /// True when this stranger should be told their id now.
    fn tell_stranger(&self, user_id: UserId) -> bool {
        let mut told = self
            .strangers_told
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        told.retain(|_, at| at.elapsed() < STRANGER_REPLY_EVERY);
        told.insert(user_id, Instant::now()).is_none()
    }
}

pub fn schema() -> UpdateHandler<anyhow::Error> {
    Update::filter_message()
        // In groups, only messages addressed to the bot (mention, reply, command) count.
        .filter(addressed_to_bot)
        .branch(
            dptree::filter(|message: Message, access: Arc<Access>| !access.allowed(&message))
                .endpoint(stranger),
        )
        .branch(
            dptree::entry()
                .filter_command::<Command>()
                .endpoint(command),
        )
        .branch(dptree::endpoint(chat_message))
}

fn addressed_to_bot(message: Message, me: Me) -> bool {
    if !is_group(&message) {
        return true;
    }
    let replied_to_bot = message
        .reply_to_message()
        .and_then(|m| m.from.as_ref())
        .is_some_and(|u| u.id == me.user.id);
    let text = message.text().unwrap_or_default();
    let mention = format!("@{}", me.username());
    let mentioned = text.contains(&mention);
    let command = message
        .entities()
        .unwrap_or_default()
        .iter()
        .any(|e| e.kind == MessageEntityKind::BotCommand && e.offset == 0);
    replied_to_bot || mentioned || command
}

fn is_group(message: &Message) -> bool {
    message.chat.is_group() || message.chat.is_supergroup()
}

async fn stranger(bot: Bot, message: Message, access: Arc<Access>) -> anyhow::Result<()> {
    let Some(user) = message.from.as_ref() else {
        return Ok(());
    };
    let user_id = user_id(user);
    tracing::info!(
        user_id = user_id.0,
        chat_id = message.chat.id.0,
        "message from a user who is not allowed"
    );
    if access.tell_stranger(user_id) {
        answer(&bot, &message, messages::stranger(user_id)).await?;
    }
    Ok(())
}

async fn command(
    bot: Bot,
    message: Message,
    command: Command,
    service: Service,
    tasks: Tasks,
    access: Arc<Access>,
    reloader: Arc<Reloader>,
) -> anyhow::Result<()> {
    let chat_id = ChatId(message.chat.id.0);
    let preferences = service.preferences();
    let text = match command {
        Command::Remind(args) => messages::task_added(tasks.remind(creator(&message), &args).await),
        Command::Every(args) => messages::task_added(tasks.every(creator(&message), &args).await),
        Command::Tasks => messages::tasks(tasks.tasks(chat_id).await?),
        Command::Cancel(id) => match id.trim().trim_start_matches('#').parse().map(TaskId) {
            Ok(id) if tasks.cancel(chat_id, id).await? => messages::task_cancelled(id),
            Ok(id) => messages::no_such_task(id),
            Err(_) => messages::WHICH_TASK.to_owned(),
        },
        Command::Timezone(name) if name.trim().is_empty() => {
            messages::time_zone_is(&preferences.time_zone(chat_id).await)
        }
        Command::Timezone(name) => messages::time_zone_set(tasks.set_zone(chat_id, &name).await),
        Command::Start | Command::Help => Command::descriptions().to_string(),
        Command::Reset => {
            service.reset(chat_id).await?;
            messages::HISTORY_FORGOTTEN.to_owned()
        }
        Command::Model(name) => match name.trim() {
            "" => messages::model_list(preferences.models(chat_id).await?),
            "default" => messages::model_switch(preferences.set_model(chat_id, None).await?),
            name => messages::model_switch(preferences.set_model(chat_id, Some(name)).await?),
        },
        Command::Status | Command::Reload if !access.is_admin(&message) => {
            messages::ADMINS_ONLY.to_owned()
        }
        Command::Status => admin::status(service.status().await, tasks.summary().await),
        Command::Reload => messages::reloaded(
            reloader
                .reload("/reload")
                .await
                .map(|report| report.to_string())
                .map_err(|e| e.to_string()),
        ),
        Command::Stop if service.stop(chat_id) => return Ok(()), // the reply ends with "Stopped."
        Command::Stop => messages::NOTHING_TO_STOP.to_owned(),
    };
    answer(&bot, &message, text).await
}

async fn chat_message(
    bot: Bot,
    message: Message,
    me: Me,
    service: Service,
    background: Background,
) -> anyhow::Result<()> {
    let Some(text) = message.text() else {
        return answer(&bot, &message, messages::TEXT_ONLY.to_owned()).await;
    };
    let text = text
        .replace(&format!("@{}", me.username()), "")
        .trim()
        .to_owned();
    if text.is_empty() {
        return Ok(());
    }
    let Creator {
        chat_id,
        user_id,
        origin,
    } = creator(&message);
    let job = NewJob {
        chat_id,
        kind: JobKind::Message {
            message_id: message.id.0,
        },
        user_id,
        text,
        origin,
        received_unix_ms: clock::unix_ms(),
    };
    let notice = match service.accept(job).await? {
        Accepted::Queued { ahead: 0 } | Accepted::Duplicate => return Ok(()),
        Accepted::Queued { ahead } => messages::queue_position(ahead),
        Accepted::QueueFull => {
            // Awaited: if the refusal cannot be sent, the update is not acknowledged and
            // comes back — by then the queue may have room.
            return answer(&bot, &message, messages::QUEUE_FULL.to_owned()).await;
        }
    };
    // Sent beside the polling loop, not in it: the message is already stored, and a slow
    // Telegram round trip here would delay every update behind this one.
    background.spawn_until_shutdown(async move {
        if let Err(e) = answer(&bot, &message, notice).await {
            tracing::warn!(
                chat_id = message.chat.id.0,
                "cannot send a queue notice: {e}"
            );
        }
    });
    Ok(())
}

/// Who wrote `message`, where, and when.
fn creator(message: &Message) -> Creator {
    let user = message.from.as_ref();
    Creator {
        chat_id: ChatId(message.chat.id.0),
        user_id: user.map_or(UserId(0), user_id),
        origin: Origin {
            user_name: user.map(|u| u.first_name.clone()),
            language: user.and_then(|u| u.language_code.clone()),
            is_group: is_group(message),
            sent_unix_ms: message.date.timestamp_millis().max(0) as u64,
            scheduled: None,
        },
    }
}

/// A Telegram user's id as the bot keeps it (Telegram's ids fit 52 bits).
fn user_id(user: &teloxide::types::User) -> UserId {
    UserId(user.id.0 as i64)
}

/// A short plain reply to `message`.
async fn answer(bot: &Bot, message: &Message, text: String) -> anyhow::Result<()> {
    let sent = bot
        .send_message(message.chat.id, text)
        .reply_parameters(ReplyParameters::new(message.id).allow_sending_without_reply())
        .await;
    super::observed("sendMessage", sent)
        .map_err(|e| anyhow::anyhow!("{}", super::redact(&e.to_string(), bot)))?;
    Ok(())
}
