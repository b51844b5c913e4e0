//! What a guest can reach: WASI with nothing granted, the `host` interface (log, config),
//! its stdout/stderr captured into the host log under a per-call budget — and, from WIT
//! 0.2.0 or through `wasi:http` in any version, what its stage was granted: HTTP to granted
//! origins (`http`), a private key-value store (`kv`). One `StageState` per call.
//!
//! WASI is linked with its *async* bindings: a guest that sleeps or polls waits on the
//! async runtime, where its call's deadline can drop it, instead of blocking a thread.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime::component::{HasData, Linker, ResourceTable};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream, WasiCli, WasiCliView as _};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView as _};
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView as _};
use wasmtime_wasi::p2::bindings as wasi;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::random::{WasiRandom, WasiRandomView as _};
use wasmtime_wasi::sockets::{WasiSockets, WasiSocketsView as _};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::grants::Grants;
use super::http::GuestHttp;
use super::kv::GuestKv;
use super::limits::{Limiter, StageLimits};
use super::wit::VERSIONS;
use crate::store::Kv;

/// How much of each of a guest's stdout and stderr one call keeps in memory (to be logged,
/// and to find a panic message in); the rest is dropped and counted.
const CAPTURED_OUTPUT_BYTES: usize = 16 * 1024;
/// What one call may write to the host log: `log` calls and stdout/stderr lines together.
/// Past either cap lines are dropped (a line cut at the byte cap is shortened), and one
/// warning after the call counts them, so a chatty guest cannot flood the Pi's disk.
pub const LOG_LINES_PER_CALL: usize = 64;
const LOG_BYTES_PER_CALL: usize = 16 * 1024;

/// What a stage's calls share: its name, its `[stage.config]`, its grants and the database
/// behind its `kv`. Cheap to clone (all shared).
#[derive(Clone)]
pub struct StageContext {
    pub stage: Arc<str>,
    pub config: Arc<BTreeMap<String, String>>,
    pub grants: Arc<Grants>,
    pub kv: Kv,
}

/// The store data of one stage call.
pub struct StageState {
    stage: Arc<str>,
    config: Arc<BTreeMap<String, String>>,
    wasi: WasiCtx,
    table: ResourceTable,
    http_ctx: WasiHttpCtx,
    http: GuestHttp,
    kv: GuestKv,
    pub limiter: Limiter,
    pub stdout: CapturedOutput,
    pub stderr: CapturedOutput,
    log_budget: LogBudget,
}

impl StageState {
    pub fn new(context: &StageContext, limits: &StageLimits) -> Self {
        let StageContext {
            stage,
            config,
            grants,
            kv,
        } = context.clone();
        let stdout = CapturedOutput::default();
        let stderr = CapturedOutput::default();
        // `WasiCtxBuilder::new()` grants nothing: no preopened directories, no environment
        // variables, no arguments, no socket address. Keep it that way; guests get what they
        // need through the `host` interface and their stage's grants, which the host
        // controls. Sockets are linked (Python guests import them) but refused twice over:
        // no TCP or UDP socket may even be created, and no name looked up.
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            http: GuestHttp::new(stage.clone(), grants.clone(), limits.timeout),
            kv: GuestKv::new(kv, stage.clone(), grants.kv_quota_bytes),
            stage,
            config,
            wasi,
            table: ResourceTable::new(),
            http_ctx: WasiHttpCtx::new(),
            limiter: Limiter::new(limits),
            stdout,
            stderr,
            log_budget: LogBudget::default(),
        }
    }

    /// Writes what the guest printed to the host log, tagged with the stage, within the
    /// call's log budget; then one warning if anything was dropped.
    pub fn flush_output_to_log(&mut self) {
        for (stream, output) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let (text, dropped) = output.take();
            self.log_budget.dropped_bytes += dropped;
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                if let Some(line) = self.log_budget.admit(line) {
                    tracing::info!(stage = %self.stage, stream, "guest: {line}");
                }
            }
        }
        let LogBudget {
            dropped_lines,
            dropped_bytes,
            ..
        } = self.log_budget;
        if dropped_lines > 0 || dropped_bytes > 0 {
            tracing::warn!(
                stage = %self.stage,
                "guest log over its budget of {LOG_LINES_PER_CALL} lines and {} KiB per call \
                 (log calls, stdout and stderr together): {dropped_lines} lines, \
                 {dropped_bytes} bytes dropped",
                LOG_BYTES_PER_CALL / 1024
            );
        }
    }
}

/// What is left of one call's log budget, and what was dropped past it.
struct LogBudget {
    lines_left: usize,
    bytes_left: usize,
    dropped_lines: usize,
    dropped_bytes: usize,
}

impl Default for LogBudget {
    fn default() -> Self {
        Self {
            lines_left: LOG_LINES_PER_CALL,
            bytes_left: LOG_BYTES_PER_CALL,
            dropped_lines: 0,
            dropped_bytes: 0,
        }
    }
}

impl LogBudget {
    /// The part of `line` that may still be logged (shortened at the byte cap), or `None`
    /// when the budget is spent; what is cut is counted.
    fn admit<'a>(&mut self, line: &'a str) -> Option<&'a str> {
        if self.lines_left == 0 || self.bytes_left == 0 {
            self.dropped_lines += 1;
            self.dropped_bytes += line.len();
            return None;
        }
        let mut end = line.len().min(self.bytes_left);
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        self.lines_left -= 1;
        self.bytes_left -= end;
        self.dropped_bytes += line.len() - end;
        Some(&line[..end])
    }
}

impl WasiView for StageState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for StageState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http_ctx,
            table: &mut self.table,
            hooks: &mut self.http,
        }
    }
}

impl StageState {
    /// `host.log`, the same in every version: within the call's log budget.
    pub(super) fn host_log(&mut self, level: tracing::Level, message: &str) {
        let Some(message) = self.log_budget.admit(message) else {
            return;
        };
        let stage = &*self.stage;
        match level {
            tracing::Level::TRACE => tracing::trace!(stage, "{message}"),
            tracing::Level::DEBUG => tracing::debug!(stage, "{message}"),
            tracing::Level::INFO => tracing::info!(stage, "{message}"),
            tracing::Level::WARN => tracing::warn!(stage, "{message}"),
            tracing::Level::ERROR => tracing::error!(stage, "{message}"),
        }
    }

    /// `host.config`: the stage's `[stage.config]` value for `key`.
    pub(super) fn host_config(&self, key: &str) -> Option<String> {
        self.config.get(key).cloned()
    }

    /// The stage's `kv` store.
    pub(super) fn guest_kv(&self) -> &GuestKv {
        &self.kv
    }
}

/// Links everything a guest may import: the `host` interface of each WIT version, `kv`,
/// `wasi:http` (every request checked against the stage's grants) and WASI p2 (async
/// bindings). `wasi:sockets` is linked so that guests importing it load — every Python
/// guest does, through CPython's `socket` module — but a guest's `WasiCtx` allows no
/// socket and no name lookup (see `StageState::new`): network access is `wasi:http`
/// through a grant, or nothing.
pub fn link(linker: &mut Linker<StageState>) -> wasmtime::Result<()> {
    for version in VERSIONS {
        (version.link)(linker)?;
    }
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;

    let l = linker;
    wasi::clocks::wall_clock::add_to_linker::<_, WasiClocks>(l, StageState::clocks)?;
    wasi::clocks::monotonic_clock::add_to_linker::<_, WasiClocks>(l, StageState::clocks)?;
    wasi::filesystem::types::add_to_linker::<_, WasiFilesystem>(l, StageState::filesystem)?;
    wasi::filesystem::preopens::add_to_linker::<_, WasiFilesystem>(l, StageState::filesystem)?;
    wasi::random::random::add_to_linker::<_, WasiRandom>(l, StageState::random)?;
    wasi::random::insecure::add_to_linker::<_, WasiRandom>(l, StageState::random)?;
    wasi::random::insecure_seed::add_to_linker::<_, WasiRandom>(l, StageState::random)?;
    wasi::cli::exit::add_to_linker::<_, WasiCli>(l, StageState::cli)?;
    wasi::cli::environment::add_to_linker::<_, WasiCli>(l, StageState::cli)?;
    wasi::cli::stdin::add_to_linker::<_, WasiCli>(l, StageState::cli)?;
    wasi::cli::stdout::add_to_linker::<_, WasiCli>(l, StageState::cli)?;
    wasi::cli::stderr::add_to_linker::<_, WasiCli>(l, StageState::cli)?;
    wasi::cli::terminal_input::add_to_linker::<_, WasiCli>(l, StageState::cli)?;
    wasi::cli::terminal_output::add_to_linker::<_, WasiCli>(l, StageState::cli)?;
    wasi::cli::terminal_stdin::add_to_linker::<_, WasiCli>(l, StageState::cli)?;
    wasi::cli::terminal_stdout::add_to_linker::<_, WasiCli>(l, StageState::cli)?;
    wasi::cli::terminal_stderr::add_to_linker::<_, WasiCli>(l, StageState::cli)?;
    let network = wasi::sockets::network::LinkOptions::default();
    wasi::sockets::network::add_to_linker::<_, WasiSockets>(l, &network, StageState::sockets)?;
    wasi::sockets::instance_network::add_to_linker::<_, WasiSockets>(l, StageState::sockets)?;
    wasi::sockets::ip_name_lookup::add_to_linker::<_, WasiSockets>(l, StageState::sockets)?;
    wasi::sockets::tcp::add_to_linker::<_, WasiSockets>(l, StageState::sockets)?;
    wasi::sockets::tcp_create_socket::add_to_linker::<_, WasiSockets>(l, StageState::sockets)?;
    wasi::sockets::udp::add_to_linker::<_, WasiSockets>(l, StageState::sockets)?;
    wasi::sockets::udp_create_socket::add_to_linker::<_, WasiSockets>(l, StageState::sockets)?;
    wasi::io::error::add_to_linker::<_, HasTable>(l, |s| &mut s.table)?;
    wasi::io::poll::add_to_linker::<_, HasTable>(l, |s| &mut s.table)?;
    wasi::io::streams::add_to_linker::<_, HasTable>(l, |s| &mut s.table)?;
    Ok(())
}

struct HasTable;
impl HasData for HasTable {
    type Data<'a> = &'a mut ResourceTable;
}

/// A guest's stdout or stderr: kept in memory up to `CAPTURED_OUTPUT_BYTES`, then written
/// to the log after the call.
#[derive(Clone, Default)]
pub struct CapturedOutput(Arc<Mutex<Captured>>);

#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    dropped: usize,
}

impl CapturedOutput {
    fn append(&self, data: &[u8]) {
        let mut captured = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let room = CAPTURED_OUTPUT_BYTES.saturating_sub(captured.bytes.len());
        let kept = data.len().min(room);
        captured.bytes.extend_from_slice(&data[..kept]);
        captured.dropped += data.len() - kept;
    }

    /// Takes what was captured so far (lossy UTF-8) and how many bytes were dropped.
    pub fn take(&self) -> (String, usize) {
        let mut captured = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let text = String::from_utf8_lossy(&captured.bytes).into_owned();
        let dropped = captured.dropped;
        *captured = Captured::default();
        (text, dropped)
    }

    /// A copy of what was captured so far, leaving it in place.
    pub fn peek(&self) -> String {
        let captured = self.0.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&captured.bytes).into_owned()
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for CapturedOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always ready: output past the cap is dropped rather than blocking the guest.
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CapturedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
