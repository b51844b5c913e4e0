//! What a model server's prompt cache holds, as far as its client can tell — for servers
//! that do not report how many prompt tokens they took from it (Ollama).
//!
//! Ollama's runner keeps the last prompt it evaluated and the answer it generated, and
//! evaluates a new prompt only from the first token where the two differ (one cache slot:
//! Ollama's `OLLAMA_NUM_PARALLEL=1`, a Pi's default). The client sees both, so it remembers
//! them and estimates the cached part of the next prompt as the share of its text that the
//! two have in common, applied to the server's own count of the prompt's tokens.

use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use futures_util::stream;

use super::{ReplyEvent, ReplyStream};
use crate::prompt::Prompt;

/// The last prompt and answer one server saw from this client.
#[derive(Debug, Default)]
pub struct PromptCache {
    last: Mutex<String>,
}

impl PromptCache {
    /// `answer`, the server's reply to `prompt`, with the cached part of the prompt estimated
    /// on its `Done` unless the server counted it; what the server holds afterwards (the
    /// prompt and what was generated of the answer) is remembered when the stream ends or is
    /// dropped.
    pub fn track(self: &Arc<Self>, prompt: &Prompt, answer: ReplyStream) -> ReplyStream {
        let rendered = render(prompt);
        let shared = common_prefix(&self.lock(), &rendered);
        let tracked = Tracked {
            cache: Arc::clone(self),
            answer_text: String::new(),
            shared,
            rendered,
        };
        stream::unfold((answer, tracked), |(mut answer, mut tracked)| async move {
            let mut event = answer.next().await?;
            match &mut event {
                Ok(ReplyEvent::Delta(text)) => tracked.answer_text.push_str(text),
                Ok(ReplyEvent::Done(stats)) if stats.prompt_cached.is_none() => {
                    stats.prompt_cached = Some(tracked.estimate(stats.prompt_eval_count));
                    stats.prompt_cached_estimated = true;
                }
                _ => {}
            }
            Some((event, (answer, tracked)))
        })
        .boxed()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, String> {
        self.last.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One answer on its way: the prompt as the cache compares it, and the answer so far.
struct Tracked {
    cache: Arc<PromptCache>,
    rendered: String,
    /// Bytes at the start of `rendered` that the server held before this request.
    shared: usize,
    answer_text: String,
}

impl Tracked {
    /// The prompt's `tokens` in the same share as its shared text.
    fn estimate(&self, tokens: u64) -> u64 {
        let share = self.shared as f64 / self.rendered.len().max(1) as f64;
        (tokens as f64 * share).floor() as u64
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let mut last = self.cache.lock();
        last.clear();
        last.push_str(&self.rendered);
        push_message(&mut last, "assistant", &self.answer_text);
    }
}

/// The prompt as a string that two prompts share a prefix of exactly when the server's
/// rendering of them (its chat template) does: the model, then each message's role and text.
fn render(prompt: &Prompt) -> String {
    let mut rendered = prompt.model.clone();
    for message in &prompt.messages {
        push_message(&mut rendered, &message.role.to_string(), &message.content);
    }
    rendered
}

fn push_message(rendered: &mut String, role: &str, content: &str) {
    // Separators no chat text contains, so a role never runs into the text before it.
    rendered.push('\u{1e}');
    rendered.push_str(role);
    rendered.push('\u{1f}');
    rendered.push_str(content);
}

/// Bytes `a` and `b` have in common at their start, at a character boundary.
fn common_prefix(a: &str, b: &str) -> usize {
    a.char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map_or(a.len().min(b.len()), |((at, _), _)| at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::{GenerationStats, LlmError};
    use crate::prompt::{ChatMessage, GenerationOptions, Role};

    fn prompt(messages: &[(Role, &str)]) -> Prompt {
        Prompt {
            model: "gemma2:2b".into(),
            messages: messages
                .iter()
                .map(|(role, text)| ChatMessage::new(*role, *text))
                .collect(),
            options: GenerationOptions::default(),
        }
    }

    fn answer(text: &str, prompt_tokens: u64) -> ReplyStream {
        let stats = GenerationStats {
            prompt_eval_count: prompt_tokens,
            ..GenerationStats::default()
        };
        stream::iter([
            Ok(ReplyEvent::Delta(text.to_owned())),
            Ok(ReplyEvent::Done(stats)),
        ])
        .boxed()
    }

    async fn cached(cache: &Arc<PromptCache>, prompt: &Prompt, reply: &str, tokens: u64) -> u64 {
        let events: Vec<Result<ReplyEvent, LlmError>> =
            cache.track(prompt, answer(reply, tokens)).collect().await;
        match events.last() {
            Some(Ok(ReplyEvent::Done(stats))) => {
                assert!(stats.prompt_cached_estimated);
                stats.prompt_cached.unwrap()
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_prompt_that_continues_the_last_one_is_mostly_cached() {
        let cache = Arc::new(PromptCache::default());
        let first = prompt(&[(Role::User, "What is a Raspberry Pi?")]);
        assert_eq!(cached(&cache, &first, "A small computer.", 100).await, 0);
        let second = prompt(&[
            (Role::User, "What is a Raspberry Pi?"),
            (Role::Assistant, "A small computer."),
            (Role::User, "How much?"),
        ]);
        let rendered = render(&second);
        let shared = rendered.len() - "\u{1e}user\u{1f}How much?".len();
        let expected = (100.0 * shared as f64 / rendered.len() as f64).floor() as u64;
        assert_eq!(
            cached(&cache, &second, "About 50 euros.", 100).await,
            expected
        );
        assert!(expected > 75, "{expected}");
        // Another model's prompt shares nothing with it.
        let mut other = second.clone();
        other.model = "qwen2.5:1.5b".into();
        assert_eq!(cached(&cache, &other, "…", 100).await, 0);
    }

    #[tokio::test]
    async fn a_stopped_answer_is_remembered_as_far_as_it_went() {
        let cache = Arc::new(PromptCache::default());
        let first = prompt(&[(Role::User, "Tell me a story")]);
        let mut stream = cache.track(&first, answer("Once upon", 10));
        stream.next().await; // the first delta, then the user stops it
        drop(stream);
        assert!(cache.lock().ends_with("\u{1e}assistant\u{1f}Once upon"));
    }

    #[tokio::test]
    async fn a_count_from_the_server_is_kept() {
        let cache = Arc::new(PromptCache::default());
        let stats = GenerationStats {
            prompt_eval_count: 50,
            prompt_cached: Some(42),
            ..GenerationStats::default()
        };
        let events: Vec<_> = cache
            .track(
                &prompt(&[(Role::User, "hi")]),
                stream::iter([Ok(ReplyEvent::Done(stats.clone()))]).boxed(),
            )
            .collect()
            .await;
        assert_eq!(events, vec![Ok(ReplyEvent::Done(stats))]);
    }

    #[test]
    fn the_common_prefix_ends_at_a_character_boundary() {
        assert_eq!(common_prefix("grüße", "grüne"), "grü".len());
        assert_eq!(common_prefix("abc", "abcdef"), 3);
        assert_eq!(common_prefix("", "x"), 0);
    }
}
