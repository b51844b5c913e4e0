//! Scheduled tasks (`tasks`): added, listed, cancelled, and fired — a firing stores the
//! task's job and moves the task on in one transaction, so a slot never fires twice.

use rusqlite::{Row, params};

use super::jobs::{Enqueued, JobKind, NewJob, Origin, OriginJson, insert_job};
use super::{Shared, Store, StoreError};
use crate::ids::{ChatId, JobId, TaskId, UserId};

/// What a task sends when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    /// `/remind`: its text, through the shapers only.
    Reminder,
    /// `/every`: its prompt, through formatters, the LLM and shapers.
    Prompt,
}

impl TaskKind {
    /// The kind of job a firing of this task becomes.
    pub fn job_kind(self) -> JobKind {
        match self {
            Self::Reminder => JobKind::Reminder,
            Self::Prompt => JobKind::TaskPrompt,
        }
    }
}

/// A task before it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    pub chat_id: ChatId,
    pub kind: TaskKind,
    pub text: String,
    /// The scheduler's spec of its recurrence; `None`: fires once.
    pub recurrence: Option<String>,
    pub next_due_unix_ms: u64,
    /// Who created it, and the message's origin.
    pub user_id: UserId,
    pub origin: Origin,
    pub created_unix_ms: u64,
}

/// A stored task.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// The id `/tasks` shows and `/cancel` takes; never reused.
    pub id: TaskId,
    pub task: NewTask,
}

/// The tasks table, for the scheduler, which owns it — and the chats' time zones, since a
/// zone change moves the chat's tasks in the same transaction.
#[derive(Clone)]
pub struct Tasks(pub(super) Shared);

impl Tasks {
    /// Stores `task` durably unless its chat has `max_per_chat` already; its id, or `None`.
    pub async fn add(
        &self,
        task: NewTask,
        max_per_chat: usize,
    ) -> Result<Option<TaskId>, StoreError> {
        self.0
            .run(move |store| {
                if store.chat_tasks(task.chat_id.0)?.len() >= max_per_chat {
                    return Ok(None);
                }
                store.add_task(&task).map(|id| Some(TaskId(id)))
            })
            .await
    }

    /// The chat's tasks, soonest first.
    pub async fn of_chat(&self, chat_id: ChatId) -> Result<Vec<Task>, StoreError> {
        self.0.run(move |store| store.chat_tasks(chat_id.0)).await
    }

    /// Every chat's tasks, soonest first.
    pub async fn all(&self) -> Result<Vec<Task>, StoreError> {
        self.0.run(|store| store.all_tasks()).await
    }

    /// Every task due at `now_unix_ms` or before, most overdue first.
    pub async fn due(&self, now_unix_ms: u64) -> Result<Vec<Task>, StoreError> {
        self.0.run(move |store| store.due_tasks(now_unix_ms)).await
    }

    /// How many tasks there are, and the one due next.
    pub async fn summary(&self) -> Result<(usize, Option<Task>), StoreError> {
        self.0.run(|store| store.task_summary()).await
    }

    /// When the next task is due, if any.
    pub async fn next_due(&self) -> Result<Option<u64>, StoreError> {
        self.0.run(|store| store.next_task_due()).await
    }

    /// Removes the chat's task `id`; false when the chat has no such task.
    pub async fn cancel(&self, chat_id: ChatId, id: TaskId) -> Result<bool, StoreError> {
        self.0
            .run(move |store| store.cancel_task(chat_id.0, id.0))
            .await
    }

    /// Fires task `id`: stores `job` and moves the task to `next_due` (`None`: removed), in
    /// one durable transaction. Returns the job's id.
    pub async fn fire(
        &self,
        id: TaskId,
        job: NewJob,
        next_due: Option<u64>,
    ) -> Result<JobId, StoreError> {
        self.0
            .run(move |store| store.fire_task(id.0, &job, next_due).map(JobId))
            .await
    }

    /// Moves task `id` to `next_due` without firing it, or removes it (`None`).
    pub async fn reschedule(&self, id: TaskId, next_due: Option<u64>) -> Result<(), StoreError> {
        self.0
            .run(move |store| store.move_task(id.0, next_due))
            .await
    }

    /// Sets the chat's time zone (an IANA name; `None`: the default) and, in the same
    /// durable transaction, moves its tasks as `next_due` says for each (`None`: it keeps
    /// its instant).
    pub async fn set_time_zone(
        &self,
        chat_id: ChatId,
        zone: Option<String>,
        next_due: impl Fn(&Task) -> Option<u64> + Send + 'static,
    ) -> Result<(), StoreError> {
        self.0
            .run(move |store| {
                let tasks = store.chat_tasks(chat_id.0)?;
                store.durable_write(|tx| {
                    super::settings::set_time_zone(tx, chat_id.0, zone.as_deref())?;
                    for task in &tasks {
                        if let Some(due) = next_due(task) {
                            move_task(tx, task.id.0, Some(due))?;
                        }
                    }
                    Ok(())
                })
            })
            .await
    }
}

const COLUMNS: &str =
    "id, chat_id, kind, text, recurrence, next_due_unix_ms, context_json, created_unix_ms";

impl Store {
    /// Stores a new task, durably (its creator was told it is set); returns its id.
    pub(super) fn add_task(&mut self, task: &NewTask) -> Result<i64, StoreError> {
        let context_json = serde_json::to_string(&OriginJson::of(task.user_id, &task.origin))?;
        self.durable_write(|tx| {
            tx.execute(
                "INSERT INTO tasks (chat_id, kind, text, recurrence, next_due_unix_ms, context_json, created_unix_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    task.chat_id.0,
                    kind_to_sql(task.kind),
                    task.text,
                    task.recurrence,
                    task.next_due_unix_ms,
                    context_json,
                    task.created_unix_ms
                ],
            )?;
            Ok(tx.last_insert_rowid())
        })
    }

    /// The chat's tasks, soonest first.
    pub(super) fn chat_tasks(&self, chat_id: i64) -> Result<Vec<Task>, StoreError> {
        self.select_tasks(
            &format!(
                "SELECT {COLUMNS} FROM tasks WHERE chat_id = ?1 ORDER BY next_due_unix_ms, id"
            ),
            [chat_id],
        )
    }

    /// Every chat's tasks, soonest first (the dashboard's Tasks page).
    pub(super) fn all_tasks(&self) -> Result<Vec<Task>, StoreError> {
        self.select_tasks(
            &format!("SELECT {COLUMNS} FROM tasks ORDER BY next_due_unix_ms, id"),
            [],
        )
    }

    /// Every task due at `now_unix_ms` or before, most overdue first.
    pub(super) fn due_tasks(&self, now_unix_ms: u64) -> Result<Vec<Task>, StoreError> {
        self.select_tasks(
            &format!(
                "SELECT {COLUMNS} FROM tasks WHERE next_due_unix_ms <= ?1 ORDER BY next_due_unix_ms, id"
            ),
            [now_unix_ms],
        )
    }

    /// How many tasks there are, and the one due next.
    pub(super) fn task_summary(&self) -> Result<(usize, Option<Task>), StoreError> {
        let count: i64 = self
            .conn
            .query_row("SELECT count(*) FROM tasks", [], |row| row.get(0))?;
        let next = self
            .select_tasks(
                &format!("SELECT {COLUMNS} FROM tasks ORDER BY next_due_unix_ms, id LIMIT 1"),
                [],
            )?
            .pop();
        Ok((usize::try_from(count).unwrap_or(usize::MAX), next))
    }

    /// When the next task is due, if any: what the timer sleeps until.
    pub(super) fn next_task_due(&self) -> Result<Option<u64>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT min(next_due_unix_ms) FROM tasks")?
            .query_row([], |row| row.get(0))?)
    }

    /// Removes the chat's task `id`; false when the chat has no such task.
    pub(super) fn cancel_task(&mut self, chat_id: i64, id: i64) -> Result<bool, StoreError> {
        self.durable_write(|tx| {
            Ok(tx.execute(
                "DELETE FROM tasks WHERE id = ?1 AND chat_id = ?2",
                [id, chat_id],
            )? > 0)
        })
    }

    /// Fires task `id`: stores `job` and, in the same durable transaction, moves the task to
    /// `next_due` (`None`: it is done and removed). Returns the job's id.
    pub(super) fn fire_task(
        &mut self,
        id: i64,
        job: &NewJob,
        next_due: Option<u64>,
    ) -> Result<i64, StoreError> {
        self.durable_write(|tx| {
            let Enqueued::New(job_id) = insert_job(tx, job)? else {
                unreachable!("a task's job answers no message, so it is never a duplicate")
            };
            move_task(tx, id, next_due)?;
            Ok(job_id.0)
        })
    }

    /// Moves task `id` to `next_due` without firing it (a slot missed for too long, a new
    /// time zone), or removes it (`None`).
    pub(super) fn move_task(&mut self, id: i64, next_due: Option<u64>) -> Result<(), StoreError> {
        self.durable_write(|tx| move_task(tx, id, next_due))
    }

    fn select_tasks(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<Task>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let rows = stmt.query_map(params, |row| {
            Ok((task_from_row(row)?, row.get::<_, String>(6)?))
        })?;
        rows.map(|row| {
            let (mut task, context_json) = row?;
            let origin: OriginJson = serde_json::from_str(&context_json)?;
            task.task.user_id = UserId(origin.user_id);
            task.task.origin = origin.origin();
            Ok(task)
        })
        .collect()
    }
}

fn move_task(tx: &rusqlite::Transaction, id: i64, next_due: Option<u64>) -> Result<(), StoreError> {
    // A task cancelled meanwhile matches no row: nothing to move. Its firing still goes
    // out — it was due before the cancel.
    match next_due {
        Some(due) => tx.execute(
            "UPDATE tasks SET next_due_unix_ms = ?2 WHERE id = ?1",
            params![id, due],
        )?,
        None => tx.execute("DELETE FROM tasks WHERE id = ?1", [id])?,
    };
    Ok(())
}

fn task_from_row(row: &Row) -> rusqlite::Result<Task> {
    let kind: String = row.get(2)?;
    Ok(Task {
        id: TaskId(row.get(0)?),
        task: NewTask {
            chat_id: ChatId(row.get(1)?),
            kind: match kind.as_str() {
                "reminder" => TaskKind::Reminder,
                _ => TaskKind::Prompt,
            },
            text: row.get(3)?,
            recurrence: row.get(4)?,
            next_due_unix_ms: row.get(5)?,
            user_id: UserId::default(),
            origin: Origin::default(),
            created_unix_ms: row.get(7)?,
        },
    })
}

fn kind_to_sql(kind: TaskKind) -> &'static str {
    match kind {
        TaskKind::Reminder => "reminder",
        TaskKind::Prompt => "prompt",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fixtures::row_count;

    fn task(chat_id: i64, due: u64, recurrence: Option<&str>) -> NewTask {
        NewTask {
            chat_id: ChatId(chat_id),
            kind: TaskKind::Reminder,
            text: format!("due {due}"),
            recurrence: recurrence.map(str::to_owned),
            next_due_unix_ms: due,
            user_id: UserId(42),
            origin: Origin {
                user_name: Some("ada".into()),
                ..Origin::default()
            },
            created_unix_ms: 1,
        }
    }

    fn firing(chat_id: i64) -> NewJob {
        NewJob {
            chat_id: ChatId(chat_id),
            kind: JobKind::Reminder,
            user_id: UserId(42),
            text: "buy candles".into(),
            origin: Origin::default(),
            received_unix_ms: 5,
        }
    }

    fn ids(tasks: Vec<Task>) -> Vec<i64> {
        tasks.iter().map(|t| t.id.0).collect()
    }

    #[test]
    fn tasks_are_listed_per_chat_soonest_first_and_cancelled_only_in_their_chat() {
        let mut store = Store::open_in_memory().unwrap();
        let late = store.add_task(&task(1, 300, None)).unwrap();
        let soon = store.add_task(&task(1, 100, Some("every:1h"))).unwrap();
        let other = store.add_task(&task(2, 50, None)).unwrap();
        assert_eq!(ids(store.chat_tasks(1).unwrap()), [soon, late]);
        assert_eq!(
            store.chat_tasks(1).unwrap()[0].task,
            task(1, 100, Some("every:1h"))
        );
        assert_eq!(store.next_task_due().unwrap(), Some(50));
        let (count, next) = store.task_summary().unwrap();
        assert_eq!((count, next.map(|t| t.id.0)), (3, Some(other)));
        assert!(!store.cancel_task(1, other).unwrap(), "not chat 1's task");
        assert!(store.cancel_task(2, other).unwrap());
        assert_eq!(ids(store.due_tasks(300).unwrap()), [soon, late]);
        assert!(store.due_tasks(99).unwrap().is_empty());
    }

    #[test]
    fn firing_stores_the_job_and_moves_the_task_together() {
        let mut store = Store::open_in_memory().unwrap();
        let once = store.add_task(&task(1, 100, None)).unwrap();
        let recurring = store.add_task(&task(1, 100, Some("every:1h"))).unwrap();
        let first = store.fire_task(once, &firing(1), None).unwrap();
        let second = store
            .fire_task(recurring, &firing(1), Some(3_600_100))
            .unwrap();
        assert_ne!(first, second, "two task jobs of one chat are both pending");
        let pending = store.pending().unwrap();
        assert_eq!(pending.len(), 2);
        assert_eq!(pending[0].message.kind, JobKind::Reminder);
        assert_eq!(store.next_task_due().unwrap(), Some(3_600_100));
        assert_eq!(row_count(&store, "tasks"), 1, "the one-off task is done");
        store.complete(first, None).unwrap();
        assert_eq!(row_count(&store, "answered"), 0, "no message to remember");
        store.move_task(recurring, None).unwrap();
        assert_eq!(store.next_task_due().unwrap(), None);
    }

    #[test]
    fn a_failed_firing_leaves_the_task_due() {
        let mut store = Store::open_in_memory().unwrap();
        let id = store.add_task(&task(1, 100, None)).unwrap();
        store
            .conn
            .execute_batch("CREATE TRIGGER fail BEFORE INSERT ON pending_jobs BEGIN SELECT RAISE(ABORT, 'disk full'); END;")
            .unwrap();
        assert!(store.fire_task(id, &firing(1), None).is_err());
        assert_eq!(
            store.due_tasks(100).unwrap().len(),
            1,
            "fires on the next try"
        );
    }
}
