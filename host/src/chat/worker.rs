//! One worker: takes the next job, runs it through the pipeline and the LLM, streams the
//! shaped reply to its sink, and completes the job in the store.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::context::ModelBudget;
use super::notice::{AdminNotice, GivenUpJob, Notice};
use super::queue::Queue;
use super::window::{self, Plan, TooLong};
use super::{ChatService, JobKind, MAX_ATTEMPTS, NewJob, PendingJob, ReplySink, context_of};
use crate::clock;
use crate::ids::{ChatId, JobId, TaskId};
use crate::llm::{LlmError, ReplyEvent};
use crate::pipeline::{FormatOutcome, Pipeline, StageError};
use crate::prompt::{ChatContext, ChatMessage, Prompt, Reply, Role};
use crate::store::{StoreError, StoredMessage, Turn};
use crate::telemetry::{self, MessageOutcome};

/// How often the typing indicator is renewed while waiting for the first token (Telegram
/// shows it for about five seconds).
const TYPING_RENEWAL: Duration = Duration::from_secs(4);

/// The least room an answer must have: a prompt the formatters made longer than planned
/// eats into the answer's room, but not below this.
const MIN_ANSWER_TOKENS: u32 = 64;

/// How a job ended, for the store.
enum Ending {
    /// Delivered; the turn goes into history (`None`: nothing worth remembering).
    Completed(Option<Turn>, MessageOutcome),
    /// Interrupted by shutdown: stays pending, answered after the next start.
    KeepPending,
}

impl Ending {
    fn without_history(self) -> Self {
        match self {
            Self::Completed(_, outcome) => Self::Completed(None, outcome),
            Self::KeepPending => Self::KeepPending,
        }
    }
}

/// Which jobs a worker takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Any job: the `LLM_CONCURRENCY` workers.
    Any,
    /// Reminders only: they need no LLM, so one extra worker delivers them on time while
    /// the others are busy generating.
    Reminders,
}

pub async fn run(service: Arc<ChatService>, lane: Lane, shutdown: CancellationToken) {
    loop {
        let ready = service.job_ready.notified();
        if shutdown.is_cancelled() {
            return;
        }
        let next = service
            .lock_queue()
            .take_next(&service.interrupt_jobs, |job| {
                lane == Lane::Any || job.message.kind == JobKind::Reminder
            });
        let Some((job, cancel)) = next else {
            tokio::select! {
                () = ready => continue,
                () = shutdown.cancelled() => return,
            }
        };
        let (chat_id, job_id) = (job.message.chat_id, job.id);
        let task_id = job.message.origin.scheduled.map(|run| run.task_id);
        let span = tracing::info_span!(
            "message",
            chat_id = chat_id.0,
            job_id = job_id.0,
            attempt = job.attempts + 1
        );
        let queue_wait =
            Duration::from_millis(clock::unix_ms().saturating_sub(job.message.received_unix_ms));
        async {
            tracing::info!(?queue_wait, "answering");
            let resets_before = service.resets(chat_id);
            let mut ending = service.answer(job, &cancel).await;
            if service.resets(chat_id) != resets_before {
                // `/reset` came while this was being answered: don't bring the turn back.
                ending = ending.without_history();
            }
            service.end(job_id, task_id, ending).await;
        }
        .instrument(span)
        .await;
        service.lock_queue().finish(chat_id);
        service.job_ready.notify_waiters();
    }
}

impl ChatService {
    async fn answer(&self, job: PendingJob, cancel: &CancellationToken) -> Ending {
        let mut sink = JobSink {
            sink: self
                .replies
                .open(job.message.chat_id, job.message.kind.message_id()),
            queue: self.queue.clone(),
            chat_id: job.message.chat_id,
        };
        if job.attempts >= MAX_ATTEMPTS {
            return self.give_up(&mut sink, &job).await;
        }
        sink.working().await;
        // Counted before anything runs, so a job that kills the process is counted too. Not
        // fsynced: after a process crash the write is in the page cache; after a power cut
        // the attempt was not the job's fault.
        if let Err(e) = self.jobs.record_attempt(job.id).await {
            tracing::warn!("cannot record the attempt: {e}");
        }
        let zone = self.preferences.time_zone(job.message.chat_id).await;
        let context = context_of(&job.message, zone);
        if job.message.kind == JobKind::Reminder {
            return self.remind(&mut sink, &job.message, &context).await;
        }
        let planned = match self.prompt_for(&job.message).await {
            Ok(planned) => planned,
            Err(Unplanned::TooLong(too_long)) => {
                return fail(&mut sink, Notice::TooLong(too_long)).await;
            }
            Err(Unplanned::Store(e)) => {
                tracing::error!("cannot read history: {e}");
                return fail(&mut sink, Notice::DatabaseFailed).await;
            }
        };
        let pipeline = self.pipeline();
        let started = Instant::now();
        let outcome = pipeline.format(&context, planned.prompt.clone()).await;
        tracing::debug!(pipeline_time = ?started.elapsed(), "formatted");
        match outcome {
            Err(e) => fail(&mut sink, Notice::StageFailed(e)).await,
            Ok(FormatOutcome::Rejected { stage, reason }) => {
                tracing::info!(stage, "rejected by the pipeline");
                match sink.notice(&Notice::Rejected { reason }).await {
                    Ok(()) => Ending::Completed(None, MessageOutcome::Rejected),
                    Err(_) => Ending::KeepPending,
                }
            }
            Ok(FormatOutcome::Reply { prompt, reply }) => {
                let typed = job.message.text.clone();
                let answer = self.answer_to(&pipeline, &job.message, &context, &prompt, typed);
                let raw = reply.text.clone();
                match answer.shape(reply, true).await {
                    Err(e) => fail(&mut sink, Notice::StageFailed(e)).await,
                    Ok(shaped) => deliver(&mut sink, &shaped, answer.turn(raw)).await,
                }
            }
            Ok(FormatOutcome::Prompt(prompt)) => {
                let prompt = match self.fit(&planned, prompt) {
                    Ok(prompt) => prompt,
                    Err(too_long) => return fail(&mut sink, Notice::TooLong(too_long)).await,
                };
                let seen = seen_user_turn(&job.message.text, &prompt, planned.opens_window);
                let answer = self.answer_to(&pipeline, &job.message, &context, &prompt, seen);
                self.generate(&mut sink, &answer, cancel).await
            }
        }
    }

    /// The formatters' `prompt`, checked against the context planned for it; what they
    /// added is remembered to plan the next windows.
    fn fit(&self, planned: &Planned, mut prompt: Prompt) -> Result<Prompt, TooLong> {
        let budget = &planned.budget;
        let tokens = budget.prompt_tokens(&prompt.messages);
        self.contexts
            .added_by_pipeline(tokens.saturating_sub(planned.tokens));
        // The same context for every request: a guest asking for another one would make
        // Ollama reload the model, and its prompt cache with it.
        prompt.options.num_ctx = Some(budget.context);
        if tokens.saturating_add(MIN_ANSWER_TOKENS) > budget.context {
            return Err(TooLong {
                needed: tokens,
                limit: budget.window.tokens,
            });
        }
        if tokens > budget.window.tokens {
            tracing::warn!(
                tokens,
                planned = budget.window.tokens,
                "the pipeline added more than planned: less room for the answer"
            );
        }
        Ok(prompt)
    }

    /// A reminder: its announcement through the shapers, as if a formatter had answered.
    async fn remind(&self, sink: &mut JobSink, message: &NewJob, context: &ChatContext) -> Ending {
        let prompt = Prompt {
            model: self.llm_config.primary.model.clone(),
            messages: vec![ChatMessage::new(Role::User, message.text.clone())],
            options: self.llm_config.options.clone(),
        };
        let pipeline = self.pipeline();
        let answer = self.answer_to(&pipeline, message, context, &prompt, message.text.clone());
        match answer.shape(Reply::plain(String::new()), true).await {
            Err(e) => fail(sink, Notice::StageFailed(e)).await,
            Ok(shaped) => deliver(sink, &shaped, None).await,
        }
    }

    /// The job was started `MAX_ATTEMPTS` times and never finished: each time the process
    /// died on it. Tell its user and the admins once, and drop it.
    async fn give_up(&self, sink: &mut JobSink, job: &PendingJob) -> Ending {
        tracing::error!(
            attempts = job.attempts,
            "giving up on a message: the bot stopped while answering it {} times",
            job.attempts
        );
        let given_up = match (job.message.kind, job.message.origin.scheduled) {
            (JobKind::Message { message_id }, _) => GivenUpJob::Message { message_id },
            (_, Some(run)) => GivenUpJob::Task {
                task_id: run.task_id,
            },
            (_, None) => GivenUpJob::UnknownTask,
        };
        self.tell_admins(&AdminNotice::GaveUp {
            chat_id: job.message.chat_id,
            job: given_up,
            attempts: job.attempts,
        })
        .await;
        let told = sink.notice(&Notice::GivenUp).await;
        if let Err(e) = told {
            tracing::warn!("cannot tell the user their message was given up: {e:#}");
        }
        // Removed even if the user could not be told: running it again may crash again.
        Ending::Completed(None, MessageOutcome::GivenUp)
    }

    /// The prompt for `message`: the chat's history window — cut if the new message would
    /// not fit beside it — and the message.
    async fn prompt_for(&self, message: &NewJob) -> Result<Planned, Unplanned> {
        let chat_id = message.chat_id;
        let model = self.preferences.model(chat_id).await?;
        let budget = self.contexts.budget(&*self.llm, &model).await;
        let mut history = self.history.window(chat_id).await?;
        let new = ChatMessage::new(Role::User, message.text.clone());
        let fixed = budget.prompt_tokens(std::slice::from_ref(&new)) + budget.overhead;
        let cost = |m: &StoredMessage| budget.message_tokens(&m.message);
        if let Plan::Cut { first_id } = window::plan(&history, cost, fixed, budget.window)? {
            let dropped = history.iter().take_while(|m| m.id < first_id).count();
            tracing::info!(
                dropped,
                kept = history.len() - dropped,
                "history window cut: the model reads what it keeps once more"
            );
            self.history.cut_window(chat_id, first_id).await?;
            history.drain(..dropped);
        }
        let mut messages: Vec<ChatMessage> = history.into_iter().map(|m| m.message).collect();
        let opens_window = messages.is_empty();
        messages.push(new);
        let mut options = self.llm_config.options.clone();
        options.num_ctx = Some(budget.context);
        let prompt = Prompt {
            model,
            messages,
            options,
        };
        Ok(Planned {
            tokens: budget.prompt_tokens(&prompt.messages),
            prompt,
            budget,
            opens_window,
        })
    }

    /// Streams the LLM's answer, shaping paced partials, then the final text.
    async fn generate(
        &self,
        sink: &mut JobSink,
        answer: &Answer<'_>,
        cancel: &CancellationToken,
    ) -> Ending {
        let requested = Instant::now();
        let stream = tokio::select! {
            result = self.llm.chat(answer.prompt) => result,
            () = cancel.cancelled() => return self.cancelled(sink, answer, String::new()).await,
        };
        let mut stream = match stream {
            Ok(stream) => stream,
            Err(e) => return fail(sink, Notice::LlmFailed(e)).await,
        };
        let interval = self.config.edit_interval;
        let mut text = String::new();
        let mut last_partial: Option<tokio::time::Instant> = None;
        // A shaper that fails on a partial reply is not asked again before the final one:
        // a guest stuck until its deadline would otherwise cost it on every edit. Partial
        // structured output (JSON) is never shown: the shapers decide what the user reads
        // once it is complete.
        let mut shape_partials = answer.prompt.options.format.is_none();
        let mut typing =
            tokio::time::interval_at(tokio::time::Instant::now() + TYPING_RENEWAL, TYPING_RENEWAL);
        // Another model answers on the fallback: its counts teach nothing about this one.
        let mut fell_back = false;
        loop {
            let event = tokio::select! {
                event = stream.next() => event,
                () = cancel.cancelled() => {
                    drop(stream); // closes the connection: Ollama stops generating
                    return self.cancelled(sink, answer, text).await;
                }
                _ = typing.tick(), if text.is_empty() => {
                    sink.working().await;
                    continue;
                }
            };
            match event {
                Some(Ok(ReplyEvent::FellBack {
                    unavailable,
                    model,
                    server,
                })) => {
                    fell_back = true;
                    let note = Notice::FellBack {
                        unavailable,
                        model,
                        server,
                    };
                    sink.aside(&note).await;
                }
                Some(Ok(ReplyEvent::Delta(delta))) => {
                    if text.is_empty() {
                        let after = requested.elapsed();
                        telemetry::first_token(after);
                        tracing::info!(first_token = ?after, "first token");
                    }
                    text.push_str(&delta);
                    if shape_partials
                        && last_partial.is_none_or(|at| at.elapsed() >= interval)
                        && !text.trim().is_empty()
                    {
                        last_partial = Some(tokio::time::Instant::now());
                        match answer.shape(Reply::plain(text.clone()), false).await {
                            Ok(shaped) => sink.partial(&shaped).await,
                            Err(_) => shape_partials = false,
                        }
                    }
                }
                Some(Ok(ReplyEvent::Done(stats))) => {
                    let tps = stats.tokens_per_second();
                    telemetry::generated(stats.eval_count, tps);
                    telemetry::prompt_read(
                        stats.prompt_eval_count,
                        stats.prompt_cached,
                        stats.prompt_cached_estimated,
                        stats.load_duration,
                    );
                    if !fell_back {
                        let prompt = answer.prompt;
                        self.contexts.learn(&prompt.model, &prompt.messages, &stats);
                    }
                    *self
                        .last_tokens_per_second
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) = tps;
                    tracing::info!(
                        tokens = stats.eval_count,
                        tokens_per_second = tps.unwrap_or(0.0),
                        prompt_tokens = stats.prompt_eval_count,
                        prompt_cached = stats.prompt_cached,
                        prompt_cached_estimated = stats.prompt_cached_estimated,
                        prompt_evaluated = stats.prompt_evaluated(),
                        prompt_eval = ?stats.prompt_eval_duration,
                        eval = ?stats.eval_duration,
                        load = ?stats.load_duration,
                        total = ?requested.elapsed(),
                        cut_off = stats.cut_off,
                        "generated"
                    );
                    let shaped = match answer.shape(Reply::plain(text.clone()), true).await {
                        Err(e) => return fail(sink, Notice::StageFailed(e)).await,
                        Ok(shaped) => shaped,
                    };
                    let ending = deliver(sink, &shaped, answer.turn(text)).await;
                    if stats.cut_off && matches!(ending, Ending::Completed(..)) {
                        let num_predict_set =
                            self.llm_config.options.num_predict.is_some_and(|n| n > 0);
                        sink.aside(&Notice::CutOff { num_predict_set }).await;
                    }
                    return ending;
                }
                Some(Err(_)) | None => {
                    let error = match event {
                        Some(Err(e)) => e,
                        _ => LlmError::Protocol("the answer ended early".into()),
                    };
                    tracing::warn!("generation failed: {error}");
                    let notice = Notice::LlmFailed(error);
                    return self
                        .partial_then_notice(sink, answer, text, &notice, MessageOutcome::Failed)
                        .await;
                }
            }
        }
    }

    /// `/stop` delivers what was generated so far; shutdown leaves the job pending.
    async fn cancelled(&self, sink: &mut JobSink, answer: &Answer<'_>, text: String) -> Ending {
        if self.shutting_down() {
            tracing::info!("interrupted by shutdown; stays pending");
            return Ending::KeepPending;
        }
        tracing::info!("stopped by the user");
        self.partial_then_notice(
            sink,
            answer,
            text,
            &Notice::Stopped,
            MessageOutcome::Stopped,
        )
        .await
    }

    /// Delivers `text` so far (if any) as a final reply, then `notice`.
    async fn partial_then_notice(
        &self,
        sink: &mut JobSink,
        answer: &Answer<'_>,
        text: String,
        notice: &Notice,
        outcome: MessageOutcome,
    ) -> Ending {
        let something = !text.trim().is_empty();
        if something
            && let Ok(shaped) = answer.shape(Reply::plain(text.clone()), true).await
            && sink.finish(&shaped).await.is_err()
        {
            return Ending::KeepPending;
        }
        match sink.notice(notice).await {
            Ok(()) => Ending::Completed(answer.turn(text).filter(|_| something), outcome),
            Err(_) => Ending::KeepPending,
        }
    }

    /// Every job's cancel token is a child of `interrupt_jobs`: when that fired, it was a
    /// shutdown, otherwise a `/stop`.
    fn shutting_down(&self) -> bool {
        self.interrupt_jobs.is_cancelled()
    }

    /// Records how job `job_id` (a firing of `task_id`, if any) ended.
    async fn end(&self, job_id: JobId, task_id: Option<TaskId>, ending: Ending) {
        let outcome = match &ending {
            Ending::Completed(_, outcome) => *outcome,
            Ending::KeepPending => MessageOutcome::Interrupted,
        };
        telemetry::message(outcome);
        if let Some(task_id) = task_id {
            telemetry::task_outcome(task_id.0, outcome.label());
        }
        let result = match ending {
            // Not a crash (a shutdown, Telegram unreachable): this attempt does not count
            // towards giving up.
            Ending::KeepPending => self.jobs.forget_attempt(job_id).await,
            Ending::Completed(turn, _) => self.jobs.complete(job_id, turn).await,
        };
        if let Err(e) = result {
            tracing::error!("cannot update the job in the store: {e}");
        }
    }
}

/// A job's reply sink that tells the queue when the job's last word — a final reply or
/// notice — goes out: from then on the job is ahead of no one, though it still waits for
/// Telegram's answer and stores its turn. A user who writes right after seeing the answer
/// is not told to wait for it.
struct JobSink {
    sink: Box<dyn ReplySink>,
    queue: Arc<Mutex<Queue>>,
    chat_id: ChatId,
}

impl JobSink {
    /// A notice that is not the job's last word (the answer follows); best effort.
    async fn aside(&mut self, notice: &Notice) {
        if let Err(e) = self.sink.notice(notice).await {
            tracing::warn!("cannot send a notice: {e:#}");
        }
    }

    fn last_word(&self) {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .delivered(self.chat_id);
    }
}

impl JobSink {
    async fn working(&mut self) {
        self.sink.working().await;
    }

    async fn partial(&mut self, reply: &Reply) {
        self.sink.partial(reply).await;
    }

    async fn finish(&mut self, reply: &Reply) -> anyhow::Result<()> {
        self.last_word();
        self.sink.finish(reply).await
    }

    async fn notice(&mut self, notice: &Notice) -> anyhow::Result<()> {
        self.last_word();
        self.sink.notice(notice).await
    }
}

/// Tells the user what went wrong; the job is done (a message that cannot be answered now
/// is not retried behind the user's back — they are told and can send it again).
async fn fail(sink: &mut JobSink, notice: Notice) -> Ending {
    match sink.notice(&notice).await {
        Ok(()) => Ending::Completed(None, MessageOutcome::Failed),
        Err(_) => Ending::KeepPending,
    }
}

async fn deliver(sink: &mut JobSink, shaped: &Reply, turn: Option<Turn>) -> Ending {
    match sink.finish(shaped).await {
        Ok(()) => Ending::Completed(turn, MessageOutcome::Answered),
        Err(e) => {
            tracing::warn!("reply not delivered, stays pending: {e:#}");
            Ending::KeepPending
        }
    }
}

/// A prompt planned to fit the model's context, before the formatters.
struct Planned {
    prompt: Prompt,
    budget: ModelBudget,
    /// Tokens `prompt` takes (as estimated).
    tokens: u32,
    /// No earlier turn is in the window: the new message opens it.
    opens_window: bool,
}

/// Why no prompt could be planned.
enum Unplanned {
    Store(StoreError),
    TooLong(TooLong),
}

impl From<StoreError> for Unplanned {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<TooLong> for Unplanned {
    fn from(e: TooLong) -> Self {
        Self::TooLong(e)
    }
}

/// The user's turn as the model saw it, for history: the prompt's last message after the
/// formatters — with the data they added — so that the next prompt continues this one
/// exactly (the server's prompt cache). When the message opened the window, what the
/// formatters put *before* the user's words is left out: that is where a persona folds its
/// system prompt, and it folds it again into whichever message opens the window next time.
fn seen_user_turn(typed: &str, prompt: &Prompt, opened_window: bool) -> String {
    let Some(last) = prompt.messages.last().filter(|m| m.role == Role::User) else {
        return typed.to_owned();
    };
    if !opened_window {
        return last.content.clone();
    }
    let seen = &last.content;
    // The user's words start the message, or a line (a fold ends with a blank line).
    let start = if seen.starts_with(typed) {
        Some(0)
    } else {
        seen.find(&format!("\n{typed}")).map(|at| at + 1)
    };
    start.map_or_else(|| typed.to_owned(), |at| seen[at..].to_owned())
}

impl ChatService {
    /// The answer to `message` in `context`, to `prompt` (after the formatters).
    fn answer_to<'a>(
        &self,
        pipeline: &'a Pipeline,
        message: &NewJob,
        context: &'a ChatContext,
        prompt: &'a Prompt,
        user_turn: String,
    ) -> Answer<'a> {
        let announcement = context.scheduled.map(|run| {
            self.replies
                .announcement(&message.text, &run, &context.time_zone)
        });
        Answer {
            pipeline,
            context,
            prompt,
            user_turn,
            announcement,
        }
    }
}

/// One message's answer as it is produced: what shaping it and remembering it need.
struct Answer<'a> {
    pipeline: &'a Pipeline,
    context: &'a ChatContext,
    /// What the LLM is asked (after the formatters).
    prompt: &'a Prompt,
    /// The user's turn as history keeps it.
    user_turn: String,
    /// A scheduled task's first line ("⏰ Good morning briefing"), so the chat sees why the
    /// bot writes unasked; the whole reply of a reminder.
    announcement: Option<String>,
}

impl Answer<'_> {
    /// `reply` through the shapers (the text so far, or all of it when `done`), after the
    /// announcement if there is one.
    async fn shape(&self, mut reply: Reply, done: bool) -> Result<Reply, StageError> {
        if let Some(announcement) = &self.announcement {
            reply.prepend_line(announcement);
        }
        self.pipeline
            .shape(self.context, self.prompt, reply, done)
            .await
    }

    /// The turn to keep in history once `text` was delivered as the answer: `text` as the
    /// model wrote it, not as shaped for the chat, so the next prompt continues the cache.
    fn turn(&self, text: String) -> Option<Turn> {
        Some(Turn {
            user: self.user_turn.clone(),
            assistant: text,
        })
    }
}
