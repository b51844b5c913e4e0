//! SQLite persistence: chat history, per-chat settings, and pending jobs that survive a crash.
//!
//! The API is synchronous. [`Store`] is `Send` but not `Sync` (it owns one
//! `rusqlite::Connection`): the service keeps it in an `Arc<std::sync::Mutex<Store>>` and calls
//! it from `tokio::task::spawn_blocking`, never holding the lock across an `.await`.
//!
//! Durability: the database runs in WAL mode with `synchronous=NORMAL`, which survives a
//! process crash but may roll back the last commits if the Pi loses power. The writes that
//! decide "nothing lost, nothing twice" — [`Store::set_last_update_id`], [`Store::complete`]
//! and [`Store::discard`] — are committed with `synchronous=FULL`: the WAL is fsynced before
//! they return, and since the WAL is written in order, every earlier commit with it. That is
//! a group commit for incoming messages: [`Store::enqueue`] does not fsync; the polling loop
//! saves the offset of a whole `getUpdates` batch (one fsync) before it acknowledges the
//! batch to Telegram. A power cut before that only makes Telegram deliver the batch again,
//! and `enqueue` recognises what it already has.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use crate::prompt::{ChatContext, ChatMessage, Role};

/// Messages kept per chat unless [`Store::with_history_limit`] says otherwise (100 turns).
pub const DEFAULT_HISTORY_LIMIT: usize = 200;

/// How long an answered `(chat_id, message_id)` is remembered for dedupe. Telegram keeps
/// unacknowledged updates for 24 hours, so two days covers any re-delivery with margin.
const ANSWERED_RETENTION: Duration = Duration::from_secs(2 * 24 * 60 * 60);

/// Schema migrations; migration `i` brings the database to version `i + 1`, recorded in
/// `PRAGMA user_version`. Append new entries, never edit shipped ones.
const MIGRATIONS: &[&str] = &[r"
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value ANY NOT NULL
    ) STRICT;

    -- `id` grows with every insert, so it orders a chat's messages even if the clock jumps
    -- (the Pi has no RTC).
    CREATE TABLE history (
        id      INTEGER PRIMARY KEY,
        chat_id INTEGER NOT NULL,
        role    TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
        content TEXT NOT NULL
    ) STRICT;
    CREATE INDEX history_by_chat ON history (chat_id, id);

    CREATE TABLE chat_settings (
        chat_id INTEGER PRIMARY KEY,
        model   TEXT
    ) STRICT;

    -- AUTOINCREMENT: a job id is never reused, so a stale id can't touch a newer job.
    CREATE TABLE pending_jobs (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        chat_id          INTEGER NOT NULL,
        message_id       INTEGER NOT NULL,
        user_id          INTEGER NOT NULL,
        text             TEXT NOT NULL,
        context_json     TEXT NOT NULL,
        received_unix_ms INTEGER NOT NULL,
        attempts         INTEGER NOT NULL DEFAULT 0,
        UNIQUE (chat_id, message_id)
    ) STRICT;

    -- Jobs already answered or discarded, so a re-delivered update is not run again.
    CREATE TABLE answered (
        chat_id     INTEGER NOT NULL,
        message_id  INTEGER NOT NULL,
        at_unix_ms  INTEGER NOT NULL,
        PRIMARY KEY (chat_id, message_id)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX answered_by_age ON answered (at_unix_ms);
"];

const LAST_UPDATE_ID_KEY: &str = "last_update_id";

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

/// One accepted user message, before it is queued.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub chat_id: i64,
    pub message_id: i32,
    pub user_id: i64,
    pub text: String,
    pub context: ChatContext,
    pub received_unix_ms: u64,
}

/// A queued message not yet answered; survives restarts until completed or discarded.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingJob {
    pub id: i64,
    pub chat_id: i64,
    pub message_id: i32,
    pub user_id: i64,
    pub text: String,
    pub context: ChatContext,
    pub received_unix_ms: u64,
    pub attempts: u32,
}

impl PendingJob {
    /// The job `enqueue` stored as `id`, before any attempt.
    pub fn from_new(id: i64, job: NewJob) -> Self {
        let NewJob {
            chat_id,
            message_id,
            user_id,
            text,
            context,
            received_unix_ms,
        } = job;
        Self {
            id,
            chat_id,
            message_id,
            user_id,
            text,
            context,
            received_unix_ms,
            attempts: 0,
        }
    }
}

/// Outcome of [`Store::enqueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    New(i64),
    /// Already pending or already answered: acknowledge the update and do nothing.
    Duplicate,
}

/// Small numbers for `/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreCounts {
    pub pending_jobs: u64,
    pub chats_with_history: u64,
    pub history_messages: u64,
}

pub struct Store {
    conn: Connection,
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

    /// Keeps at most `max_messages_per_chat` history messages per chat (0 keeps none);
    /// older ones are deleted on the chat's next append.
    pub fn with_history_limit(mut self, max_messages_per_chat: usize) -> Self {
        self.history_limit = max_messages_per_chat;
        self
    }

    fn set_up(conn: rusqlite::Result<Connection>, path: &Path) -> Result<Self, StoreError> {
        let open_error = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let mut conn = conn.map_err(open_error)?;
        configure(&conn, path).map_err(open_error)?;
        migrate(&mut conn, MIGRATIONS)?;
        Ok(Self {
            conn,
            history_limit: DEFAULT_HISTORY_LIMIT,
        })
    }

    // ---- history ----

    /// Appends a user message and the assistant's answer together, then prunes the chat.
    pub fn append_turn(
        &mut self,
        chat_id: i64,
        user_msg: &str,
        assistant_msg: &str,
    ) -> Result<(), StoreError> {
        let limit = self.history_limit;
        self.write(|tx| insert_turn(tx, chat_id, user_msg, assistant_msg, limit))
    }

    /// The last `limit_messages` messages of the chat, oldest first.
    pub fn history(
        &self,
        chat_id: i64,
        limit_messages: usize,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT role, content FROM (
                 SELECT id, role, content FROM history WHERE chat_id = ?1 ORDER BY id DESC LIMIT ?2
             ) ORDER BY id",
        )?;
        let rows = stmt.query_map(params![chat_id, sql_limit(limit_messages)], |row| {
            Ok(ChatMessage::new(
                role_from_sql(&row.get::<_, String>(0)?)?,
                row.get::<_, String>(1)?,
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Forgets the chat's history; returns how many messages were deleted.
    pub fn clear_history(&mut self, chat_id: i64) -> Result<usize, StoreError> {
        Ok(self
            .conn
            .execute("DELETE FROM history WHERE chat_id = ?1", [chat_id])?)
    }

    // ---- per-chat settings ----

    /// The model chosen for this chat, if any (`None`: use the configured default).
    pub fn chat_model(&self, chat_id: i64) -> Result<Option<String>, StoreError> {
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
    pub fn set_chat_model(&mut self, chat_id: i64, model: Option<&str>) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO chat_settings (chat_id, model) VALUES (?1, ?2)
             ON CONFLICT (chat_id) DO UPDATE SET model = excluded.model",
            params![chat_id, model],
        )?;
        Ok(())
    }

    // ---- pending jobs ----

    /// Queues `job` unless its `(chat_id, message_id)` is already pending or was answered.
    /// Not fsynced on its own: it becomes durable with the next [`Self::set_last_update_id`]
    /// (see the module docs), and only then may the Telegram update be acknowledged.
    pub fn enqueue(&mut self, job: &NewJob) -> Result<Enqueued, StoreError> {
        let context_json = serde_json::to_string(&job.context)?;
        self.write(|tx| {
            if was_answered(tx, job.chat_id, job.message_id)? {
                return Ok(Enqueued::Duplicate);
            }
            let inserted = tx.execute(
                "INSERT INTO pending_jobs (chat_id, message_id, user_id, text, context_json, received_unix_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (chat_id, message_id) DO NOTHING",
                params![job.chat_id, job.message_id, job.user_id, job.text, context_json, job.received_unix_ms],
            )?;
            Ok(if inserted == 0 { Enqueued::Duplicate } else { Enqueued::New(tx.last_insert_rowid()) })
        })
    }

    /// All jobs not yet completed or discarded, in arrival order (restart recovery).
    pub fn pending(&self) -> Result<Vec<PendingJob>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, chat_id, message_id, user_id, text, context_json, received_unix_ms, attempts
             FROM pending_jobs ORDER BY id",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok((
                PendingJob {
                    id: row.get(0)?,
                    chat_id: row.get(1)?,
                    message_id: row.get(2)?,
                    user_id: row.get(3)?,
                    text: row.get(4)?,
                    context: ChatContext::default(),
                    received_unix_ms: row.get(6)?,
                    attempts: row.get(7)?,
                },
                row.get::<_, String>(5)?,
            ))
        })?;
        rows.map(|row| {
            let (mut job, context_json) = row?;
            job.context = serde_json::from_str(&context_json)?;
            Ok(job)
        })
        .collect()
    }

    /// Counts one more try at the job before it runs, so a job that keeps crashing the
    /// process can be given up on after restarts; returns the new count.
    pub fn record_attempt(&mut self, id: i64) -> Result<u32, StoreError> {
        self.conn
            .query_row(
                "UPDATE pending_jobs SET attempts = attempts + 1 WHERE id = ?1 RETURNING attempts",
                [id],
                |row| row.get(0),
            )
            .optional()?
            .ok_or(StoreError::UnknownJob(id))
    }

    /// Takes back the attempt counted by [`Self::record_attempt`]: the job stopped for a
    /// reason that was not its fault (a shutdown) and stays pending.
    pub fn forget_attempt(&mut self, id: i64) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE pending_jobs SET attempts = max(attempts - 1, 0) WHERE id = ?1",
            [id],
        )?;
        Ok(())
    }

    /// Finishes a job in one durable transaction: removes it from the queue, remembers it as
    /// answered, and appends `(user_msg, assistant_msg)` to the chat's history when given.
    pub fn complete(
        &mut self,
        id: i64,
        reply_for_history: Option<(&str, &str)>,
    ) -> Result<(), StoreError> {
        let limit = self.history_limit;
        self.durable_write(|tx| {
            let chat_id = finish_job(tx, id)?;
            match reply_for_history {
                Some((user_msg, assistant_msg)) => {
                    insert_turn(tx, chat_id, user_msg, assistant_msg, limit)
                }
                None => Ok(()),
            }
        })
    }

    /// Drops a job without an answer (cancelled or failed for good); it is remembered as
    /// answered so a re-delivered update doesn't bring it back.
    pub fn discard(&mut self, id: i64) -> Result<(), StoreError> {
        self.durable_write(|tx| finish_job(tx, id).map(drop))
    }

    // ---- Telegram offset ----

    pub fn last_update_id(&self) -> Result<Option<i64>, StoreError> {
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
    pub fn set_last_update_id(&mut self, update_id: i64) -> Result<(), StoreError> {
        self.durable_write(|tx| {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![LAST_UPDATE_ID_KEY, update_id],
            )?;
            Ok(())
        })
    }

    // ---- stats ----

    pub fn counts(&self) -> Result<StoreCounts, StoreError> {
        Ok(self.conn.query_row(
            "SELECT (SELECT count(*) FROM pending_jobs),
                    (SELECT count(DISTINCT chat_id) FROM history),
                    (SELECT count(*) FROM history)",
            [],
            |row| {
                Ok(StoreCounts {
                    pending_jobs: row.get(0)?,
                    chats_with_history: row.get(1)?,
                    history_messages: row.get(2)?,
                })
            },
        )?)
    }

    // ---- transactions ----

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

/// Applies the migrations the database lacks, all in one transaction, so a failure leaves
/// it at its old version.
fn migrate(conn: &mut Connection, migrations: &[&str]) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let supported = migrations.len();
    let current = usize::try_from(found).unwrap_or(usize::MAX);
    if current > supported {
        return Err(StoreError::TooNew { found, supported });
    }
    if current == supported {
        return Ok(());
    }
    let failed = |source| StoreError::Migration {
        from: found,
        to: supported,
        source,
    };
    for (index, sql) in migrations.iter().enumerate().skip(current) {
        tx.execute_batch(sql).map_err(failed)?;
        tx.pragma_update(None, "user_version", index + 1)
            .map_err(failed)?;
    }
    tx.commit().map_err(failed)?;
    tracing::info!(from = found, to = supported, "database schema migrated");
    Ok(())
}

fn insert_turn(
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
    // Delete everything older than the chat's newest `limit` messages.
    tx.execute(
        "DELETE FROM history WHERE chat_id = ?1 AND id <= (
             SELECT id FROM history WHERE chat_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2
         )",
        params![chat_id, sql_limit(limit)],
    )?;
    Ok(())
}

/// Removes pending job `id`, records it as answered, forgets answers past the retention;
/// returns its chat.
fn finish_job(tx: &Transaction, id: i64) -> Result<i64, StoreError> {
    let (chat_id, message_id): (i64, i32) = tx
        .query_row(
            "DELETE FROM pending_jobs WHERE id = ?1 RETURNING chat_id, message_id",
            [id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?
        .ok_or(StoreError::UnknownJob(id))?;
    let now = now_unix_ms();
    tx.execute(
        "INSERT OR REPLACE INTO answered (chat_id, message_id, at_unix_ms) VALUES (?1, ?2, ?3)",
        params![chat_id, message_id, now],
    )?;
    let retention_ms = i64::try_from(ANSWERED_RETENTION.as_millis()).unwrap_or(i64::MAX);
    tx.execute(
        "DELETE FROM answered WHERE at_unix_ms < ?1",
        [now.saturating_sub(retention_ms)],
    )?;
    Ok(chat_id)
}

fn was_answered(tx: &Transaction, chat_id: i64, message_id: i32) -> rusqlite::Result<bool> {
    tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM answered WHERE chat_id = ?1 AND message_id = ?2)",
        params![chat_id, message_id],
        |row| row.get(0),
    )
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

/// SQLite's LIMIT/OFFSET take an i64; anything larger means "no limit".
fn sql_limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn now_unix_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let name = format!(
                "pi-agent-store-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            let dir = std::env::temp_dir().join(name);
            let _ = std::fs::remove_dir_all(&dir);
            Self(dir)
        }

        fn db(&self) -> PathBuf {
            self.0.join("data").join("pi-agent.db")
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn job(chat_id: i64, message_id: i32, text: &str) -> NewJob {
        NewJob {
            chat_id,
            message_id,
            user_id: 42,
            text: text.to_owned(),
            context: ChatContext {
                chat_id,
                user_id: 42,
                user_name: Some("ada".into()),
                language: Some("en".into()),
                is_group: false,
                unix_ms: 1_700_000_000_000,
            },
            received_unix_ms: 1_700_000_000_123,
        }
    }

    fn new_id(enqueued: Enqueued) -> i64 {
        match enqueued {
            Enqueued::New(id) => id,
            Enqueued::Duplicate => panic!("expected a new job"),
        }
    }

    fn user_version(store: &Store) -> i64 {
        store
            .conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap()
    }

    fn texts(messages: &[ChatMessage]) -> Vec<&str> {
        messages.iter().map(|m| m.content.as_str()).collect()
    }

    #[test]
    fn store_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<Store>();
    }

    #[test]
    fn migrates_an_empty_database_and_creates_its_directory() {
        let dir = TempDir::new();
        let store = Store::open(&dir.db()).unwrap();
        assert_eq!(user_version(&store), MIGRATIONS.len() as i64);
        let mode: String = store
            .conn
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(store.counts().unwrap(), StoreCounts::default());
    }

    #[test]
    fn reopening_is_a_no_op_and_keeps_data() {
        let dir = TempDir::new();
        Store::open(&dir.db())
            .unwrap()
            .set_chat_model(1, Some("qwen3:1.7b"))
            .unwrap();
        let store = Store::open(&dir.db()).unwrap();
        assert_eq!(user_version(&store), MIGRATIONS.len() as i64);
        assert_eq!(store.chat_model(1).unwrap().as_deref(), Some("qwen3:1.7b"));
    }

    #[test]
    fn refuses_a_database_from_a_newer_release() {
        let dir = TempDir::new();
        let store = Store::open(&dir.db()).unwrap();
        store.conn.pragma_update(None, "user_version", 99).unwrap();
        drop(store);
        let err = Store::open(&dir.db())
            .err()
            .expect("a newer schema must be refused");
        assert!(matches!(err, StoreError::TooNew { found: 99, .. }), "{err}");
        assert!(err.to_string().contains("upgrade pi-agent"), "{err}");
    }

    #[test]
    fn a_failed_migration_changes_nothing() {
        let mut conn = Connection::open_in_memory().unwrap();
        let err = migrate(
            &mut conn,
            &["CREATE TABLE a (x INTEGER);", "THIS IS NOT SQL"],
        )
        .unwrap_err();
        assert!(
            matches!(err, StoreError::Migration { from: 0, to: 2, .. }),
            "{err}"
        );
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, 0);
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'a'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 0, "the first migration must be rolled back too");
    }

    #[test]
    fn open_error_names_the_path_and_what_to_check() {
        let dir = TempDir::new();
        std::fs::create_dir_all(&dir.0).unwrap();
        // A directory where the database file should be cannot be opened as a database.
        let path = dir.0.join("is-a-dir.db");
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

    #[test]
    fn history_is_oldest_first_and_limited_to_the_newest() {
        let mut store = Store::open_in_memory().unwrap();
        store.append_turn(1, "q1", "a1").unwrap();
        store.append_turn(2, "other chat", "x").unwrap();
        store.append_turn(1, "q2", "a2").unwrap();
        let all = store.history(1, 10).unwrap();
        assert_eq!(texts(&all), ["q1", "a1", "q2", "a2"]);
        assert_eq!(all[0].role, Role::User);
        assert_eq!(all[1].role, Role::Assistant);
        assert_eq!(texts(&store.history(1, 3).unwrap()), ["a1", "q2", "a2"]);
        assert!(store.history(1, 0).unwrap().is_empty());
    }

    #[test]
    fn history_is_pruned_per_chat() {
        let mut store = Store::open_in_memory().unwrap().with_history_limit(4);
        store.append_turn(2, "keep", "me").unwrap();
        for i in 1..=3 {
            store
                .append_turn(1, &format!("q{i}"), &format!("a{i}"))
                .unwrap();
        }
        assert_eq!(
            texts(&store.history(1, 100).unwrap()),
            ["q2", "a2", "q3", "a3"]
        );
        assert_eq!(texts(&store.history(2, 100).unwrap()), ["keep", "me"]);
        let counts = store.counts().unwrap();
        assert_eq!((counts.chats_with_history, counts.history_messages), (2, 6));
    }

    #[test]
    fn clear_history_forgets_only_that_chat() {
        let mut store = Store::open_in_memory().unwrap();
        store.append_turn(1, "q", "a").unwrap();
        store.append_turn(2, "q", "a").unwrap();
        assert_eq!(store.clear_history(1).unwrap(), 2);
        assert!(store.history(1, 10).unwrap().is_empty());
        assert_eq!(store.history(2, 10).unwrap().len(), 2);
    }

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
    fn enqueue_detects_duplicates_while_pending_and_after_completion() {
        let mut store = Store::open_in_memory().unwrap();
        let id = new_id(store.enqueue(&job(1, 10, "hi")).unwrap());
        assert_eq!(
            store.enqueue(&job(1, 10, "hi")).unwrap(),
            Enqueued::Duplicate
        );
        // message ids are per chat: the same id in another chat is another message
        new_id(store.enqueue(&job(2, 10, "hi")).unwrap());
        store.complete(id, None).unwrap();
        assert_eq!(
            store.enqueue(&job(1, 10, "hi")).unwrap(),
            Enqueued::Duplicate
        );
        assert_eq!(store.pending().unwrap().len(), 1);
    }

    #[test]
    fn pending_round_trips_jobs_in_arrival_order() {
        let mut store = Store::open_in_memory().unwrap();
        let first = new_id(store.enqueue(&job(5, 3, "later message id")).unwrap());
        let second = new_id(store.enqueue(&job(5, 1, "second")).unwrap());
        assert_eq!(store.record_attempt(second).unwrap(), 1);
        assert_eq!(store.record_attempt(second).unwrap(), 2);
        let pending = store.pending().unwrap();
        assert_eq!(
            pending.iter().map(|j| j.id).collect::<Vec<_>>(),
            [first, second]
        );
        let expected = job(5, 1, "second");
        let got = &pending[1];
        assert_eq!(
            (
                got.chat_id,
                got.message_id,
                got.user_id,
                &got.text,
                &got.context,
                got.received_unix_ms,
                got.attempts
            ),
            (
                5,
                1,
                42,
                &expected.text,
                &expected.context,
                expected.received_unix_ms,
                2
            )
        );
        assert!(matches!(
            store.record_attempt(999),
            Err(StoreError::UnknownJob(999))
        ));
    }

    #[test]
    fn complete_removes_the_job_and_appends_history_together() {
        let mut store = Store::open_in_memory().unwrap();
        let id = new_id(store.enqueue(&job(1, 10, "question")).unwrap());
        store.complete(id, Some(("question", "answer"))).unwrap();
        assert!(store.pending().unwrap().is_empty());
        assert_eq!(
            texts(&store.history(1, 10).unwrap()),
            ["question", "answer"]
        );
        // Completing again fails as a whole: no second copy of the turn.
        assert!(matches!(
            store.complete(id, Some(("question", "answer"))),
            Err(StoreError::UnknownJob(_))
        ));
        assert_eq!(store.history(1, 10).unwrap().len(), 2);
    }

    #[test]
    fn complete_rolls_back_when_the_history_insert_fails() {
        let mut store = Store::open_in_memory().unwrap();
        let id = new_id(store.enqueue(&job(1, 10, "question")).unwrap());
        store.conn.execute_batch("CREATE TRIGGER fail BEFORE INSERT ON history BEGIN SELECT RAISE(ABORT, 'disk full'); END;").unwrap();
        assert!(store.complete(id, Some(("question", "answer"))).is_err());
        assert_eq!(
            store.pending().unwrap().len(),
            1,
            "the job must still be pending"
        );
        assert_eq!(
            store.enqueue(&job(1, 10, "question")).unwrap(),
            Enqueued::Duplicate
        );
        let answered: i64 = store
            .conn
            .query_row("SELECT count(*) FROM answered", [], |r| r.get(0))
            .unwrap();
        assert_eq!(answered, 0);
        let sync: i64 = store
            .conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(
            sync, 1,
            "synchronous must be back to NORMAL after a failed durable write"
        );
    }

    #[test]
    fn discard_drops_the_job_and_blocks_redelivery() {
        let mut store = Store::open_in_memory().unwrap();
        let id = new_id(store.enqueue(&job(1, 10, "cancel me")).unwrap());
        store.discard(id).unwrap();
        assert!(store.pending().unwrap().is_empty());
        assert!(store.history(1, 10).unwrap().is_empty());
        assert_eq!(
            store.enqueue(&job(1, 10, "cancel me")).unwrap(),
            Enqueued::Duplicate
        );
        assert!(matches!(store.discard(id), Err(StoreError::UnknownJob(_))));
    }

    #[test]
    fn answered_records_expire() {
        let mut store = Store::open_in_memory().unwrap();
        let old = now_unix_ms() - i64::try_from(ANSWERED_RETENTION.as_millis()).unwrap() - 1;
        store
            .conn
            .execute("INSERT INTO answered VALUES (1, 1, ?1)", [old])
            .unwrap();
        let id = new_id(store.enqueue(&job(1, 2, "fresh")).unwrap());
        store.complete(id, None).unwrap();
        assert_eq!(
            store.enqueue(&job(1, 2, "fresh")).unwrap(),
            Enqueued::Duplicate
        );
        assert!(matches!(
            store.enqueue(&job(1, 1, "ancient")).unwrap(),
            Enqueued::New(_)
        ));
    }

    #[test]
    fn pending_jobs_and_offset_survive_reopening() {
        let dir = TempDir::new();
        let mut store = Store::open(&dir.db()).unwrap();
        assert_eq!(store.last_update_id().unwrap(), None);
        let id = new_id(store.enqueue(&job(1, 10, "persist me")).unwrap());
        store.set_last_update_id(700).unwrap();
        store.set_last_update_id(701).unwrap();
        drop(store);
        let mut store = Store::open(&dir.db()).unwrap();
        assert_eq!(store.last_update_id().unwrap(), Some(701));
        let pending = store.pending().unwrap();
        assert_eq!(
            (pending.len(), pending[0].id, pending[0].text.as_str()),
            (1, id, "persist me")
        );
        assert_eq!(
            store.enqueue(&job(1, 10, "persist me")).unwrap(),
            Enqueued::Duplicate
        );
        store.complete(id, None).unwrap();
        drop(store);
        let mut store = Store::open(&dir.db()).unwrap();
        assert_eq!(
            store.enqueue(&job(1, 10, "persist me")).unwrap(),
            Enqueued::Duplicate
        );
    }

    #[test]
    fn a_crash_right_after_enqueue_loses_nothing() {
        let dir = TempDir::new();
        let mut store = Store::open(&dir.db()).unwrap();
        let id = new_id(store.enqueue(&job(1, 10, "survive the crash")).unwrap());
        // A crash runs no destructors: the connection is never closed, the WAL never
        // checkpointed into the main file.
        std::mem::forget(store);
        let wal = dir.db().with_extension("db-wal");
        assert!(
            std::fs::metadata(&wal).unwrap().len() > 0,
            "the job should still be only in the WAL"
        );
        // Recover from a copy of the files as they are on disk, without the shared-memory
        // index, exactly as a restarted process after a crash would.
        let crashed = TempDir::new();
        std::fs::create_dir_all(crashed.db().parent().unwrap()).unwrap();
        std::fs::copy(dir.db(), crashed.db()).unwrap();
        std::fs::copy(&wal, crashed.db().with_extension("db-wal")).unwrap();
        let store = Store::open(&crashed.db()).unwrap();
        let pending = store.pending().unwrap();
        assert_eq!(
            (pending.len(), pending[0].id, pending[0].text.as_str()),
            (1, id, "survive the crash")
        );
        // The forgotten connection still holds the original; reopening it in place works too.
        let store = Store::open(&dir.db()).unwrap();
        assert_eq!(store.pending().unwrap().len(), 1);
    }
}
