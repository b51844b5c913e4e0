//! Small values that outlive a run: each chat's choices (its model, its time zone) and the
//! last Telegram update handled.

use rusqlite::{OptionalExtension, Transaction, params};

use super::{Shared, Store, StoreError};
use crate::ids::ChatId;

/// Each chat's own model and time zone, for the chat service (which owns the model; the
/// scheduler sets the zone, with its tasks, through [`super::Tasks`]).
#[derive(Clone)]
pub struct ChatSettings(pub(super) Shared);

impl ChatSettings {
    /// The model the chat chose, if any (`None`: the configured default).
    pub async fn model(&self, chat_id: ChatId) -> Result<Option<String>, StoreError> {
        self.0.run(move |store| store.chat_model(chat_id.0)).await
    }

    /// Sets the chat's model; `None` goes back to the default.
    pub async fn set_model(
        &self,
        chat_id: ChatId,
        model: Option<String>,
    ) -> Result<(), StoreError> {
        self.0
            .run(move |store| store.set_chat_model(chat_id.0, model.as_deref()))
            .await
    }

    /// The chat's time zone (an IANA name), if it chose one with `/timezone`.
    pub async fn time_zone(&self, chat_id: ChatId) -> Result<Option<String>, StoreError> {
        self.0
            .run(move |store| store.chat_time_zone(chat_id.0))
            .await
    }
}

/// The last Telegram update handled, for the polling loop.
#[derive(Clone)]
pub struct UpdateOffset(pub(super) Shared);

impl UpdateOffset {
    pub async fn get(&self) -> Result<Option<i64>, StoreError> {
        self.0.run(|store| store.last_update_id()).await
    }

    /// Durable: see [`Store::set_last_update_id`].
    pub async fn set(&self, update_id: i64) -> Result<(), StoreError> {
        self.0
            .run(move |store| store.set_last_update_id(update_id))
            .await
    }
}

const LAST_UPDATE_ID_KEY: &str = "last_update_id";

impl Store {
    /// The model chosen for this chat, if any (`None`: use the configured default).
    pub(super) fn chat_model(&self, chat_id: i64) -> Result<Option<String>, StoreError> {
        let model = self
            .conn
            .query_row(
                "SELECT model FROM chat_settings WHERE chat_id = ?1",
                [chat_id],
                |row| row.get(0),
            )
            .optional()?;
        Ok(model.flatten())
    }

    /// Sets the chat's model; `None` goes back to the default.
    pub(super) fn set_chat_model(
        &mut self,
        chat_id: i64,
        model: Option<&str>,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO chat_settings (chat_id, model) VALUES (?1, ?2)
             ON CONFLICT (chat_id) DO UPDATE SET model = excluded.model",
            params![chat_id, model],
        )?;
        Ok(())
    }

    /// The chat's time zone (an IANA name), if it chose one with `/timezone`.
    pub(super) fn chat_time_zone(&self, chat_id: i64) -> Result<Option<String>, StoreError> {
        let zone = self
            .conn
            .prepare_cached("SELECT time_zone FROM chat_settings WHERE chat_id = ?1")?
            .query_row([chat_id], |row| row.get(0))
            .optional()?;
        Ok(zone.flatten())
    }

    /// Sets the chat's time zone; `None` goes back to the default.
    #[cfg(test)]
    fn set_chat_time_zone(&mut self, chat_id: i64, zone: Option<&str>) -> Result<(), StoreError> {
        self.write(|tx| set_time_zone(tx, chat_id, zone))
    }

    /// The last Telegram update handled, if any.
    pub(super) fn last_update_id(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = ?1",
                [LAST_UPDATE_ID_KEY],
                |row| row.get(0),
            )
            .optional()?)
    }

    /// Fsynced, and with it every earlier commit: the point after which the updates up to
    /// `update_id` — and the jobs `enqueue` stored for them — survive a power cut.
    pub(super) fn set_last_update_id(&mut self, update_id: i64) -> Result<(), StoreError> {
        self.durable_write(|tx| {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![LAST_UPDATE_ID_KEY, update_id],
            )?;
            Ok(())
        })
    }
}

/// Sets chat `chat_id`'s time zone in `tx`; `None` goes back to the default.
pub(super) fn set_time_zone(
    tx: &Transaction,
    chat_id: i64,
    zone: Option<&str>,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO chat_settings (chat_id, time_zone) VALUES (?1, ?2)
         ON CONFLICT (chat_id) DO UPDATE SET time_zone = excluded.time_zone",
        params![chat_id, zone],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_is_set_per_chat_and_can_be_reset() {
        let mut store = Store::open_in_memory().unwrap();
        assert_eq!(store.chat_model(1).unwrap(), None);
        store.set_chat_model(1, Some("llama3.2:1b")).unwrap();
        store.set_chat_model(1, Some("qwen3:1.7b")).unwrap();
        assert_eq!(store.chat_model(1).unwrap().as_deref(), Some("qwen3:1.7b"));
        assert_eq!(store.chat_model(2).unwrap(), None);
        store.set_chat_model(1, None).unwrap();
        assert_eq!(store.chat_model(1).unwrap(), None);
    }

    #[test]
    fn time_zone_and_model_are_set_apart() {
        let mut store = Store::open_in_memory().unwrap();
        store.set_chat_model(1, Some("qwen3:1.7b")).unwrap();
        store.set_chat_time_zone(1, Some("Europe/Madrid")).unwrap();
        assert_eq!(
            store.chat_time_zone(1).unwrap().as_deref(),
            Some("Europe/Madrid")
        );
        assert_eq!(store.chat_model(1).unwrap().as_deref(), Some("qwen3:1.7b"));
        assert_eq!(store.chat_time_zone(2).unwrap(), None);
    }
}
