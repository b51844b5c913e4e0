//! The sandboxed prompt pipeline: user-replaceable WebAssembly guests that run before the
//! LLM (formatters) and on its reply (shapers). Independent of Telegram and Ollama.
//!
//! - `manifest` reads `pipeline.toml`; `stage` loads one guest and calls it;
//! - `engine` holds the shared wasmtime engine, `sandbox` what a guest may reach,
//!   `limits` its caps, `error` how a load or a call fails, `cache` compiled components
//!   on disk, `wit` the bindings per WIT version;
//! - `reload` swaps the pipeline while the bot runs, on a change `watch` reports, on
//!   SIGHUP or `/reload`.
//!
//! A `Pipeline` is immutable once loaded; a reload builds a new one and swaps it whole.
//!
//! Guest calls are async (wasmtime's `call_async` and WASI's async bindings) and bounded by
//! a wall-clock deadline per call: a `tokio::time::timeout` drops a guest that waits in a
//! host call, and the epoch ticker makes running guest code yield every tick and stop past
//! the deadline. So a guest that sleeps, polls or loops costs its own message a timeout —
//! never a thread, a worker or another chat's answer — and callers need no
//! `spawn_blocking`. The slack is one epoch tick (10 ms) plus the longest single host
//! call, which here never waits.

mod cache;
mod engine;
mod error;
mod grants;
mod http;
mod kv;
mod limits;
mod manifest;
mod reload;
mod sandbox;
mod stage;
mod watch;
mod wit;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

pub use cache::{
    CompileCache, CompileSource, ContentHash, PRECOMPILED_DIR, Precompiled, compile_into,
    precompile,
};
pub use engine::{Arch, GuestEngine, MEMORY_SLOTS, native_compiler};
pub use error::{FailureKind, LoadError, StageError};
pub use grants::Grants;
pub use http::{MAX_RESPONSE_BODY, REQUESTS_PER_CALL};
pub use kv::KvDatabase;
pub use limits::{MAX_GUEST_MEMORY, StageLimits};
pub use manifest::{Manifest, StageSpec};
pub use reload::{ReloadReport, Reloader, SharedPipeline};
pub use sandbox::LOG_LINES_PER_CALL;
pub use stage::{Outcome, Role, StageInfo, WitVersion};
pub use watch::PipelineWatch;

use crate::prompt::{ChatContext, Prompt, Reply};
use stage::Stage;

/// What the formatters decided for one message.
#[derive(Debug, Clone, PartialEq)]
pub enum FormatOutcome {
    /// Ask the LLM this.
    Prompt(Prompt),
    /// Answer with this; the LLM is not asked. The shapers still run on it.
    Reply { prompt: Prompt, reply: Reply },
    /// Refused by `stage`; `reason` is for the user.
    Rejected { stage: String, reason: String },
}

/// A loaded, validated pipeline.
pub struct Pipeline {
    engine: Arc<GuestEngine>,
    manifest: Manifest,
    stages: Vec<Stage>,
}

impl Pipeline {
    /// Loads every stage of `manifest` (compiling through `cache`, off the async runtime)
    /// and smoke-tests each. Any failure rejects the whole pipeline.
    pub async fn load(
        engine: Arc<GuestEngine>,
        manifest: Manifest,
        cache: &CompileCache,
        kv_database: &KvDatabase,
    ) -> Result<Self, LoadError> {
        let mut stages = Vec::with_capacity(manifest.stages.len());
        for spec in &manifest.stages {
            stages.push(Stage::load(&engine, cache, spec, kv_database).await?);
        }
        Ok(Self {
            engine,
            manifest,
            stages,
        })
    }

    /// Reads the manifest at `path` and loads it.
    pub async fn load_file(
        engine: Arc<GuestEngine>,
        path: &Path,
        defaults: &StageLimits,
        cache: &CompileCache,
        kv_database: &KvDatabase,
    ) -> Result<Self, LoadError> {
        let manifest = Manifest::load(path, defaults)?;
        Self::load(engine, manifest, cache, kv_database).await
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn stages(&self) -> impl ExactSizeIterator<Item = &StageInfo> {
        self.stages.iter().map(Stage::info)
    }

    /// Runs the formatters in order. A direct reply or a rejection ends the chain.
    pub async fn format(
        &self,
        ctx: &ChatContext,
        prompt: Prompt,
    ) -> Result<FormatOutcome, StageError> {
        let mut prompt = prompt;
        for stage in self.stages.iter().filter(|s| s.role().formats()) {
            let started = Instant::now();
            let outcome = stage.format(&self.engine, ctx, &prompt).await;
            record_call(stage, Role::Formatter, started, &outcome);
            match outcome? {
                Outcome::Prompt(next) => prompt = next,
                Outcome::Reply(reply) => return Ok(FormatOutcome::Reply { prompt, reply }),
                Outcome::Reject(reason) => {
                    return Ok(FormatOutcome::Rejected {
                        stage: stage.info().name.clone(),
                        reason,
                    });
                }
            }
        }
        Ok(FormatOutcome::Prompt(prompt))
    }

    /// Runs the shapers in order on `reply` (the LLM's text so far, or all of it when
    /// `done`).
    pub async fn shape(
        &self,
        ctx: &ChatContext,
        prompt: &Prompt,
        reply: Reply,
        done: bool,
    ) -> Result<Reply, StageError> {
        let mut reply = reply;
        for stage in self.stages.iter().filter(|s| s.role().shapes()) {
            let started = Instant::now();
            let shaped = stage.shape(&self.engine, ctx, prompt, &reply, done).await;
            record_call(stage, Role::Shaper, started, &shaped);
            reply = shaped?;
        }
        Ok(reply)
    }
}

fn record_call<T>(stage: &Stage, role: Role, started: Instant, result: &Result<T, StageError>) {
    let failure = result.as_ref().err().map(|e| &e.kind);
    crate::telemetry::stage_call(&stage.info().name, role, started.elapsed(), failure);
}
