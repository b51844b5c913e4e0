//! The one shared wasmtime `Engine`, its epoch ticker, and the `Linker` every stage uses.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::Linker;
use wasmtime::{Config, Engine};

use super::sandbox::{self, StageState};

/// How often the epoch advances. A stage's CPU deadline is rounded up to whole ticks, so
/// this is the precision of timeouts; a ticker thread waking 100 times a second costs
/// nothing measurable on a Pi.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

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
        // The on-demand allocator reserves address space per instance only while it lives.
        // Wasmtime's pooling allocator would reserve slots for thousands of instances up
        // front — terabytes of virtual memory, more than the Pi kernel's 39-bit (512 GiB)
        // address space allows. Each linear memory reserves 4 GiB + guard here, so dozens
        // of concurrent guest calls fit easily.
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::OnDemand);
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
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
