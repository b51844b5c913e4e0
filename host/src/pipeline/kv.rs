//! Guests' private key-value stores (WIT 0.2.0 `kv`): one per stage, in the bot's
//! database, within the stage's `kv_kib` grant. Every operation runs off the async runtime
//! (SQLite may wait for a lock or the disk), so the call's deadline still holds.

use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::store::{KvWrite, Store, StoreError};

/// The database behind every stage's store: its own connection to the bot's database.
#[derive(Clone)]
pub struct KvDatabase(Arc<Mutex<Store>>);

impl KvDatabase {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self(Arc::new(Mutex::new(Store::open(path)?))))
    }

    /// A database that lives as long as this value (tests, one-off runs).
    pub fn in_memory() -> Self {
        Self(Arc::new(Mutex::new(
            Store::open_in_memory().expect("an in-memory database always opens"),
        )))
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, KvError> {
        let store = self.0.clone();
        tokio::task::spawn_blocking(move || f(&mut store.lock().unwrap_or_else(|e| e.into_inner())))
            .await
            .map_err(|e| KvError::Unavailable(e.to_string()))?
            .map_err(|e| KvError::Unavailable(e.to_string()))
    }
}

/// Why a `kv` call failed, as the guest is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvError {
    NotGranted,
    QuotaExceeded(u64),
    Unavailable(String),
}

/// One stage's store, as one call sees it.
#[derive(Clone)]
pub struct GuestKv {
    database: KvDatabase,
    stage: Arc<str>,
    /// `None`: not granted — reads find nothing, writes fail.
    quota_bytes: Option<u64>,
}

impl GuestKv {
    pub fn new(database: KvDatabase, stage: Arc<str>, quota_bytes: Option<u64>) -> Self {
        Self {
            database,
            stage,
            quota_bytes,
        }
    }

    pub async fn get(&self, key: String) -> Result<Option<String>, KvError> {
        if self.quota_bytes.is_none() {
            return Ok(None);
        }
        let stage = self.stage.clone();
        self.database.run(move |s| s.kv_get(&stage, &key)).await
    }

    pub async fn set(&self, key: String, value: String) -> Result<(), KvError> {
        let quota = self.quota_bytes.ok_or(KvError::NotGranted)?;
        let stage = self.stage.clone();
        match self
            .database
            .run(move |s| s.kv_set(&stage, &key, &value, quota))
            .await?
        {
            KvWrite::Stored => Ok(()),
            KvWrite::OverQuota => Err(KvError::QuotaExceeded(quota)),
        }
    }

    pub async fn delete(&self, key: String) -> Result<(), KvError> {
        self.quota_bytes.ok_or(KvError::NotGranted)?;
        let stage = self.stage.clone();
        self.database.run(move |s| s.kv_delete(&stage, &key)).await
    }

    pub async fn keys(&self, prefix: String) -> Result<Vec<String>, KvError> {
        if self.quota_bytes.is_none() {
            return Ok(Vec::new());
        }
        let stage = self.stage.clone();
        self.database.run(move |s| s.kv_keys(&stage, &prefix)).await
    }
}
