//! SQLite persistence: chat history, per-chat settings, and pending jobs that survive a crash.
//!
//! - `migrations` — the schema and how a database is brought up to it;
//! - `history` — each chat's turns, pruned to the newest [`KEPT_MESSAGES`], and where the
//!   model's window into them starts;
//! - `jobs` — messages accepted but not yet answered, and those answered (for dedupe);
//! - `settings` — per-chat choices (model, time zone) and the Telegram update offset;
//! - `tasks` — scheduled tasks, and firing them into jobs;
//! - `kv` — each guest stage's private key-value store, within its quota;
//! - `chats` — per-chat counts for the dashboard (never content).
//!
//! The API is synchronous. [`Store`] is `Send` but not `Sync` (it owns one
//! `rusqlite::Connection`): the services share it as a [`SharedStore`], which calls it from
//! `tokio::task::spawn_blocking`, never holding the lock across an `.await`.
//!
//! Durability: the database runs in WAL mode with `synchronous=NORMAL`, which survives a
//! process crash but may roll back the last commits if the Pi loses power. The writes that
//! decide "nothing lost, nothing twice" — [`Store::set_last_update_id`] and
//! [`Store::complete`] — are committed with `synchronous=FULL`: the WAL is fsynced before
//! they return, and since the WAL is written in order, every earlier commit with it. That is
//! a group commit for incoming messages: [`Store::enqueue`] does not fsync; the polling loop
//! saves the offset of a whole `getUpdates` batch (one fsync) before it acknowledges the
//! batch to Telegram. A power cut before that only makes Telegram deliver the batch again,
//! and `enqueue` recognises what it already has.

mod chats;
mod history;
mod jobs;
mod kv;
mod migrations;
mod settings;
mod shared;
mod tasks;

pub use chats::ChatCounts;
pub use history::StoredMessage;
pub use kv::KvWrite;
pub use shared::SharedStore;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior};

/// History messages kept per chat (100 turns); older ones are deleted as new ones come.
pub const KEPT_MESSAGES: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot create data directory {}: {source} — check DATA_DIR and that the pi-agent user may write there",
        path.display()
    )]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot open database {}: {source} — check DATA_DIR, its permissions, free disk space, and that no other pi-agent is running",
        path.display()
    )]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "database schema version {found} is newer than this pi-agent supports ({supported}) — it was written by a newer release: upgrade pi-agent or restore an older backup"
    )]
    TooNew { found: i64, supported: usize },
    #[error(
        "database migration from schema version {from} to {to} failed: {source} — nothing was changed; check free disk space and restart"
    )]
    Migration {
        from: i64,
        to: usize,
        source: rusqlite::Error,
    },
    #[error("pending job {0} does not exist — it was already completed or discarded")]
    UnknownJob(i64),
    #[error(
        "a pending job's context is not valid JSON: {0} — the database may be damaged; discard the job"
    )]
    Context(#[from] serde_json::Error),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// The database. Its methods live beside the tables they touch, in the submodules.
pub struct Store {
    conn: Connection,
    /// History messages kept per chat ([`KEPT_MESSAGES`]; tests set fewer).
    history_limit: usize,
}

impl Store {
    /// Opens (creating it and its directory if missing) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        create_parent_dir(path)?;
        Self::set_up(Connection::open(path), path)
    }

    /// A private database that vanishes on drop (tests).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::set_up(Connection::open_in_memory(), Path::new(":memory:"))
    }

    fn set_up(conn: rusqlite::Result<Connection>, path: &Path) -> Result<Self, StoreError> {
        let open_error = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let mut conn = conn.map_err(open_error)?;
        configure(&conn, path).map_err(open_error)?;
        migrations::migrate(&mut conn, migrations::MIGRATIONS)?;
        Ok(Self {
            conn,
            history_limit: KEPT_MESSAGES,
        })
    }

    /// Runs `f` in an IMMEDIATE transaction (takes the write lock up front, so it waits on
    /// busy_timeout instead of failing halfway) and commits.
    fn write<T>(
        &mut self,
        f: impl FnOnce(&Transaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    }

    /// Like [`Self::write`], but the commit fsyncs the WAL so it survives a power cut.
    /// `synchronous` only applies between transactions, hence set before and restored after.
    fn durable_write<T>(
        &mut self,
        f: impl FnOnce(&Transaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        let result = self.write(f);
        let restored = self.conn.pragma_update(None, "synchronous", "NORMAL");
        let value = result?;
        restored?;
        Ok(value)
    }
}

fn create_parent_dir(path: &Path) -> Result<(), StoreError> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_owned(),
                source,
            })
        }
        _ => Ok(()),
    }
}

fn configure(conn: &Connection, path: &Path) -> rusqlite::Result<()> {
    // Wait for a concurrent writer (e.g. the sqlite3 CLI) instead of failing at once.
    conn.busy_timeout(Duration::from_secs(5))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    // In-memory databases report "memory"; anything else means a filesystem without WAL
    // support, where every commit is slower but still correct.
    if mode != "wal" && mode != "memory" {
        tracing::warn!(path = %path.display(), mode, "database is not in WAL mode");
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(())
}

/// SQLite's LIMIT/OFFSET take an i64; anything larger means "no limit".
fn sql_limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// What the store's tests share: databases in temporary directories, jobs, and a look
/// at tables the API does not count.
#[cfg(test)]
mod fixtures {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicI32, Ordering};

    use super::{Store, StoreError, StoredMessage};
    use crate::chat::{Enqueued, JobKind, NewJob};
    use crate::prompt::ChatContext;

    /// A directory for a database, removed on drop.
    pub struct TempDir(tempfile::TempDir);

    impl TempDir {
        pub fn new() -> Self {
            Self(tempfile::tempdir().unwrap())
        }

        /// The database's path, in a subdirectory that does not exist yet.
        pub fn db(&self) -> PathBuf {
            self.0.path().join("data").join("pi-agent.db")
        }
    }

    pub fn job(chat_id: i64, message_id: i32, text: &str) -> NewJob {
        NewJob {
            chat_id,
            kind: JobKind::Message { message_id },
            user_id: 42,
            text: text.to_owned(),
            context: ChatContext {
                chat_id,
                user_id: 42,
                user_name: Some("ada".into()),
                language: Some("en".into()),
                is_group: false,
                unix_ms: 1_700_000_000_000,
                time_zone: String::new(),
                scheduled: None,
            },
            received_unix_ms: 1_700_000_000_123,
        }
    }

    pub fn new_id(enqueued: Enqueued) -> i64 {
        match enqueued {
            Enqueued::New(id) => id,
            Enqueued::Duplicate => panic!("expected a new job"),
        }
    }

    /// A question answered in `chat_id`: its turn goes into history the way the chat
    /// service puts it there.
    pub fn turn(
        store: &mut Store,
        chat_id: i64,
        question: &str,
        answer: &str,
    ) -> Result<(), StoreError> {
        static NEXT_MESSAGE: AtomicI32 = AtomicI32::new(1);
        let message_id = NEXT_MESSAGE.fetch_add(1, Ordering::Relaxed);
        let id = new_id(store.enqueue(&job(chat_id, message_id, question))?);
        store.complete(id, Some((question, answer)))
    }

    pub fn history_texts(messages: &[StoredMessage]) -> Vec<&str> {
        messages
            .iter()
            .map(|m| m.message.content.as_str())
            .collect()
    }

    pub fn row_count(store: &Store, table: &str) -> i64 {
        store
            .conn
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
                row.get(0)
            })
            .unwrap()
    }

    pub fn user_version(store: &Store) -> i64 {
        store
            .conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<Store>();
    }

    #[test]
    fn open_error_names_the_path_and_what_to_check() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the database file should be cannot be opened as a database.
        let path = dir.path().join("is-a-dir.db");
        std::fs::create_dir(&path).unwrap();
        let err = Store::open(&path)
            .err()
            .expect("a directory is not a database");
        let message = err.to_string();
        assert!(
            message.contains("is-a-dir.db") && message.contains("check DATA_DIR"),
            "{message}"
        );
    }
}
