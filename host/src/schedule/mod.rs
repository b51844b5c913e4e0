//! Scheduled tasks — `/remind` (a reminder's text, once) and `/every` (a prompt, on a
//! recurrence) — kept in SQLite and fired by one timer into the chat service's queue, where
//! each firing is a job like a person's message: same order, limits, `/stop` and pipeline.
//!
//! - `when`, `recurrence` — reading times and schedules, in the chat's time zone;
//! - `task` — reading a stored task's recurrence.
//!
//! The scheduler sleeps on its [`WallClock`] until the next due task and wakes early only when tasks change or the
//! clock is set — no polling. A firing stores its job and moves its task to the next slot
//! in one durable transaction, so a slot fires once, also across a crash. A task missed
//! while the bot was down fires once at start, marked late, if it is younger than
//! `MISSED_TASK_GRACE`; an older one is skipped and its chat told.

mod recurrence;
mod task;
mod when;

pub use crate::store::{NewTask, Task, TaskKind};
pub use recurrence::Recurrence;
pub use when::{ParseError, parse_when};

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::chat::{ChatService, NewJob, Notice, Origin, PendingJob, Preferences};
use crate::clock::WallClock;
use crate::ids::{ChatId, TaskId, UserId};
use crate::prompt::ScheduledRun;
use crate::store::{StoreError, Tasks};
use crate::zone::{UnknownZone, Zone};
use task::recurrence_of;

/// The scheduler's settings (read from the environment by `config`).
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleConfig {
    /// `MISSED_TASK_GRACE`: a task that came due while the bot was not running fires late at
    /// start if it is younger than this; an older one is skipped and its chat told.
    pub missed_grace: Duration,
}

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
    pub id: TaskId,
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
    pub id: TaskId,
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
    pub id: TaskId,
    pub chat_id: ChatId,
    /// When, in its chat's zone: "Wed 3 Dec 07:30".
    pub when: String,
}

/// Who writes a task, and from where: what `/remind` and `/every` record of their message.
#[derive(Debug, Clone, PartialEq)]
pub struct Creator {
    pub chat_id: ChatId,
    pub user_id: UserId,
    pub origin: Origin,
}

/// The scheduler: adds, lists and cancels tasks, and fires them on time into the chat
/// service's queue.
pub struct Scheduler {
    service: Arc<ChatService>,
    tasks: Tasks,
    preferences: Arc<Preferences>,
    config: ScheduleConfig,
    /// Tasks were added, cancelled or moved: the timer looks again.
    changed: Notify,
    /// Tasks due before this are late whatever their lateness: the bot was not running.
    started_unix_ms: u64,
    /// The bot's: [`crate::clock::SystemClock`].
    clock: Arc<dyn WallClock>,
}

impl Scheduler {
    pub fn new(
        service: Arc<ChatService>,
        tasks: Tasks,
        config: ScheduleConfig,
        clock: Arc<dyn WallClock>,
    ) -> Arc<Self> {
        Arc::new(Self {
            preferences: service.preferences().clone(),
            service,
            tasks,
            config,
            changed: Notify::new(),
            started_unix_ms: clock.unix_ms(),
            clock,
        })
    }

    /// `/remind <when> <text>` from `creator`.
    pub async fn remind(&self, creator: Creator, args: &str) -> Result<Added, ScheduleError> {
        let zone = self.preferences.time_zone(creator.chat_id).await;
        let now = self.clock.unix_ms();
        let (due, text) = parse_when(args, now, &zone)?;
        let task = NewTask {
            chat_id: creator.chat_id,
            kind: TaskKind::Reminder,
            text: text.to_owned(),
            recurrence: None,
            next_due_unix_ms: due,
            user_id: creator.user_id,
            origin: creator.origin,
            created_unix_ms: now,
        };
        self.add(task, None, zone, now).await
    }

    /// `/every <schedule> <prompt>` from `creator`.
    pub async fn every(&self, creator: Creator, args: &str) -> Result<Added, ScheduleError> {
        let zone = self.preferences.time_zone(creator.chat_id).await;
        let now = self.clock.unix_ms();
        let (recurrence, prompt) = Recurrence::parse(args, now)?;
        let due = recurrence
            .next_after(now, &zone)
            .ok_or(ScheduleError::NeverDue)?;
        let task = NewTask {
            chat_id: creator.chat_id,
            kind: TaskKind::Prompt,
            text: prompt.to_owned(),
            recurrence: Some(recurrence.to_spec()),
            next_due_unix_ms: due,
            user_id: creator.user_id,
            origin: creator.origin,
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
            .tasks
            .add(task, MAX_TASKS_PER_CHAT)
            .await?
            .ok_or(ScheduleError::TooMany)?;
        tracing::info!(task_id = id.0, chat_id = chat_id.0, due_in = ?Duration::from_millis(due.saturating_sub(now)), "task added");
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
    pub async fn tasks(&self, chat_id: ChatId) -> Result<(Vec<Listed>, Zone), StoreError> {
        let zone = self.preferences.time_zone(chat_id).await;
        let tasks = self.tasks.of_chat(chat_id).await?;
        let now = self.clock.unix_ms();
        let listed = tasks
            .into_iter()
            .map(|t| listed_in(t, &zone, now))
            .collect();
        Ok((listed, zone))
    }

    /// Every chat's tasks, soonest first, each with its chat id (the dashboard's Tasks page).
    pub async fn all_tasks(&self) -> Result<Vec<(ChatId, Listed)>, StoreError> {
        let tasks = self.tasks.all().await?;
        let now = self.clock.unix_ms();
        let mut listed = Vec::with_capacity(tasks.len());
        for task in tasks {
            let zone = self.preferences.time_zone(task.task.chat_id).await;
            listed.push((task.task.chat_id, listed_in(task, &zone, now)));
        }
        Ok(listed)
    }

    /// Cancels the chat's task `id`; false when the chat has none by that id.
    pub async fn cancel(&self, chat_id: ChatId, id: TaskId) -> Result<bool, StoreError> {
        let cancelled = self.tasks.cancel(chat_id, id).await?;
        if cancelled {
            tracing::info!(task_id = id.0, chat_id = chat_id.0, "task cancelled");
            self.changed.notify_one();
        }
        Ok(cancelled)
    }

    /// `/timezone <name>`: the chat's zone from now on, and its recurring tasks' next slots
    /// in it (a reminder keeps its instant) — in one transaction.
    pub async fn set_zone(&self, chat_id: ChatId, name: &str) -> Result<Zone, ScheduleError> {
        let zone = Zone::parse(name)?;
        let moved = zone.clone();
        let now = self.clock.unix_ms();
        let next_due = move |task: &Task| {
            recurrence_of(&task.task)
                .and_then(Result::ok)
                .and_then(|r| r.next_after(now, &moved))
        };
        self.tasks
            .set_time_zone(chat_id, Some(zone.name().to_owned()), next_due)
            .await?;
        self.changed.notify_one();
        Ok(zone)
    }

    /// The number of tasks and the next one due.
    pub async fn summary(&self) -> Result<Summary, StoreError> {
        let (count, next) = self.tasks.summary().await?;
        let next = match next {
            None => None,
            Some(task) => {
                let zone = self.preferences.time_zone(task.task.chat_id).await;
                Some(NextTask {
                    id: task.id,
                    chat_id: task.task.chat_id,
                    when: zone.format(task.task.next_due_unix_ms, self.clock.unix_ms()),
                })
            }
        };
        Ok(Summary { count, next })
    }

    /// Fires tasks as they come due until `shutdown`, asleep on the clock until the next.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let pause = match self.fire_due().await {
                Ok(next) => next,
                Err(e) => {
                    tracing::error!(
                        "scheduled tasks: the database failed ({e}); trying again in {RETRY_AFTER_STORE_ERROR:?}"
                    );
                    Some(self.clock.unix_ms() + RETRY_AFTER_STORE_ERROR.as_millis() as u64)
                }
            };
            let sleep = async {
                match pause {
                    Some(due) => self.clock.sleep_until(due).await,
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
        let now = self.clock.unix_ms();
        for task in self.tasks.due(now).await? {
            self.fire(task, now).await?;
        }
        self.tasks.next_due().await
    }

    async fn fire(&self, task: Task, now: u64) -> Result<(), StoreError> {
        let zone = self.preferences.time_zone(task.task.chat_id).await;
        let recurrence = match recurrence_of(&task.task) {
            None => None,
            Some(Ok(recurrence)) => Some(recurrence),
            Some(Err(e)) => {
                tracing::error!(
                    task_id = task.id.0,
                    "task removed: its schedule cannot be read ({e})"
                );
                return self.tasks.reschedule(task.id, None).await;
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
                task_id = task.id.0,
                ?lateness,
                outcome = "skipped: missed for longer than MISSED_TASK_GRACE",
                "task fired"
            );
            self.tasks.reschedule(task.id, next).await?;
            crate::telemetry::task_outcome(task.id.0, "skipped: missed");
            let note = Notice::TaskSkipped {
                task_id: task.id,
                text: task.task.text.clone(),
                was_due: zone.format(due, now),
            };
            self.service.tell_chat(task.task.chat_id, &note).await;
            return Ok(());
        }
        let origin = Origin {
            sent_unix_ms: now,
            scheduled: Some(ScheduledRun {
                task_id: task.id,
                due_unix_ms: due,
                late: missed || lateness > LATE_AFTER,
            }),
            ..task.task.origin
        };
        let job = NewJob {
            chat_id: task.task.chat_id,
            kind: task.task.kind.job_kind(),
            user_id: task.task.user_id,
            text: task.task.text,
            origin,
            received_unix_ms: now,
        };
        let job_id = self.tasks.fire(task.id, job.clone(), next).await?;
        tracing::info!(
            task_id = task.id.0,
            job_id = job_id.0,
            ?lateness,
            late = job.origin.scheduled.is_some_and(|r| r.late),
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
        recurrence: recurrence_of(&task.task)
            .and_then(Result::ok)
            .map(|r| r.describe()),
        text: task.task.text,
    }
}
