//! The one shared wasmtime `Engine`, its epoch ticker, and the `Linker` every stage uses.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// Guest calls in flight at once (each instantiates its stage). Far above what a Pi runs
/// (one generation at a time, a few shaper calls); past it, a call fails cleanly.
const MAX_CONCURRENT_CALLS: u32 = 100;
/// Bytes of a memory (or table) slot kept mapped when its instance is dropped, reset with
/// `memset` rather than handed back to the kernel. Every message instantiates each stage
/// afresh; without this, each instantiation page-faults its stack and heap in again and
/// each drop pays for an `madvise` — measured at about a third of the per-message cost.
/// With PAGEMAP_SCAN (Linux ≥ 6.7; Raspberry Pi OS ships 6.12) only the pages a call
/// dirtied are reset. The price is RSS: up to this much per slot that has been used,
/// and a Pi uses a handful (one answer at a time, two stages).
const KEEP_RESIDENT: usize = 1 << 20;
/// Guard pages after each memory slot; bounds are checked explicitly anyway, since the
/// reservation is below 4 GiB.
const MEMORY_GUARD: u64 = 2 << 20;

/// An engine configured for guests, with the linker built once for all stages.
pub struct GuestEngine {
    engine: Engine,
    linker: Linker<StageState>,
    _ticker: EpochTicker,
}

impl GuestEngine {
    pub fn new() -> anyhow::Result<Arc<Self>> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        // Every message instantiates each stage afresh, so instantiation must be cheap: a
        // pool of pre-reserved slots makes it a few microseconds instead of an mmap/munmap
        // round per memory. Wasmtime's *default* pool (1000 slots of 4 GiB + guards) would
        // reserve terabytes of virtual memory, more than the Pi kernel's 39-bit (512 GiB)
        // address space; this one is sized for the job: each memory slot reserves
        // MAX_GUEST_MEMORY + guard, about 26 GiB for all slots together.
        config.memory_reservation(MAX_GUEST_MEMORY as u64);
        config.memory_guard_size(MEMORY_GUARD);
        config.memory_reservation_for_growth(0);
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(MAX_CONCURRENT_CALLS)
            .total_core_instances(MAX_CONCURRENT_CALLS * 8)
            .total_memories(MAX_CONCURRENT_CALLS)
            .total_tables(MAX_CONCURRENT_CALLS * 8)
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
            _ticker: ticker,
        }))
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn linker(&self) -> &Linker<StageState> {
        &self.linker
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
