//! Bindings for `pi-agent:pipeline@0.1.0` and conversions to and from `crate::prompt`.

use crate::prompt;

wasmtime::component::bindgen!({
    path: "../wit/v0.1.0",
    world: "stage-guest",
    // Guest calls are async so that a call can be dropped at its deadline wherever the
    // guest is, even blocked in a WASI call; the host functions themselves never wait.
    exports: { default: async },
});

pub use self::pi_agent::pipeline::host;
pub use self::pi_agent::pipeline::types;
pub use exports::pi_agent::pipeline::formatter::GuestIndices as FormatterIndices;
pub use exports::pi_agent::pipeline::shaper::GuestIndices as ShaperIndices;

shared_conversions!();
chat_context_conversion!();
host_interface!();
stage_exports!("0.1.0");

/// A formatter's prompt in host types: 0.1.0 cannot see the response format, so it passes
/// through unchanged.
fn prompt_from_guest(called_with: &prompt::Prompt, guest: types::Prompt) -> prompt::Prompt {
    let mut next: prompt::Prompt = guest.into();
    next.options.format = called_with.options.format.clone();
    next
}

impl From<&prompt::GenerationOptions> for types::Options {
    fn from(o: &prompt::GenerationOptions) -> Self {
        Self {
            temperature: o.temperature,
            top_p: o.top_p,
            top_k: o.top_k,
            num_predict: o.num_predict,
            num_ctx: o.num_ctx,
            seed: o.seed,
            stop: o.stop.clone(),
        }
    }
}

impl From<types::Options> for prompt::GenerationOptions {
    fn from(o: types::Options) -> Self {
        let types::Options {
            temperature,
            top_p,
            top_k,
            num_predict,
            num_ctx,
            seed,
            stop,
        } = o;
        Self {
            temperature,
            top_p,
            top_k,
            num_predict,
            num_ctx,
            seed,
            stop,
            // 0.1.0 has no structured output: `prompt_from_guest` keeps what the prompt had.
            format: None,
        }
    }
}
