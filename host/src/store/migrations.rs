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
        for table in ["pending_jobs", "history", "answered", "chat_settings"] {
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
