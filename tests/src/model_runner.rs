//! A model runner as Ollama's (and llama-server's) keeps its prompt cache, for the fake
//! model servers: the prompt rendered with Gemma's chat template, about 4 bytes a token, a
//! few cache slots each holding the last prompt it evaluated and the answer it wrote, and a
//! new prompt evaluated only from where it stops matching its slot. How the slot is chosen
//! is each server's own ([`SlotChoice`]).
//!
//! Times are a Raspberry Pi 4's: prompt evaluation at `prompt_rate` tokens/s (~20 for
//! gemma2:2b), generation at `generation_rate` (~2). The fakes report them as the servers
//! would, and wait them out `speedup` times faster.

use std::time::Duration;

use serde_json::Value;

/// Bytes of rendered prompt per token.
pub const BYTES_PER_TOKEN: usize = 4;

/// How the simulated model behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunnerSettings {
    /// Cache slots (`OLLAMA_NUM_PARALLEL`, llama-server's `--parallel`).
    pub slots: usize,
    /// Which slot a prompt goes to.
    pub slot_choice: SlotChoice,
    /// llama-server's `--cache-reuse N`: after the common prefix, runs of at least `N`
    /// tokens the slot holds further on are shifted into place instead of evaluated.
    pub cache_reuse: Option<usize>,
    /// Prompt tokens evaluated per second.
    pub prompt_rate: f64,
    /// Tokens generated per second.
    pub generation_rate: f64,
    /// How much faster than the Pi the fake waits (1: real time).
    pub speedup: f64,
    /// The context a request gets when it does not say (`num_ctx`): llama-server's per
    /// slot (`-c` / `--parallel`), Ollama's default.
    pub context: u32,
}

impl Default for RunnerSettings {
    /// A Pi 4 with gemma2:2b, one slot, 2048 tokens of context, waiting 1000× faster.
    fn default() -> Self {
        Self {
            slots: 1,
            slot_choice: SlotChoice::Longest,
            cache_reuse: None,
            prompt_rate: 20.0,
            generation_rate: 2.0,
            speedup: 1000.0,
            context: 2048,
        }
    }
}

/// How a server picks the cache slot a prompt is evaluated in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SlotChoice {
    /// Ollama's runner: the slot sharing the longest prefix with the prompt
    /// (`findLongestCacheSlot`).
    Longest,
    /// Ollama's runner with `OLLAMA_MULTIUSER_CACHE=1`: that slot only if the prompt
    /// continues all it holds, else the least recently used one, the shared prefix copied in
    /// (`findBestCacheSlot`).
    MultiUser,
    /// llama-server: the slot whose shared prefix is the largest share of the prompt, if
    /// above `--slot-prompt-similarity` (0.1 by default), else the least recently used.
    Similarity(f64),
}

/// What one request cost the simulated model.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The whole prompt, in tokens.
    pub prompt_tokens: u64,
    /// Of which served from a slot's cache.
    pub cached_tokens: u64,
    /// The least the request could have cost: its last message's turn alone.
    pub ideal_tokens: u64,
    /// The context the request had.
    pub context: u32,
    /// Tokens of the answer.
    pub answer_tokens: u64,
}

impl Evaluation {
    pub fn evaluated_tokens(&self) -> u64 {
        self.prompt_tokens - self.cached_tokens
    }

    /// The prompt (and answer) did not fit the context: a real server would have cut it.
    pub fn overflowed(&self) -> bool {
        self.prompt_tokens + self.answer_tokens > u64::from(self.context)
    }
}

/// The simulated model with its cache slots.
#[derive(Debug)]
pub struct ModelRunner {
    pub settings: RunnerSettings,
    /// Each slot's rendered text (the last prompt and the answer after it) and when it was
    /// last used (a request count).
    slots: Vec<(String, usize)>,
    evaluations: Vec<Evaluation>,
}

impl ModelRunner {
    pub fn new(settings: RunnerSettings) -> Self {
        Self {
            slots: vec![(String::new(), 0); settings.slots.max(1)],
            settings,
            evaluations: Vec::new(),
        }
    }

    /// Evaluates a request's `messages` (OpenAI/Ollama JSON) in the slot sharing the longest
    /// prefix with them, with `context` tokens (`None`: the default), and writes `answer`.
    pub fn run(&mut self, messages: &Value, context: Option<u32>, answer: &str) -> Evaluation {
        let rendered = render(messages);
        let (slot, shared) = self.choose_slot(&rendered);
        let prompt_tokens = tokens(rendered.len());
        let shifted = match self.settings.cache_reuse {
            Some(chunk) => reusable(&self.slots[slot].0, &rendered, shared, chunk),
            None => 0,
        };
        // A prompt fully in the cache still has its last token evaluated (to sample from).
        let cached_tokens =
            (((shared + shifted) / BYTES_PER_TOKEN) as u64).min(prompt_tokens.saturating_sub(1));
        let last_turn = messages
            .as_array()
            .and_then(|all| all.last())
            .map_or(0, |m| render_message(m, true).len());
        let evaluation = Evaluation {
            prompt_tokens,
            cached_tokens,
            ideal_tokens: tokens(last_turn + END_OF_TURN.len()),
            context: context.unwrap_or(self.settings.context),
            answer_tokens: tokens(answer.len()),
        };
        self.slots[slot] = (rendered + answer, self.evaluations.len() + 1);
        self.evaluations.push(evaluation.clone());
        evaluation
    }

    /// The slot a prompt is evaluated in, and how many of its bytes that slot holds.
    fn choose_slot(&self, rendered: &str) -> (usize, usize) {
        let shared: Vec<usize> = self
            .slots
            .iter()
            .map(|(cached, _)| common_prefix(cached, rendered))
            .collect();
        // The first of the longest, as the servers' loops pick it.
        let longest =
            (0..shared.len()).fold(0, |best, i| if shared[i] > shared[best] { i } else { best });
        let oldest = (0..self.slots.len())
            .min_by_key(|&i| self.slots[i].1)
            .expect("at least one slot");
        match self.settings.slot_choice {
            SlotChoice::Longest => (longest, shared[longest]),
            SlotChoice::MultiUser if shared[longest] == self.slots[longest].0.len() => {
                (longest, shared[longest])
            }
            // The shared prefix is copied into the slot taken (`CopyPrefix`).
            SlotChoice::MultiUser => (oldest, shared[longest]),
            SlotChoice::Similarity(threshold) => {
                let similarity = shared[longest] as f64 / rendered.len().max(1) as f64;
                if similarity > threshold {
                    (longest, shared[longest])
                } else {
                    (oldest, shared[oldest])
                }
            }
        }
    }

    /// Every request so far, oldest first.
    pub fn evaluations(&self) -> &[Evaluation] {
        &self.evaluations
    }

    /// How long the Pi takes to evaluate `evaluation`'s uncached prompt tokens.
    pub fn prompt_time(&self, evaluation: &Evaluation) -> Duration {
        Duration::from_secs_f64(evaluation.evaluated_tokens() as f64 / self.settings.prompt_rate)
    }

    /// How long the Pi takes to write `count` tokens.
    pub fn generation_time(&self, count: u64) -> Duration {
        Duration::from_secs_f64(count as f64 / self.settings.generation_rate)
    }

    /// What the fake waits for `pi_time`.
    pub fn scaled(&self, pi_time: Duration) -> Duration {
        pi_time.div_f64(self.settings.speedup)
    }
}

const END_OF_TURN: &str = "<end_of_turn>\n";

/// Tokens `bytes` bytes of rendered text take.
fn tokens(bytes: usize) -> u64 {
    bytes.div_ceil(BYTES_PER_TOKEN) as u64
}

/// Gemma 2's chat template as Ollama ships it: a system message is a user turn; the prompt
/// ends by opening the model's turn.
pub fn render(messages: &Value) -> String {
    let all = messages.as_array().map(Vec::as_slice).unwrap_or_default();
    let mut text = String::from("<bos>");
    for (i, message) in all.iter().enumerate() {
        text.push_str(&render_message(message, i + 1 == all.len()));
    }
    text
}

fn render_message(message: &Value, last: bool) -> String {
    let content = message["content"].as_str().unwrap_or_default();
    match message["role"].as_str() {
        Some("assistant") if last => format!("<start_of_turn>model\n{content}"),
        Some("assistant") => format!("<start_of_turn>model\n{content}{END_OF_TURN}"),
        _ if last => format!("<start_of_turn>user\n{content}{END_OF_TURN}<start_of_turn>model\n"),
        _ => format!("<start_of_turn>user\n{content}{END_OF_TURN}"),
    }
}

/// Bytes of `prompt` past its first `shared` that `cached` holds further on in runs of at
/// least `chunk` tokens, found in order (llama-server's `--cache-reuse`: the runs are
/// shifted to their new positions, only the bytes between them are evaluated).
fn reusable(cached: &str, prompt: &str, shared: usize, chunk: usize) -> usize {
    let (cached, prompt) = (cached.as_bytes(), prompt.as_bytes());
    let run = chunk * BYTES_PER_TOKEN;
    let (mut i, mut j, mut reused) = (shared, shared, 0);
    while i + run <= prompt.len() {
        let wanted = &prompt[i..i + run];
        match cached[j.min(cached.len())..]
            .windows(run)
            .position(|w| w == wanted)
        {
            Some(at) => {
                let start = j + at;
                let length = cached[start..]
                    .iter()
                    .zip(&prompt[i..])
                    .take_while(|(a, b)| a == b)
                    .count();
                reused += length;
                i += length;
                j = start + length;
            }
            None => i += BYTES_PER_TOKEN,
        }
    }
    reused
}

/// Bytes `a` and `b` share at their start.
fn common_prefix(a: &str, b: &str) -> usize {
    a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn one_slot() -> ModelRunner {
        ModelRunner::new(RunnerSettings::default())
    }

    #[test]
    fn a_continued_conversation_reads_only_its_new_turn() {
        let mut runner = one_slot();
        let first = json!([{"role": "user", "content": "What is a Raspberry Pi?"}]);
        let answer = "A small computer, about the size of a credit card.";
        let evaluation = runner.run(&first, None, answer);
        assert_eq!(evaluation.cached_tokens, 0);
        assert_eq!(evaluation.prompt_tokens, tokens(render(&first).len()));
        let second = json!([
            {"role": "user", "content": "What is a Raspberry Pi?"},
            {"role": "assistant", "content": answer},
            {"role": "user", "content": "How much does it cost?"},
        ]);
        let evaluation = runner.run(&second, None, "About 50 euros.");
        // The answer's end-of-turn marker and the new turn are all that is read.
        let new = END_OF_TURN.len() + render_message(&second[2], true).len();
        assert!(
            evaluation.evaluated_tokens() <= tokens(new) + 1,
            "{evaluation:?}"
        );
        assert_eq!(evaluation.ideal_tokens, tokens(new));
    }

    #[test]
    fn a_prompt_whose_start_changed_is_read_again() {
        let mut runner = one_slot();
        let a = json!([{"role": "user", "content": "one"}, {"role": "assistant", "content": "two"}, {"role": "user", "content": "three"}]);
        runner.run(&a, None, "four");
        let slid = json!([{"role": "user", "content": "three"}, {"role": "assistant", "content": "four"}, {"role": "user", "content": "five"}]);
        let evaluation = runner.run(&slid, None, "six");
        // Only the template's opening is shared.
        let opening = "<bos><start_of_turn>user\n".len() / BYTES_PER_TOKEN;
        assert_eq!(evaluation.cached_tokens, opening as u64);
    }

    #[test]
    fn a_second_chat_takes_the_first_ones_slot_unless_the_multi_user_cache_is_on() {
        let settings = RunnerSettings {
            slots: 2,
            ..RunnerSettings::default()
        };
        let system = "You are a concise assistant. ".repeat(8);
        let a = json!([{"role": "user", "content": format!("{system}Chat A asks about Berlin.")}]);
        let b = json!([{"role": "user", "content": format!("{system}Chat B wants pancakes.")}]);
        let a2 = json!([
            {"role": "user", "content": format!("{system}Chat A asks about Berlin.")},
            {"role": "assistant", "content": "Sunny."},
            {"role": "user", "content": "And tomorrow?"},
        ]);
        let mut a2_costs = Vec::new();
        for slot_choice in [SlotChoice::Longest, SlotChoice::MultiUser] {
            let mut runner = ModelRunner::new(RunnerSettings {
                slot_choice,
                ..settings
            });
            runner.run(&a, None, "Sunny.");
            // B shares the system prompt with A: without the multi-user cache it takes A's
            // slot, the longest match (every prompt shares at least the template's opening
            // with a used slot, so a second slot stays empty); with it, the other slot, the
            // system prompt copied over.
            let b_cost = runner.run(&b, None, "Flour.");
            assert!(b_cost.cached_tokens > 50, "{b_cost:?}");
            a2_costs.push(runner.run(&a2, None, "Rain."));
        }
        let [shared_slot, own_slot] = &a2_costs[..] else {
            unreachable!()
        };
        assert!(
            shared_slot.evaluated_tokens() > shared_slot.ideal_tokens + 10,
            "{shared_slot:?}"
        );
        assert!(
            own_slot.evaluated_tokens() <= own_slot.ideal_tokens + 1,
            "{own_slot:?}"
        );
    }

    #[test]
    fn llama_server_reuses_a_slot_above_the_similarity_threshold_only() {
        let mut runner = ModelRunner::new(RunnerSettings {
            slots: 2,
            slot_choice: SlotChoice::Similarity(0.5),
            ..RunnerSettings::default()
        });
        let a = json!([{"role": "user", "content": "A question about the Pi's fan curve."}]);
        runner.run(&a, None, "It spins up at 60 °C.");
        // Shares only the template's opening with slot 0: goes to the unused slot 1.
        let b = json!([{"role": "user", "content": "Something else entirely, and longer."}]);
        assert_eq!(runner.run(&b, None, "Yes.").cached_tokens, 0);
        let a2 = json!([
            {"role": "user", "content": "A question about the Pi's fan curve."},
            {"role": "assistant", "content": "It spins up at 60 °C."},
            {"role": "user", "content": "And below?"},
        ]);
        let evaluation = runner.run(&a2, None, "It stays off.");
        assert!(
            evaluation.evaluated_tokens() <= evaluation.ideal_tokens + 1,
            "{evaluation:?}"
        );
    }

    #[test]
    fn cache_reuse_shifts_what_a_cut_kept() {
        let turn = |i: usize| {
            [
                json!({"role": "user", "content": format!("Question {i}: {}", "x".repeat(200))}),
                json!({"role": "assistant", "content": format!("Answer {i}: {}", "y".repeat(300))}),
            ]
        };
        let window = |from: usize, to: usize| {
            let mut messages: Vec<Value> = (from..to).flat_map(turn).collect();
            messages.push(turn(to)[0].clone());
            Value::from(messages)
        };
        for reuse in [None, Some(64)] {
            let mut runner = ModelRunner::new(RunnerSettings {
                cache_reuse: reuse,
                ..RunnerSettings::default()
            });
            let answer = turn(6)[1]["content"].as_str().unwrap().to_owned();
            runner.run(&window(0, 6), None, &answer);
            // The cut keeps turns 4 to 6: their text is in the cache, at other positions.
            let cut = runner.run(&window(4, 7), None, "…");
            if reuse.is_none() {
                assert!(cut.evaluated_tokens() > 300, "{cut:?}");
            } else {
                assert!(cut.evaluated_tokens() <= cut.ideal_tokens + 20, "{cut:?}");
            }
        }
    }

    #[test]
    fn times_are_the_pis() {
        let mut runner = one_slot();
        let prompt = json!([{"role": "user", "content": "x".repeat(400)}]);
        let evaluation = runner.run(&prompt, Some(4096), "y".repeat(40).as_str());
        assert_eq!(evaluation.context, 4096);
        assert_eq!(
            runner.prompt_time(&evaluation),
            Duration::from_secs_f64(evaluation.prompt_tokens as f64 / 20.0)
        );
        assert_eq!(runner.generation_time(10), Duration::from_secs(5));
        assert_eq!(
            runner.scaled(Duration::from_secs(5)),
            Duration::from_millis(5)
        );
        assert!(!evaluation.overflowed());
        assert!(runner.run(&prompt, Some(100), "").overflowed());
    }
}
