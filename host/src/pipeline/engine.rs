//! The one shared wasmtime `Engine`, its epoch ticker, and the `Linker` every stage uses;
//! and the engines that compile guests ahead of time for an architecture (`Arch`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::limits::{
    MAX_GUEST_MEMORY, MAX_INSTANCES, MAX_MEMORIES, MAX_TABLE_ELEMENTS, MAX_TABLES,
};
use super::sandbox::{self, StageState};

/// How often the epoch advances. At each tick a running guest yields to the async runtime
/// (so its call's wall-clock deadline can fire) and is stopped if past its deadline: this
/// is the slack of a timeout on guest code that never calls the host. A ticker thread
/// waking 100 times a second costs nothing measurable on a Pi.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Guest memories alive at once: the pool's scarce resource, as each reserves 4 GiB of
/// address space (below). A call holds as many as its guest has, one for a Rust guest;
/// callers past them (the bot runs `LLM_CONCURRENCY` workers, plus reloads and the CLI)
/// wait for free ones: usually a guest call's time, about a tenth of a millisecond, at
/// worst the deadline of a call holding one. Each call also runs on one of as many pooled
/// fiber stacks.
pub const MEMORY_SLOTS: u32 = 16;
// A guest is never given more memories than there are slots, so no caller waits forever.
const _: () = assert!(MAX_MEMORIES as u32 <= MEMORY_SLOTS);
/// Bytes of a memory (or table) slot kept mapped when its instance is dropped, reset with
/// `memset` rather than handed back to the kernel. Every message instantiates each stage
/// afresh; without this, each instantiation page-faults its stack and heap in again and
/// each drop pays for an `madvise` — measured at about a third of the per-message cost.
/// With PAGEMAP_SCAN (Linux ≥ 6.7; Raspberry Pi OS ships 6.12) only the pages a call
/// dirtied are reset. The price is RSS: up to this much per slot that has been used,
/// and a Pi uses a handful (one answer at a time, two stages).
const KEEP_RESIDENT: usize = 1 << 20;
/// Address space reserved for each guest memory: all of a 32-bit index space, so with the
/// guard below every load and store is in bounds by construction and Cranelift emits no
/// bounds check (nor the Spectre mask that goes with one). Measured: 12% less time per
/// message than checked accesses in a 256 MiB reservation. The cap a guest may actually
/// use is its stage's memory limit, enforced when it grows. MEMORY_SLOTS × (4 GiB + two
/// 32 MiB guards) is 65 GiB of address space — pages never touched cost nothing, and it
/// fits the Pi kernel's 39-bit (512 GiB) address space with room to spare.
const MEMORY_RESERVATION: u64 = 1 << 32;
/// Unmapped pages after (and before) each memory, covering any static offset a load adds
/// to its 32-bit index.
const MEMORY_GUARD: u64 = 32 << 20;

/// An engine configured for guests, with the linker built once for all stages.
pub struct GuestEngine {
    engine: Engine,
    linker: Linker<StageState>,
    slots: Semaphore,
    /// The compatibility hash of this architecture's `Arch::compiler`: what names the
    /// precompiled entries this engine may load (`None` on an architecture guests are not
    /// precompiled for).
    portable_hash: Option<u64>,
    _ticker: EpochTicker,
}

impl GuestEngine {
    pub fn new() -> anyhow::Result<Arc<Self>> {
        let mut config = code_settings();
        // Every message instantiates each stage afresh, so instantiation must be cheap: a
        // pool of pre-reserved slots makes it a few microseconds instead of an mmap/munmap
        // round per memory. Wasmtime's *default* pool (1000 slots) would reserve terabytes
        // of virtual memory, more than the Pi kernel's 39-bit address space; this one has
        // MEMORY_SLOTS memories, and `memory_slots` makes callers past them wait. Every call
        // holds at least one, so the other pools are sized for that many calls each using
        // the most a store may have (see `limits`): a call that got its memory slots never
        // finds another pool full.
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(MEMORY_SLOTS)
            .total_core_instances(MEMORY_SLOTS * MAX_INSTANCES as u32)
            .total_memories(MEMORY_SLOTS)
            .total_tables(MEMORY_SLOTS * MAX_TABLES as u32)
            // Async calls run the guest on a fiber stack of its own, one per call.
            .total_stacks(MEMORY_SLOTS)
            .max_tables_per_module(4)
            .max_memory_size(MAX_GUEST_MEMORY)
            .table_elements(MAX_TABLE_ELEMENTS)
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT)
            .pagemap_scan(wasmtime::Enabled::Auto);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        sandbox::link(&mut linker)?;
        let portable_hash = match Arch::host() {
            Some(arch) => Some(super::cache::engine_hash(&arch.compiler()?)),
            None => None,
        };
        let ticker = EpochTicker::start(engine.clone());
        Ok(Arc::new(Self {
            engine,
            linker,
            slots: Semaphore::new(MEMORY_SLOTS as usize),
            portable_hash,
            _ticker: ticker,
        }))
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The hash that names entries compiled for this machine's architecture as `pipeline
    /// compile --target` does on another: those load here (see `cache`).
    pub fn portable_hash(&self) -> Option<u64> {
        self.portable_hash
    }

    pub fn linker(&self) -> &Linker<StageState> {
        &self.linker
    }

    /// Waits until `count` of the pool's memory slots are free and claims them; hold the
    /// claim while the call's `Store` lives.
    pub async fn memory_slots(&self, count: u32) -> SemaphorePermit<'_> {
        self.slots
            .acquire_many(count)
            .await
            .expect("the memory slot semaphore is never closed")
    }
}

/// The settings that shape compiled code, the same for the bot's engine and for the engines
/// that compile for a machine ahead of time (`Arch::compiler`): code compiled under other
/// settings does not load.
fn code_settings() -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    config.memory_reservation(MEMORY_RESERVATION);
    config.memory_guard_size(MEMORY_GUARD);
    config.guard_before_linear_memory(true);
    config.memory_reservation_for_growth(0);
    config
}

/// An engine that compiles for this very machine, CPU features included, as the bot's own
/// does: what the child process of `CompileCache::in_child_process` compiles with (no
/// instance pool, no linker: it never runs a guest).
pub fn native_compiler() -> anyhow::Result<Engine> {
    Ok(Engine::new(&code_settings())?)
}

/// An architecture guests can be compiled for ahead of time, on any machine
/// (`pipeline compile --target`): a PC compiles a Python guest for the Pi in seconds, where
/// the Pi would take minutes and much of its memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// A Raspberry Pi 4 or 5 with a 64-bit OS.
    Aarch64,
    X86_64,
}

impl Arch {
    /// The architecture of this machine, if guests can be compiled for it ahead of time.
    pub fn host() -> Option<Self> {
        match std::env::consts::ARCH {
            "aarch64" => Some(Self::Aarch64),
            "x86_64" => Some(Self::X86_64),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Aarch64 => "aarch64",
            Self::X86_64 => "x86_64",
        }
    }

    /// An engine that compiles for every machine of this architecture: for its baseline
    /// instruction set, never for CPU features detected where it runs (a Pi 4 has none of
    /// the optional ones; code for the baseline runs on a Pi 5 too). Linux is the OS.
    pub fn compiler(self) -> anyhow::Result<Engine> {
        let mut config = code_settings();
        config.target(&format!("{}-unknown-linux", self.name()))?;
        Ok(Engine::new(&config)?)
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Arch {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "aarch64" | "arm64" => Ok(Self::Aarch64),
            "x86_64" | "x86-64" | "amd64" => Ok(Self::X86_64),
            other => Err(format!(
                "'{other}' is not an architecture guests are compiled for: aarch64 (a \
                 Raspberry Pi 4 or 5 with a 64-bit OS) or x86_64"
            )),
        }
    }
}

/// Advances the engine's epoch every `EPOCH_TICK` on a thread that stops when dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch thread");
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
