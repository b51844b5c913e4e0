//! The one shared wasmtime `Engine`, its epoch ticker, and the `Linker` every stage uses.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::limits::{MAX_GUEST_MEMORY, MAX_TABLE_ELEMENTS};
use super::sandbox::{self, StageState};

/// How often the epoch advances. A stage's CPU deadline is rounded up to whole ticks, so
/// this is the precision of timeouts; a ticker thread waking 100 times a second costs
/// nothing measurable on a Pi.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Guest calls in flight at once, each with its own instance from the pool. More callers
/// (the bot runs `LLM_CONCURRENCY` workers, plus reloads and the CLI) wait for a free slot,
/// which takes a guest call's time: about a tenth of a millisecond.
pub const CALL_SLOTS: u32 = 16;
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
/// use is its stage's memory limit, enforced when it grows. CALL_SLOTS × (4 GiB + two
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
    slots: CallSlots,
    _ticker: EpochTicker,
}

impl GuestEngine {
    pub fn new() -> anyhow::Result<Arc<Self>> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        // Every message instantiates each stage afresh, so instantiation must be cheap: a
        // pool of pre-reserved slots makes it a few microseconds instead of an mmap/munmap
        // round per memory. Wasmtime's *default* pool (1000 slots) would reserve terabytes
        // of virtual memory, more than the Pi kernel's 39-bit address space; this one has
        // CALL_SLOTS slots, and `call_slot` makes callers past them wait.
        config.memory_reservation(MEMORY_RESERVATION);
        config.memory_guard_size(MEMORY_GUARD);
        config.guard_before_linear_memory(true);
        config.memory_reservation_for_growth(0);
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(CALL_SLOTS)
            .total_core_instances(CALL_SLOTS * 8)
            .total_memories(CALL_SLOTS)
            .total_tables(CALL_SLOTS * 8)
            .total_stacks(0)
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
        let ticker = EpochTicker::start(engine.clone());
        Ok(Arc::new(Self {
            engine,
            linker,
            slots: CallSlots::new(CALL_SLOTS),
            _ticker: ticker,
        }))
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn linker(&self) -> &Linker<StageState> {
        &self.linker
    }

    /// Waits for one of the pool's instance slots; hold it while the call's `Store` lives.
    pub fn call_slot(&self) -> CallSlot<'_> {
        self.slots.acquire()
    }
}

/// Counts the pool's free instance slots, so a call past them waits instead of failing.
struct CallSlots {
    free: Mutex<u32>,
    freed: Condvar,
}

impl CallSlots {
    fn new(slots: u32) -> Self {
        Self {
            free: Mutex::new(slots),
            freed: Condvar::new(),
        }
    }

    fn acquire(&self) -> CallSlot<'_> {
        let free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let mut free = self
            .freed
            .wait_while(free, |free| *free == 0)
            .unwrap_or_else(|e| e.into_inner());
        *free -= 1;
        CallSlot(self)
    }
}

/// One guest call's claim on an instance slot; gives it back when dropped.
pub struct CallSlot<'a>(&'a CallSlots);

impl Drop for CallSlot<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.freed.notify_one();
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
