//! SQLite persistence: chat history, per-chat settings, pending jobs that survive a crash,
//! scheduled tasks, the guests' key-value stores.
//!
//! [`Database`] opens (and migrates) the one database once and hands out a narrow handle
//! per table to the room that owns it; no room gets the whole database:
//!
//! | handle | tables | owner |
//! |---|---|---|
//! | [`Jobs`] | `pending_jobs`, `answered` (+ the `history` a job's answer adds) | `chat` |
//! | [`History`] | `history`, `history_window` | `chat` |
//! | [`ChatSettings`] | `chat_settings` (the model; reads the zone) | `chat` |
//! | [`Tasks`] | `tasks` (+ a job a firing stores, a chat's zone with its tasks) | `schedule` |
//! | [`Kv`] | `guest_kv` | `pipeline` (the sandbox) |
//! | [`UpdateOffset`] | `meta` (the last Telegram update) | `telegram` |
//! | [`Activity`] | reads every table's per-chat counts | `web` |
//!
//! The store persists its own records (`NewJob`, `NewTask`, their `Origin` as JSON of its
//! own shape) and imports none of its callers. A change that spans tables is one
//! transaction, behind the one handle of the room that owns the change.
//!
//! - `migrations` — the schema and how a database is brought up to it;
//! - `history`, `jobs`, `settings`, `tasks`, `kv`, `chats` — the tables and their handles.
//!
//! The handles are async: each call runs on the one connection off the async runtime
//! (`spawn_blocking`), never holding the lock across an `.await`.
//!
//! Durability: the database runs in WAL mode with `synchronous=NORMAL`, which survives a
//! process crash but may roll back the last commits if the Pi loses power. The writes that
//! decide "nothing lost, nothing twice" — [`UpdateOffset::set`] and [`Jobs::complete`] —
//! are committed with `synchronous=FULL`: the WAL is fsynced before they return, and since
//! the WAL is written in order, every earlier commit with it. That is a group commit for
//! incoming messages: [`Jobs::enqueue`] does not fsync; the polling loop saves the offset of
//! a whole `getUpdates` batch (one fsync) before it acknowledges the batch to Telegram. A
//! power cut before that only makes Telegram deliver the batch again, and `enqueue`
//! recognises what it already has.

mod chats;
mod history;
mod jobs;
mod kv;
mod migrations;
mod settings;
mod tasks;

pub use chats::{Activity, ChatCounts};
pub use history::{History, StoredMessage};
pub use jobs::{Enqueued, JobKind, Jobs, NewJob, Origin, PendingJob, Turn};
pub use kv::{Kv, KvWrite};
pub use settings::{ChatSettings, UpdateOffset};
pub use tasks::{NewTask, Task, TaskKind, Tasks};

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
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

/// The bot's database, opened and migrated once; cheap to clone. Its handles share the
/// one connection.
#[derive(Clone)]
pub struct Database(Shared);

impl Database {
    /// Opens (creating it and its directory if missing) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self(Shared::new(Store::open(path)?)))
    }

    /// A private database that vanishes with its last handle (tests, one-off runs).
    pub fn in_memory() -> Self {
        Self(Shared::new(
            Store::open_in_memory().expect("an in-memory database always opens"),
        ))
    }

    pub fn jobs(&self) -> Jobs {
        Jobs(self.0.clone())
    }

    pub fn history(&self) -> History {
        History(self.0.clone())
    }

    pub fn chat_settings(&self) -> ChatSettings {
        ChatSettings(self.0.clone())
    }

    pub fn tasks(&self) -> Tasks {
        Tasks(self.0.clone())
    }

    pub fn kv(&self) -> Kv {
        Kv(self.0.clone())
    }

    pub fn update_offset(&self) -> UpdateOffset {
        UpdateOffset(self.0.clone())
    }

    pub fn activity(&self) -> Activity {
        Activity(self.0.clone())
    }
}

/// The one connection, shared by the handles: called off the async runtime (SQLite calls
/// block, and a durable write waits for the disk); the lock is never held across an
/// `.await`.
#[derive(Clone)]
struct Shared(Arc<Mutex<Store>>);

impl Shared {
    fn new(store: Store) -> Self {
        Self(Arc::new(Mutex::new(store)))
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.0.clone();
        tokio::task::spawn_blocking(move || f(&mut store.lock().unwrap_or_else(|e| e.into_inner())))
            .await
            .expect("store task panicked")
    }
}

/// The connection and the tables' synchronous operations (beside each table, in the
/// submodules), which the handles run.
struct Store {
    conn: Connection,
    /// History messages kept per chat ([`KEPT_MESSAGES`]; tests set fewer).
    history_limit: usize,
}

impl Store {
    /// Opens (creating it and its directory if missing) and migrates the database at `path`.
    fn open(path: &Path) -> Result<Self, StoreError> {
        create_parent_dir(path)?;
        Self::set_up(Connection::open(path), path)
    }

    fn open_in_memory() -> Result<Self, StoreError> {
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

    use super::{Enqueued, JobKind, NewJob, Origin, Store, StoreError, StoredMessage};
    use crate::ids::{ChatId, UserId};

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
            chat_id: ChatId(chat_id),
            kind: JobKind::Message { message_id },
            user_id: UserId(42),
            text: text.to_owned(),
            origin: Origin {
                user_name: Some("ada".into()),
                language: Some("en".into()),
                is_group: false,
                sent_unix_ms: 1_700_000_000_000,
                scheduled: None,
            },
            received_unix_ms: 1_700_000_000_123,
        }
    }

    pub fn new_id(enqueued: Enqueued) -> i64 {
        match enqueued {
            Enqueued::New(id) => id.0,
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
    fn the_database_is_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Database>();
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
