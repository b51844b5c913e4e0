//! Compiled components on disk, keyed by the component's content hash and the compiling
//! engine's compatibility hash, so a restart on a Pi does not run Cranelift again.
//!
//! Two places hold them:
//! - the bot's own cache (`DATA_DIR/cache`): what this machine compiled, for its CPU;
//! - `precompiled/` beside a guest, read-only: what `pipeline compile --target ARCH` (on
//!   this machine or a PC) compiled for the architecture's baseline. A Pi finds there a
//!   Python guest the PC compiled in seconds, and never runs Cranelift on it.
//!
//! An entry file (`<sha256 of component>-<engine hash>.cwasm`) is wasmtime's serialized
//! component followed by its SHA-256. The checksum is verified before anything is
//! deserialized: a truncated or corrupt entry (power cut mid-write, disk error) is never
//! trusted — deleted and rebuilt in the bot's cache, passed over in `precompiled/`. A valid
//! entry is *mapped*, not read: its code and a guest's initial memory stay pages of the
//! file, which the kernel may drop and read back, instead of becoming the bot's own memory
//! (an 18 MB Python guest compiles to some 35 MB).
//!
//! A long-running bot compiles a miss in a child process (`pi-agent pipeline compile`,
//! see [`CompileCache::in_child_process`]) and loads the entry it wrote: Cranelift's
//! tens of MiB are given back when the child exits, instead of staying in the bot's
//! heap for good after a first start or a hot swap.

use std::fmt;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{Read as _, Seek as _, Write as _};
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::engine::GuestEngine;

/// How many entries the bot's cache keeps; older ones (by last use) are removed. Each is a
/// few MiB (a Python guest's some 35 MiB), and every rebuilt guest adds one.
const MAX_ENTRIES: usize = 32;
const EXTENSION: &str = "cwasm";
/// The directory beside a guest where `pipeline compile` leaves it compiled.
pub const PRECOMPILED_DIR: &str = "precompiled";
/// Part of every entry's key: changes when the entry file's layout does, so a bot never
/// reads an entry of another layout as a corrupt one.
const LAYOUT: u32 = 2;
const CHECKSUM_BYTES: u64 = 32;

/// SHA-256 of a guest's bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentHash([u8; 32]);

impl ContentHash {
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The hash of the file at `path` and its size, read in chunks: a guest that comes
    /// from the cache (an 18 MB Python one too) is never in memory whole.
    pub fn of_file(path: &Path) -> std::io::Result<(Self, u64)> {
        let mut hasher = Sha256::new();
        let size = std::io::copy(&mut fs::File::open(path)?, &mut hasher)?;
        Ok((Self(hasher.finalize().into()), size))
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
    /// Loaded from a verified entry of the bot's cache.
    Cache,
    /// Loaded from a verified entry in `precompiled/` beside the guest.
    Precompiled,
    /// Compiled by Cranelift (and stored, if the cache is enabled).
    Compiled,
}

impl CompileSource {
    pub fn label(self) -> &'static str {
        match self {
            Self::Cache => "cached",
            Self::Precompiled => "precompiled",
            Self::Compiled => "compiled",
        }
    }
}

/// The cache directory, or none to always compile (what is not precompiled).
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

    /// No cache directory of its own: every guest is compiled, unless it is precompiled.
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

    /// Returns the compiled component for the guest at `guest`, whose content hashes to
    /// `hash`: from the cache when it holds a valid entry, else from `precompiled/` beside
    /// the guest, else compiled (in the child process, if set) and stored in the cache.
    /// Without a cache directory, `precompiled/` is still looked in. Only a compile reads
    /// the guest whole; it returns the hash of what it read, which differs from `hash`
    /// when the file was replaced in between.
    pub fn load_or_compile(
        &self,
        engine: &GuestEngine,
        guest: &Path,
        hash: ContentHash,
    ) -> wasmtime::Result<(Component, CompileSource, ContentHash)> {
        let native = engine.engine();
        let entry = self
            .dir
            .as_ref()
            .map(|dir| dir.join(entry_name(hash, engine_hash(native))));
        if let Some(entry) = &entry {
            match load_entry(native, entry) {
                Ok(Some(component)) => {
                    touch(entry);
                    return Ok((component, CompileSource::Cache, hash));
                }
                Ok(None) => {}
                Err(reason) => discard(entry, &reason),
            }
        }
        if let Some(portable) = engine.portable_hash() {
            let precompiled = precompiled_dir(guest).join(entry_name(hash, portable));
            match load_entry(native, &precompiled) {
                Ok(Some(component)) => {
                    return Ok((component, CompileSource::Precompiled, hash));
                }
                Ok(None) => {}
                // Not ours to delete (and often mounted read-only): compiled here instead.
                Err(reason) => tracing::warn!(
                    path = %precompiled.display(),
                    "ignoring an invalid precompiled guest ({reason}); compiling it here"
                ),
            }
        }
        let bytes = fs::read(guest)
            .map_err(|e| wasmtime::format_err!("cannot read it to compile it: {e}"))?;
        let hash = ContentHash::of(&bytes);
        let Some(dir) = &self.dir else {
            return Ok((
                Component::new(native, &bytes)?,
                CompileSource::Compiled,
                hash,
            ));
        };
        if let Some(program) = &self.compiler {
            match compile_in_child(program, dir, &bytes) {
                Ok(()) => {
                    let entry = dir.join(entry_name(hash, engine_hash(native)));
                    if let Ok(Some(component)) = load_entry(native, &entry) {
                        return Ok((component, CompileSource::Compiled, hash));
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
        let component = compile_into(native, dir, &bytes, hash)?;
        Ok((component, CompileSource::Compiled, hash))
    }
}

/// Compiles `bytes` with `engine` and stores the entry in the cache `dir` (what the child
/// process of [`CompileCache::in_child_process`] runs). A failure to store is logged: the
/// component is still good.
pub fn compile_into(
    engine: &Engine,
    dir: &Path,
    bytes: &[u8],
    hash: ContentHash,
) -> wasmtime::Result<Component> {
    let component = Component::new(engine, bytes)?;
    let entry = dir.join(entry_name(hash, engine_hash(engine)));
    match component.serialize() {
        Ok(payload) => {
            if let Err(e) = write_entry(&entry, &payload) {
                tracing::warn!(path = %entry.display(), "cannot write compile cache entry: {e}");
            }
            prune(dir);
        }
        Err(e) => tracing::warn!("cannot serialize compiled component: {e}"),
    }
    Ok(component)
}

/// A guest compiled ahead of time by [`precompile`].
#[derive(Debug)]
pub struct Precompiled {
    /// The entry, in `precompiled/` beside the guest.
    pub entry: PathBuf,
    pub size_bytes: u64,
    /// Time spent compiling; `None` when a valid entry was there already.
    pub compile_time: Option<Duration>,
    /// Entries of guests no longer in the guest's directory, removed.
    pub removed: usize,
}

/// Compiles the guest at `guest` with `compiler` (an [`Arch::compiler`] engine) into
/// `precompiled/` beside it, where a bot of that architecture finds it, unless a valid entry
/// is there already; then removes that architecture's entries for guests no longer in the
/// directory, so old builds do not pile up (or travel to the Pi with every rsync).
///
/// [`Arch::compiler`]: super::engine::Arch::compiler
pub fn precompile(compiler: &Engine, guest: &Path) -> anyhow::Result<Precompiled> {
    use anyhow::Context as _;
    let bytes = fs::read(guest).with_context(|| format!("cannot read {}", guest.display()))?;
    let hash = ContentHash::of(&bytes);
    let dir = precompiled_dir(guest);
    let entry = dir.join(entry_name(hash, engine_hash(compiler)));
    let compile_time = if verified(&entry).unwrap_or(false) {
        None
    } else {
        let started = Instant::now();
        let payload = compiler.precompile_component(&bytes).map_err(|e| {
            anyhow::anyhow!(
                "{} is not a valid WebAssembly component: {e:#}",
                guest.display()
            )
        })?;
        let took = started.elapsed();
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        write_entry(&entry, &payload)
            .with_context(|| format!("cannot write {}", entry.display()))?;
        Some(took)
    };
    let removed = remove_stale(&dir, guest.parent().unwrap_or(Path::new(".")), compiler);
    Ok(Precompiled {
        size_bytes: fs::metadata(&entry)?.len(),
        entry,
        compile_time,
        removed,
    })
}

/// `precompiled/` in the directory of the guest at `guest`.
fn precompiled_dir(guest: &Path) -> PathBuf {
    guest
        .parent()
        .unwrap_or(Path::new("."))
        .join(PRECOMPILED_DIR)
}

/// Removes the entries in `dir` that `compiler` made for components no longer among the
/// guests (`*.wasm`) in `guests`; returns how many.
fn remove_stale(dir: &Path, guests: &Path, compiler: &Engine) -> usize {
    let suffix = format!("-{:016x}.{EXTENSION}", engine_hash(compiler));
    let current: std::collections::HashSet<String> = fs::read_dir(guests)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
        .filter_map(|p| Some(ContentHash::of_file(&p).ok()?.0.to_string()))
        .collect();
    let mut removed = 0;
    for path in fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
    {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(content) = name.strip_suffix(&suffix)
            && !current.contains(content)
            && fs::remove_file(&path).is_ok()
        {
            removed += 1;
        }
    }
    removed
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
        // Compiling a Python guest takes some 360 MB: more than a Pi's container leaves.
        None if output.status.signal() == Some(libc::SIGKILL) => {
            "the compiler process was killed (out of memory?): compile the guest on a \
             bigger machine with `pi-agent pipeline compile --target ARCH` and put the \
             precompiled/ directory it writes beside the guest"
                .into()
        }
        None => format!("the compiler process failed ({})", output.status),
    };
    Err(ChildError::Failed(message))
}

/// Changes whenever the wasmtime version, the target or any setting that affects compiled
/// code does, and with the entry layout.
pub(super) fn engine_hash(engine: &Engine) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    LAYOUT.hash(&mut hasher);
    hasher.finish()
}

/// The file name of `hash`'s entry as compiled by an engine of hash `engine_hash`.
fn entry_name(hash: ContentHash, engine_hash: u64) -> String {
    format!("{hash}-{engine_hash:016x}.{EXTENSION}")
}

/// The component in the entry at `path`: `None` if there is none, the reason if it is not
/// valid.
fn load_entry(engine: &Engine, path: &Path) -> Result<Option<Component>, String> {
    match verified(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
        Ok(false) => return Err("checksum mismatch".into()),
        Ok(true) => {}
    }
    // SAFETY: `deserialize_file` trusts its input to be wasmtime's own output for a
    // compatible engine, and maps it: the file must not change while mapped. The payload is
    // exactly what `serialize` wrote (checksum verified above) under a key that includes the
    // compiling engine's compatibility hash; wasmtime re-checks its version, target and
    // settings header as well. Entries are only ever replaced by renaming a new file over
    // them, which leaves the mapped one intact.
    unsafe { Component::deserialize_file(engine, path) }
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Whether the entry at `path` ends with the SHA-256 of what comes before; read in chunks,
/// so checking a 35 MiB entry costs no memory.
fn verified(path: &Path) -> std::io::Result<bool> {
    let mut file = fs::File::open(path)?;
    let Some(payload) = file.metadata()?.len().checked_sub(CHECKSUM_BYTES) else {
        return Ok(false);
    };
    let mut hasher = Sha256::new();
    std::io::copy(&mut (&mut file).take(payload), &mut hasher)?;
    let mut checksum = [0; CHECKSUM_BYTES as usize];
    file.seek(std::io::SeekFrom::Start(payload))?;
    file.read_exact(&mut checksum)?;
    Ok(checksum == hasher.finalize().as_slice())
}

fn discard(path: &Path, reason: &str) {
    tracing::warn!(path = %path.display(), "discarding invalid compile cache entry ({reason}); recompiling");
    let _ = fs::remove_file(path);
}

/// Writes the payload and its checksum to a temporary file and renames it into place, so a
/// reader never sees half an entry (and the checksum catches a power cut between write and
/// rename on weak media).
fn write_entry(entry: &Path, payload: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = entry.parent() {
        fs::create_dir_all(dir)?;
    }
    let tmp = entry.with_extension(format!("tmp{}", std::process::id()));
    let mut file = fs::File::create(&tmp)?;
    file.write_all(payload)?;
    file.write_all(&Sha256::digest(payload))?;
    drop(file);
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
    use crate::pipeline::engine::Arch;

    /// The smallest valid component: a header and nothing else.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    /// A guest file holding the empty component, in a directory of its own.
    fn guest() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let guest = dir.path().join("empty.wasm");
        fs::write(&guest, EMPTY_COMPONENT).unwrap();
        (dir, guest)
    }

    fn load(cache: &CompileCache, guest: &Path) -> wasmtime::Result<CompileSource> {
        let engine = GuestEngine::new().unwrap();
        let (hash, _) = ContentHash::of_file(guest).unwrap();
        let (_, source, _) = cache.load_or_compile(&engine, guest, hash)?;
        Ok(source)
    }

    #[test]
    fn a_compiler_process_that_cannot_start_falls_back_to_compiling_here() {
        let (dir, guest) = guest();
        let cache = CompileCache::new(dir.path().join("cache"))
            .in_child_process("/nonexistent/pi-agent".into());
        assert_eq!(load(&cache, &guest).unwrap(), CompileSource::Compiled);
        assert_eq!(load(&cache, &guest).unwrap(), CompileSource::Cache);
    }

    #[test]
    fn a_compiler_process_that_fails_fails_the_load_with_its_reason() {
        let (dir, guest) = guest();
        let cache = CompileCache::new(dir.path().join("cache")).in_child_process("false".into());
        let error = load(&cache, &guest).unwrap_err().to_string();
        assert_eq!(error, "the compiler process failed (exit status: 1)");
    }

    #[test]
    fn a_compiler_process_killed_for_its_memory_says_where_to_compile_instead() {
        use std::os::unix::fs::PermissionsExt as _;
        let (dir, guest) = guest();
        let killed = dir.path().join("killed-compiler");
        fs::write(&killed, "#!/bin/sh\nkill -9 $$\n").unwrap();
        fs::set_permissions(&killed, fs::Permissions::from_mode(0o755)).unwrap();
        let cache = CompileCache::new(dir.path().join("cache")).in_child_process(killed);
        let error = load(&cache, &guest).unwrap_err().to_string();
        assert!(
            error.starts_with("the compiler process was killed (out of memory?)")
                && error.contains("pipeline compile --target ARCH"),
            "{error}"
        );
    }

    #[test]
    fn a_guest_precompiled_for_this_architecture_is_loaded_from_beside_it() {
        let (dir, guest) = guest();
        let compiler = Arch::host().unwrap().compiler().unwrap();
        let first = precompile(&compiler, &guest).unwrap();
        assert!(first.compile_time.is_some());
        assert_eq!(
            first.entry.parent().unwrap(),
            dir.path().join(PRECOMPILED_DIR)
        );
        let again = precompile(&compiler, &guest).unwrap();
        assert_eq!(
            (again.entry, again.compile_time),
            (first.entry.clone(), None)
        );

        let cache = CompileCache::new(dir.path().join("cache")).in_child_process("false".into());
        assert_eq!(load(&cache, &guest).unwrap(), CompileSource::Precompiled);

        // A corrupt entry is passed over (and left alone): the guest is compiled here.
        let mut bytes = fs::read(&first.entry).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        fs::write(&first.entry, &bytes).unwrap();
        let cache = CompileCache::new(dir.path().join("cache"));
        assert_eq!(load(&cache, &guest).unwrap(), CompileSource::Compiled);
        assert!(first.entry.exists());
    }

    #[test]
    fn precompiling_removes_the_entries_of_guests_no_longer_there() {
        let (_dir, guest) = guest();
        let compiler = Arch::host().unwrap().compiler().unwrap();
        let old = precompile(&compiler, &guest).unwrap().entry;
        // The guest is rebuilt: another component under the same name.
        fs::write(&guest, b"\0asm\x0d\0\x01\0\0\x02\x01a").unwrap();
        let new = precompile(&compiler, &guest).unwrap();
        assert_eq!(new.removed, 1);
        assert!(!old.exists() && new.entry.exists());
    }
}
