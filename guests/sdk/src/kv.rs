//! This stage's private key-value store, kept in the bot's database across messages and
//! restarts. Granted in `pipeline.toml` with `[stage.grants] kv_kib = 64`: keys and values
//! count against that many KiB. Without the grant, reads find nothing and writes fail with
//! [`KvError::NotGranted`].
//!
//! ```ignore
//! let seen = pi_agent_guest::kv::get("last-headline")?.unwrap_or_default();
//! pi_agent_guest::kv::set("last-headline", &headline)?;
//! ```

use crate::bindings::formatter::pi_agent::pipeline::kv as host;
pub use crate::bindings::formatter::pi_agent::pipeline::kv::KvError;

/// The value stored under `key`, if any.
pub fn get(key: &str) -> Result<Option<String>, KvError> {
    host::get(key)
}

/// Stores `value` under `key`, replacing what was there.
pub fn set(key: &str, value: &str) -> Result<(), KvError> {
    host::set(key, value)
}

/// Removes `key`; nothing happens if it is not there.
pub fn delete(key: &str) -> Result<(), KvError> {
    host::delete(key)
}

/// The keys that start with `prefix` (all of them for `""`), sorted.
pub fn keys(prefix: &str) -> Result<Vec<String>, KvError> {
    host::keys(prefix)
}
