//! Scheduled tasks (`tasks`): added, listed, cancelled, and fired — a firing stores the
//! task's job and moves the task on in one transaction, so a slot never fires twice.

use rusqlite::{Row, params};

use super::jobs::insert_job;
use super::{Store, StoreError};
use crate::chat::{Enqueued, NewJob};
use crate::schedule::{NewTask, Task, TaskKind};

const COLUMNS: &str =
    "id, chat_id, kind, text, recurrence, next_due_unix_ms, context_json, created_unix_ms";

impl Store {
    /// Stores a new task, durably (its creator was told it is set); returns its id.
    pub fn add_task(&mut self, task: &NewTask) -> Result<i64, StoreError> {
        let context_json = serde_json::to_string(&task.context)?;
        self.durable_write(|tx| {
            tx.execute(
                "INSERT INTO tasks (chat_id, kind, text, recurrence, next_due_unix_ms, context_json, created_unix_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    task.chat_id,
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
    pub fn chat_tasks(&self, chat_id: i64) -> Result<Vec<Task>, StoreError> {
        self.select_tasks(
            &format!(
                "SELECT {COLUMNS} FROM tasks WHERE chat_id = ?1 ORDER BY next_due_unix_ms, id"
            ),
            [chat_id],
        )
    }

    /// Every chat's tasks, soonest first (the dashboard's Tasks page).
    pub fn all_tasks(&self) -> Result<Vec<Task>, StoreError> {
        self.select_tasks(
            &format!("SELECT {COLUMNS} FROM tasks ORDER BY next_due_unix_ms, id"),
            [],
        )
    }

    /// Every task due at `now_unix_ms` or before, most overdue first.
    pub fn due_tasks(&self, now_unix_ms: u64) -> Result<Vec<Task>, StoreError> {
        self.select_tasks(
            &format!(
                "SELECT {COLUMNS} FROM tasks WHERE next_due_unix_ms <= ?1 ORDER BY next_due_unix_ms, id"
            ),
            [now_unix_ms],
        )
    }

    /// How many tasks there are, and the one due next.
    pub fn task_summary(&self) -> Result<(usize, Option<Task>), StoreError> {
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
    pub fn next_task_due(&self) -> Result<Option<u64>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT min(next_due_unix_ms) FROM tasks")?
            .query_row([], |row| row.get(0))?)
    }

    /// Removes the chat's task `id`; false when the chat has no such task.
    pub fn cancel_task(&mut self, chat_id: i64, id: i64) -> Result<bool, StoreError> {
        self.durable_write(|tx| {
            Ok(tx.execute(
                "DELETE FROM tasks WHERE id = ?1 AND chat_id = ?2",
                [id, chat_id],
            )? > 0)
        })
    }

    /// Fires task `id`: stores `job` and, in the same durable transaction, moves the task to
    /// `next_due` (`None`: it is done and removed). Returns the job's id.
    pub fn fire_task(
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
            Ok(job_id)
        })
    }

    /// Moves task `id` to `next_due` without firing it (a slot missed for too long, a new
    /// time zone), or removes it (`None`).
    pub fn move_task(&mut self, id: i64, next_due: Option<u64>) -> Result<(), StoreError> {
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
            task.task.context = serde_json::from_str(&context_json)?;
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
        id: row.get(0)?,
        task: NewTask {
            chat_id: row.get(1)?,
            kind: match kind.as_str() {
                "reminder" => TaskKind::Reminder,
                _ => TaskKind::Prompt,
            },
            text: row.get(3)?,
            recurrence: row.get(4)?,
            next_due_unix_ms: row.get(5)?,
            context: Default::default(),
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
    use crate::chat::JobKind;
    use crate::store::fixtures::row_count;

    fn task(chat_id: i64, due: u64, recurrence: Option<&str>) -> NewTask {
        NewTask {
            chat_id,
            kind: TaskKind::Reminder,
            text: format!("due {due}"),
            recurrence: recurrence.map(str::to_owned),
            next_due_unix_ms: due,
            context: crate::prompt::ChatContext {
                chat_id,
                user_id: 42,
                ..Default::default()
            },
            created_unix_ms: 1,
        }
    }

    fn firing(chat_id: i64) -> NewJob {
        NewJob {
            chat_id,
            kind: JobKind::Reminder,
            user_id: 42,
            text: "buy candles".into(),
            context: Default::default(),
            received_unix_ms: 5,
        }
    }

    #[test]
    fn tasks_are_listed_per_chat_soonest_first_and_cancelled_only_in_their_chat() {
        let mut store = Store::open_in_memory().unwrap();
        let late = store.add_task(&task(1, 300, None)).unwrap();
        let soon = store.add_task(&task(1, 100, Some("every:1h"))).unwrap();
        let other = store.add_task(&task(2, 50, None)).unwrap();
        let listed: Vec<i64> = store.chat_tasks(1).unwrap().iter().map(|t| t.id).collect();
        assert_eq!(listed, [soon, late]);
        assert_eq!(
            store.chat_tasks(1).unwrap()[0].task,
            task(1, 100, Some("every:1h"))
        );
        assert_eq!(store.next_task_due().unwrap(), Some(50));
        let (count, next) = store.task_summary().unwrap();
        assert_eq!((count, next.map(|t| t.id)), (3, Some(other)));
        assert!(!store.cancel_task(1, other).unwrap(), "not chat 1's task");
        assert!(store.cancel_task(2, other).unwrap());
        assert_eq!(
            store
                .due_tasks(300)
                .unwrap()
                .iter()
                .map(|t| t.id)
                .collect::<Vec<_>>(),
            [soon, late]
        );
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
