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
mod queue;
mod sink;
mod window;
mod worker;

pub use jobs::{Enqueued, JobKind, NewJob, PendingJob};
pub use queue::Accepted;
pub use sink::{Replies, ReplySink};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::{ChatConfig, LlmConfig};
use crate::llm::{LlmBackend, LlmError, ModelInfo, RunningModel, same_model};
use crate::pipeline::{Pipeline, SharedPipeline, StageInfo};
use crate::store::{ChatCounts, SharedStore, Store, StoreError};
use crate::telemetry::{self, CacheFigures, FirstTokenFigures};
use context::Contexts;
use queue::Queue;

/// How often a job may be started without finishing (the process died while answering it)
/// before it is given up: its user is told, the admins get one message, the job is removed.
pub const MAX_ATTEMPTS: u32 = 3;

/// How long interrupted jobs get to wind down after the grace period before their workers
/// are dropped.
const INTERRUPT_SLACK: Duration = Duration::from_secs(1);

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

/// A chat's model and the ones it could switch to, for `/model`.
#[derive(Debug, Clone)]
pub struct ModelChoice {
    pub current: String,
    /// Installed on the LLM server, or why they could not be listed.
    pub installed: Result<Vec<ModelInfo>, LlmError>,
}

impl ModelChoice {
    /// Whether `model` is the chat's (`gemma2` is `gemma2:latest`).
    pub fn is_current(&self, model: &ModelInfo) -> bool {
        same_model(&model.name, &self.current)
    }
}

/// What asking for another model did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSwitch {
    /// The chat uses `model` from now on.
    Switched { model: String },
    /// The chat went back to the default, `model`.
    BackToDefault { model: String },
    /// Not installed on the server; nothing changed.
    NotInstalled { model: String },
    /// The server could not be asked; nothing changed.
    CannotCheck(LlmError),
}

/// Shared by the Telegram handlers, the workers and the CLI.
pub struct ChatService<R: Replies> {
    config: ChatConfig,
    llm_config: LlmConfig,
    llm: Arc<dyn LlmBackend>,
    pipeline: SharedPipeline,
    store: SharedStore,
    replies: R,
    /// Shared with each job's sink, which marks the job once its last word is out.
    queue: Arc<Mutex<Queue>>,
    job_ready: Notify,
    last_tokens_per_second: Mutex<Option<f64>>,
    /// What fits each model's context.
    contexts: Contexts,
    resets: Mutex<std::collections::HashMap<i64, u64>>,
    started: Instant,
    /// Parent of every running job's cancel token; cancelled when the grace period ends.
    interrupt_jobs: CancellationToken,
}

impl<R: Replies> ChatService<R> {
    pub fn new(
        config: ChatConfig,
        llm_config: LlmConfig,
        llm: Arc<dyn LlmBackend>,
        pipeline: SharedPipeline,
        store: SharedStore,
        replies: R,
    ) -> Arc<Self> {
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
            store,
            replies,
            job_ready: Notify::new(),
            last_tokens_per_second: Mutex::new(None),
            resets: Mutex::default(),
            started: Instant::now(),
            interrupt_jobs: CancellationToken::new(),
        })
    }

    /// Accepts a user's message: stored first, then queued. Durable (and safe to
    /// acknowledge) once the update offset is saved — see `Store`'s group commit.
    pub async fn accept(&self, job: NewJob) -> Result<Accepted, StoreError> {
        if self.lock_queue().is_full() {
            return Ok(Accepted::QueueFull);
        }
        let stored = self
            .db(move |store| store.enqueue(&job).map(|e| (e, job)))
            .await?;
        let accepted = match stored {
            (Enqueued::Duplicate, _) => Accepted::Duplicate,
            (Enqueued::New(id), job) => self.lock_queue().push(PendingJob::new(id, job)),
        };
        self.job_ready.notify_waiters();
        Ok(accepted)
    }

    /// Queues the jobs left pending by the previous run, in arrival order.
    pub async fn recover(&self) -> Result<usize, StoreError> {
        let pending = self.db(|store| store.pending()).await?;
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

    /// The chat's time zone: its own choice (`/timezone`) or the default (`TIMEZONE`).
    pub async fn time_zone(&self, chat_id: i64) -> String {
        match self.db(move |store| store.chat_time_zone(chat_id)).await {
            Ok(Some(zone)) => zone,
            Ok(None) => self.config.time_zone.clone(),
            Err(e) => {
                tracing::warn!("cannot read the chat's time zone, using the default: {e}");
                self.config.time_zone.clone()
            }
        }
    }

    /// Sets the chat's time zone (an IANA name the caller checked); `None`: the default.
    pub async fn set_time_zone(
        &self,
        chat_id: i64,
        zone: Option<String>,
    ) -> Result<(), StoreError> {
        self.db(move |store| store.set_chat_time_zone(chat_id, zone.as_deref()))
            .await
    }

    /// Cancels the chat's running generation; false when nothing was running.
    pub fn stop(&self, chat_id: i64) -> bool {
        self.lock_queue().cancel_running(chat_id)
    }

    /// Forgets the chat's history.
    pub async fn reset(&self, chat_id: i64) -> Result<usize, StoreError> {
        *self
            .resets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(chat_id)
            .or_default() += 1;
        self.db(move |store| store.clear_history(chat_id)).await
    }

    /// How often the chat was reset since the start: a job that sees this change while it
    /// runs keeps its turn out of the (cleared) history.
    fn resets(&self, chat_id: i64) -> u64 {
        self.resets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&chat_id)
            .copied()
            .unwrap_or(0)
    }

    /// The chat's model: its own choice or the default.
    async fn model(&self, chat_id: i64) -> Result<String, StoreError> {
        let chosen = self.db(move |store| store.chat_model(chat_id)).await?;
        Ok(chosen.unwrap_or_else(|| self.llm_config.primary.model.clone()))
    }

    /// The chat's model and the models installed on the server.
    pub async fn models(&self, chat_id: i64) -> Result<ModelChoice, StoreError> {
        Ok(ModelChoice {
            current: self.model(chat_id).await?,
            installed: self.llm.list_models().await,
        })
    }

    /// Switches the chat to `model` if the server has it; `None` goes back to the default.
    pub async fn set_model(
        &self,
        chat_id: i64,
        model: Option<&str>,
    ) -> Result<ModelSwitch, StoreError> {
        let Some(model) = model else {
            self.db(move |store| store.set_chat_model(chat_id, None))
                .await?;
            return Ok(ModelSwitch::BackToDefault {
                model: self.llm_config.primary.model.clone(),
            });
        };
        let model = model.to_owned();
        match self.llm.list_models().await {
            Err(e) => Ok(ModelSwitch::CannotCheck(e)),
            Ok(installed) if !installed.iter().any(|m| same_model(&m.name, &model)) => {
                Ok(ModelSwitch::NotInstalled { model })
            }
            Ok(_) => {
                let chosen = model.clone();
                self.db(move |store| store.set_chat_model(chat_id, Some(&chosen)))
                    .await?;
                Ok(ModelSwitch::Switched { model })
            }
        }
    }

    /// The last Telegram update handled (survives restarts).
    pub async fn update_offset(&self) -> Result<Option<i64>, StoreError> {
        self.db(|store| store.last_update_id()).await
    }

    pub async fn set_update_offset(&self, update_id: i64) -> Result<(), StoreError> {
        self.db(move |store| store.set_last_update_id(update_id))
            .await
    }

    /// Tells a chat something outside any job (best effort: failures are logged).
    pub async fn tell_chat(&self, chat_id: i64, text: &str) {
        if let Err(e) = self.replies.open(chat_id, None).notice(text).await {
            tracing::warn!(chat_id, "cannot send a notice: {e:#}");
        }
    }

    /// Tells the admins something they should act on (best effort).
    pub async fn tell_admins(&self, text: &str) {
        self.replies.tell_admins(text).await;
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

    /// Every chat's counts, with messages answered since `since_unix_ms` (no content).
    pub async fn chat_counts(&self, since_unix_ms: u64) -> Result<Vec<ChatCounts>, StoreError> {
        self.db(move |store| store.chat_counts(since_unix_ms)).await
    }

    /// The default time zone (`TIMEZONE`), in which the dashboard counts "today".
    pub fn default_time_zone(&self) -> &str {
        &self.config.time_zone
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

    async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.store.run(f).await
    }
}
