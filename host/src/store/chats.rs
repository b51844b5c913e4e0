//! What the dashboard's Chats page shows of each chat: counts and settings, never content.

use super::{Shared, Store, StoreError};
use crate::ids::ChatId;

/// Per-chat counts across the tables, read-only, for the dashboard.
#[derive(Clone)]
pub struct Activity(pub(super) Shared);

impl Activity {
    /// Every chat's counts, with messages answered since `since_unix_ms`.
    pub async fn chats(&self, since_unix_ms: u64) -> Result<Vec<ChatCounts>, StoreError> {
        self.0
            .run(move |store| store.chat_counts(since_unix_ms))
            .await
    }
}

/// One chat's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatCounts {
    pub chat_id: ChatId,
    /// History messages kept (user and assistant).
    pub kept_messages: u64,
    /// Messages answered since `since_unix_ms`.
    pub answered_recently: u64,
    /// Jobs accepted but not yet answered.
    pub pending: u64,
    pub tasks: u64,
    /// The chat's own model and time zone, when it chose them.
    pub model: Option<String>,
    pub time_zone: Option<String>,
}

impl Store {
    /// Every chat the bot knows of, by id, with messages answered since `since_unix_ms`.
    pub(super) fn chat_counts(&self, since_unix_ms: u64) -> Result<Vec<ChatCounts>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "WITH chats(chat_id) AS (
                 SELECT chat_id FROM history UNION SELECT chat_id FROM answered
                 UNION SELECT chat_id FROM pending_jobs UNION SELECT chat_id FROM tasks
                 UNION SELECT chat_id FROM chat_settings)
             SELECT c.chat_id,
                 (SELECT count(*) FROM history h WHERE h.chat_id = c.chat_id),
                 (SELECT count(*) FROM answered a WHERE a.chat_id = c.chat_id AND a.at_unix_ms >= ?1),
                 (SELECT count(*) FROM pending_jobs p WHERE p.chat_id = c.chat_id),
                 (SELECT count(*) FROM tasks t WHERE t.chat_id = c.chat_id),
                 s.model, s.time_zone
             FROM chats c LEFT JOIN chat_settings s ON s.chat_id = c.chat_id
             ORDER BY c.chat_id",
        )?;
        let rows = stmt.query_map([since_unix_ms], |row| {
            Ok(ChatCounts {
                chat_id: ChatId(row.get(0)?),
                kept_messages: row.get(1)?,
                answered_recently: row.get(2)?,
                pending: row.get(3)?,
                tasks: row.get(4)?,
                model: row.get(5)?,
                time_zone: row.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
