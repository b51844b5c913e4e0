//! A model server that answers from a script, in process: the one fake `LlmBackend` the
//! host's unit tests and the test crate share (built with the `test-support` feature).
//! Each request takes the next scripted [`Answer`]; with none left it echoes the question,
//! a word at a time.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream;
use tokio::time::Instant;

use super::{
    Api, GenerationStats, LlmBackend, LlmError, ModelInfo, ReplyEvent, ReplyStream, RunningModel,
};
use crate::prompt::Prompt;

/// What the server does with one request.
#[derive(Debug, Clone)]
pub enum Answer {
    /// These tokens, each after `every`, then done.
    Tokens {
        tokens: Vec<String>,
        every: Duration,
    },
    /// These events at once (a fallback's note, an error after some text).
    Events(Vec<Result<ReplyEvent, LlmError>>),
    /// Refused before any stream (connection refused, HTTP error).
    Refuse(LlmError),
    /// This error after `after` without a token.
    FailAfter { after: Duration, error: LlmError },
    /// Nothing, for ever (a hung server).
    Hang,
}

impl Answer {
    /// `text` a word at a time, one per `every`.
    pub fn words(text: &str, every: Duration) -> Self {
        Self::Tokens {
            tokens: text.split_inclusive(' ').map(str::to_owned).collect(),
            every,
        }
    }

    /// `text` at once, then done.
    pub fn text(text: &str) -> Self {
        Self::Events(vec![
            Ok(ReplyEvent::Delta(text.to_owned())),
            Ok(ReplyEvent::Done(GenerationStats::default())),
        ])
    }
}

/// One request the server got.
#[derive(Debug, Clone)]
pub struct Asked {
    pub model: String,
    /// The request's last message.
    pub question: String,
    pub at: Instant,
}

/// A scripted server.
pub struct ScriptedLlm {
    name: String,
    answers: Mutex<VecDeque<Answer>>,
    echo_every: Duration,
    asked: Mutex<Vec<Asked>>,
    /// What `/models` lists; `None`: the server is down.
    models: Mutex<Option<Vec<String>>>,
    /// The context it says it has; `None`: it takes what is requested (as Ollama does).
    context: Mutex<Option<u32>>,
}

impl ScriptedLlm {
    /// A server `serving()` calls `name`, echoing a word per `echo_every`, listing no model.
    pub fn new(name: &str, echo_every: Duration) -> Self {
        Self {
            name: name.to_owned(),
            answers: Mutex::default(),
            echo_every,
            asked: Mutex::default(),
            models: Mutex::new(Some(Vec::new())),
            context: Mutex::default(),
        }
    }

    pub fn push(&self, answer: Answer) {
        lock(&self.answers).push_back(answer);
    }

    /// Every request so far, oldest first.
    pub fn asked(&self) -> Vec<Asked> {
        lock(&self.asked).clone()
    }

    /// What `/models` lists from now on; `None`: it cannot be reached.
    pub fn set_models(&self, models: Option<&[&str]>) {
        *lock(&self.models) = models.map(|m| m.iter().map(|&name| name.to_owned()).collect());
    }

    /// The context the server says it has (`None`: whatever is requested).
    pub fn set_context(&self, tokens: Option<u32>) {
        *lock(&self.context) = tokens;
    }

    fn down(&self) -> LlmError {
        LlmError::Unreachable {
            server: Api::OpenAi,
            url: format!("http://{}", self.name.replace(' ', "-")),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl LlmBackend for ScriptedLlm {
    fn chat(&self, prompt: &Prompt) -> BoxFuture<'_, Result<ReplyStream, LlmError>> {
        let question = prompt
            .messages
            .last()
            .map(|m| m.content.clone())
            .unwrap_or_default();
        lock(&self.asked).push(Asked {
            model: prompt.model.clone(),
            question: question.clone(),
            at: Instant::now(),
        });
        let answer = lock(&self.answers)
            .pop_front()
            .unwrap_or_else(|| Answer::words(&format!("re {question}"), self.echo_every));
        Box::pin(async move {
            Ok(match answer {
                Answer::Tokens { tokens, every } => {
                    let events = tokens
                        .into_iter()
                        .map(ReplyEvent::Delta)
                        .chain([ReplyEvent::Done(GenerationStats::default())]);
                    stream::iter(events)
                        .then(move |event| async move {
                            tokio::time::sleep(every).await;
                            Ok(event)
                        })
                        .boxed()
                }
                Answer::Events(events) => stream::iter(events).boxed(),
                Answer::Refuse(error) => return Err(error),
                Answer::FailAfter { after, error } => stream::once(async move {
                    tokio::time::sleep(after).await;
                    Err(error)
                })
                .boxed(),
                Answer::Hang => stream::pending().boxed(),
            })
        })
    }

    fn list_models(&self) -> BoxFuture<'_, Result<Vec<ModelInfo>, LlmError>> {
        let models = lock(&self.models).clone();
        let down = self.down();
        Box::pin(async move {
            let names = models.ok_or(down)?;
            Ok(names
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
        let length = lock(&self.context).or(requested);
        let down = self.down();
        Box::pin(async move { length.ok_or(down) })
    }

    fn check_model<'a>(&'a self, _model: &'a str) -> BoxFuture<'a, Result<(), LlmError>> {
        Box::pin(async { Ok(()) })
    }

    fn serving(&self) -> String {
        self.name.clone()
    }
}
