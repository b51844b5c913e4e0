//! One loaded stage: a compiled, pre-linked guest and the calls into it. Every call runs in
//! a fresh `Store` under the stage's limits, and every failure becomes a `StageError`.
//!
//! A stage's roles are typed handles — a [`Formatter`], a [`Shaper`] — made at load time from
//! what the guest exports: the pipeline holds lists of each, so no call can reach a role the
//! guest does not have.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::future::BoxFuture;
use wasmtime::component::{Component, Instance, InstancePre};
use wasmtime::{Store, Trap, UpdateDeadline};

use super::cache::{CompileCache, CompileSource, ContentHash};
use super::engine::GuestEngine;
use super::error::{FailureKind, LoadError, StageError};
use super::grants::Grants;
use super::limits::{MAX_MEMORIES, StageLimits};
use super::manifest::StageSpec;
use super::sandbox::{StageContext, StageState};
use super::wit::{Exports, FormatExport, ShapeExport, VERSIONS};
use crate::prompt::{ChatContext, ChatMessage, Prompt, Reply, ResponseFormat};
use crate::store::Kv;

/// What a stage does, detected from the component's exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Formatter,
    Shaper,
    Both,
}

impl Role {
    pub fn formats(self) -> bool {
        matches!(self, Self::Formatter | Self::Both)
    }

    pub fn shapes(self) -> bool {
        matches!(self, Self::Shaper | Self::Both)
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Formatter => "formatter",
            Self::Shaper => "shaper",
            Self::Both => "formatter+shaper",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// The WIT version a guest was built against: `WitVersion("0.3.0")`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WitVersion(pub &'static str);

impl std::fmt::Display for WitVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// How a stage was loaded, for `pipeline check`, `/status` and reload logs.
#[derive(Debug, Clone)]
pub struct StageInfo {
    pub name: String,
    pub guest: PathBuf,
    pub role: Role,
    pub wit_version: WitVersion,
    pub grants: Grants,
    pub size_bytes: usize,
    pub hash: ContentHash,
    pub source: CompileSource,
    pub load_time: Duration,
    pub loaded_at: SystemTime,
    pub limits: StageLimits,
}

/// A formatter's decision, in host types.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Prompt(Prompt),
    Reply(Reply),
    Reject(String),
}

/// One call into a guest's export, run by [`Stage::call`] on the store it set up.
type GuestCall<'s, R> = BoxFuture<'s, wasmtime::Result<R>>;

/// A guest compiled (or taken from the cache), not yet linked.
struct Compiled {
    component: Component,
    size_bytes: usize,
    hash: ContentHash,
    source: CompileSource,
}

/// Loads or compiles the guest at `path` (blocking: file I/O and Cranelift).
fn compile(
    engine: &GuestEngine,
    cache: &CompileCache,
    stage: String,
    path: PathBuf,
) -> Result<Compiled, LoadError> {
    let (hash, size) = match ContentHash::of_file(&path) {
        Ok(hashed) => hashed,
        Err(source) => {
            return Err(LoadError::ReadGuest {
                stage,
                path,
                source,
            });
        }
    };
    match cache.load_or_compile(engine, &path, hash) {
        Ok((component, source, hash)) => Ok(Compiled {
            component,
            size_bytes: usize::try_from(size).unwrap_or(usize::MAX),
            hash,
            source,
        }),
        Err(e) => Err(LoadError::Compile {
            stage,
            path,
            message: format!("{e:#}"),
        }),
    }
}

/// The newest version the component exports a role of, and that version's exports.
fn exports_of(pre: &InstancePre<StageState>) -> Option<(WitVersion, Role, Exports)> {
    VERSIONS.iter().find_map(|version| {
        let exports = (version.exports)(pre);
        let role = match (&exports.formatter, &exports.shaper) {
            (Some(_), Some(_)) => Role::Both,
            (Some(_), None) => Role::Formatter,
            (None, Some(_)) => Role::Shaper,
            (None, None) => return None,
        };
        Some((WitVersion(version.name), role, exports))
    })
}

/// A loaded stage: its guest, and a handle per role it has.
pub struct LoadedStage {
    pub stage: Arc<Stage>,
    pub formatter: Option<Formatter>,
    pub shaper: Option<Shaper>,
}

pub struct Stage {
    info: StageInfo,
    context: StageContext,
    pre: InstancePre<StageState>,
    /// Pool memory slots one call holds: the memories the component defines.
    memories_per_call: u32,
}

/// A stage's `formatter` export.
pub struct Formatter {
    stage: Arc<Stage>,
    export: Box<dyn FormatExport>,
}

/// A stage's `shaper` export.
pub struct Shaper {
    stage: Arc<Stage>,
    export: Box<dyn ShapeExport>,
}

impl Stage {
    /// Compiles (or loads from cache), links and smoke-tests the guest of `spec`. The
    /// compile runs off the async runtime: Cranelift may take seconds on a Pi.
    pub async fn load(
        engine: &Arc<GuestEngine>,
        cache: &CompileCache,
        spec: &StageSpec,
        kv: &Kv,
    ) -> Result<LoadedStage, LoadError> {
        let started = Instant::now();
        let stage = spec.name.clone();
        let path = spec.guest.clone();
        let compiled = tokio::task::spawn_blocking({
            let (engine, cache, stage, path) =
                (engine.clone(), cache.clone(), stage.clone(), path.clone());
            move || compile(&engine, &cache, stage, path)
        })
        .await
        .expect("compiling a guest panicked")?;
        let Compiled {
            component,
            size_bytes,
            hash,
            source,
        } = compiled;
        let pre = engine
            .linker()
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link {
                stage: stage.clone(),
                path: path.clone(),
                message: format!("{e:#}"),
            })?;
        // A component importing core modules has no static count; our linker refuses those.
        // More memories than a store may have fail at instantiation (in the smoke test).
        let memories_per_call = component
            .resources_required()
            .map_or(MAX_MEMORIES, |r| r.num_memories as usize)
            .clamp(1, MAX_MEMORIES) as u32;
        let Some((wit_version, role, exports)) = exports_of(&pre) else {
            return Err(LoadError::NoRole { stage, path });
        };
        let loaded = Self {
            info: StageInfo {
                name: stage.clone(),
                guest: path.clone(),
                role,
                wit_version,
                grants: spec.grants.clone(),
                size_bytes,
                hash,
                source,
                load_time: Duration::ZERO,
                loaded_at: SystemTime::now(),
                limits: spec.limits.clone(),
            },
            context: StageContext {
                stage: stage.as_str().into(),
                config: Arc::new(spec.config.clone()),
                grants: Arc::new(spec.grants.clone()),
                kv: kv.clone(),
            },
            pre,
            memories_per_call,
        };
        let loaded = Arc::new(Self {
            info: StageInfo {
                load_time: started.elapsed(),
                ..loaded.info
            },
            ..loaded
        });
        let formatter = exports.formatter.map(|export| Formatter {
            stage: loaded.clone(),
            export,
        });
        let shaper = exports.shaper.map(|export| Shaper {
            stage: loaded.clone(),
            export,
        });
        smoke_test(engine, formatter.as_ref(), shaper.as_ref())
            .await
            .map_err(|message| LoadError::Smoke {
                stage,
                path,
                message,
            })?;
        Ok(LoadedStage {
            stage: loaded,
            formatter,
            shaper,
        })
    }

    pub fn info(&self) -> &StageInfo {
        &self.info
    }

    /// Instantiates the guest in a fresh store under this stage's limits and runs `f`,
    /// returning within the stage's timeout whatever the guest does: guest code is stopped
    /// at the first epoch tick past the deadline, and a guest waiting in a host call (a
    /// sleep, a poll) is dropped there by the timer.
    pub(super) async fn call<R>(
        &self,
        engine: &GuestEngine,
        f: impl for<'s> FnOnce(&'s mut Store<StageState>, Instance) -> GuestCall<'s, R>,
    ) -> Result<R, StageError> {
        let limits = &self.info.limits;
        // Declared before the store, so dropped after it: the instance goes back to the
        // pool before its slots are handed to the next caller.
        let _slots = engine.memory_slots(self.memories_per_call).await;
        let mut store = Store::new(engine.engine(), StageState::new(&self.context, limits));
        store.limiter(|state| &mut state.limiter);
        // At every tick the guest yields to the runtime, so the timer below can fire even
        // while guest code runs without calling the host; past the deadline it is stopped.
        let deadline = Instant::now() + limits.timeout;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });

        let run = async {
            let instance = self.pre.instantiate_async(&mut store).await?;
            f(&mut store, instance).await
        };
        let result = match tokio::time::timeout(limits.timeout, run).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                let state = store.data();
                let kind = classify(
                    &error,
                    state.limiter.memory_cap_hit,
                    limits,
                    &state.stderr.peek(),
                );
                // Wasm backtraces and offsets help the guest's author, not the user.
                Err((kind, Some(format!("{error:#}"))))
            }
            // Dropped where it waited; the store is not used again.
            Err(_elapsed) => Err((FailureKind::Timeout(limits.timeout), None)),
        };
        store.data_mut().flush_output_to_log();
        result.map_err(|(kind, details)| match details {
            Some(details) => {
                let failure = StageError {
                    stage: self.info.name.clone(),
                    kind,
                };
                tracing::warn!(stage = %self.info.name, details, "{failure}");
                failure
            }
            None => self.failure(kind),
        })
    }

    /// A failure of this stage, logged.
    fn failure(&self, kind: FailureKind) -> StageError {
        let failure = StageError {
            stage: self.info.name.clone(),
            kind,
        };
        tracing::warn!(stage = %self.info.name, "{failure}");
        failure
    }

    fn check_output_size(&self, actual: usize) -> Result<(), StageError> {
        let limit = self.info.limits.max_output_bytes;
        if actual > limit {
            return Err(self.failure(FailureKind::OutputTooLarge { actual, limit }));
        }
        Ok(())
    }
}

impl Formatter {
    pub fn stage(&self) -> &StageInfo {
        &self.stage.info
    }

    /// Runs the formatter export on `prompt`.
    pub async fn format(
        &self,
        engine: &GuestEngine,
        ctx: &ChatContext,
        prompt: &Prompt,
    ) -> Result<Outcome, StageError> {
        let stage = &self.stage;
        let outcome = self.export.format(stage, engine, ctx, prompt).await?;
        if let Outcome::Prompt(next) = &outcome
            && let Some(ResponseFormat::Schema(schema)) = &next.options.format
            && let Err(e) = serde_json::from_str::<serde_json::Value>(schema)
        {
            return Err(stage.failure(FailureKind::InvalidSchema(e.to_string())));
        }
        stage.check_output_size(outcome_size(&outcome))?;
        Ok(outcome)
    }
}

impl Shaper {
    pub fn stage(&self) -> &StageInfo {
        &self.stage.info
    }

    /// Runs the shaper export on `reply` (the text so far, or all of it when `done`).
    pub async fn shape(
        &self,
        engine: &GuestEngine,
        ctx: &ChatContext,
        prompt: &Prompt,
        reply: &Reply,
        done: bool,
    ) -> Result<Reply, StageError> {
        let stage = &self.stage;
        let shaped = self
            .export
            .shape(stage, engine, ctx, prompt, reply, done)
            .await?;
        stage.check_output_size(shaped.text.len())?;
        Ok(shaped)
    }
}

/// Calls each of a new stage's roles once with a sample message, so a guest that traps on
/// start, exports the wrong signatures or fails on every call is refused at load time, not
/// on a user's message.
async fn smoke_test(
    engine: &GuestEngine,
    formatter: Option<&Formatter>,
    shaper: Option<&Shaper>,
) -> Result<(), String> {
    let ctx = ChatContext::default();
    let prompt = Prompt {
        model: "smoke-test".into(),
        messages: vec![ChatMessage::new(
            crate::prompt::Role::User,
            "Hello! (pi-agent smoke test)",
        )],
        options: Default::default(),
    };
    if let Some(formatter) = formatter {
        formatter
            .format(engine, &ctx, &prompt)
            .await
            .map_err(|e| e.kind.to_string())?;
    }
    if let Some(shaper) = shaper {
        let reply = Reply::plain("Hi! **This** is a `smoke test`.");
        shaper
            .shape(engine, &ctx, &prompt, &reply, true)
            .await
            .map_err(|e| e.kind.to_string())?;
    }
    Ok(())
}

fn outcome_size(outcome: &Outcome) -> usize {
    match outcome {
        Outcome::Prompt(p) => {
            p.model.len()
                + p.messages.iter().map(|m| m.content.len()).sum::<usize>()
                + p.options.stop.iter().map(String::len).sum::<usize>()
        }
        Outcome::Reply(r) => r.text.len(),
        Outcome::Reject(reason) => reason.len(),
    }
}

/// Names the reason a guest call failed, most specific first, in a short sentence for the
/// user (no backtrace, no wasm offsets).
fn classify(
    error: &wasmtime::Error,
    memory_cap_hit: bool,
    limits: &StageLimits,
    stderr: &str,
) -> FailureKind {
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return FailureKind::Exited { code: exit.0 };
    }
    if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        return FailureKind::Timeout(limits.timeout);
    }
    if memory_cap_hit {
        return FailureKind::MemoryLimit {
            limit_mib: limits.memory_mib(),
        };
    }
    if let Some(message) = panic_message(stderr) {
        return match python_exception(&message, stderr) {
            Some(exception) => FailureKind::Raised { exception },
            None => FailureKind::Panic { message },
        };
    }
    match error.downcast_ref::<Trap>() {
        Some(trap) => FailureKind::Trap(trap.to_string()),
        // A host-side error (say, a value the guest returned that cannot be lifted): its
        // innermost cause, which is the part that says what happened.
        None => FailureKind::Trap(error.root_cause().to_string()),
    }
}

/// Extracts the message of a Rust panic from what the guest printed to stderr:
/// `thread '…' panicked at src/lib.rs:3:5:\n<message>\nnote: …`.
fn panic_message(stderr: &str) -> Option<String> {
    let (_, after) = stderr.split_once("panicked at ")?;
    let (_location, rest) = after.split_once('\n').unwrap_or((after, ""));
    let message: Vec<&str> = rest
        .lines()
        .take_while(|l| !l.starts_with("note: "))
        .collect();
    let message = message.join("\n").trim().to_owned();
    Some(if message.is_empty() {
        "no message".into()
    } else {
        message
    })
}

/// What componentize-py's runtime panics with when Python code lets an exception escape,
/// after CPython printed the traceback.
const PYTHON_EXCEPTION_PANIC: &str = "Python function threw an unexpected exception";

/// The exception a Python guest raised, when `panic` is its runtime's panic: the last line
/// of the traceback it printed to `stderr` (`ValueError: boom`).
fn python_exception(panic: &str, stderr: &str) -> Option<String> {
    if panic != PYTHON_EXCEPTION_PANIC {
        return None;
    }
    let (traceback, _) = stderr.rsplit_once("panicked at ")?;
    let (_, traceback) = traceback.rsplit_once("Traceback (most recent call last):")?;
    // Frames are indented; the exception's line is the last one that is not, before the
    // runtime's own `thread '…'` line.
    traceback
        .lines()
        .take_while(|l| !l.starts_with("thread '"))
        .filter(|l| !l.trim().is_empty() && !l.starts_with(char::is_whitespace))
        .last()
        .map(|line| line.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_python_exception_is_taken_from_its_traceback() {
        let stderr = "Traceback (most recent call last):\n  File \"/0/app.py\", line 12, in format\nValueError: boom\nthread '<unnamed>' (1) panicked at runtime/src/lib.rs:1280:25:\nPython function threw an unexpected exception\nnote: run with `RUST_BACKTRACE=1`\n";
        let panic = panic_message(stderr).unwrap();
        assert_eq!(
            python_exception(&panic, stderr).as_deref(),
            Some("ValueError: boom")
        );
        // A Rust panic is left alone, whatever else was printed.
        let rust =
            "Traceback (most recent call last):\nthread 'main' panicked at src/lib.rs:1:1:\nno\n";
        assert_eq!(python_exception(&panic_message(rust).unwrap(), rust), None);
    }

    #[test]
    fn panic_message_is_taken_from_rust_panic_output() {
        let stderr = "\nthread '<unnamed>' panicked at src/lib.rs:12:9:\nno file: /etc/passwd\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(
            panic_message(stderr).as_deref(),
            Some("no file: /etc/passwd")
        );
        assert_eq!(panic_message("hello\n"), None);
    }
}
