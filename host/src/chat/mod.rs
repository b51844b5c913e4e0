//! The conversation service: the one place that joins the pipeline, the LLM, the store and
//! a reply renderer (Telegram or a terminal, behind [`Replies`]).
//!
//! A prompt holds the chat's history *window* (`window`): cut rarely and in large blocks to
//! fit the model's context (`context`), so that the model server's prompt cache serves
//! most of every prompt.
//!
//! A message is *accepted* (written to the store, durably) before its Telegram update is
//! acknowledged, waits in a bounded queue that keeps each chat's order, and is *completed*
//! (removed from the store, its turn added to history) only once the reply was delivered.
//! Jobs still pending at a crash or shutdown are answered after the next start — unless a
//! job was already started [`MAX_ATTEMPTS`] times without finishing: a message that crashes
//! the process (an OOM kill, a host bug) would otherwise crash it after every restart.

mod context;
mod jobs;
mod notice;
mod preferences;
mod queue;
mod sink;
mod window;
mod worker;

pub use jobs::{Enqueued, JobKind, NewJob, Origin, PendingJob, context_of};
pub use notice::{AdminNotice, GivenUpJob, Notice};
pub use preferences::{ModelChoice, ModelSwitch, Preferences};
pub use queue::Accepted;
pub use sink::{Replies, ReplySink};
pub use window::TooLong;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::ids::ChatId;
use crate::llm::{LlmBackend, LlmConfig, LlmError, RunningModel};
use crate::pipeline::{Pipeline, SharedPipeline, StageInfo};
use crate::store::{Database, History, Jobs, StoreError};
use crate::telemetry::{self, CacheFigures, FirstTokenFigures};
use crate::zone::Zone;
use context::Contexts;
use queue::Queue;

/// How often a job may be started without finishing (the process died while answering it)
/// before it is given up: its user is told, the admins get one message, the job is removed.
pub const MAX_ATTEMPTS: u32 = 3;

/// How long interrupted jobs get to wind down after the grace period before their workers
/// are dropped.
const INTERRUPT_SLACK: Duration = Duration::from_secs(1);

/// The conversation service's settings (read from the environment by `config`).
#[derive(Debug, Clone, PartialEq)]
pub struct ChatConfig {
    /// `HISTORY_MESSAGES`: earlier messages of a chat a prompt holds at most (besides the
    /// model's context, which usually decides); the window is cut in blocks.
    pub history_messages: usize,
    /// `QUEUE_CAPACITY`: messages waiting at most; more are politely refused.
    pub queue_capacity: usize,
    /// `LLM_CONCURRENCY`: generations at once (a Pi runs one).
    pub llm_concurrency: usize,
    /// `SHUTDOWN_GRACE_SECS`: how long running generations may finish on shutdown.
    pub shutdown_grace: Duration,
    /// `STREAM_EDIT_INTERVAL_MS`: pause between updates of a streaming reply (Telegram
    /// allows about one edit per second per chat).
    pub edit_interval: Duration,
    /// `TIMEZONE`: the time zone of chats that did not choose one with `/timezone`.
    pub time_zone: Zone,
}

/// What `/status` shows.
#[derive(Debug, Clone)]
pub struct Status {
    pub waiting: usize,
    pub running: usize,
    pub last_tokens_per_second: Option<f64>,
    /// How much of the last answers' prompts the server's cache served.
    pub prompt_cache: Option<CacheFigures>,
    /// How long the last answers' first tokens took.
    pub first_token: Option<FirstTokenFigures>,
    pub uptime: Duration,
    pub default_model: String,
    /// Which server answers now, in one line.
    pub serving: String,
    /// The models the LLM server holds in memory now, or why it could not be asked.
    pub loaded_models: Result<Vec<RunningModel>, LlmError>,
    /// The pipeline new messages use.
    pub stages: Vec<StageInfo>,
}

/// The conversation service: accepts jobs, keeps them in order, and answers them with its
/// workers. Shared by the Telegram handlers, the scheduler, the dashboard and the CLI.
pub struct ChatService {
    config: ChatConfig,
    llm_config: LlmConfig,
    llm: Arc<dyn LlmBackend>,
    pipeline: SharedPipeline,
    jobs: Jobs,
    history: History,
    preferences: Arc<Preferences>,
    replies: Arc<dyn Replies>,
    /// Shared with each job's sink, which marks the job once its last word is out.
    queue: Arc<Mutex<Queue>>,
    job_ready: Notify,
    last_tokens_per_second: Mutex<Option<f64>>,
    /// What fits each model's context.
    contexts: Contexts,
    resets: Mutex<std::collections::HashMap<ChatId, u64>>,
    started: Instant,
    /// Parent of every running job's cancel token; cancelled when the grace period ends.
    interrupt_jobs: CancellationToken,
}

impl ChatService {
    pub fn new(
        config: ChatConfig,
        llm_config: LlmConfig,
        llm: Arc<dyn LlmBackend>,
        pipeline: SharedPipeline,
        database: &Database,
        replies: Arc<dyn Replies>,
    ) -> Arc<Self> {
        let preferences = Arc::new(Preferences::new(
            database.chat_settings(),
            llm.clone(),
            llm_config.primary.model.clone(),
            config.time_zone.clone(),
        ));
        Arc::new(Self {
            queue: Arc::new(Mutex::new(Queue::new(
                config.queue_capacity,
                config.llm_concurrency,
            ))),
            contexts: Contexts::new(
                llm_config.options.num_ctx,
                llm_config.options.num_predict,
                config.history_messages,
            ),
            config,
            llm_config,
            llm,
            pipeline,
            jobs: database.jobs(),
            history: database.history(),
            preferences,
            replies,
            job_ready: Notify::new(),
            last_tokens_per_second: Mutex::new(None),
            resets: Mutex::default(),
            started: Instant::now(),
            interrupt_jobs: CancellationToken::new(),
        })
    }

    /// Each chat's model and time zone.
    pub fn preferences(&self) -> &Arc<Preferences> {
        &self.preferences
    }

    /// Accepts a user's message: stored first, then queued. Durable (and safe to
    /// acknowledge) once the update offset is saved — see the store's group commit.
    pub async fn accept(&self, job: NewJob) -> Result<Accepted, StoreError> {
        if self.lock_queue().is_full() {
            return Ok(Accepted::QueueFull);
        }
        let accepted = match self.jobs.enqueue(job).await? {
            (Enqueued::Duplicate, _) => Accepted::Duplicate,
            (Enqueued::New(id), job) => self.lock_queue().push(PendingJob::new(id, job)),
        };
        self.job_ready.notify_waiters();
        Ok(accepted)
    }

    /// Queues the jobs left pending by the previous run, in arrival order.
    pub async fn recover(&self) -> Result<usize, StoreError> {
        let pending = self.jobs.pending().await?;
        let count = pending.len();
        let mut queue = self.lock_queue();
        for job in pending {
            queue.push_stored(job);
        }
        drop(queue);
        self.job_ready.notify_waiters();
        Ok(count)
    }

    /// Queues a job stored already (a scheduled task's firing, stored with the task's move
    /// to its next slot).
    pub fn queue_stored(&self, job: PendingJob) {
        self.lock_queue().push_stored(job);
        self.job_ready.notify_waiters();
    }

    /// Cancels the chat's running generation; false when nothing was running.
    pub fn stop(&self, chat_id: ChatId) -> bool {
        self.lock_queue().cancel_running(chat_id)
    }

    /// Forgets the chat's history.
    pub async fn reset(&self, chat_id: ChatId) -> Result<usize, StoreError> {
        *self
            .resets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(chat_id)
            .or_default() += 1;
        self.history.clear(chat_id).await
    }

    /// How often the chat was reset since the start: a job that sees this change while it
    /// runs keeps its turn out of the (cleared) history.
    fn resets(&self, chat_id: ChatId) -> u64 {
        self.resets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&chat_id)
            .copied()
            .unwrap_or(0)
    }

    /// Tells a chat something outside any job (best effort: failures are logged).
    pub async fn tell_chat(&self, chat_id: ChatId, notice: &Notice) {
        if let Err(e) = self.replies.open(chat_id, None).notice(notice).await {
            tracing::warn!(%chat_id, "cannot send a notice: {e:#}");
        }
    }

    /// Tells the admins something they should act on (best effort).
    pub async fn tell_admins(&self, notice: &AdminNotice) {
        self.replies.tell_admins(notice).await;
    }

    /// The pipeline new messages use.
    pub fn pipeline(&self) -> Arc<Pipeline> {
        self.pipeline.load_full()
    }

    /// The queue, the LLM server and the pipeline, as `/status` shows them.
    pub async fn status(&self) -> Status {
        // Asked first: no lock is held across the wait.
        let loaded_models = self.llm.running_models().await;
        let queue = self.lock_queue();
        Status {
            waiting: queue.waiting(),
            running: queue.running(),
            last_tokens_per_second: *self
                .last_tokens_per_second
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
            prompt_cache: telemetry::stats().answers.cache(),
            first_token: telemetry::stats().answers.first_token(),
            uptime: self.started.elapsed(),
            default_model: self.llm_config.primary.model.clone(),
            serving: self.llm.serving(),
            loaded_models,
            stages: self.pipeline().stages().cloned().collect(),
        }
    }

    /// Jobs waiting or running now (`pi_agent_queue_depth`).
    pub fn queue_depth(&self) -> usize {
        let queue = self.lock_queue();
        queue.waiting() + queue.running()
    }

    /// Runs `LLM_CONCURRENCY` workers, and one for reminders, until `shutdown` is cancelled;
    /// then lets running jobs finish within the grace period and cancels the rest (they stay
    /// pending).
    pub async fn run_workers(self: &Arc<Self>, shutdown: CancellationToken) {
        let lanes = std::iter::repeat_n(worker::Lane::Any, self.config.llm_concurrency)
            .chain([worker::Lane::Reminders]);
        let workers: Vec<_> = lanes
            .map(|lane| tokio::spawn(worker::run(self.clone(), lane, shutdown.clone())))
            .collect();
        let aborts: Vec<_> = workers.iter().map(|w| w.abort_handle()).collect();
        shutdown.cancelled().await;
        let grace = self.config.shutdown_grace;
        let all = futures_util::future::join_all(workers);
        tokio::pin!(all);
        if tokio::time::timeout(grace, &mut all).await.is_err() {
            tracing::warn!(
                ?grace,
                "generations still running after the grace period; they stay pending for the next start"
            );
            self.interrupt_jobs.cancel();
            // Interrupted jobs end at once; whatever still waits (a delivery retrying
            // after a 429, a stalled disk) is dropped rather than waited for.
            if tokio::time::timeout(INTERRUPT_SLACK, &mut all)
                .await
                .is_err()
            {
                aborts.iter().for_each(tokio::task::AbortHandle::abort);
                all.await;
            }
        }
    }

    fn lock_queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}
