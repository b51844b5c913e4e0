//! Swapping guests while the bot runs. A reload — on a file change, SIGHUP or `/reload` —
//! builds a complete new pipeline (compiled through the cache off the async runtime, every
//! stage instantiated and called once as a smoke test) and only then swaps it in whole.
//! Messages already running finish on the pipeline they started with. A pipeline that
//! fails to load is rejected and the old one keeps serving.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::mpsc;

use super::PipelineConfig;
use super::{CompileCache, GuestEngine, LoadError, Pipeline, PipelineWatch, StageInfo};
use crate::background::Background;
use crate::store::Kv;

/// The pipeline new messages use; replaced whole by a reload.
pub type SharedPipeline = Arc<ArcSwap<Pipeline>>;

/// If a reload finds a guest file missing, it tries again this much later before giving
/// up: some tools delete and re-create files instead of renaming over them.
const MISSING_FILE_RETRY: Duration = Duration::from_secs(1);

pub struct Reloader {
    engine: Arc<GuestEngine>,
    config: PipelineConfig,
    cache: CompileCache,
    kv: Kv,
    current: SharedPipeline,
    /// One reload at a time, whatever triggered it.
    running: tokio::sync::Mutex<()>,
}

/// A reload, triggered by a file change or SIGHUP, that failed: the old pipeline serves on.
#[derive(Debug, Clone)]
pub struct ReloadFailure {
    pub trigger: String,
    pub error: String,
}

/// What a successful reload did.
#[derive(Debug)]
pub struct ReloadReport {
    pub stages: Vec<StageInfo>,
    /// Stage name → short hash, before the reload.
    pub previous: Vec<(String, String)>,
    pub took: Duration,
}

impl fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pipeline reloaded in {} ms:", self.took.as_millis())?;
        for stage in &self.stages {
            let hash = stage.hash.short();
            let before = self
                .previous
                .iter()
                .find(|(name, _)| *name == stage.name)
                .map(|(_, h)| h.as_str());
            let change = match before {
                Some(old) if old == hash => format!("{hash}, unchanged"),
                Some(old) => format!("{old} → {hash}"),
                None => format!("new, {hash}"),
            };
            let source = stage.source.label();
            write!(f, " {} ({}, {change}, {source})", stage.name, stage.role)?;
        }
        Ok(())
    }
}

/// The configured cache, compiling misses in a child process running this program (a
/// `pi-agent`): a first start or a hot swap then leaves no Cranelift memory in the bot.
fn compile_cache(config: &PipelineConfig) -> CompileCache {
    let cache = CompileCache::new(config.cache_dir.clone());
    match std::env::current_exe() {
        Ok(program) => cache.in_child_process(program),
        Err(e) => {
            tracing::warn!("cannot find this program ({e}); compiling guests in-process");
            cache
        }
    }
}

impl Reloader {
    /// Loads the configured pipeline for the first time; its guests' `kv` stores are
    /// `kv`'s.
    pub async fn start(config: PipelineConfig, kv: Kv) -> anyhow::Result<Arc<Self>> {
        let engine = GuestEngine::new()?;
        let cache = compile_cache(&config);
        let pipeline = Pipeline::load_file(
            engine.clone(),
            &config.manifest,
            &config.default_limits,
            &cache,
            &kv,
        )
        .await?;
        let current = Arc::new(ArcSwap::from_pointee(pipeline));
        Ok(Arc::new(Self {
            engine,
            config,
            cache,
            kv,
            current,
            running: tokio::sync::Mutex::new(()),
        }))
    }

    pub fn pipeline(&self) -> SharedPipeline {
        self.current.clone()
    }

    /// Builds the pipeline anew from the manifest and swaps it in if it loads.
    pub async fn reload(&self, trigger: &str) -> Result<ReloadReport, LoadError> {
        let _one_at_a_time = self.running.lock().await;
        let started = Instant::now();
        let result = match self.build().await {
            Err(LoadError::ReadGuest { .. }) => {
                tokio::time::sleep(MISSING_FILE_RETRY).await;
                self.build().await
            }
            other => other,
        };
        let pipeline = result.inspect_err(|e| {
            tracing::error!(
                trigger,
                "pipeline reload failed, the old pipeline keeps serving: {e}"
            );
            crate::telemetry::reload(trigger, Err(e.to_string()));
        })?;
        let previous = self
            .current
            .load()
            .stages()
            .map(|s| (s.name.clone(), s.hash.short()))
            .collect();
        let stages = pipeline.stages().cloned().collect();
        self.current.store(Arc::new(pipeline));
        crate::memory::release_after_one_off_work();
        let report = ReloadReport {
            stages,
            previous,
            took: started.elapsed(),
        };
        tracing::info!(trigger, "{report}");
        crate::telemetry::reload(trigger, Ok(report.to_string()));
        Ok(report)
    }

    async fn build(&self) -> Result<Pipeline, LoadError> {
        Pipeline::load_file(
            self.engine.clone(),
            &self.config.manifest,
            &self.config.default_limits,
            &self.cache,
            &self.kv,
        )
        .await
    }

    /// The files the current pipeline depends on.
    fn files(&self) -> Vec<PathBuf> {
        self.current
            .load()
            .manifest()
            .watched_files()
            .map(PathBuf::from)
            .collect()
    }

    /// Starts watching the pipeline's files and SIGHUP right away (so no change made after
    /// this returns is missed); the returned future reloads on each until `background`
    /// stops, and passes failures to `failed` as well as the log.
    pub fn watch<F, Fut>(
        self: Arc<Self>,
        failed: F,
        background: &Background,
    ) -> impl Future<Output = ()> + use<F, Fut>
    where
        F: Fn(ReloadFailure) -> Fut,
        Fut: Future<Output = ()>,
    {
        let shutdown = background.shutdown().clone();
        let (changed_tx, mut changed) = mpsc::channel(1);
        let mut watch = PipelineWatch::start(self.files(), changed_tx, background)
            .inspect_err(|e| {
                tracing::warn!(
                    "cannot watch the pipeline's files ({e}); reload with SIGHUP or /reload"
                )
            })
            .ok();
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .expect("installing the SIGHUP handler");
        async move {
            loop {
                let trigger = tokio::select! {
                    Some(()) = changed.recv() => "file change",
                    Some(()) = hangup.recv() => "SIGHUP",
                    () = shutdown.cancelled() => return,
                };
                match self.reload(trigger).await {
                    Ok(_) => {
                        if let Some(watch) = watch.as_mut()
                            && let Err(e) = watch.set_files(self.files())
                        {
                            tracing::warn!("cannot watch the new pipeline's files: {e}");
                        }
                    }
                    Err(e) => {
                        failed(ReloadFailure {
                            trigger: trigger.to_owned(),
                            error: e.to_string(),
                        })
                        .await
                    }
                }
            }
        }
    }
}
