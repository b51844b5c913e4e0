//! The schema: migrations applied in order, the version kept in `PRAGMA user_version`.

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// Schema migrations; migration `i` brings the database to version `i + 1`, recorded in
/// `PRAGMA user_version`. Append new entries, never edit shipped ones.
pub(super) const MIGRATIONS: &[&str] = &[
    r"
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
",
    r"
    -- Each pipeline stage's private key-value store (WIT 0.2.0 `kv`), by stage name.
    -- `size` is the key's and the value's UTF-8 bytes: what counts against the quota.
    CREATE TABLE guest_kv (
        stage TEXT NOT NULL,
        key   TEXT NOT NULL,
        value TEXT NOT NULL,
        size  INTEGER NOT NULL,
        PRIMARY KEY (stage, key)
    ) STRICT, WITHOUT ROWID;
",
    r"
    -- Scheduled tasks: `/remind` (a reminder's text, once) and `/every` (a prompt, on a
    -- recurrence). `context_json` is the creating message's context (who, which chat).
    CREATE TABLE tasks (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        chat_id          INTEGER NOT NULL,
        kind             TEXT NOT NULL CHECK (kind IN ('reminder', 'prompt')),
        text             TEXT NOT NULL,
        recurrence       TEXT,  -- NULL: fires once
        next_due_unix_ms INTEGER NOT NULL,
        context_json     TEXT NOT NULL,
        created_unix_ms  INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX tasks_by_due ON tasks (next_due_unix_ms);
    CREATE INDEX tasks_by_chat ON tasks (chat_id, id);

    ALTER TABLE chat_settings ADD COLUMN time_zone TEXT;

    -- A job is a person's message or a task's firing; only a message has a message id
    -- (NULLs never collide in UNIQUE, so a chat may have many task jobs pending).
    CREATE TABLE pending_jobs_v3 (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        chat_id          INTEGER NOT NULL,
        kind             TEXT NOT NULL CHECK (kind IN ('message', 'task-prompt', 'reminder')),
        message_id       INTEGER CHECK ((kind = 'message') = (message_id IS NOT NULL)),
        user_id          INTEGER NOT NULL,
        text             TEXT NOT NULL,
        context_json     TEXT NOT NULL,
        received_unix_ms INTEGER NOT NULL,
        attempts         INTEGER NOT NULL DEFAULT 0,
        UNIQUE (chat_id, message_id)
    ) STRICT;
    INSERT INTO pending_jobs_v3
        (id, chat_id, kind, message_id, user_id, text, context_json, received_unix_ms, attempts)
        SELECT id, chat_id, 'message', message_id, user_id, text, context_json, received_unix_ms, attempts
        FROM pending_jobs;
    -- Job ids are never reused: the new table counts on from the old one's counter.
    DELETE FROM sqlite_sequence WHERE name = 'pending_jobs_v3';
    INSERT INTO sqlite_sequence (name, seq)
        SELECT 'pending_jobs_v3', seq FROM sqlite_sequence WHERE name = 'pending_jobs';
    DROP TABLE pending_jobs;
    ALTER TABLE pending_jobs_v3 RENAME TO pending_jobs;
",
    r"
    -- Where the model's window into a chat's history starts (a history id): moved only when
    -- the window is cut, so consecutive prompts share their beginning (the server's cache).
    CREATE TABLE history_window (
        chat_id  INTEGER PRIMARY KEY,
        first_id INTEGER NOT NULL
    ) STRICT;
",
];

/// Applies the migrations the database lacks, all in one transaction, so a failure leaves
/// it at its old version.
pub(super) fn migrate(conn: &mut Connection, migrations: &[&str]) -> Result<(), StoreError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::store::fixtures::{TempDir, row_count, user_version};

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
        for table in [
            "pending_jobs",
            "history",
            "answered",
            "chat_settings",
            "tasks",
        ] {
            assert_eq!(row_count(&store, table), 0, "{table}");
        }
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
    fn pending_messages_survive_the_jobs_table_rebuild_and_ids_are_not_reused() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, &MIGRATIONS[..2]).unwrap();
        conn.execute_batch(
            "INSERT INTO pending_jobs (chat_id, message_id, user_id, text, context_json, received_unix_ms)
                 VALUES (1, 10, 42, 'kept', '{}', 5), (1, 11, 42, 'answered', '{}', 6);
             DELETE FROM pending_jobs WHERE message_id = 11;",
        )
        .unwrap();
        migrate(&mut conn, MIGRATIONS).unwrap();
        let kept: (i64, String, i32, String) = conn
            .query_row(
                "SELECT id, kind, message_id, text FROM pending_jobs",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(kept, (1, "message".into(), 10, "kept".into()));
        conn.execute(
            "INSERT INTO pending_jobs (chat_id, kind, user_id, text, context_json, received_unix_ms)
             VALUES (1, 'reminder', 42, 'new', '{}', 7)",
            [],
        )
        .unwrap();
        assert_eq!(
            conn.last_insert_rowid(),
            3,
            "id 2 was used before the rebuild"
        );
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
}
