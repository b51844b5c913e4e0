//! Guests' private key-value stores (WIT 0.2.0 `kv`): one per stage, in the bot's
//! database, within the stage's `kv_kib` grant. Every operation runs off the async runtime
//! (SQLite may wait for a lock or the disk), so the call's deadline still holds.

use std::sync::Arc;

use crate::store::{Kv, KvWrite, StoreError};

/// Why a `kv` call failed, as the guest is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvError {
    NotGranted,
    QuotaExceeded(u64),
    Unavailable(String),
}

/// One stage's store, as one call sees it: the store's kv handle (which reaches the
/// `guest_kv` table and nothing else), scoped to this stage's keys and quota.
#[derive(Clone)]
pub struct GuestKv {
    kv: Kv,
    stage: Arc<str>,
    /// `None`: not granted — reads find nothing, writes fail.
    quota_bytes: Option<u64>,
}

impl GuestKv {
    pub fn new(kv: Kv, stage: Arc<str>, quota_bytes: Option<u64>) -> Self {
        Self {
            kv,
            stage,
            quota_bytes,
        }
    }

    pub async fn get(&self, key: String) -> Result<Option<String>, KvError> {
        if self.quota_bytes.is_none() {
            return Ok(None);
        }
        self.kv.get(&self.stage, key).await.map_err(unavailable)
    }

    pub async fn set(&self, key: String, value: String) -> Result<(), KvError> {
        let quota = self.quota_bytes.ok_or(KvError::NotGranted)?;
        match self
            .kv
            .set(&self.stage, key, value, quota)
            .await
            .map_err(unavailable)?
        {
            KvWrite::Stored => Ok(()),
            KvWrite::OverQuota => Err(KvError::QuotaExceeded(quota)),
        }
    }

    pub async fn delete(&self, key: String) -> Result<(), KvError> {
        self.quota_bytes.ok_or(KvError::NotGranted)?;
        self.kv.delete(&self.stage, key).await.map_err(unavailable)
    }

    pub async fn keys(&self, prefix: String) -> Result<Vec<String>, KvError> {
        if self.quota_bytes.is_none() {
            return Ok(Vec::new());
        }
        self.kv.keys(&self.stage, prefix).await.map_err(unavailable)
    }
}

fn unavailable(error: StoreError) -> KvError {
    KvError::Unavailable(error.to_string())
}
