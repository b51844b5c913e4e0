//! Bindings for `pi-agent:pipeline@0.3.0` and conversions to and from `crate::prompt`.
//! What 0.3.0 added: the chat's time zone and the scheduler's run in `chat-context`.

use crate::prompt;

wasmtime::component::bindgen!({
    path: "../wit/v0.3.0",
    world: "stage-guest",
    // As in 0.2.0: guest calls and `kv` are async, so a deadline can drop the guest there.
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
chat_context_conversion!(|ctx| {
    time_zone: ctx.time_zone.name().to_owned(),
    scheduled: ctx.scheduled.map(Into::into),
});
host_interface!();
kv_interface!();
stage_exports!("0.3.0");

impl From<prompt::ScheduledRun> for types::ScheduledRun {
    fn from(run: prompt::ScheduledRun) -> Self {
        let prompt::ScheduledRun {
            task_id,
            due_unix_ms,
            late,
        } = run;
        Self {
            task_id: task_id.0,
            due_unix_ms,
            late,
        }
    }
}
