//! A formatter built against `wit/v0.2.0` with plain `wit-bindgen`, as any user's guest
//! from before 0.3.0 was: it counts the messages it has seen in its `kv` store and appends
//! the count to the user's last message (`hello (#3)`), or why it could not count
//! (`hello (uncounted: not-granted)`). The tests chain it with guests of the other versions
//! to prove that 0.2.0 guests, and their store, keep working unchanged.

wit_bindgen::generate!({
    path: "../../wit/v0.2.0",
    world: "formatter-guest",
});

use exports::pi_agent::pipeline::formatter::Guest;
use pi_agent::pipeline::kv::{self, KvError};
use pi_agent::pipeline::types::{ChatContext, Outcome, Prompt};

const COUNT_KEY: &str = "count";

struct Count;

/// The number of messages seen, this one included, after storing it.
fn count() -> Result<u64, KvError> {
    // A value that does not parse (never written by this guest) starts the count again.
    let seen = kv::get(COUNT_KEY)?
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    let now = seen + 1;
    kv::set(COUNT_KEY, &now.to_string())?;
    Ok(now)
}

impl Guest for Count {
    fn format(_ctx: ChatContext, mut prompt: Prompt) -> Outcome {
        let note = match count() {
            Ok(n) => format!("#{n}"),
            Err(KvError::NotGranted) => "uncounted: not-granted".into(),
            Err(KvError::QuotaExceeded(quota)) => format!("uncounted: quota of {quota} bytes"),
            Err(KvError::Unavailable(why)) => format!("uncounted: {why}"),
        };
        if let Some(last) = prompt.messages.last_mut() {
            last.content = format!("{} ({note})", last.content);
        }
        Outcome::Prompt(prompt)
    }
}

export!(Count);
