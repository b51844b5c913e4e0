//! Each chat's turns, oldest first, and where the model's window into them starts.
//!
//! The window start is kept per chat so that consecutive prompts of a chat share their
//! beginning (the model server's prompt cache); it moves only when the chat service cuts
//! the window. Pruning to the newest [`KEPT_MESSAGES`] never deletes a message inside the
//! window: that would slide it one exchange per turn.
//!
//! [`KEPT_MESSAGES`]: super::KEPT_MESSAGES

use rusqlite::types::Type;
use rusqlite::{Transaction, params};

use super::{Shared, Store, StoreError, sql_limit};
use crate::ids::ChatId;
use crate::prompt::{ChatMessage, Role};

/// Each chat's turns and where the model's window into them starts, for the chat service,
/// which owns them (a job's answer adds its turn through [`super::Jobs::complete`]).
#[derive(Clone)]
pub struct History(pub(super) Shared);

impl History {
    /// The chat's history from where its window starts, oldest first.
    pub async fn window(&self, chat_id: ChatId) -> Result<Vec<StoredMessage>, StoreError> {
        self.0
            .run(move |store| store.history_window(chat_id.0))
            .await
    }

    /// Starts the chat's window at message `first_id`.
    pub async fn cut_window(&self, chat_id: ChatId, first_id: i64) -> Result<(), StoreError> {
        self.0
            .run(move |store| store.cut_history_window(chat_id.0, first_id))
            .await
    }

    /// Forgets the chat's history; returns how many messages were deleted.
    pub async fn clear(&self, chat_id: ChatId) -> Result<usize, StoreError> {
        self.0
            .run(move |store| store.clear_history(chat_id.0))
            .await
    }
}

/// A message of a chat's history with its position: ids grow with every message, so they
/// order a chat's turns and name where a window starts.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    pub id: i64,
    pub message: ChatMessage,
}

impl Store {
    /// The chat's history from where its window starts (all of it when no window was cut
    /// yet), oldest first.
    pub(super) fn history_window(&self, chat_id: i64) -> Result<Vec<StoredMessage>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, role, content FROM history
             WHERE chat_id = ?1 AND id >= coalesce(
                 (SELECT first_id FROM history_window WHERE chat_id = ?1), 0)
             ORDER BY id",
        )?;
        let rows = stmt.query_map([chat_id], |row| {
            Ok(StoredMessage {
                id: row.get(0)?,
                message: ChatMessage::new(
                    role_from_sql(&row.get::<_, String>(1)?)?,
                    row.get::<_, String>(2)?,
                ),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Where the chat's window starts, if it was ever cut.
    #[cfg(test)]
    fn history_window_start(&self, chat_id: i64) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT first_id FROM history_window WHERE chat_id = ?1",
                [chat_id],
                |row| row.get(0),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })?)
    }

    /// Starts the chat's window at message `first_id` (the messages before it stay in the
    /// history, out of the model's sight).
    pub(super) fn cut_history_window(
        &mut self,
        chat_id: i64,
        first_id: i64,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO history_window (chat_id, first_id) VALUES (?1, ?2)
             ON CONFLICT (chat_id) DO UPDATE SET first_id = excluded.first_id",
            params![chat_id, first_id],
        )?;
        Ok(())
    }

    /// Forgets the chat's history (and its window); returns how many messages were deleted.
    pub(super) fn clear_history(&mut self, chat_id: i64) -> Result<usize, StoreError> {
        self.write(|tx| {
            tx.execute("DELETE FROM history_window WHERE chat_id = ?1", [chat_id])?;
            Ok(tx.execute("DELETE FROM history WHERE chat_id = ?1", [chat_id])?)
        })
    }
}

/// Appends a user message and the assistant's answer, then prunes the chat to `limit`
/// messages — but never into its window.
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
    // Delete everything older than the chat's newest `limit` messages and its window.
    tx.execute(
        "DELETE FROM history WHERE chat_id = ?1 AND id <= (
             SELECT id FROM history WHERE chat_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2
         ) AND id < coalesce((SELECT first_id FROM history_window WHERE chat_id = ?1), 0)",
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
    use crate::store::fixtures::{history_texts, row_count, turn};

    #[test]
    fn history_is_oldest_first_and_per_chat() {
        let mut store = Store::open_in_memory().unwrap();
        turn(&mut store, 1, "q1", "a1").unwrap();
        turn(&mut store, 2, "other chat", "x").unwrap();
        turn(&mut store, 1, "q2", "a2").unwrap();
        let all = store.history_window(1).unwrap();
        assert_eq!(history_texts(&all), ["q1", "a1", "q2", "a2"]);
        assert_eq!(all[0].message.role, Role::User);
        assert_eq!(all[1].message.role, Role::Assistant);
        assert!(all.windows(2).all(|w| w[0].id < w[1].id));
        assert!(store.history_window(3).unwrap().is_empty());
    }

    #[test]
    fn the_window_starts_where_it_was_cut() {
        let mut store = Store::open_in_memory().unwrap();
        for i in 1..=3 {
            turn(&mut store, 1, &format!("q{i}"), &format!("a{i}")).unwrap();
        }
        let all = store.history_window(1).unwrap();
        assert_eq!(store.history_window_start(1).unwrap(), None);
        store.cut_history_window(1, all[4].id).unwrap();
        assert_eq!(store.history_window_start(1).unwrap(), Some(all[4].id));
        assert_eq!(
            history_texts(&store.history_window(1).unwrap()),
            ["q3", "a3"]
        );
        turn(&mut store, 1, "q4", "a4").unwrap();
        assert_eq!(
            history_texts(&store.history_window(1).unwrap()),
            ["q3", "a3", "q4", "a4"]
        );
    }

    #[test]
    fn history_is_pruned_per_chat_but_never_inside_the_window() {
        let mut store = Store::open_in_memory().unwrap();
        store.history_limit = 4;
        turn(&mut store, 2, "keep", "me").unwrap();
        for i in 1..=3 {
            turn(&mut store, 1, &format!("q{i}"), &format!("a{i}")).unwrap();
        }
        // Never cut: all of it is the window, and pruning it would slide the window.
        assert_eq!(
            history_texts(&store.history_window(1).unwrap()),
            ["q1", "a1", "q2", "a2", "q3", "a3"]
        );
        // Cut at q3: what is older than both the window and the newest 4 goes.
        let q3 = store.history_window(1).unwrap()[4].id;
        store.cut_history_window(1, q3).unwrap();
        turn(&mut store, 1, "q4", "a4").unwrap();
        assert_eq!(
            history_texts(&store.history_window(1).unwrap()),
            ["q3", "a3", "q4", "a4"]
        );
        assert_eq!(row_count(&store, "history"), 2 + 4);
        // A window longer than the limit keeps all of itself.
        turn(&mut store, 1, "q5", "a5").unwrap();
        assert_eq!(
            history_texts(&store.history_window(1).unwrap()),
            ["q3", "a3", "q4", "a4", "q5", "a5"]
        );
        assert_eq!(row_count(&store, "history"), 2 + 6);
        assert_eq!(
            history_texts(&store.history_window(2).unwrap()),
            ["keep", "me"]
        );
    }

    #[test]
    fn clear_history_forgets_only_that_chat_and_its_window() {
        let mut store = Store::open_in_memory().unwrap();
        turn(&mut store, 1, "q", "a").unwrap();
        turn(&mut store, 2, "q", "a").unwrap();
        let first = store.history_window(1).unwrap()[1].id;
        store.cut_history_window(1, first).unwrap();
        assert_eq!(store.clear_history(1).unwrap(), 2);
        assert!(store.history_window(1).unwrap().is_empty());
        assert_eq!(store.history_window_start(1).unwrap(), None);
        assert_eq!(store.history_window(2).unwrap().len(), 2);
    }
}
