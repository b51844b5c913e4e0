//! Metric handles registered with the Prometheus recorder once per label set, so that
//! recording an event is a lock, a lookup and an atomic add rather than building a key and
//! searching the recorder's registry — and nothing at all while no recorder is installed
//! (the dashboard is off).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{LazyLock, Mutex};

/// Handles `H` by label set `K`.
pub struct Handles<K, H> {
    map: LazyLock<Mutex<HashMap<K, H>>>,
}

impl<K: Eq + Hash, H> Handles<K, H> {
    pub const fn new() -> Self {
        Self {
            map: LazyLock::new(|| Mutex::new(HashMap::new())),
        }
    }

    /// Runs `record` on the handles when the recorder is installed (handles registered
    /// before it would stay no-ops).
    pub fn with(&self, record: impl FnOnce(&mut HashMap<K, H>)) {
        if super::prometheus::installed() {
            record(&mut self.map.lock().unwrap_or_else(|e| e.into_inner()));
        }
    }
}

impl<H> Handles<(), H> {
    /// The one handle of a metric without labels.
    pub fn only(&self, register: impl FnOnce() -> H, record: impl FnOnce(&H)) {
        self.with(|handles| record(handles.entry(()).or_insert_with(register)));
    }
}
