//! Each guest stage's private key-value store (WIT 0.2.0 `kv`), scoped by stage name and
//! held to the stage's quota: the UTF-8 bytes of its keys and values together.

use rusqlite::{OptionalExtension, params};

use super::{Shared, Store, StoreError};

/// The guests' key-value stores and nothing else: the one handle the sandbox gets. Every
/// query names the `guest_kv` table and the stage; no method reaches another table.
#[derive(Clone)]
pub struct Kv(pub(super) Shared);

impl Kv {
    pub async fn get(&self, stage: &str, key: String) -> Result<Option<String>, StoreError> {
        let stage = stage.to_owned();
        self.0.run(move |store| store.kv_get(&stage, &key)).await
    }

    /// Stores `value` under `key` unless the stage would then hold more than `quota_bytes`.
    pub async fn set(
        &self,
        stage: &str,
        key: String,
        value: String,
        quota_bytes: u64,
    ) -> Result<KvWrite, StoreError> {
        let stage = stage.to_owned();
        self.0
            .run(move |store| store.kv_set(&stage, &key, &value, quota_bytes))
            .await
    }

    pub async fn delete(&self, stage: &str, key: String) -> Result<(), StoreError> {
        let stage = stage.to_owned();
        self.0.run(move |store| store.kv_delete(&stage, &key)).await
    }

    /// The stage's keys that start with `prefix`, sorted.
    pub async fn keys(&self, stage: &str, prefix: String) -> Result<Vec<String>, StoreError> {
        let stage = stage.to_owned();
        self.0
            .run(move |store| store.kv_keys(&stage, &prefix))
            .await
    }
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvWrite {
    Stored,
    /// It would have taken the stage past its quota; nothing changed.
    OverQuota,
}

impl Store {
    pub(super) fn kv_get(&self, stage: &str, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT value FROM guest_kv WHERE stage = ?1 AND key = ?2")?
            .query_row(params![stage, key], |row| row.get(0))
            .optional()?)
    }

    /// Stores `value` under `key` unless the stage would then hold more than `quota_bytes`.
    pub(super) fn kv_set(
        &mut self,
        stage: &str,
        key: &str,
        value: &str,
        quota_bytes: u64,
    ) -> Result<KvWrite, StoreError> {
        let size = (key.len() + value.len()) as u64;
        self.write(|tx| {
            let others: u64 = tx.query_row(
                "SELECT coalesce(sum(size), 0) FROM guest_kv WHERE stage = ?1 AND key != ?2",
                params![stage, key],
                |row| row.get(0),
            )?;
            if others.saturating_add(size) > quota_bytes {
                return Ok(KvWrite::OverQuota);
            }
            tx.execute(
                "INSERT INTO guest_kv (stage, key, value, size) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (stage, key) DO UPDATE SET value = excluded.value, size = excluded.size",
                params![stage, key, value, size],
            )?;
            Ok(KvWrite::Stored)
        })
    }

    pub(super) fn kv_delete(&mut self, stage: &str, key: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "DELETE FROM guest_kv WHERE stage = ?1 AND key = ?2",
            params![stage, key],
        )?;
        Ok(())
    }

    /// The stage's keys that start with `prefix`, sorted.
    pub(super) fn kv_keys(&self, stage: &str, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT key FROM guest_kv WHERE stage = ?1 AND substr(key, 1, length(?2)) = ?2
             ORDER BY key",
        )?;
        let keys = stmt.query_map(params![stage, prefix], |row| row.get(0))?;
        Ok(keys.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_have_their_own_keys() {
        let mut store = Store::open_in_memory().unwrap();
        store.kv_set("weather", "city", "Berlin", 100).unwrap();
        store.kv_set("news", "city", "Oslo", 100).unwrap();
        assert_eq!(
            store.kv_get("weather", "city").unwrap().as_deref(),
            Some("Berlin")
        );
        assert_eq!(
            store.kv_get("news", "city").unwrap().as_deref(),
            Some("Oslo")
        );
        store.kv_delete("news", "city").unwrap();
        assert_eq!(store.kv_get("news", "city").unwrap(), None);
        assert_eq!(
            store.kv_get("weather", "city").unwrap().as_deref(),
            Some("Berlin")
        );
    }

    #[test]
    fn keys_are_listed_by_prefix_in_order() {
        let mut store = Store::open_in_memory().unwrap();
        for key in ["seen:b", "seen:a", "city", "seenx"] {
            store.kv_set("news", key, "1", 1000).unwrap();
        }
        assert_eq!(
            store.kv_keys("news", "seen:").unwrap(),
            ["seen:a", "seen:b"]
        );
        assert_eq!(store.kv_keys("news", "").unwrap().len(), 4);
        assert!(store.kv_keys("other", "").unwrap().is_empty());
    }

    #[test]
    fn the_quota_counts_bytes_of_keys_and_values_and_a_replaced_value_frees_its_own() {
        let mut store = Store::open_in_memory().unwrap();
        assert_eq!(
            store.kv_set("s", "k", "ü".repeat(4).as_str(), 9).unwrap(),
            KvWrite::Stored
        );
        assert_eq!(store.kv_set("s", "k2", "x", 9).unwrap(), KvWrite::OverQuota);
        assert_eq!(store.kv_get("s", "k2").unwrap(), None);
        // Replacing `k` counts its new size only.
        assert_eq!(
            store.kv_set("s", "k", "12345678", 9).unwrap(),
            KvWrite::Stored
        );
        assert_eq!(
            store.kv_set("s", "k", "123456789", 9).unwrap(),
            KvWrite::OverQuota
        );
        assert_eq!(store.kv_get("s", "k").unwrap().as_deref(), Some("12345678"));
    }
}
