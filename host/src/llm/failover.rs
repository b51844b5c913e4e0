//! A primary model server with a fallback: a message whose primary fails before its first
//! token goes to the fallback (typically the Pi's own Ollama) with a one-line note, and a
//! circuit breaker stops trying a primary that failed repeatedly until a background probe
//! finds it back.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::{self, StreamExt};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::{
    FallbackSettings, LlmBackend, LlmError, ModelInfo, ReplyEvent, ReplyStream, RunningModel,
};
use crate::prompt::Prompt;

/// Failures in a row (before a first token) after which the primary is left alone.
pub const FAILURES_TO_OPEN: u32 = 3;

/// An [`LlmBackend`] that answers with the primary and falls back.
pub struct Failover {
    inner: Arc<Inner>,
}

struct Inner {
    primary: Arc<dyn LlmBackend>,
    fallback: Arc<dyn LlmBackend>,
    /// The model the fallback answers with, whatever the chat chose on the primary.
    fallback_model: String,
    /// The fallback's generations at once (a Pi runs one, a GPU box several).
    fallback_slots: Arc<Semaphore>,
    probe_every: Duration,
    breaker: Mutex<Breaker>,
}

/// Whether the primary is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Breaker {
    /// Tried; `failures` in a row so far.
    Closed { failures: u32 },
    /// Not tried since `since`; a background probe tries it every `probe_every`.
    Open { since: Instant },
}

impl Failover {
    pub fn new(
        primary: Arc<dyn LlmBackend>,
        fallback: Arc<dyn LlmBackend>,
        settings: &FallbackSettings,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                primary,
                fallback,
                fallback_model: settings.backend.model.clone(),
                fallback_slots: Arc::new(Semaphore::new(settings.concurrency)),
                probe_every: settings.probe_every,
                breaker: Mutex::new(Breaker::Closed { failures: 0 }),
            }),
        }
    }
}

impl Inner {
    fn breaker(&self) -> Breaker {
        *self.breaker.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn primary_answered(&self) {
        let mut breaker = self.breaker.lock().unwrap_or_else(|e| e.into_inner());
        if let Breaker::Closed { failures } = &mut *breaker {
            *failures = 0;
        }
    }

    /// Counts a failure before the first token; opens the breaker (and starts the probe)
    /// at [`FAILURES_TO_OPEN`] in a row.
    fn primary_failed(self: &Arc<Self>, error: &LlmError) {
        tracing::warn!(
            "{} failed, answering with the fallback: {error}",
            self.primary.serving()
        );
        let opened = {
            let mut breaker = self.breaker.lock().unwrap_or_else(|e| e.into_inner());
            match &mut *breaker {
                Breaker::Closed { failures } => {
                    *failures += 1;
                    let open = *failures >= FAILURES_TO_OPEN;
                    if open {
                        *breaker = Breaker::Open {
                            since: Instant::now(),
                        };
                    }
                    open
                }
                Breaker::Open { .. } => false,
            }
        };
        if opened {
            tracing::warn!(
                failures = FAILURES_TO_OPEN,
                probe_every = ?self.probe_every,
                "{} is left alone until a probe finds it back",
                self.primary.serving()
            );
            tokio::spawn(self.clone().probe());
        }
    }

    /// Tries the primary every `probe_every` until it answers, then closes the breaker.
    async fn probe(self: Arc<Self>) {
        loop {
            tokio::time::sleep(self.probe_every).await;
            match self.primary.list_models().await {
                Ok(_) => {
                    *self.breaker.lock().unwrap_or_else(|e| e.into_inner()) =
                        Breaker::Closed { failures: 0 };
                    tracing::info!(
                        "{} is back: messages go to it again",
                        self.primary.serving()
                    );
                    return;
                }
                Err(e) => tracing::debug!("probe: {e}"),
            }
        }
    }

    /// The answer from the fallback, after a note saying so; waits for a free slot.
    async fn fall_back(self: Arc<Self>, prompt: &Prompt) -> Result<ReplyStream, LlmError> {
        let slot = self
            .fallback_slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let mut prompt = prompt.clone();
        prompt.model.clone_from(&self.fallback_model);
        let answer = self.fallback.chat(&prompt).await?;
        let note = format!(
            "ℹ️ {} is unavailable — answering with {} on {}.",
            capitalised(&self.primary.serving()),
            self.fallback_model,
            self.fallback.serving()
        );
        crate::telemetry::fell_back();
        // The slot is held as long as the answer is read.
        let answer = answer.map(move |event| {
            let _held = &slot;
            event
        });
        Ok(stream::once(async { Ok(ReplyEvent::Notice(note)) })
            .chain(answer)
            .boxed())
    }

    /// The primary's answer, passed on once it produced text; if it fails before that,
    /// the fallback's instead.
    fn watch_first_token(self: Arc<Self>, primary: ReplyStream, prompt: Prompt) -> ReplyStream {
        enum State {
            Primary(ReplyStream),
            Answering(ReplyStream),
            Done,
        }
        let state = (State::Primary(primary), self, prompt);
        stream::unfold(state, |(state, inner, prompt)| async move {
            match state {
                State::Done => None,
                State::Answering(mut answer) => {
                    let event = answer.next().await?;
                    Some((event, (State::Answering(answer), inner, prompt)))
                }
                State::Primary(mut answer) => match answer.next().await {
                    Some(Err(error)) => {
                        inner.primary_failed(&error);
                        match inner.clone().fall_back(&prompt).await {
                            Ok(mut fallback) => {
                                let event = fallback.next().await?;
                                Some((event, (State::Answering(fallback), inner, prompt)))
                            }
                            Err(e) => Some((Err(e), (State::Done, inner, prompt))),
                        }
                    }
                    Some(Ok(event)) => {
                        let next = if matches!(event, ReplyEvent::Notice(_)) {
                            State::Primary(answer)
                        } else {
                            inner.primary_answered();
                            State::Answering(answer)
                        };
                        Some((Ok(event), (next, inner, prompt)))
                    }
                    None => None,
                },
            }
        })
        .boxed()
    }
}

impl LlmBackend for Failover {
    fn chat(&self, prompt: &Prompt) -> BoxFuture<'_, Result<ReplyStream, LlmError>> {
        let (inner, prompt) = (self.inner.clone(), prompt.clone());
        Box::pin(async move {
            if let Breaker::Closed { .. } = inner.breaker() {
                match inner.primary.chat(&prompt).await {
                    Ok(answer) => return Ok(inner.watch_first_token(answer, prompt)),
                    Err(error) => inner.primary_failed(&error),
                }
            }
            inner.fall_back(&prompt).await
        })
    }

    /// The primary's models: `/model` chooses among them.
    fn list_models(&self) -> BoxFuture<'_, Result<Vec<ModelInfo>, LlmError>> {
        self.inner.primary.list_models()
    }

    fn running_models(&self) -> BoxFuture<'_, Result<Vec<RunningModel>, LlmError>> {
        match self.inner.breaker() {
            Breaker::Closed { .. } => self.inner.primary.running_models(),
            Breaker::Open { .. } => self.inner.fallback.running_models(),
        }
    }

    /// The smaller of the two: a message may be answered by either, and must fit both
    /// (the fallback answers with its own model). One that cannot be asked does not count.
    fn context_length<'a>(
        &'a self,
        model: &'a str,
        requested: Option<u32>,
    ) -> BoxFuture<'a, Result<u32, LlmError>> {
        let inner = &self.inner;
        Box::pin(async move {
            let (primary, fallback) = tokio::join!(
                inner.primary.context_length(model, requested),
                inner
                    .fallback
                    .context_length(&inner.fallback_model, requested)
            );
            match (primary, fallback) {
                (Ok(primary), Ok(fallback)) => Ok(primary.min(fallback)),
                (Ok(one), Err(_)) | (Err(_), Ok(one)) => Ok(one),
                (Err(e), Err(_)) => Err(e),
            }
        })
    }

    fn check_model<'a>(&'a self, model: &'a str) -> BoxFuture<'a, Result<(), LlmError>> {
        self.inner.primary.check_model(model)
    }

    fn serving(&self) -> String {
        let inner = &self.inner;
        match inner.breaker() {
            Breaker::Closed { .. } => format!(
                "{} (fallback: {} on {})",
                capitalised(&inner.primary.serving()),
                inner.fallback_model,
                inner.fallback.serving()
            ),
            Breaker::Open { since } => format!(
                "the fallback, {} on {}: {} failed {FAILURES_TO_OPEN} times in a row {} min ago \
                 and is probed every {} s",
                inner.fallback_model,
                inner.fallback.serving(),
                inner.primary.serving(),
                since.elapsed().as_secs() / 60,
                inner.probe_every.as_secs()
            ),
        }
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::llm::{Api, BackendSettings, GenerationStats};

    /// A scripted answer: refused, or these events.
    type Answer = Result<Vec<Result<ReplyEvent, LlmError>>, LlmError>;

    /// Answers each chat with the next of its scripted answers.
    struct Scripted {
        name: &'static str,
        answers: Mutex<VecDeque<Answer>>,
        models: Mutex<Vec<String>>,
        asked: Mutex<Vec<String>>,
        /// The context the server says it has (`None`: it takes what is requested).
        context: Mutex<Option<u32>>,
    }

    impl Scripted {
        fn new(name: &'static str) -> Arc<Self> {
            Arc::new(Self {
                name,
                answers: Mutex::default(),
                models: Mutex::default(),
                asked: Mutex::default(),
                context: Mutex::default(),
            })
        }

        fn answer(&self, answer: Answer) {
            self.answers.lock().unwrap().push_back(answer);
        }
    }

    impl LlmBackend for Scripted {
        fn chat(&self, prompt: &Prompt) -> BoxFuture<'_, Result<ReplyStream, LlmError>> {
            self.asked.lock().unwrap().push(prompt.model.clone());
            let answer = self.answers.lock().unwrap().pop_front().expect("scripted");
            Box::pin(async move { answer.map(|events| stream::iter(events).boxed()) })
        }

        fn list_models(&self) -> BoxFuture<'_, Result<Vec<ModelInfo>, LlmError>> {
            let models = self.models.lock().unwrap().clone();
            Box::pin(async move {
                if models.is_empty() {
                    return Err(down());
                }
                Ok(models
                    .into_iter()
                    .map(|name| ModelInfo {
                        name,
                        size_bytes: 0,
                        parameter_size: None,
                        quantization_level: None,
                    })
                    .collect())
            })
        }

        fn running_models(&self) -> BoxFuture<'_, Result<Vec<RunningModel>, LlmError>> {
            Box::pin(async { Ok(Vec::new()) })
        }

        fn context_length<'a>(
            &'a self,
            _model: &'a str,
            requested: Option<u32>,
        ) -> BoxFuture<'a, Result<u32, LlmError>> {
            let length = self.context.lock().unwrap().or(requested);
            Box::pin(async move { length.ok_or_else(down) })
        }

        fn check_model<'a>(&'a self, _model: &'a str) -> BoxFuture<'a, Result<(), LlmError>> {
            Box::pin(async { Ok(()) })
        }

        fn serving(&self) -> String {
            self.name.to_owned()
        }
    }

    fn down() -> LlmError {
        LlmError::Unreachable {
            server: Api::OpenAi,
            url: "http://gpu-box:8000/v1".into(),
        }
    }

    fn answer(text: &str) -> Vec<Result<ReplyEvent, LlmError>> {
        vec![
            Ok(ReplyEvent::Delta(text.into())),
            Ok(ReplyEvent::Done(GenerationStats::default())),
        ]
    }

    fn failover(primary: &Arc<Scripted>, fallback: &Arc<Scripted>) -> Failover {
        let settings = FallbackSettings {
            backend: BackendSettings {
                api: Api::Ollama,
                url: "http://127.0.0.1:11434".into(),
                api_key: None,
                model: "gemma2:2b".into(),
            },
            concurrency: 1,
            probe_every: Duration::from_secs(30),
        };
        Failover::new(primary.clone(), fallback.clone(), &settings)
    }

    fn prompt() -> Prompt {
        Prompt {
            model: "qwen2.5-7b-instruct".into(),
            messages: Vec::new(),
            options: Default::default(),
        }
    }

    async fn events(failover: &Failover) -> Vec<Result<ReplyEvent, LlmError>> {
        match failover.chat(&prompt()).await {
            Ok(stream) => stream.collect().await,
            Err(e) => vec![Err(e)],
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_before_the_first_token_goes_to_the_fallback_with_a_note() {
        let (primary, fallback) = (Scripted::new("the GPU box"), Scripted::new("the Pi"));
        let failover = failover(&primary, &fallback);
        // Refused at once, and timed out inside the stream: both before any text.
        primary.answer(Err(down()));
        primary.answer(Ok(vec![Err(LlmError::FirstTokenTimeout(
            Duration::from_secs(120),
        ))]));
        for _ in 0..2 {
            fallback.answer(Ok(answer("from the Pi")));
            let got = events(&failover).await;
            assert_eq!(
                got[0],
                Ok(ReplyEvent::Notice(
                    "ℹ️ The GPU box is unavailable — answering with gemma2:2b on the Pi.".into()
                ))
            );
            assert_eq!(got[1], Ok(ReplyEvent::Delta("from the Pi".into())));
        }
        assert_eq!(*fallback.asked.lock().unwrap(), ["gemma2:2b", "gemma2:2b"]);
        assert!(failover.serving().starts_with("The GPU box (fallback"));
    }

    #[tokio::test(start_paused = true)]
    async fn the_fallback_runs_its_own_number_of_answers_at_once() {
        let (primary, fallback) = (Scripted::new("the GPU box"), Scripted::new("the Pi"));
        let failover = failover(&primary, &fallback);
        for _ in 0..2 {
            primary.answer(Err(down()));
            fallback.answer(Ok(answer("from the Pi")));
        }
        // The first answer holds the fallback's one slot while it is read…
        let first = failover.chat(&prompt()).await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_secs(60), failover.chat(&prompt()));
        assert!(
            waiting.await.is_err(),
            "a second answer started on the Pi at once"
        );
        // …and gives it back when it ends. (The waiting call above used the second primary
        // failure; the fallback's second answer is still queued.)
        drop(first);
        primary.answer(Err(down()));
        let got = events(&failover).await;
        assert_eq!(got[1], Ok(ReplyEvent::Delta("from the Pi".into())));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_after_the_first_token_is_the_answers_own() {
        let (primary, fallback) = (Scripted::new("the GPU box"), Scripted::new("the Pi"));
        let failover = failover(&primary, &fallback);
        let broke = LlmError::Interrupted("connection reset".into());
        primary.answer(Ok(vec![
            Ok(ReplyEvent::Delta("Half an".into())),
            Err(broke.clone()),
        ]));
        let got = events(&failover).await;
        assert_eq!(
            got,
            vec![Ok(ReplyEvent::Delta("Half an".into())), Err(broke)]
        );
        assert!(fallback.asked.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn three_failures_in_a_row_open_the_breaker_until_a_probe_finds_the_primary() {
        let (primary, fallback) = (Scripted::new("the GPU box"), Scripted::new("the Pi"));
        let failover = failover(&primary, &fallback);
        for _ in 0..FAILURES_TO_OPEN {
            primary.answer(Err(down()));
            fallback.answer(Ok(answer("from the Pi")));
            events(&failover).await;
        }
        assert!(
            failover
                .serving()
                .starts_with("the fallback, gemma2:2b on the Pi")
        );
        // Open: the primary is not asked at all.
        fallback.answer(Ok(answer("from the Pi")));
        events(&failover).await;
        assert_eq!(primary.asked.lock().unwrap().len(), 3);
        // Still down at the first probe, back at the second.
        tokio::time::sleep(Duration::from_secs(31)).await;
        assert!(failover.serving().starts_with("the fallback"));
        primary
            .models
            .lock()
            .unwrap()
            .push("qwen2.5-7b-instruct".into());
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(failover.serving().starts_with("The GPU box (fallback"));
        primary.answer(Ok(answer("from the box")));
        let got = events(&failover).await;
        assert_eq!(got[0], Ok(ReplyEvent::Delta("from the box".into())));
    }

    #[tokio::test]
    async fn a_prompt_must_fit_the_smaller_context_of_the_two() {
        let (primary, fallback) = (Scripted::new("the GPU box"), Scripted::new("the Pi"));
        *primary.context.lock().unwrap() = Some(32_768);
        let failover = failover(&primary, &fallback);
        // The Pi's Ollama takes what is asked for.
        assert_eq!(failover.context_length("big", Some(2048)).await, Ok(2048));
        // A fallback that cannot say leaves the primary's.
        assert_eq!(failover.context_length("big", None).await, Ok(32_768));
        *primary.context.lock().unwrap() = None;
        assert_eq!(failover.context_length("big", None).await, Err(down()));
    }
}
