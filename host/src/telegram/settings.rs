//! The Telegram side's settings (`TELEGRAM_*`, read by `config`).

use std::collections::BTreeSet;

use crate::ids::UserId;
use crate::secret::Secret;

/// Who the bot is and whom it serves.
#[derive(Debug, Clone, PartialEq)]
pub struct TelegramConfig {
    /// `TELEGRAM_BOT_TOKEN` (required)
    pub token: Secret,
    /// `TELEGRAM_API_URL`: the Bot API server (the official one, or a self-hosted one).
    pub api_url: reqwest::Url,
    /// `TELEGRAM_ALLOWED_USERS`: who may talk to the LLM (admins always may).
    pub allowed_users: BTreeSet<UserId>,
    /// `TELEGRAM_ADMIN_USERS`: who may use admin commands.
    pub admin_users: BTreeSet<UserId>,
}

impl TelegramConfig {
    pub fn is_admin(&self, user_id: UserId) -> bool {
        self.admin_users.contains(&user_id)
    }

    pub fn is_allowed(&self, user_id: UserId) -> bool {
        self.allowed_users.contains(&user_id) || self.is_admin(user_id)
    }
}
