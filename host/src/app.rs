//! Assembles the bot from its parts — pipeline, Ollama client, store, chat service,
//! Telegram — and runs it until shutdown.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::chat::{ChatService, Replies};
use crate::config::{Config, PipelineConfig};
use crate::llm::{LlmBackend, OllamaClient};
use crate::pipeline::{CompileCache, GuestEngine, Pipeline};
use crate::store::Store;
use crate::telegram::{self, Access, TelegramReplies};

/// Loads the pipeline named by `manifest` (or the configured one), compiling through the
/// on-disk cache.
pub fn load_pipeline(
    config: &PipelineConfig,
    manifest: Option<PathBuf>,
) -> anyhow::Result<Pipeline> {
    let path = manifest.unwrap_or_else(|| config.manifest.clone());
    let engine = GuestEngine::new().context("cannot start the WebAssembly engine")?;
    let cache = CompileCache::new(config.cache_dir());
    Ok(Pipeline::load_file(
        engine,
        &path,
        &config.default_limits,
        &cache,
    )?)
}

/// Everything but the Telegram side: what `run` and the terminal `chat` share.
pub async fn service<R: Replies>(
    config: &Config,
    replies: R,
) -> anyhow::Result<Arc<ChatService<R>>> {
    let pipeline_config = config.pipeline.clone();
    let pipeline =
        tokio::task::spawn_blocking(move || load_pipeline(&pipeline_config, None)).await??;
    for stage in pipeline.stages() {
        tracing::info!(stage = %stage.name, role = %stage.role, hash = %stage.hash.short(), load = ?stage.load_time, "stage loaded");
    }
    let llm = Arc::new(
        OllamaClient::new(config.llm.ollama.clone())
            .context("cannot create the HTTP client for Ollama")?,
    );
    // Not fatal: Ollama may still be starting (or restarting); messages wait for it.
    match llm.check_model(&config.llm.model).await {
        Ok(()) => {
            tracing::info!(model = %config.llm.model, url = %config.llm.ollama.base_url, "Ollama is up and has the model")
        }
        Err(e) => tracing::warn!("Ollama check failed: {e}"),
    }
    let store = Store::open(&config.database())?;
    Ok(ChatService::new(
        config.chat.clone(),
        config.llm.clone(),
        llm,
        Arc::new(pipeline),
        store,
        replies,
    ))
}

/// Runs the Telegram bot until `shutdown`: stops polling, lets running answers finish
/// within the grace period, and leaves the rest pending for the next start.
pub async fn run_bot(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let bot = telegram::bot(&config.telegram);
    let service = service(&config, TelegramReplies::new(bot.clone())).await?;
    let Some(me) = telegram::identify(&bot, &shutdown).await? else {
        return Ok(());
    };
    telegram::register_commands(&bot).await;
    let recovered = service.recover().await?;
    if recovered > 0 {
        tracing::info!(recovered, "answering messages left pending by the last run");
    }
    let workers = tokio::spawn({
        let (service, shutdown) = (service.clone(), shutdown.clone());
        async move { service.run_workers(shutdown).await }
    });
    telegram::poll(
        bot,
        me,
        service,
        Access::new(config.telegram),
        shutdown.clone(),
    )
    .await;
    shutdown.cancel();
    workers.await?;
    tracing::info!("stopped");
    Ok(())
}
