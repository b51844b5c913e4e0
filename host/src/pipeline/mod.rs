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

use std::path::{Path, PathBuf};
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
pub use limits::{MAX_GUEST_MEMORY, StageLimits};
pub use manifest::{Manifest, StageSpec};
pub use reload::{ReloadFailure, ReloadReport, Reloader, SharedPipeline};
pub use sandbox::LOG_LINES_PER_CALL;
pub use stage::{Outcome, Role, StageInfo, WitVersion};
pub use watch::PipelineWatch;

use crate::prompt::{ChatContext, Prompt, Reply};
use crate::store::Kv;
use stage::{Formatter, Shaper, Stage};

/// The guest pipeline's settings (read from the environment by `config`).
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineConfig {
    /// `PIPELINE_MANIFEST`
    pub manifest: PathBuf,
    /// Compiled guests, by content hash: `DATA_DIR/cache`.
    pub cache_dir: PathBuf,
    /// `GUEST_MEMORY_LIMIT_MIB`, `GUEST_TIMEOUT_MS`, `GUEST_MAX_OUTPUT_KIB`: limits for
    /// stages that set none in the manifest.
    pub default_limits: StageLimits,
}

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

/// A loaded, validated pipeline: its stages in manifest order, and their roles as lists.
pub struct Pipeline {
    engine: Arc<GuestEngine>,
    manifest: Manifest,
    stages: Vec<Arc<Stage>>,
    formatters: Vec<Formatter>,
    shapers: Vec<Shaper>,
}

impl Pipeline {
    /// Loads every stage of `manifest` (compiling through `cache`, off the async runtime)
    /// and smoke-tests each. Any failure rejects the whole pipeline.
    pub async fn load(
        engine: Arc<GuestEngine>,
        manifest: Manifest,
        cache: &CompileCache,
        kv: &Kv,
    ) -> Result<Self, LoadError> {
        let (mut stages, mut formatters, mut shapers) = (Vec::new(), Vec::new(), Vec::new());
        for spec in &manifest.stages {
            let loaded = Stage::load(&engine, cache, spec, kv).await?;
            stages.push(loaded.stage);
            formatters.extend(loaded.formatter);
            shapers.extend(loaded.shaper);
        }
        Ok(Self {
            engine,
            manifest,
            stages,
            formatters,
            shapers,
        })
    }

    /// Reads the manifest at `path` and loads it.
    pub async fn load_file(
        engine: Arc<GuestEngine>,
        path: &Path,
        defaults: &StageLimits,
        cache: &CompileCache,
        kv: &Kv,
    ) -> Result<Self, LoadError> {
        let manifest = Manifest::load(path, defaults)?;
        Self::load(engine, manifest, cache, kv).await
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn stages(&self) -> impl ExactSizeIterator<Item = &StageInfo> {
        self.stages.iter().map(|stage| stage.info())
    }

    /// Runs the formatters in order. A direct reply or a rejection ends the chain.
    pub async fn format(
        &self,
        ctx: &ChatContext,
        prompt: Prompt,
    ) -> Result<FormatOutcome, StageError> {
        let mut prompt = prompt;
        for formatter in &self.formatters {
            let started = Instant::now();
            let outcome = formatter.format(&self.engine, ctx, &prompt).await;
            record_call(formatter.stage(), Role::Formatter, started, &outcome);
            match outcome? {
                Outcome::Prompt(next) => prompt = next,
                Outcome::Reply(reply) => return Ok(FormatOutcome::Reply { prompt, reply }),
                Outcome::Reject(reason) => {
                    return Ok(FormatOutcome::Rejected {
                        stage: formatter.stage().name.clone(),
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
        for shaper in &self.shapers {
            let started = Instant::now();
            let shaped = shaper.shape(&self.engine, ctx, prompt, &reply, done).await;
            record_call(shaper.stage(), Role::Shaper, started, &shaped);
            reply = shaped?;
        }
        Ok(reply)
    }
}

fn record_call<T>(stage: &StageInfo, role: Role, started: Instant, result: &Result<T, StageError>) {
    let failure = result
        .as_ref()
        .err()
        .map(|e| crate::telemetry::StageFailure {
            label: e.kind.label(),
            detail: std::sync::Arc::new(e.kind.clone()),
        });
    let (name, took) = (&stage.name, started.elapsed());
    crate::telemetry::stage_call(name, role.label(), took, failure.as_ref());
}
