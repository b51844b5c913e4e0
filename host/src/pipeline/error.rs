//! What can go wrong in the pipeline: loading it (`LoadError`) and running one stage call
//! (`StageError`). Both name the stage, so a log line or a user message points at the guest.

use std::path::PathBuf;
use std::time::Duration;

/// Why one call into a guest failed. The pipeline stays usable: the next call gets a fresh
/// instance.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FailureKind {
    /// The call ran past its wall-clock deadline: an endless loop, a guest waiting on a
    /// clock or a pollable, or one just too slow.
    #[error("ran longer than its {0:?} limit")]
    Timeout(Duration),
    /// The guest asked for more memory than its cap.
    #[error("needed more than its {limit_mib} MiB memory limit")]
    MemoryLimit { limit_mib: u64 },
    /// The guest returned more text than the output cap allows.
    #[error("returned {actual} bytes, more than its {limit} byte output limit")]
    OutputTooLarge { actual: usize, limit: usize },
    /// The guest panicked; `message` is its panic message from stderr when it printed one.
    #[error("panicked: {message}")]
    Panic { message: String },
    /// A Python guest let an exception escape; `exception` is its type and message as the
    /// traceback's last line gives them (`KeyError: 'name'`).
    #[error("raised {exception}")]
    Raised { exception: String },
    /// The guest called `exit` instead of returning an answer.
    #[error("exited (status {code}) instead of answering")]
    Exited { code: i32 },
    /// Any other trap (e.g. an unreachable instruction, an out-of-bounds access): the
    /// trap's one-line description; the backtrace goes to the log only.
    #[error("crashed: {0}")]
    Trap(String),
    /// A formatter asked for structured output with a schema that is not JSON.
    #[error("set a response format whose JSON Schema is not valid JSON ({0})")]
    InvalidSchema(String),
}

impl FailureKind {
    /// A short name for the kind, as metrics label it.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            Self::MemoryLimit { .. } => "memory",
            Self::OutputTooLarge { .. } => "output_too_large",
            Self::Panic { .. } => "panic",
            Self::Raised { .. } => "exception",
            Self::Exited { .. } => "exit",
            Self::Trap(_) => "trap",
            Self::InvalidSchema(_) => "invalid_schema",
        }
    }
}

/// A stage call that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pipeline stage '{stage}' {kind}")]
pub struct StageError {
    pub stage: String,
    pub kind: FailureKind,
}

/// Why a pipeline could not be loaded. Each variant names the file and, where there is one,
/// the stage.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read pipeline manifest {path}: {source}")]
    ReadManifest {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("pipeline manifest {path} is not valid: {message}")]
    InvalidManifest { path: PathBuf, message: String },
    #[error(
        "stage '{stage}': cannot read guest {path}: {source} (did you run `just build-guests`?)"
    )]
    ReadGuest {
        stage: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("stage '{stage}': {path} is not a valid WebAssembly component: {message}")]
    Compile {
        stage: String,
        path: PathBuf,
        message: String,
    },
    #[error("stage '{stage}': {path} cannot be linked: {message}")]
    Link {
        stage: String,
        path: PathBuf,
        message: String,
    },
    #[error(
        "stage '{stage}': {path} exports neither a formatter nor a shaper of \
         pi-agent:pipeline@0.3.0, @0.2.0 or @0.1.0 (build it with the pi-agent-guest SDK or \
         against wit/v0.3.0)"
    )]
    NoRole { stage: String, path: PathBuf },
    #[error(
        "stage '{stage}': its config uses ${{{variable}}}, which is not set — put {variable}=… \
         in .env or the environment"
    )]
    MissingSecret { stage: String, variable: String },
    #[error("stage '{stage}': smoke test of {path} failed: {message}")]
    Smoke {
        stage: String,
        path: PathBuf,
        message: String,
    },
}
