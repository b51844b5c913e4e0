//! The store as the bot's services share it: one connection behind a mutex, called off the
//! async runtime.

use std::sync::{Arc, Mutex};

use super::{Store, StoreError};

/// A handle on the one [`Store`]; clones share it.
#[derive(Clone)]
pub struct SharedStore(Arc<Mutex<Store>>);

impl SharedStore {
    pub fn new(store: Store) -> Self {
        Self(Arc::new(Mutex::new(store)))
    }

    /// Runs `f` on the store off the async runtime (SQLite calls block, and a durable write
    /// waits for the disk); the lock is never held across an `.await`.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.0.clone();
        tokio::task::spawn_blocking(move || f(&mut store.lock().unwrap_or_else(|e| e.into_inner())))
            .await
            .expect("store task panicked")
    }
}
