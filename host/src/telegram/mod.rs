//! Telegram: long polling (no open port), the dptree schema, and streaming replies.
//!
//! The polling loop is our own rather than teloxide's dispatcher so that an update is
//! acknowledged (the next `getUpdates` offset) only after its handler returned — a chat
//! message's handler returns once the message is stored — and the batch's offset has been
//! saved with an fsync, which makes everything stored for the batch durable at once.

pub mod admin;
mod handlers;
pub mod messages;
mod reply;
mod settings;
pub mod text;

pub use handlers::{Access, Command};
pub use reply::TelegramReplies;
pub use settings::TelegramConfig;

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use teloxide::prelude::*;
use teloxide::types::{AllowedUpdate, Me};
use teloxide::utils::command::BotCommands;
use teloxide::{ApiError, RequestError};
use tokio_util::sync::CancellationToken;

use crate::background::Background;
use crate::health::Heartbeat;
use crate::ids::UserId;
use crate::pipeline::Reloader;
use crate::store::UpdateOffset;
use handlers::{Service, Tasks};

/// Long-poll timeout: Telegram holds `getUpdates` open this long when there is nothing new.
const POLL_TIMEOUT_SECS: u32 = 25;
/// Longest pause between retries while Telegram is unreachable (flaky Wi-Fi).
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a stopping bot tries to tell Telegram which updates it handled.
const CONFIRM_ON_SHUTDOWN: Duration = Duration::from_secs(3);

/// A bot for `config`'s token and API server.
pub fn bot(config: &TelegramConfig) -> Bot {
    Bot::new(config.token.expose()).set_api_url(config.api_url.clone())
}

/// `text` with the bot token blanked out. Network errors from the HTTP client include the
/// request URL, and the Bot API puts the token in the URL.
pub fn redact(text: &str, bot: &Bot) -> String {
    let token = bot.token();
    if token.is_empty() {
        text.to_owned()
    } else {
        text.replace(token, "[bot token]")
    }
}

/// Asks Telegram who the bot is, retrying while the network is down. A rejected token is
/// fatal: nothing would work.
pub async fn identify(bot: &Bot, shutdown: &CancellationToken) -> anyhow::Result<Option<Me>> {
    let mut attempt = 0;
    loop {
        let result = tokio::select! {
            r = bot.get_me() => observed("getMe", r),
            () = shutdown.cancelled() => return Ok(None),
        };
        match result {
            Ok(me) => return Ok(Some(me)),
            Err(RequestError::Api(ApiError::InvalidToken)) => {
                anyhow::bail!(
                    "Telegram refused the bot token: check TELEGRAM_BOT_TOKEN (from @BotFather)"
                )
            }
            Err(e) => {
                attempt += 1;
                let wait = backoff(attempt);
                tracing::warn!(
                    ?wait,
                    "cannot reach Telegram ({}); retrying",
                    redact(&e.to_string(), bot)
                );
                if !pause(wait, shutdown).await {
                    return Ok(None);
                }
            }
        }
    }
}

/// Shows the commands in Telegram's menu.
pub async fn register_commands(bot: &Bot) {
    let result = observed(
        "setMyCommands",
        bot.set_my_commands(Command::bot_commands()).await,
    );
    if let Err(e) = result {
        tracing::warn!(
            "cannot register the bot's commands: {}",
            redact(&e.to_string(), bot)
        );
    }
}

/// Sends `text` to every admin (in their private chat with the bot).
pub async fn tell_admins(bot: &Bot, admins: &BTreeSet<UserId>, text: &str) {
    for admin in admins {
        let sent = bot.send_message(ChatId(admin.0), text).await;
        if let Err(e) = observed("sendMessage", sent) {
            tracing::warn!(
                admin = admin.0,
                "cannot message an admin: {}",
                redact(&e.to_string(), bot)
            );
        }
    }
}

/// What the handlers act on.
pub struct Services {
    pub chat: Service,
    pub tasks: Tasks,
    pub access: Arc<Access>,
    pub reloader: Arc<Reloader>,
    /// The last update handled: the polling loop's own.
    pub offset: UpdateOffset,
    /// Where handlers send what need not hold up the polling loop.
    pub background: Background,
}

/// Polls for updates and handles them in order until `shutdown`.
pub async fn poll(
    bot: Bot,
    me: Me,
    services: Services,
    mut heartbeat: Heartbeat,
    shutdown: CancellationToken,
) {
    let Services {
        chat: service,
        tasks,
        access,
        reloader,
        offset: stored_offset,
        background,
    } = services;
    let schema = handlers::schema();
    let mut offset = match stored_offset.get().await {
        Ok(last) => last.map_or(0, |id| id as i32 + 1),
        Err(e) => {
            tracing::error!("cannot read the update offset: {e}");
            0
        }
    };
    let mut failures = 0;
    tracing::info!(bot = %me.username(), "polling Telegram for messages");
    while !shutdown.is_cancelled() {
        let request = bot
            .get_updates()
            .offset(offset)
            .timeout(POLL_TIMEOUT_SECS)
            .allowed_updates(vec![AllowedUpdate::Message]);
        let result = tokio::select! {
            r = request.send() => observed("getUpdates", r),
            () = shutdown.cancelled() => break,
        };
        heartbeat.beat(result.is_ok());
        let updates = match result {
            Ok(updates) => {
                failures = 0;
                updates
            }
            Err(RequestError::RetryAfter(seconds)) => {
                pause(seconds.duration(), &shutdown).await;
                continue;
            }
            Err(e) => {
                failures += 1;
                let wait = backoff(failures);
                tracing::warn!(
                    ?wait,
                    "getUpdates failed ({}); retrying",
                    redact(&e.to_string(), &bot)
                );
                pause(wait, &shutdown).await;
                continue;
            }
        };
        let previous_offset = offset;
        for update in updates {
            let id = update.id.0;
            let deps = dptree::deps![
                update,
                bot.clone(),
                me.clone(),
                service.clone(),
                tasks.clone(),
                access.clone(),
                reloader.clone(),
                background.clone()
            ];
            if let ControlFlow::Break(Err(e)) = schema.dispatch(deps).await {
                // Not acknowledged: Telegram delivers it again with the next poll.
                tracing::error!(
                    update_id = id,
                    "handling an update failed: {}",
                    redact(&format!("{e:#}"), &bot)
                );
                failures += 1;
                pause(backoff(failures), &shutdown).await;
                break;
            }
            offset = id as i32 + 1;
        }
        // One fsync for the whole batch, before the next getUpdates acknowledges it: it
        // makes every message stored above durable (see `store`'s group commit).
        if offset != previous_offset
            && let Err(e) = stored_offset.set(i64::from(offset - 1)).await
        {
            // Not acknowledged then: Telegram delivers the batch again, and what was
            // stored is recognised as a duplicate.
            tracing::error!("cannot save the update offset: {e}");
            offset = previous_offset;
            failures += 1;
            pause(backoff(failures), &shutdown).await;
        }
    }
    // Confirm what was handled, so a restart does not see those updates again; not worth
    // holding up the shutdown for when Telegram is unreachable.
    let confirm = bot.get_updates().offset(offset).timeout(0).limit(1).send();
    let _ = tokio::time::timeout(CONFIRM_ON_SHUTDOWN, confirm).await;
}

/// `result`, counted as a request to `method` for `/metrics`.
pub(crate) fn observed<T, E>(method: &'static str, result: Result<T, E>) -> Result<T, E> {
    crate::telemetry::telegram_request(method, &result);
    result
}

/// Waits between retries: 2, 4, 8, 16, then 30 seconds.
fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1 << attempt.clamp(1, 5)).min(MAX_BACKOFF)
}

/// Sleeps for `wait`, or until `shutdown`; false if it was the shutdown.
async fn pause(wait: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(wait) => true,
        () = shutdown.cancelled() => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_blanked_out_of_text() {
        let token = "123456789:AAHtestTokenThatMustNeverLeak_0123456";
        let bot = Bot::new(token);
        let text = format!(
            "error sending request for url (https://api.telegram.org/bot{token}/GetUpdates)"
        );
        assert_eq!(
            redact(&text, &bot),
            "error sending request for url (https://api.telegram.org/bot[bot token]/GetUpdates)"
        );
    }
}
