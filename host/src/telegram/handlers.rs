//! The bot's one dptree `schema()`: who may talk to it, its commands, and chat messages.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use teloxide::dispatching::{HandlerExt, UpdateFilterExt, UpdateHandler};
use teloxide::prelude::*;
use teloxide::types::{Me, MessageEntityKind, ReplyParameters};
use teloxide::utils::command::BotCommands;

use super::reply::TelegramReplies;
use crate::chat::{Accepted, ChatService, JobKind, ModelChoice, ModelSwitch, NewJob, Status};
use crate::clock;
use crate::config::TelegramConfig;
use crate::pipeline::Reloader;
use crate::prompt::ChatContext;
use crate::schedule::{Added, Listed, ScheduleError, Scheduler, Summary, TaskKind, Zone};
use crate::store::StoreError;

pub type Service = Arc<ChatService<TelegramReplies>>;
pub type Tasks = Arc<Scheduler<TelegramReplies>>;

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
    strangers_told: Mutex<HashMap<i64, Instant>>,
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
            .is_some_and(|user| self.config.is_allowed(user.id.0 as i64))
    }

    fn is_admin(&self, message: &Message) -> bool {
        message
            .from
            .as_ref()
            .is_some_and(|user| self.config.is_admin(user.id.0 as i64))
    }

    /// True when this stranger should be told their id now.
    fn tell_stranger(&self, user_id: i64) -> bool {
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
    let user_id = user.id.0 as i64;
    tracing::info!(
        user_id,
        chat_id = message.chat.id.0,
        "message from a user who is not allowed"
    );
    if access.tell_stranger(user_id) {
        let text = format!(
            "This is a private bot. Your Telegram user id is {user_id} — to be let in, ask the owner to add it to TELEGRAM_ALLOWED_USERS."
        );
        answer(&bot, &message, text).await?;
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
    let chat_id = message.chat.id.0;
    let text = match command {
        Command::Remind(args) => added_text(tasks.remind(context(&message), &args).await),
        Command::Every(args) => added_text(tasks.every(context(&message), &args).await),
        Command::Tasks => tasks_text(tasks.tasks(chat_id).await?),
        Command::Cancel(id) => match id.trim().trim_start_matches('#').parse() {
            Ok(id) if tasks.cancel(chat_id, id).await? => format!("Cancelled task {id}."),
            Ok(id) => format!("This chat has no task {id}: /tasks lists them."),
            Err(_) => "Which task? /cancel 3 — /tasks lists them with their ids.".to_owned(),
        },
        Command::Timezone(name) if name.trim().is_empty() => format!(
            "This chat's time zone is {}. Change it with /timezone Europe/Madrid (any IANA name).",
            service.time_zone(chat_id).await
        ),
        Command::Timezone(name) => match tasks.set_zone(chat_id, &name).await {
            Ok(zone) => format!(
                "This chat's time zone is now {}; recurring tasks follow it.",
                zone.name()
            ),
            Err(e) => format!("⚠️ {e}"),
        },
        Command::Start | Command::Help => Command::descriptions().to_string(),
        Command::Reset => {
            service.reset(chat_id).await?;
            "Done — I've forgotten this chat's history.".to_owned()
        }
        Command::Model(name) => model_command(&service, chat_id, name.trim()).await?,
        Command::Status | Command::Reload if !access.is_admin(&message) => {
            "That command is for the bot's admins.".to_owned()
        }
        Command::Status => status_text(service.status().await, tasks.summary().await),
        Command::Reload => match reloader.reload("/reload").await {
            Ok(report) => format!("✅ {report}"),
            Err(e) => format!("⚠️ Reload failed; the old pipeline keeps serving.\n{e}"),
        },
        Command::Stop if service.stop(chat_id) => return Ok(()), // the reply ends with "Stopped."
        Command::Stop => "Nothing to stop.".to_owned(),
    };
    answer(&bot, &message, text).await
}

async fn model_command(service: &Service, chat_id: i64, name: &str) -> anyhow::Result<String> {
    let switch = match name {
        "" => return Ok(model_list(service.models(chat_id).await?)),
        "default" => service.set_model(chat_id, None).await?,
        name => service.set_model(chat_id, Some(name)).await?,
    };
    Ok(match switch {
        ModelSwitch::Switched { model } => format!("This chat now uses {model}."),
        ModelSwitch::BackToDefault { model } => format!("Back to the default model, {model}."),
        ModelSwitch::NotInstalled { model } => format!(
            "{model} is not on the model server: see /model for the list (with Ollama on the Pi, `ollama pull {model}` installs it)."
        ),
        ModelSwitch::CannotCheck(e) => format!("I can't check the models right now: {e}"),
    })
}

fn model_list(choice: ModelChoice) -> String {
    let current = &choice.current;
    match &choice.installed {
        Ok(models) => {
            let mut text = format!("This chat uses {current}. Models on the server:\n");
            for m in models {
                let marker = if choice.is_current(m) { "▶" } else { "•" };
                // OpenAI-compatible servers do not say how big a model is.
                let size = match m.size_bytes / 1_000_000 {
                    0 => String::new(),
                    mb => format!(" ({mb} MB)"),
                };
                let _ = writeln!(text, "{marker} {}{size}", m.name);
            }
            text + "Switch with /model <name>."
        }
        Err(e) => format!("This chat uses {current}. I can't list models: {e}"),
    }
}

/// What `/remind` and `/every` answer: the exact time understood, or why none was.
fn added_text(added: Result<Added, ScheduleError>) -> String {
    match added {
        Ok(added) => {
            let when = match &added.recurrence {
                None => added.first.clone(),
                Some(recurrence) => format!("{recurrence}, first {}", added.first),
            };
            format!(
                "⏰ {when}: {}\n(task {id}, {zone} time · /cancel {id})",
                added.text,
                id = added.id,
                zone = added.zone.name()
            )
        }
        Err(e) => format!("⚠️ {e}"),
    }
}

fn tasks_text((tasks, zone): (Vec<Listed>, Zone)) -> String {
    if tasks.is_empty() {
        return "No tasks in this chat. Add one with /remind or /every.".to_owned();
    }
    let mut text = format!("Tasks in this chat ({} time):\n", zone.name());
    for task in tasks {
        let what = match task.kind {
            TaskKind::Reminder => "reminder",
            TaskKind::Prompt => "prompt",
        };
        let schedule = match &task.recurrence {
            Some(recurrence) => format!("{recurrence}, next {}", task.next),
            None => task.next,
        };
        let _ = writeln!(text, "{} · {schedule} · {what}: {}", task.id, task.text);
    }
    text + "Cancel one with /cancel <id>."
}

fn status_text(status: Status, tasks: Result<Summary, StoreError>) -> String {
    let mut text = String::new();
    let (server, loaded) = match status.loaded_models {
        Ok(models) if models.is_empty() => ("up".to_owned(), "none".to_owned()),
        Ok(models) => (
            "up".to_owned(),
            models
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        ),
        Err(e) => (format!("DOWN — {e}"), "?".to_owned()),
    };
    let _ = writeln!(text, "LLM: {}", status.serving);
    let _ = writeln!(text, "Server: {server}");
    let _ = writeln!(
        text,
        "Default model: {} (loaded: {loaded})",
        status.default_model
    );
    let stages: Vec<String> = status
        .stages
        .iter()
        .map(|s| {
            let age = s.loaded_at.elapsed().unwrap_or_default();
            let grants = if s.grants.is_empty() {
                String::new()
            } else {
                format!(", grants: {}", s.grants)
            };
            format!(
                "{} ({}, {}, WIT {}{grants}, loaded {} ago)",
                s.name,
                s.role,
                s.hash.short(),
                s.wit_version,
                human_duration(age)
            )
        })
        .collect();
    let _ = writeln!(
        text,
        "Pipeline: {}",
        if stages.is_empty() {
            "no stages".to_owned()
        } else {
            stages.join(" → ")
        }
    );
    let _ = writeln!(
        text,
        "Queue: {} waiting, {} running",
        status.waiting, status.running
    );
    let _ = match tasks {
        Ok(Summary { count, next: None }) => writeln!(text, "Tasks: {count}"),
        Ok(Summary {
            count,
            next: Some(next),
        }) => writeln!(
            text,
            "Tasks: {count}; next: task {} in chat {}, {}",
            next.id, next.chat_id, next.when
        ),
        Err(e) => writeln!(text, "Tasks: ? — {e}"),
    };
    let tps = status
        .last_tokens_per_second
        .map_or("—".to_owned(), |t| format!("{t:.1}"));
    let _ = writeln!(text, "Last speed: {tps} tokens/s");
    if let Some(cache) = status.prompt_cache {
        let _ = writeln!(
            text,
            "Prompt cache: {:.0}% of the prompt tokens of the last {} answer(s) came from the model's cache{}",
            cache.cached_share * 100.0,
            cache.answers,
            if cache.estimated { " (estimated)" } else { "" }
        );
    }
    if let Some(first) = status.first_token {
        let _ = writeln!(
            text,
            "First token: {:.1} s median, {:.1} s p90 (last {} answer(s))",
            first.p50.as_secs_f64(),
            first.p90.as_secs_f64(),
            first.answers
        );
    }
    let _ = write!(text, "Uptime: {}", human_duration(status.uptime));
    text
}

fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

async fn chat_message(bot: Bot, message: Message, me: Me, service: Service) -> anyhow::Result<()> {
    let Some(text) = message.text() else {
        return answer(&bot, &message, "I can only read text messages.".to_owned()).await;
    };
    let text = text
        .replace(&format!("@{}", me.username()), "")
        .trim()
        .to_owned();
    if text.is_empty() {
        return Ok(());
    }
    let context = context(&message);
    let job = NewJob {
        chat_id: message.chat.id.0,
        kind: JobKind::Message {
            message_id: message.id.0,
        },
        user_id: context.user_id,
        text,
        context,
        received_unix_ms: clock::unix_ms(),
    };
    let notice = match service.accept(job).await? {
        Accepted::Queued { ahead: 0 } | Accepted::Duplicate => return Ok(()),
        Accepted::Queued { ahead } => {
            format!("⏳ {ahead} message(s) ahead of yours — I'll answer as soon as I can.")
        }
        Accepted::QueueFull => {
            // Awaited: if the refusal cannot be sent, the update is not acknowledged and
            // comes back — by then the queue may have room.
            let refusal =
                "I'm busy with too many messages right now. Please try again in a few minutes.";
            return answer(&bot, &message, refusal.to_owned()).await;
        }
    };
    // Sent beside the polling loop, not in it: the message is already stored, and a slow
    // Telegram round trip here would delay every update behind this one.
    tokio::spawn(async move {
        if let Err(e) = answer(&bot, &message, notice).await {
            tracing::warn!(
                chat_id = message.chat.id.0,
                "cannot send a queue notice: {e}"
            );
        }
    });
    Ok(())
}

/// Where `message` comes from, as the pipeline sees it (the time zone is filled in when it
/// is answered).
fn context(message: &Message) -> ChatContext {
    let user = message.from.as_ref();
    ChatContext {
        chat_id: message.chat.id.0,
        user_id: user.map_or(0, |u| u.id.0 as i64),
        user_name: user.map(|u| u.first_name.clone()),
        language: user.and_then(|u| u.language_code.clone()),
        is_group: is_group(message),
        unix_ms: message.date.timestamp_millis().max(0) as u64,
        time_zone: String::new(),
        scheduled: None,
    }
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
