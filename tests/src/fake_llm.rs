//! The model server a test's bot talks to: the fake Ollama or the fake OpenAI-compatible
//! server, driven through one vocabulary ([`Script`], the fake Ollama's) so that the same
//! end-to-end test runs against either backend.

use std::time::Duration;

use serde_json::Value;

use crate::fake_ollama::{self, FakeOllama, Script};
use crate::fake_openai::FakeOpenAi;
use crate::model_runner::{Evaluation, RunnerSettings};

/// Which API the bot is configured for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Ollama,
    OpenAi,
}

/// A running fake model server of either kind.
pub enum FakeLlm {
    Ollama(FakeOllama),
    OpenAi(FakeOpenAi),
}

impl FakeLlm {
    /// Starts one knowing `gemma2:2b` and echoing by default, whichever the backend.
    pub async fn start(backend: Backend) -> Self {
        match backend {
            Backend::Ollama => Self::Ollama(FakeOllama::start().await),
            Backend::OpenAi => {
                let server = FakeOpenAi::start(None).await;
                server.set_models(&[fake_ollama::DEFAULT_MODEL]);
                server.set_default_script(crate::fake_openai::Script::echo());
                Self::OpenAi(server)
            }
        }
    }

    /// The variables that point the bot at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::Ollama(server) => vec![("OLLAMA_URL", server.url())],
            Self::OpenAi(server) => vec![("LLM_API", "openai".into()), ("LLM_URL", server.url())],
        }
    }

    /// The variable naming the server's address (to point the bot elsewhere).
    pub fn url_variable(&self) -> &'static str {
        match self {
            Self::Ollama(_) => "OLLAMA_URL",
            Self::OpenAi(_) => "LLM_URL",
        }
    }

    pub fn url(&self) -> String {
        match self {
            Self::Ollama(server) => server.url(),
            Self::OpenAi(server) => server.url(),
        }
    }

    pub fn push_script(&self, script: Script) {
        match self {
            Self::Ollama(server) => server.push_script(script),
            Self::OpenAi(server) => server.push_script(script.for_openai()),
        }
    }

    pub fn set_default_script(&self, script: Script) {
        match self {
            Self::Ollama(server) => server.set_default_script(script),
            Self::OpenAi(server) => server.set_default_script(script.for_openai()),
        }
    }

    /// The models the server has (Ollama: installed; OpenAI: `/models`).
    pub fn set_installed_models(&self, names: &[&str]) {
        match self {
            Self::Ollama(server) => server.set_installed_models(names),
            Self::OpenAi(server) => server.set_models(names),
        }
    }

    /// Every chat request's JSON body, oldest first (both APIs name `model` and `messages`
    /// alike).
    pub fn chat_requests(&self) -> Vec<Value> {
        match self {
            Self::Ollama(server) => server.chat_requests(),
            Self::OpenAi(server) => server.chat_requests(),
        }
    }

    pub fn chat_count(&self) -> usize {
        match self {
            Self::Ollama(server) => server.chat_count(),
            Self::OpenAi(server) => server.chat_count(),
        }
    }

    /// Puts a simulated Pi behind the server (see [`crate::model_runner`]).
    pub fn simulate(&self, settings: RunnerSettings) {
        match self {
            Self::Ollama(server) => server.simulate(settings),
            Self::OpenAi(server) => server.simulate(settings),
        }
    }

    /// What each answer cost the simulated Pi.
    pub fn evaluations(&self) -> Vec<Evaluation> {
        match self {
            Self::Ollama(server) => server.evaluations(),
            Self::OpenAi(server) => server.evaluations(),
        }
    }

    /// Waits until `count` streams were dropped by the bot before their end.
    pub async fn wait_for_cancelled(&self, count: usize, within: Duration) -> bool {
        match self {
            Self::Ollama(server) => server.wait_for_cancelled(count, within).await,
            Self::OpenAi(server) => server.wait_for_cancelled(count, within).await,
        }
    }
}
