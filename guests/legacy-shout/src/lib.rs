//! A formatter built against `wit/v0.1.0` with plain `wit-bindgen`, as any user's guest
//! from before 0.2.0 was: it uppercases the user's last message. The tests chain it with
//! guests of the newer versions to prove that old guests keep loading and running unchanged.

wit_bindgen::generate!({
    path: "../../wit/v0.1.0",
    world: "formatter-guest",
});

use exports::pi_agent::pipeline::formatter::Guest;
use pi_agent::pipeline::types::{ChatContext, Outcome, Prompt};

struct Shout;

impl Guest for Shout {
    fn format(_ctx: ChatContext, mut prompt: Prompt) -> Outcome {
        if let Some(last) = prompt.messages.last_mut() {
            last.content = last.content.to_uppercase();
        }
        Outcome::Prompt(prompt)
    }
}

export!(Shout);
