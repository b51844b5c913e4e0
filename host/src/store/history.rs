//! Each chat's turns, oldest first, pruned to the newest [`KEPT_MESSAGES`] as new ones
//! come.
//!
//! [`KEPT_MESSAGES`]: super::KEPT_MESSAGES

use rusqlite::types::Type;
use rusqlite::{Transaction, params};

use super::{Store, StoreError, sql_limit};
use crate::prompt::{ChatMessage, Role};

impl Store {
    /// The last `limit_messages` messages of the chat, oldest first.
    pub fn history(
        &self,
        chat_id: i64,
        limit_messages: usize,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT role, content FROM (
                 SELECT id, role, content FROM history WHERE chat_id = ?1 ORDER BY id DESC LIMIT ?2
             ) ORDER BY id",
        )?;
        let rows = stmt.query_map(params![chat_id, sql_limit(limit_messages)], |row| {
            Ok(ChatMessage::new(
                role_from_sql(&row.get::<_, String>(0)?)?,
                row.get::<_, String>(1)?,
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Forgets the chat's history; returns how many messages were deleted.
    pub fn clear_history(&mut self, chat_id: i64) -> Result<usize, StoreError> {
        Ok(self
            .conn
            .execute("DELETE FROM history WHERE chat_id = ?1", [chat_id])?)
    }
}

/// Appends a user message and the assistant's answer, then prunes the chat to `limit`.
pub(super) fn insert_turn(
    tx: &Transaction,
    chat_id: i64,
    user_msg: &str,
    assistant_msg: &str,
    limit: usize,
) -> Result<(), StoreError> {
    let mut insert =
        tx.prepare_cached("INSERT INTO history (chat_id, role, content) VALUES (?1, ?2, ?3)")?;
    insert.execute(params![chat_id, "user", user_msg])?;
    insert.execute(params![chat_id, "assistant", assistant_msg])?;
    // Delete everything older than the chat's newest `limit` messages.
    tx.execute(
        "DELETE FROM history WHERE chat_id = ?1 AND id <= (
             SELECT id FROM history WHERE chat_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2
         )",
        params![chat_id, sql_limit(limit)],
    )?;
    Ok(())
}

fn role_from_sql(role: &str) -> rusqlite::Result<Role> {
    match role {
        "user" => Ok(Role::User),
        "assistant" => Ok(Role::Assistant),
        other => Err(rusqlite::Error::FromSqlConversionFailure(
            0,
            Type::Text,
            format!("unknown role {other:?}").into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fixtures::{row_count, texts, turn};

    #[test]
    fn history_is_oldest_first_and_limited_to_the_newest() {
        let mut store = Store::open_in_memory().unwrap();
        turn(&mut store, 1, "q1", "a1").unwrap();
        turn(&mut store, 2, "other chat", "x").unwrap();
        turn(&mut store, 1, "q2", "a2").unwrap();
        let all = store.history(1, 10).unwrap();
        assert_eq!(texts(&all), ["q1", "a1", "q2", "a2"]);
        assert_eq!(all[0].role, Role::User);
        assert_eq!(all[1].role, Role::Assistant);
        assert_eq!(texts(&store.history(1, 3).unwrap()), ["a1", "q2", "a2"]);
        assert!(store.history(1, 0).unwrap().is_empty());
    }

    #[test]
    fn history_is_pruned_per_chat() {
        let mut store = Store::open_in_memory().unwrap();
        store.history_limit = 4;
        turn(&mut store, 2, "keep", "me").unwrap();
        for i in 1..=3 {
            turn(&mut store, 1, &format!("q{i}"), &format!("a{i}")).unwrap();
        }
        assert_eq!(
            texts(&store.history(1, 100).unwrap()),
            ["q2", "a2", "q3", "a3"]
        );
        assert_eq!(texts(&store.history(2, 100).unwrap()), ["keep", "me"]);
        assert_eq!(row_count(&store, "history"), 6);
    }

    #[test]
    fn clear_history_forgets_only_that_chat() {
        let mut store = Store::open_in_memory().unwrap();
        turn(&mut store, 1, "q", "a").unwrap();
        turn(&mut store, 2, "q", "a").unwrap();
        assert_eq!(store.clear_history(1).unwrap(), 2);
        assert!(store.history(1, 10).unwrap().is_empty());
        assert_eq!(store.history(2, 10).unwrap().len(), 2);
    }
}
