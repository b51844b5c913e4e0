//! What fits a model's context: how long the context is (asked of the server once per
//! model), how many tokens a text takes (learned from the server's own counts), what the
//! pipeline adds to a prompt, and what stays free for the answer.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use super::window::Budget;
use crate::llm::{GenerationStats, LlmBackend};
use crate::prompt::ChatMessage;

/// Bytes per token until the server's counts tell better. Low on purpose (English text runs
/// near 4 UTF-8 bytes a token with Gemma's tokenizer, other scripts about the same in bytes),
/// so that a first estimate errs towards fitting.
const DEFAULT_BYTES_PER_TOKEN: f64 = 3.0;
/// What a message costs beyond its text: its chat template's markers (Gemma's
/// `<start_of_turn>user\n` … `<end_of_turn>\n`, five tokens).
const TOKENS_PER_MESSAGE: u32 = 5;
/// Estimates are this much above the learned average: a text denser than usual (code,
/// numbers, rare words) must fit too. Every token of margin is a token of history less.
const MARGIN: f64 = 1.05;
/// How much of the learned figure each new count replaces.
const LEARNING_RATE: f64 = 0.3;
/// Counts of prompts shorter than this teach little (the template's own tokens dominate).
const MIN_BYTES_TO_LEARN: usize = 200;
/// The answer's room when `OLLAMA_NUM_PREDICT` does not bound it: this share of the context.
const REPLY_SHARE: u32 = 8;
/// The context assumed when the server cannot be asked and none was configured.
const FALLBACK_CONTEXT: u32 = 2048;
/// How many of the pipeline's recent additions plan the next window (the largest counts).
const OVERHEADS_KEPT: usize = 16;

/// Context figures per model, shared by the chat's workers.
pub struct Contexts {
    /// `OLLAMA_NUM_CTX`: the context asked for (`None`: the model's own).
    requested: Option<u32>,
    /// `OLLAMA_NUM_PREDICT`: the longest answer, if bounded.
    num_predict: Option<i32>,
    /// `HISTORY_MESSAGES`.
    max_messages: usize,
    models: Mutex<HashMap<String, Model>>,
    /// Tokens the pipeline's formatters added to recent prompts (system prompt, data).
    overheads: Mutex<VecDeque<u32>>,
}

/// What is known of one model.
#[derive(Default)]
struct Model {
    length: Option<u32>,
    /// UTF-8 bytes per token, learned from the server's counts.
    bytes_per_token: Option<f64>,
}

/// The figures one prompt is planned with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelBudget {
    /// Tokens of context a request gets (sent as `num_ctx`).
    pub context: u32,
    /// What the prompt may hold: the context less the answer's room.
    pub window: Budget,
    /// Tokens the pipeline is expected to add to the prompt.
    pub overhead: u32,
    bytes_per_token: f64,
}

impl ModelBudget {
    /// Tokens `message` takes in a prompt (an estimate that errs high).
    pub fn message_tokens(&self, message: &ChatMessage) -> u32 {
        let text = (message.content.len() as f64 / self.bytes_per_token * MARGIN).ceil();
        text as u32 + TOKENS_PER_MESSAGE
    }

    /// Tokens `messages` take in a prompt, with the turn that asks for the answer.
    pub fn prompt_tokens(&self, messages: &[ChatMessage]) -> u32 {
        messages.iter().map(|m| self.message_tokens(m)).sum::<u32>() + TOKENS_PER_MESSAGE
    }
}

impl Contexts {
    pub fn new(requested: Option<u32>, num_predict: Option<i32>, max_messages: usize) -> Self {
        Self {
            requested,
            num_predict,
            max_messages,
            models: Mutex::default(),
            overheads: Mutex::default(),
        }
    }

    /// The budget of a prompt for `model`; its context is asked of `llm` the first time.
    pub async fn budget(&self, llm: &dyn LlmBackend, model: &str) -> ModelBudget {
        let known = self.model(model, |m| m.length);
        let context = match known {
            Some(length) => length,
            None => match llm.context_length(model, self.requested).await {
                Ok(length) => {
                    tracing::info!(model, context = length, "the model's context, in tokens");
                    self.model(model, |m| *m.length.insert(length))
                }
                Err(e) => {
                    let assumed = self.requested.unwrap_or(FALLBACK_CONTEXT);
                    tracing::warn!(
                        "cannot ask for {model}'s context, assuming {assumed} tokens: {e}"
                    );
                    assumed
                }
            },
        };
        let reply = match self.num_predict {
            Some(n) if n > 0 => (n as u32).min(context / 2),
            _ => context / REPLY_SHARE,
        };
        let overhead = self.lock_overheads().iter().copied().max().unwrap_or(0);
        ModelBudget {
            context,
            window: Budget {
                tokens: context - reply,
                messages: self.max_messages,
            },
            overhead,
            bytes_per_token: self
                .model(model, |m| m.bytes_per_token)
                .unwrap_or(DEFAULT_BYTES_PER_TOKEN),
        }
    }

    /// Learns from an answer: the server's count of `messages`' tokens, and what the
    /// pipeline added to the prompt (`added` tokens, as estimated).
    pub fn learn(&self, model: &str, messages: &[ChatMessage], stats: &GenerationStats) {
        let bytes: usize = messages.iter().map(|m| m.content.len()).sum();
        let template = TOKENS_PER_MESSAGE * (messages.len() as u32 + 1);
        let text_tokens = stats.prompt_eval_count.saturating_sub(u64::from(template));
        if bytes < MIN_BYTES_TO_LEARN || text_tokens == 0 {
            return;
        }
        let measured = bytes as f64 / text_tokens as f64;
        self.model(model, |m| {
            let learned = match m.bytes_per_token {
                Some(known) => known + LEARNING_RATE * (measured - known),
                None => measured,
            };
            m.bytes_per_token = Some(learned);
        });
    }

    /// The pipeline's formatters added `tokens` to the last prompt.
    pub fn added_by_pipeline(&self, tokens: u32) {
        let mut overheads = self.lock_overheads();
        if overheads.len() == OVERHEADS_KEPT {
            overheads.pop_front();
        }
        overheads.push_back(tokens);
    }

    fn model<T>(&self, name: &str, f: impl FnOnce(&mut Model) -> T) -> T {
        let mut models = self.models.lock().unwrap_or_else(|e| e.into_inner());
        f(models.entry(name.to_owned()).or_default())
    }

    fn lock_overheads(&self) -> std::sync::MutexGuard<'_, VecDeque<u32>> {
        self.overheads.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::llm::scripted::ScriptedLlm;
    use crate::prompt::Role;

    /// A server whose models are `own` tokens long (`None`: it cannot be asked), and which
    /// gives a request what it asks for, as Ollama does.
    fn server(own: Option<u32>) -> ScriptedLlm {
        let server = ScriptedLlm::new("a server", Duration::ZERO);
        server.set_context(own);
        server
    }

    #[tokio::test]
    async fn the_window_leaves_room_for_the_answer() {
        let contexts = Contexts::new(Some(2048), None, 200);
        let budget = contexts.budget(&server(None), "gemma2:2b").await;
        assert_eq!(budget.context, 2048);
        assert_eq!(budget.window.tokens, 2048 - 256);
        let bounded = Contexts::new(None, Some(400), 20);
        let budget = bounded.budget(&server(Some(8192)), "gemma2:2b").await;
        assert_eq!((budget.context, budget.window.tokens), (8192, 8192 - 400));
        assert_eq!(budget.window.messages, 20);
    }

    #[tokio::test]
    async fn a_server_that_cannot_be_asked_is_asked_again_next_time() {
        let contexts = Contexts::new(None, None, 200);
        let down = server(None);
        assert_eq!(contexts.budget(&down, "m").await.context, FALLBACK_CONTEXT);
        assert_eq!(
            contexts.budget(&server(Some(4096)), "m").await.context,
            4096
        );
        // Known now: not asked again.
        assert_eq!(contexts.budget(&down, "m").await.context, 4096);
    }

    #[tokio::test]
    async fn token_estimates_learn_from_the_servers_counts() {
        let contexts = Contexts::new(Some(2048), None, 200);
        let server = server(Some(2048));
        let message = ChatMessage::new(Role::User, "x".repeat(1000));
        let before = contexts.budget(&server, "m").await.message_tokens(&message);
        assert_eq!(
            before,
            (1000.0 / 3.0 * MARGIN).ceil() as u32 + TOKENS_PER_MESSAGE
        );
        // The server counted 250 tokens for 1000 bytes (+ 10 for the template).
        let stats = GenerationStats {
            prompt_eval_count: 260,
            ..GenerationStats::default()
        };
        contexts.learn("m", std::slice::from_ref(&message), &stats);
        let after = contexts.budget(&server, "m").await.message_tokens(&message);
        assert_eq!(after, (250.0 * MARGIN).ceil() as u32 + TOKENS_PER_MESSAGE);
        // Another model learned nothing.
        let other = contexts
            .budget(&server, "other")
            .await
            .message_tokens(&message);
        assert_eq!(other, before);
    }

    #[tokio::test]
    async fn the_largest_recent_addition_of_the_pipeline_is_planned_for() {
        let contexts = Contexts::new(Some(2048), None, 200);
        let server = server(Some(2048));
        assert_eq!(contexts.budget(&server, "m").await.overhead, 0);
        for added in [40, 300, 40] {
            contexts.added_by_pipeline(added);
        }
        assert_eq!(contexts.budget(&server, "m").await.overhead, 300);
        for _ in 0..OVERHEADS_KEPT {
            contexts.added_by_pipeline(40);
        }
        assert_eq!(contexts.budget(&server, "m").await.overhead, 40);
    }
}
