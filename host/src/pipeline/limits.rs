//! Per-call resource caps for a guest: memory, CPU time, output size, tables and instances.

use std::time::Duration;

use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};

/// The caps one stage call runs under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageLimits {
    /// Cap on each of the guest's linear memories (a Rust guest has one that matters).
    pub memory_bytes: u64,
    /// Wall-clock deadline for one call, whatever the guest does: a timer drops a guest
    /// waiting in a host call, epoch interruption stops guest code (see `stage`).
    pub timeout: Duration,
    /// Size of the text a guest may return (prompt messages or reply text, in bytes).
    pub max_output_bytes: usize,
}

impl Default for StageLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            timeout: Duration::from_millis(1000),
            max_output_bytes: 1 << 20,
        }
    }
}

impl StageLimits {
    pub fn memory_mib(&self) -> u64 {
        self.memory_bytes >> 20
    }
}

/// The most memory any stage may be given (`memory_limit_mib`). A guest needing more than
/// a quarter of a Pi's RAM would be a mistake.
pub const MAX_GUEST_MEMORY: usize = 256 << 20;

/// Table elements, instances, tables and memories: generous for any real guest (a Rust
/// component has a handful of core instances), small enough that no guest can use them to
/// exhaust the host.
pub const MAX_TABLE_ELEMENTS: usize = 20_000;
pub(super) const MAX_INSTANCES: usize = 32;
pub(super) const MAX_TABLES: usize = 32;
pub(super) const MAX_MEMORIES: usize = 8;

/// A `StoreLimits` that remembers whether the guest ran into its memory cap, so a trap that
/// follows (Rust guests abort when allocation fails) is reported as what it is.
pub struct Limiter {
    inner: StoreLimits,
    memory_bytes: u64,
    pub memory_cap_hit: bool,
}

impl Limiter {
    pub fn new(limits: &StageLimits) -> Self {
        let memory = usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX);
        let inner = StoreLimitsBuilder::new()
            .memory_size(memory)
            .table_elements(MAX_TABLE_ELEMENTS)
            .instances(MAX_INSTANCES)
            .tables(MAX_TABLES)
            .memories(MAX_MEMORIES)
            .build();
        Self {
            inner,
            memory_bytes: limits.memory_bytes,
            memory_cap_hit: false,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.inner.memory_growing(current, desired, maximum)?;
        if !allowed {
            self.memory_cap_hit = true;
            tracing::debug!(
                current,
                desired,
                cap = self.memory_bytes,
                "guest hit its memory cap"
            );
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}
