//! Scheduled tasks — `/remind` (a reminder's text, once) and `/every` (a prompt, on a
//! recurrence) — kept in SQLite and fired by one timer into the chat service's queue, where
//! each firing is a job like a person's message: same order, limits, `/stop` and pipeline.
//!
//! - `when`, `recurrence`, `zone` — reading times and schedules, in the chat's time zone;
//! - `task` — a task as stored;
//! - `timer` — sleeping until a wall-clock time, however the clock is set meanwhile.
//!
//! The timer sleeps until the next due task and wakes early only when tasks change or the
//! clock is set — no polling. A firing stores its job and moves its task to the next slot
//! in one durable transaction, so a slot fires once, also across a crash. A task missed
//! while the bot was down fires once at start, marked late, if it is younger than
//! `MISSED_TASK_GRACE`; an older one is skipped and its chat told.

mod recurrence;
mod task;
mod timer;
mod when;
mod zone;

pub use recurrence::Recurrence;
pub use task::{NewTask, Task, TaskKind};
pub use when::{ParseError, parse_when};
pub use zone::{UnknownZone, Zone};

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::chat::{ChatService, NewJob, PendingJob, Replies};
use crate::clock;
use crate::config::ScheduleConfig;
use crate::prompt::{ChatContext, ScheduledRun};
use crate::store::{SharedStore, StoreError};

/// Tasks one chat may have at most: enough for any household, a bound for a runaway script.
pub const MAX_TASKS_PER_CHAT: usize = 100;

/// A firing this much after its slot is marked late even within one run (the clock jumped,
/// the Pi was suspended); normally the timer is on time to the millisecond.
const LATE_AFTER: Duration = Duration::from_secs(60);

/// How long the timer waits after the store failed before it tries again.
const RETRY_AFTER_STORE_ERROR: Duration = Duration::from_secs(5);

/// Why a task could not be added or changed; Display is for the user.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("{0}")]
    Parse(#[from] ParseError),
    #[error("{0}")]
    Zone(#[from] UnknownZone),
    #[error("that schedule never comes round — check the cron fields")]
    NeverDue,
    #[error(
        "this chat has {MAX_TASKS_PER_CHAT} tasks already: /cancel one first (/tasks lists them)"
    )]
    TooMany,
    #[error("the bot's database is not working ({0}); nothing was changed")]
    Store(#[from] StoreError),
}

/// A task just added, as its chat is told.
#[derive(Debug, Clone)]
pub struct Added {
    pub id: i64,
    /// "Tue 24 Dec 18:00" in the chat's zone.
    pub first: String,
    /// "every day at 07:30" for a recurring task.
    pub recurrence: Option<String>,
    pub zone: Zone,
    pub text: String,
}

/// A chat's task as `/tasks` shows it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub id: i64,
    pub kind: TaskKind,
    /// "Wed 3 Dec 07:30" in the chat's zone.
    pub next: String,
    pub recurrence: Option<String>,
    pub text: String,
}

/// What `/status` shows of the tasks.
#[derive(Debug, Clone)]
pub struct Summary {
    pub count: usize,
    pub next: Option<NextTask>,
}

/// The task due next.
#[derive(Debug, Clone)]
pub struct NextTask {
    pub id: i64,
    pub chat_id: i64,
    /// When, in its chat's zone: "Wed 3 Dec 07:30".
    pub when: String,
}

/// The scheduler: adds, lists and cancels tasks, and fires them on time.
pub struct Scheduler<R: Replies> {
    service: Arc<ChatService<R>>,
    store: SharedStore,
    config: ScheduleConfig,
    /// Tasks were added, cancelled or moved: the timer looks again.
    changed: Notify,
    /// Tasks due before this are late whatever their lateness: the bot was not running.
    started_unix_ms: u64,
}

impl<R: Replies> Scheduler<R> {
    pub fn new(
        service: Arc<ChatService<R>>,
        store: SharedStore,
        config: ScheduleConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            service,
            store,
            config,
            changed: Notify::new(),
            started_unix_ms: clock::unix_ms(),
        })
    }

    /// `/remind <when> <text>` from `context`'s chat.
    pub async fn remind(&self, context: ChatContext, args: &str) -> Result<Added, ScheduleError> {
        let zone = self.zone(context.chat_id).await;
        let now = clock::unix_ms();
        let (due, text) = parse_when(args, now, &zone)?;
        let task = NewTask {
            chat_id: context.chat_id,
            kind: TaskKind::Reminder,
            text: text.to_owned(),
            recurrence: None,
            next_due_unix_ms: due,
            context,
            created_unix_ms: now,
        };
        self.add(task, None, zone, now).await
    }

    /// `/every <schedule> <prompt>` from `context`'s chat.
    pub async fn every(&self, context: ChatContext, args: &str) -> Result<Added, ScheduleError> {
        let zone = self.zone(context.chat_id).await;
        let now = clock::unix_ms();
        let (recurrence, prompt) = Recurrence::parse(args, now)?;
        let due = recurrence
            .next_after(now, &zone)
            .ok_or(ScheduleError::NeverDue)?;
        let task = NewTask {
            chat_id: context.chat_id,
            kind: TaskKind::Prompt,
            text: prompt.to_owned(),
            recurrence: Some(recurrence.to_spec()),
            next_due_unix_ms: due,
            context,
            created_unix_ms: now,
        };
        self.add(task, Some(recurrence.describe()), zone, now).await
    }

    async fn add(
        &self,
        task: NewTask,
        recurrence: Option<String>,
        zone: Zone,
        now: u64,
    ) -> Result<Added, ScheduleError> {
        let (chat_id, due, text) = (task.chat_id, task.next_due_unix_ms, task.text.clone());
        let id = self
            .store
            .run(move |store| {
                if store.chat_tasks(chat_id)?.len() >= MAX_TASKS_PER_CHAT {
                    return Ok(None);
                }
                store.add_task(&task).map(Some)
            })
            .await?
            .ok_or(ScheduleError::TooMany)?;
        tracing::info!(task_id = id, chat_id, due_in = ?Duration::from_millis(due.saturating_sub(now)), "task added");
        self.changed.notify_one();
        Ok(Added {
            id,
            first: zone.format(due, now),
            recurrence,
            zone,
            text,
        })
    }

    /// The chat's tasks, soonest first.
    pub async fn tasks(&self, chat_id: i64) -> Result<(Vec<Listed>, Zone), StoreError> {
        let zone = self.zone(chat_id).await;
        let tasks = self
            .store
            .run(move |store| store.chat_tasks(chat_id))
            .await?;
        let now = clock::unix_ms();
        let listed = tasks
            .into_iter()
            .map(|t| listed_in(t, &zone, now))
            .collect();
        Ok((listed, zone))
    }

    /// Every chat's tasks, soonest first, each with its chat id (the dashboard's Tasks page).
    pub async fn all_tasks(&self) -> Result<Vec<(i64, Listed)>, StoreError> {
        let tasks = self.store.run(|store| store.all_tasks()).await?;
        let now = clock::unix_ms();
        let mut listed = Vec::with_capacity(tasks.len());
        for task in tasks {
            let zone = self.zone(task.task.chat_id).await;
            listed.push((task.task.chat_id, listed_in(task, &zone, now)));
        }
        Ok(listed)
    }

    /// Cancels the chat's task `id`; false when the chat has none by that id.
    pub async fn cancel(&self, chat_id: i64, id: i64) -> Result<bool, StoreError> {
        let cancelled = self
            .store
            .run(move |store| store.cancel_task(chat_id, id))
            .await?;
        if cancelled {
            tracing::info!(task_id = id, chat_id, "task cancelled");
            self.changed.notify_one();
        }
        Ok(cancelled)
    }

    /// `/timezone <name>`: the chat's zone from now on, and its recurring tasks' next slots
    /// in it (a reminder keeps its instant).
    pub async fn set_zone(&self, chat_id: i64, name: &str) -> Result<Zone, ScheduleError> {
        let zone = Zone::parse(name)?;
        self.service
            .set_time_zone(chat_id, Some(zone.name().to_owned()))
            .await?;
        let moved = zone.clone();
        let now = clock::unix_ms();
        self.store
            .run(move |store| {
                for task in store.chat_tasks(chat_id)? {
                    let next = task
                        .task
                        .recurrence()
                        .and_then(Result::ok)
                        .and_then(|r| r.next_after(now, &moved));
                    if let Some(next) = next {
                        store.move_task(task.id, Some(next))?;
                    }
                }
                Ok(())
            })
            .await?;
        self.changed.notify_one();
        Ok(zone)
    }

    /// The number of tasks and the next one due.
    pub async fn summary(&self) -> Result<Summary, StoreError> {
        let (count, next) = self.store.run(|store| store.task_summary()).await?;
        let next = match next {
            None => None,
            Some(task) => {
                let zone = self.zone(task.task.chat_id).await;
                Some(NextTask {
                    id: task.id,
                    chat_id: task.task.chat_id,
                    when: zone.format(task.task.next_due_unix_ms, clock::unix_ms()),
                })
            }
        };
        Ok(Summary { count, next })
    }

    /// The chat's zone: its own choice or the default (`TIMEZONE`).
    async fn zone(&self, chat_id: i64) -> Zone {
        Zone::parse(&self.service.time_zone(chat_id).await).unwrap_or_else(|_| Zone::utc())
    }

    /// Fires tasks as they come due until `shutdown`: one timer, asleep until the next.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut timer = match timer::WallTimer::new() {
            Ok(timer) => timer,
            Err(e) => {
                tracing::error!(
                    "cannot create the scheduler's timer ({e}); scheduled tasks will not fire"
                );
                return;
            }
        };
        loop {
            let pause = match self.fire_due().await {
                Ok(next) => next,
                Err(e) => {
                    tracing::error!(
                        "scheduled tasks: the database failed ({e}); trying again in {RETRY_AFTER_STORE_ERROR:?}"
                    );
                    Some(clock::unix_ms() + RETRY_AFTER_STORE_ERROR.as_millis() as u64)
                }
            };
            let sleep = async {
                match pause {
                    Some(due) => timer.sleep_until(due).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                woke = sleep => if let Err(e) = woke {
                    tracing::error!("the scheduler's timer failed ({e}); scheduled tasks will not fire");
                    return;
                },
                () = self.changed.notified() => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Fires every task due now; returns when the next one is due.
    async fn fire_due(&self) -> Result<Option<u64>, StoreError> {
        let now = clock::unix_ms();
        for task in self.store.run(move |store| store.due_tasks(now)).await? {
            self.fire(task, now).await?;
        }
        self.store.run(|store| store.next_task_due()).await
    }

    async fn fire(&self, task: Task, now: u64) -> Result<(), StoreError> {
        let zone = self.zone(task.task.chat_id).await;
        let recurrence = match task.task.recurrence() {
            None => None,
            Some(Ok(recurrence)) => Some(recurrence),
            Some(Err(e)) => {
                tracing::error!(
                    task_id = task.id,
                    "task removed: its schedule cannot be read ({e})"
                );
                return self
                    .store
                    .run(move |store| store.move_task(task.id, None))
                    .await;
            }
        };
        // A recurring task that missed several slots fires once, for the latest of them.
        let mut due = task.task.next_due_unix_ms;
        if let Some(recurrence) = &recurrence {
            while let Some(slot) = recurrence
                .next_after(due, &zone)
                .filter(|&slot| slot <= now)
            {
                due = slot;
            }
        }
        let next = recurrence.as_ref().and_then(|r| r.next_after(now, &zone));
        let lateness = Duration::from_millis(now.saturating_sub(due));
        let missed = due < self.started_unix_ms;
        if missed && lateness > self.config.missed_grace {
            tracing::info!(
                task_id = task.id,
                ?lateness,
                outcome = "skipped: missed for longer than MISSED_TASK_GRACE",
                "task fired"
            );
            self.store
                .run(move |store| store.move_task(task.id, next))
                .await?;
            crate::telemetry::task_outcome(task.id, "skipped: missed");
            let note = format!(
                "⏰ Skipped “{}” (task {}): it was due {}, while the bot was not running — too long ago to send now.",
                task.task.text,
                task.id,
                zone.format(due, now)
            );
            self.service.tell_chat(task.task.chat_id, &note).await;
            return Ok(());
        }
        let context = ChatContext {
            unix_ms: now,
            scheduled: Some(ScheduledRun {
                task_id: task.id,
                due_unix_ms: due,
                late: missed || lateness > LATE_AFTER,
            }),
            ..task.task.context
        };
        let job = NewJob {
            chat_id: task.task.chat_id,
            kind: task.task.kind.job_kind(),
            user_id: context.user_id,
            text: task.task.text,
            context,
            received_unix_ms: now,
        };
        let stored = job.clone();
        let job_id = self
            .store
            .run(move |store| store.fire_task(task.id, &stored, next))
            .await?;
        tracing::info!(
            task_id = task.id,
            job_id,
            ?lateness,
            late = job.context.scheduled.is_some_and(|r| r.late),
            outcome = "queued",
            "task fired"
        );
        self.service.queue_stored(PendingJob::new(job_id, job));
        Ok(())
    }
}

/// `task` as `/tasks` and the dashboard list it, its times in `zone`.
fn listed_in(task: Task, zone: &Zone, now: u64) -> Listed {
    Listed {
        id: task.id,
        kind: task.task.kind,
        next: zone.format(task.task.next_due_unix_ms, now),
        recurrence: task
            .task
            .recurrence()
            .and_then(Result::ok)
            .map(|r| r.describe()),
        text: task.task.text,
    }
}

/// The first line of a scheduled task's reply, and the whole of a reminder: "⏰ buy candles",
/// with when it was due if it fires late (the bot was not running, or the clock jumped).
pub fn announcement(text: &str, run: &ScheduledRun, zone_name: &str) -> String {
    if !run.late {
        return format!("⏰ {text}");
    }
    let zone = Zone::parse(zone_name).unwrap_or_else(|_| Zone::utc());
    format!(
        "⏰ {text}\n(late: it was due {})",
        zone.format(run.due_unix_ms, clock::unix_ms())
    )
}
