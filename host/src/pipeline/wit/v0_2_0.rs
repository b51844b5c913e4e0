//! Bindings for `pi-agent:pipeline@0.2.0` and conversions to and from `crate::prompt`.
//! What 0.2.0 added: the `kv` import and structured output (`options.format`).

use crate::prompt;

wasmtime::component::bindgen!({
    path: "../wit/v0.2.0",
    world: "stage-guest",
    // As in 0.1.0; `kv` is async too, because the database may wait (for a lock, a disk)
    // and the call's deadline must still be able to drop the guest there.
    exports: { default: async },
    imports: {
        "pi-agent:pipeline/kv.get": async,
        "pi-agent:pipeline/kv.set": async,
        "pi-agent:pipeline/kv.delete": async,
        "pi-agent:pipeline/kv.keys": async,
    },
});

pub use self::pi_agent::pipeline::host;
pub use self::pi_agent::pipeline::kv;
pub use self::pi_agent::pipeline::types;
pub use exports::pi_agent::pipeline::formatter::GuestIndices as FormatterIndices;
pub use exports::pi_agent::pipeline::shaper::GuestIndices as ShaperIndices;

shared_conversions!();

impl From<&prompt::ResponseFormat> for types::ResponseFormat {
    fn from(format: &prompt::ResponseFormat) -> Self {
        match format {
            prompt::ResponseFormat::Json => Self::Json,
            prompt::ResponseFormat::Schema(schema) => Self::Schema(schema.clone()),
        }
    }
}

impl From<types::ResponseFormat> for prompt::ResponseFormat {
    fn from(format: types::ResponseFormat) -> Self {
        match format {
            types::ResponseFormat::Json => Self::Json,
            types::ResponseFormat::Schema(schema) => Self::Schema(schema),
        }
    }
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
            format: o.format.as_ref().map(Into::into),
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
            format,
        } = o;
        Self {
            temperature,
            top_p,
            top_k,
            num_predict,
            num_ctx,
            seed,
            stop,
            format: format.map(Into::into),
        }
    }
}
