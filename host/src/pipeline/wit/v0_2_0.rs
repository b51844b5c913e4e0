//! Bindings for `pi-agent:pipeline@0.2.0` (frozen) and conversions to and from
//! `crate::prompt`. What 0.2.0 added: the `kv` import and structured output
//! (`options.format`).

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
structured_output_conversions!();
// 0.2.0 has neither the time zone nor the scheduler's run.
chat_context_conversion!();
host_interface!();
kv_interface!();
stage_exports!("0.2.0");
