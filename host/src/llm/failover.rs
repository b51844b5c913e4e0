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
use crate::background::Background;
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
    /// Where the probe runs, stopped with the bot.
    background: Background,
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
        background: Background,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                primary,
                fallback,
                fallback_model: settings.backend.model.clone(),
                fallback_slots: Arc::new(Semaphore::new(settings.concurrency)),
                probe_every: settings.probe_every,
                breaker: Mutex::new(Breaker::Closed { failures: 0 }),
                background,
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
            self.background.spawn_until_shutdown(self.clone().probe());
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
        let note = ReplyEvent::FellBack {
            unavailable: self.primary.serving(),
            model: self.fallback_model.clone(),
            server: self.fallback.serving(),
        };
        crate::telemetry::fell_back();
        // The slot is held as long as the answer is read.
        let answer = answer.map(move |event| {
            let _held = &slot;
            event
        });
        Ok(stream::once(async { Ok(note) }).chain(answer).boxed())
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
                        let next = if matches!(event, ReplyEvent::FellBack { .. }) {
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
    use super::*;
    use crate::llm::scripted::{Answer, ScriptedLlm};
    use crate::llm::{Api, BackendSettings};

    /// A scripted server that lists no model: down, for the probe.
    fn scripted(name: &str) -> Arc<ScriptedLlm> {
        let server = ScriptedLlm::new(name, Duration::from_millis(10));
        server.set_models(None);
        Arc::new(server)
    }

    fn asked_models(server: &ScriptedLlm) -> Vec<String> {
        server.asked().into_iter().map(|a| a.model).collect()
    }

    fn down() -> LlmError {
        LlmError::Unreachable {
            server: Api::OpenAi,
            url: "http://gpu-box:8000/v1".into(),
        }
    }

    fn failover(primary: &Arc<ScriptedLlm>, fallback: &Arc<ScriptedLlm>) -> Failover {
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
        Failover::new(
            primary.clone(),
            fallback.clone(),
            &settings,
            Background::default(),
        )
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
        let (primary, fallback) = (scripted("the GPU box"), scripted("the Pi"));
        let failover = failover(&primary, &fallback);
        // Refused at once, and timed out inside the stream: both before any text.
        primary.push(Answer::Refuse(down()));
        primary.push(Answer::Events(vec![Err(LlmError::FirstTokenTimeout(
            Duration::from_secs(120),
        ))]));
        for _ in 0..2 {
            fallback.push(Answer::text("from the Pi"));
            let got = events(&failover).await;
            assert_eq!(
                got[0],
                Ok(ReplyEvent::FellBack {
                    unavailable: "the GPU box".into(),
                    model: "gemma2:2b".into(),
                    server: "the Pi".into(),
                })
            );
            assert_eq!(got[1], Ok(ReplyEvent::Delta("from the Pi".into())));
        }
        assert_eq!(asked_models(&fallback), ["gemma2:2b", "gemma2:2b"]);
        assert!(failover.serving().starts_with("The GPU box (fallback"));
    }

    #[tokio::test(start_paused = true)]
    async fn the_fallback_runs_its_own_number_of_answers_at_once() {
        let (primary, fallback) = (scripted("the GPU box"), scripted("the Pi"));
        let failover = failover(&primary, &fallback);
        for _ in 0..2 {
            primary.push(Answer::Refuse(down()));
            fallback.push(Answer::text("from the Pi"));
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
        primary.push(Answer::Refuse(down()));
        let got = events(&failover).await;
        assert_eq!(got[1], Ok(ReplyEvent::Delta("from the Pi".into())));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_after_the_first_token_is_the_answers_own() {
        let (primary, fallback) = (scripted("the GPU box"), scripted("the Pi"));
        let failover = failover(&primary, &fallback);
        let broke = LlmError::Interrupted("connection reset".into());
        primary.push(Answer::Events(vec![
            Ok(ReplyEvent::Delta("Half an".into())),
            Err(broke.clone()),
        ]));
        let got = events(&failover).await;
        assert_eq!(
            got,
            vec![Ok(ReplyEvent::Delta("Half an".into())), Err(broke)]
        );
        assert!(fallback.asked().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn three_failures_in_a_row_open_the_breaker_until_a_probe_finds_the_primary() {
        let (primary, fallback) = (scripted("the GPU box"), scripted("the Pi"));
        let failover = failover(&primary, &fallback);
        for _ in 0..FAILURES_TO_OPEN {
            primary.push(Answer::Refuse(down()));
            fallback.push(Answer::text("from the Pi"));
            events(&failover).await;
        }
        assert!(
            failover
                .serving()
                .starts_with("the fallback, gemma2:2b on the Pi")
        );
        // Open: the primary is not asked at all.
        fallback.push(Answer::text("from the Pi"));
        events(&failover).await;
        assert_eq!(primary.asked().len(), 3);
        // Still down at the first probe, back at the second.
        tokio::time::sleep(Duration::from_secs(31)).await;
        assert!(failover.serving().starts_with("the fallback"));
        primary.set_models(Some(&["qwen2.5-7b-instruct"]));
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(failover.serving().starts_with("The GPU box (fallback"));
        primary.push(Answer::text("from the box"));
        let got = events(&failover).await;
        assert_eq!(got[0], Ok(ReplyEvent::Delta("from the box".into())));
    }

    #[tokio::test]
    async fn a_prompt_must_fit_the_smaller_context_of_the_two() {
        let (primary, fallback) = (scripted("the GPU box"), scripted("the Pi"));
        primary.set_context(Some(32_768));
        let failover = failover(&primary, &fallback);
        // The Pi's Ollama takes what is asked for.
        assert_eq!(failover.context_length("big", Some(2048)).await, Ok(2048));
        // A fallback that cannot say leaves the primary's.
        assert_eq!(failover.context_length("big", None).await, Ok(32_768));
        primary.set_context(None);
        assert!(failover.context_length("big", None).await.is_err());
    }
}
