//! Jobs accepted but not yet answered (`pending_jobs`), and the messages answered lately
//! (`answered`), so that Telegram delivering an update again does not run it twice.
//!
//! A job is stored as this module's own record ([`NewJob`], its origin as JSON of
//! [`Origin`]'s own shape), not as any caller's type: renaming a field elsewhere does not
//! change how stored rows read.

use std::time::Duration;

use rusqlite::{OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};

use super::history::insert_turn;
use super::{Shared, Store, StoreError};
use crate::clock;
use crate::ids::{ChatId, JobId, TaskId, UserId};
use crate::prompt::ScheduledRun;

/// One accepted job — a person's message or a scheduled task's firing — before it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub chat_id: ChatId,
    pub kind: JobKind,
    pub user_id: UserId,
    pub text: String,
    pub origin: Origin,
    pub received_unix_ms: u64,
}

/// What a job answers, which decides the way it takes through the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// A person's message (its id in the chat): formatters, the LLM, shapers; the answer
    /// quotes it.
    Message { message_id: i32 },
    /// A scheduled task's prompt (`/every`): the same way as a message, no quote.
    TaskPrompt,
    /// A reminder's text (`/remind`): only the shapers; the LLM is not asked.
    Reminder,
}

impl JobKind {
    /// The person's message this job answers, if it answers one.
    pub fn message_id(self) -> Option<i32> {
        match self {
            Self::Message { message_id } => Some(message_id),
            Self::TaskPrompt | Self::Reminder => None,
        }
    }
}

/// Where a job (or a task) comes from: who wrote it, in which kind of chat, when, and the
/// scheduler's run when a task fired it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Origin {
    pub user_name: Option<String>,
    pub language: Option<String>,
    pub is_group: bool,
    /// When the message was sent (or the task fired), Unix milliseconds.
    pub sent_unix_ms: u64,
    pub scheduled: Option<ScheduledRun>,
}

/// [`Origin`] as the `context_json` column holds it. Rows written by earlier releases hold
/// more fields (`chat_id`, `time_zone`): they are ignored.
#[derive(Serialize, Deserialize, Default)]
pub(super) struct OriginJson {
    #[serde(default)]
    pub user_id: i64,
    #[serde(default)]
    user_name: Option<String>,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    is_group: bool,
    #[serde(default)]
    unix_ms: u64,
    #[serde(default)]
    scheduled: Option<RunJson>,
}

#[derive(Serialize, Deserialize)]
struct RunJson {
    task_id: i64,
    due_unix_ms: u64,
    late: bool,
}

impl OriginJson {
    pub(super) fn of(user_id: UserId, origin: &Origin) -> Self {
        Self {
            user_id: user_id.0,
            user_name: origin.user_name.clone(),
            language: origin.language.clone(),
            is_group: origin.is_group,
            unix_ms: origin.sent_unix_ms,
            scheduled: origin.scheduled.map(|run| RunJson {
                task_id: run.task_id.0,
                due_unix_ms: run.due_unix_ms,
                late: run.late,
            }),
        }
    }

    pub(super) fn origin(self) -> Origin {
        Origin {
            user_name: self.user_name,
            language: self.language,
            is_group: self.is_group,
            sent_unix_ms: self.unix_ms,
            scheduled: self.scheduled.map(|run| ScheduledRun {
                task_id: TaskId(run.task_id),
                due_unix_ms: run.due_unix_ms,
                late: run.late,
            }),
        }
    }
}

/// A stored job not yet answered; survives restarts until it is completed.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingJob {
    /// The store's id for it; never reused.
    pub id: JobId,
    /// How often a worker started on it (the process may have died each time).
    pub attempts: u32,
    pub message: NewJob,
}

impl PendingJob {
    /// The job stored as `id`, before any attempt.
    pub fn new(id: JobId, message: NewJob) -> Self {
        Self {
            id,
            attempts: 0,
            message,
        }
    }
}

/// What storing a [`NewJob`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    New(JobId),
    /// Already pending or already answered: acknowledge the update and do nothing.
    Duplicate,
}

/// A question and its answer, as history keeps them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    pub user: String,
    pub assistant: String,
}

/// The jobs table, for the chat service, which owns it (and the history a job's answer
/// adds to, in the same transaction).
#[derive(Clone)]
pub struct Jobs(pub(super) Shared);

impl Jobs {
    /// Stores `job` unless it answers a message already pending or answered (see
    /// [`Store::enqueue`] for when it is durable).
    pub async fn enqueue(&self, job: NewJob) -> Result<(Enqueued, NewJob), StoreError> {
        self.0
            .run(move |store| store.enqueue(&job).map(|enqueued| (enqueued, job)))
            .await
    }

    /// Every job not yet completed, in arrival order (restart recovery).
    pub async fn pending(&self) -> Result<Vec<PendingJob>, StoreError> {
        self.0.run(|store| store.pending()).await
    }

    /// Counts one more try at the job; returns the new count.
    pub async fn record_attempt(&self, id: JobId) -> Result<u32, StoreError> {
        self.0.run(move |store| store.record_attempt(id.0)).await
    }

    /// Takes back an attempt that was not the job's fault (a shutdown).
    pub async fn forget_attempt(&self, id: JobId) -> Result<(), StoreError> {
        self.0.run(move |store| store.forget_attempt(id.0)).await
    }

    /// Finishes the job, adding `turn` to its chat's history, in one durable transaction.
    pub async fn complete(&self, id: JobId, turn: Option<Turn>) -> Result<(), StoreError> {
        self.0
            .run(move |store| {
                let turn = turn
                    .as_ref()
                    .map(|t| (t.user.as_str(), t.assistant.as_str()));
                store.complete(id.0, turn)
            })
            .await
    }
}

/// How long an answered `(chat_id, message_id)` is remembered for dedupe. Telegram keeps
/// unacknowledged updates for 24 hours, so two days covers any re-delivery with margin.
const ANSWERED_RETENTION: Duration = Duration::from_secs(2 * 24 * 60 * 60);

impl Store {
    /// Queues `job` unless it answers a message that is already pending or was answered.
    /// Not fsynced on its own: it becomes durable with the next [`Self::set_last_update_id`]
    /// (see the module docs), and only then may the Telegram update be acknowledged.
    pub(super) fn enqueue(&mut self, job: &NewJob) -> Result<Enqueued, StoreError> {
        self.write(|tx| insert_job(tx, job))
    }

    /// All jobs not yet completed, in arrival order (restart recovery).
    pub(super) fn pending(&self) -> Result<Vec<PendingJob>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, chat_id, kind, message_id, user_id, text, context_json, received_unix_ms, attempts
             FROM pending_jobs ORDER BY id",
        )?;
        let rows = stmt.query_map([], |row| {
            let message = NewJob {
                chat_id: ChatId(row.get(1)?),
                kind: kind_from_sql(&row.get::<_, String>(2)?, row.get(3)?)?,
                user_id: UserId(row.get(4)?),
                text: row.get(5)?,
                origin: Origin::default(),
                received_unix_ms: row.get(7)?,
            };
            let job = PendingJob {
                id: JobId(row.get(0)?),
                attempts: row.get(8)?,
                message,
            };
            Ok((job, row.get::<_, String>(6)?))
        })?;
        rows.map(|row| {
            let (mut job, context_json) = row?;
            job.message.origin = serde_json::from_str::<OriginJson>(&context_json)?.origin();
            Ok(job)
        })
        .collect()
    }

    /// Counts one more try at the job before it runs, so a job that keeps crashing the
    /// process can be given up on after restarts; returns the new count.
    pub(super) fn record_attempt(&mut self, id: i64) -> Result<u32, StoreError> {
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
    pub(super) fn forget_attempt(&mut self, id: i64) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE pending_jobs SET attempts = max(attempts - 1, 0) WHERE id = ?1",
            [id],
        )?;
        Ok(())
    }

    /// Finishes a job in one durable transaction: removes it from the queue, remembers it as
    /// answered, and appends `(user_msg, assistant_msg)` to the chat's history when given.
    pub(super) fn complete(
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
}

/// Stores `job` in `tx`: its id, or `Duplicate` for a message pending or answered already.
pub(super) fn insert_job(tx: &Transaction, job: &NewJob) -> Result<Enqueued, StoreError> {
    let message_id = job.kind.message_id();
    if let Some(message_id) = message_id
        && was_answered(tx, job.chat_id.0, message_id)?
    {
        return Ok(Enqueued::Duplicate);
    }
    let inserted = tx.execute(
        "INSERT INTO pending_jobs (chat_id, kind, message_id, user_id, text, context_json, received_unix_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (chat_id, message_id) DO NOTHING",
        params![
            job.chat_id.0,
            kind_to_sql(job.kind),
            message_id,
            job.user_id.0,
            job.text,
            serde_json::to_string(&OriginJson::of(job.user_id, &job.origin))?,
            job.received_unix_ms
        ],
    )?;
    Ok(if inserted == 0 {
        Enqueued::Duplicate
    } else {
        Enqueued::New(JobId(tx.last_insert_rowid()))
    })
}

fn kind_to_sql(kind: JobKind) -> &'static str {
    match kind {
        JobKind::Message { .. } => "message",
        JobKind::TaskPrompt => "task-prompt",
        JobKind::Reminder => "reminder",
    }
}

fn kind_from_sql(kind: &str, message_id: Option<i32>) -> rusqlite::Result<JobKind> {
    match (kind, message_id) {
        ("message", Some(message_id)) => Ok(JobKind::Message { message_id }),
        ("task-prompt", None) => Ok(JobKind::TaskPrompt),
        ("reminder", None) => Ok(JobKind::Reminder),
        _ => Err(rusqlite::Error::FromSqlConversionFailure(
            2,
            rusqlite::types::Type::Text,
            format!("job kind '{kind}' with message id {message_id:?}").into(),
        )),
    }
}

/// Removes pending job `id`, records its message (if any) as answered, forgets answers past
/// the retention; returns its chat.
fn finish_job(tx: &Transaction, id: i64) -> Result<i64, StoreError> {
    let (chat_id, message_id): (i64, Option<i32>) = tx
        .query_row(
            "DELETE FROM pending_jobs WHERE id = ?1 RETURNING chat_id, message_id",
            [id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?
        .ok_or(StoreError::UnknownJob(id))?;
    let now = i64::try_from(clock::unix_ms()).unwrap_or(i64::MAX);
    if let Some(message_id) = message_id {
        tx.execute(
            "INSERT OR REPLACE INTO answered (chat_id, message_id, at_unix_ms) VALUES (?1, ?2, ?3)",
            params![chat_id, message_id, now],
        )?;
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fixtures::{TempDir, history_texts, job, new_id, row_count};

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
            pending.iter().map(|j| j.id.0).collect::<Vec<_>>(),
            [first, second]
        );
        let expected = job(5, 1, "second");
        let got = &pending[1];
        assert_eq!((&got.message, got.attempts), (&expected, 2));
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
            history_texts(&store.history_window(1).unwrap()),
            ["question", "answer"]
        );
        // Completing again fails as a whole: no second copy of the turn.
        assert!(matches!(
            store.complete(id, Some(("question", "answer"))),
            Err(StoreError::UnknownJob(_))
        ));
        assert_eq!(store.history_window(1).unwrap().len(), 2);
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
        assert_eq!(row_count(&store, "answered"), 0);
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
    fn answered_records_expire() {
        let mut store = Store::open_in_memory().unwrap();
        let old =
            clock::unix_ms() as i64 - i64::try_from(ANSWERED_RETENTION.as_millis()).unwrap() - 1;
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
            (
                pending.len(),
                pending[0].id.0,
                pending[0].message.text.as_str()
            ),
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
            (
                pending.len(),
                pending[0].id.0,
                pending[0].message.text.as_str()
            ),
            (1, id, "survive the crash")
        );
        // The forgotten connection still holds the original; reopening it in place works too.
        let store = Store::open(&dir.db()).unwrap();
        assert_eq!(store.pending().unwrap().len(), 1);
    }
}
