//! On-disk cache of compiled components, keyed by the component's content hash and the
//! engine's compatibility hash, so a restart on a Pi does not run Cranelift again.
//!
//! Entry file: `<sha256 of component>-<engine hash>.cwasm`, holding a SHA-256 of the
//! payload followed by the payload (wasmtime's serialized component). The checksum is
//! verified before anything is deserialized: a truncated or corrupt entry (power cut
//! mid-write, disk error) is deleted and rebuilt, never trusted.
//!
//! A long-running bot compiles a miss in a child process (`pi-agent pipeline compile`,
//! see [`CompileCache::in_child_process`]) and loads the entry it wrote: Cranelift's
//! tens of MiB are given back when the child exits, instead of staying in the bot's
//! heap for good after a first start or a hot swap.

use std::fmt;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// How many entries to keep; older ones (by last use) are removed. Each is a few MiB, and
/// every rebuilt guest adds one.
const MAX_ENTRIES: usize = 32;
const EXTENSION: &str = "cwasm";

/// SHA-256 of a guest's bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentHash([u8; 32]);

impl ContentHash {
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The first 12 hex digits, enough to tell versions apart in logs and `/status`.
    pub fn short(&self) -> String {
        self.to_string()[..12].to_owned()
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({})", self.short())
    }
}

/// Where a component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompileSource {
    /// Deserialized from a verified cache entry.
    Cache,
    /// Compiled by Cranelift (and stored, if the cache is enabled).
    Compiled,
}

/// The cache directory, or none to always compile.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: Option<PathBuf>,
    /// The `pi-agent` program that compiles misses in a child process, if any.
    compiler: Option<PathBuf>,
}

impl CompileCache {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir: Some(dir),
            compiler: None,
        }
    }

    pub fn disabled() -> Self {
        Self {
            dir: None,
            compiler: None,
        }
    }

    /// Compiles misses by running `program pipeline compile --cache-dir DIR` (the guest on
    /// its stdin), which writes the entry this cache then loads. `program` must be a
    /// `pi-agent` of this very build (its engine must be compatible; an entry from another
    /// is rejected and the guest compiled here instead).
    pub fn in_child_process(mut self, program: PathBuf) -> Self {
        self.compiler = Some(program);
        self
    }

    /// Returns the compiled component for `bytes`, from the cache when a valid entry exists.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        hash: ContentHash,
    ) -> wasmtime::Result<(Component, CompileSource)> {
        let Some(dir) = &self.dir else {
            return Ok((Component::new(engine, bytes)?, CompileSource::Compiled));
        };
        let entry = dir.join(format!("{hash}-{:016x}.{EXTENSION}", engine_hash(engine)));
        if let Some(component) = read_entry(engine, &entry) {
            touch(&entry);
            return Ok((component, CompileSource::Cache));
        }
        if let Some(program) = &self.compiler {
            match compile_in_child(program, dir, bytes) {
                Ok(()) => {
                    if let Some(component) = read_entry(engine, &entry) {
                        return Ok((component, CompileSource::Compiled));
                    }
                    tracing::warn!(
                        program = %program.display(),
                        "the compiler process wrote no usable cache entry; compiling here"
                    );
                }
                // Say, an emulator that runs this program but cannot start another.
                Err(ChildError::Unavailable(e)) => tracing::warn!(
                    program = %program.display(),
                    "cannot start a compiler process ({e}); compiling here"
                ),
                Err(ChildError::Failed(message)) => return Err(wasmtime::format_err!("{message}")),
            }
        }
        let component = Component::new(engine, bytes)?;
        match component.serialize() {
            Ok(payload) => {
                if let Err(e) = write_entry(dir, &entry, &payload) {
                    tracing::warn!(path = %entry.display(), "cannot write compile cache entry: {e}");
                }
                prune(dir);
            }
            Err(e) => tracing::warn!("cannot serialize compiled component: {e}"),
        }
        Ok((component, CompileSource::Compiled))
    }
}

/// Why a compiler process did not compile.
enum ChildError {
    /// It could not be started or fed.
    Unavailable(std::io::Error),
    /// It ran and refused the guest: its message.
    Failed(String),
}

/// Runs `program pipeline compile --cache-dir DIR` with the guest on stdin.
fn compile_in_child(program: &Path, dir: &Path, bytes: &[u8]) -> Result<(), ChildError> {
    let mut child = Command::new(program)
        .args(["pipeline", "compile", "--cache-dir"])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(ChildError::Unavailable)?;
    // A child that fails early closes its stdin: its own message says why.
    let _ = child.stdin.take().expect("piped stdin").write_all(bytes);
    let output = child.wait_with_output().map_err(ChildError::Unavailable)?;
    if output.status.success() {
        return Ok(());
    }
    // The last line it printed is its error (`error: …`); a crash prints none.
    let stderr = String::from_utf8_lossy(&output.stderr);
    let message = match stderr.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(line) => line.strip_prefix("error: ").unwrap_or(line).to_owned(),
        None => format!("the compiler process failed ({})", output.status),
    };
    Err(ChildError::Failed(message))
}

/// Changes whenever the wasmtime version or any setting that affects compiled code does.
fn engine_hash(engine: &Engine) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.finish()
}

fn read_entry(engine: &Engine, path: &Path) -> Option<Component> {
    let data = fs::read(path).ok()?;
    let verified = data
        .split_at_checked(32)
        .filter(|(checksum, payload)| *checksum == Sha256::digest(payload).as_slice())
        .map(|(_, payload)| payload);
    let Some(payload) = verified else {
        discard(path, "checksum mismatch");
        return None;
    };
    // SAFETY: `deserialize` trusts its input to be wasmtime's own output for a compatible
    // engine. The payload is exactly what `serialize` wrote (checksum verified above) under
    // a key that includes this engine's compatibility hash; wasmtime re-checks its version
    // and settings header as well.
    match unsafe { Component::deserialize(engine, payload) } {
        Ok(component) => Some(component),
        Err(e) => {
            discard(path, &e.to_string());
            None
        }
    }
}

fn discard(path: &Path, reason: &str) {
    tracing::warn!(path = %path.display(), "discarding invalid compile cache entry ({reason}); recompiling");
    let _ = fs::remove_file(path);
}

/// Writes to a temporary file and renames it into place, so a reader never sees half an
/// entry (and the checksum catches a power cut between write and rename on weak media).
fn write_entry(dir: &Path, entry: &Path, payload: &[u8]) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    let tmp = entry.with_extension(format!("tmp{}", std::process::id()));
    let mut data = Vec::with_capacity(32 + payload.len());
    data.extend_from_slice(&Sha256::digest(payload));
    data.extend_from_slice(payload);
    fs::write(&tmp, &data)?;
    fs::rename(&tmp, entry)
}

/// Marks an entry as recently used (its mtime orders pruning).
fn touch(path: &Path) {
    if let Ok(file) = fs::File::options().append(true).open(path) {
        let _ = file.set_modified(std::time::SystemTime::now());
    }
}

/// Keeps the `MAX_ENTRIES` most recently used entries.
fn prune(dir: &Path) {
    let Ok(read) = fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = read
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == EXTENSION))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    if entries.len() <= MAX_ENTRIES {
        return;
    }
    entries.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
    for (_, path) in entries.into_iter().skip(MAX_ENTRIES) {
        let _ = fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest valid component: a header and nothing else.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    fn load(cache: &CompileCache) -> wasmtime::Result<CompileSource> {
        let hash = ContentHash::of(EMPTY_COMPONENT);
        let (_, source) = cache.load_or_compile(&Engine::default(), EMPTY_COMPONENT, hash)?;
        Ok(source)
    }

    #[test]
    fn a_compiler_process_that_cannot_start_falls_back_to_compiling_here() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CompileCache::new(dir.path().to_owned())
            .in_child_process("/nonexistent/pi-agent".into());
        assert_eq!(load(&cache).unwrap(), CompileSource::Compiled);
        assert_eq!(load(&cache).unwrap(), CompileSource::Cache);
    }

    #[test]
    fn a_compiler_process_that_fails_fails_the_load_with_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CompileCache::new(dir.path().to_owned()).in_child_process("false".into());
        let error = load(&cache).unwrap_err().to_string();
        assert_eq!(error, "the compiler process failed (exit status: 1)");
    }
}
