//! Assembles the bot from its parts — pipeline, LLM backend, store, chat service,
//! scheduler, Telegram, dashboard — and runs it until shutdown.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::chat::{ChatService, Replies};
use crate::config::{Config, PipelineConfig};
use crate::health::Heartbeat;
use crate::llm;
use crate::memory;
use crate::pipeline::Pipeline;
use crate::pipeline::Reloader;
use crate::schedule::Scheduler;
use crate::store::{SharedStore, Store};
use crate::telegram::{self, Access, Services, TelegramReplies};
use crate::web;

/// Loads the pipeline named by `manifest` (or the configured one), compiling through the
/// on-disk cache.
pub async fn load_pipeline(
    config: &PipelineConfig,
    manifest: Option<PathBuf>,
) -> anyhow::Result<Arc<Pipeline>> {
    let mut config = config.clone();
    if let Some(manifest) = manifest {
        config.manifest = manifest;
    }
    Ok(Reloader::start(config).await?.pipeline().load_full())
}

/// Everything but the Telegram side — the (reloadable) pipeline, the LLM backend, the store and the
/// chat service: what `run` and the terminal `chat` share.
pub async fn service<R: Replies>(
    config: &Config,
    replies: R,
) -> anyhow::Result<(Arc<ChatService<R>>, Arc<Reloader>, SharedStore)> {
    let reloader = Reloader::start(config.pipeline.clone()).await?;
    for stage in reloader.pipeline().load().stages() {
        tracing::info!(stage = %stage.name, role = %stage.role, hash = %stage.hash.short(), load = ?stage.load_time, "stage loaded");
    }
    let llm = llm::connect(&config.llm).context("cannot create the HTTP client for the LLM")?;
    // Not fatal: the server may still be starting (or restarting); messages wait for it,
    // or go to the fallback.
    let model = &config.llm.primary.model;
    match llm.check_model(model).await {
        Ok(()) => {
            tracing::info!(%model, serving = %llm.serving(), "the LLM server is up and has the model")
        }
        Err(e) => tracing::warn!(serving = %llm.serving(), "LLM check failed: {e}"),
    }
    let store = SharedStore::new(Store::open(&config.database())?);
    let service = ChatService::new(
        config.chat.clone(),
        config.llm.clone(),
        llm,
        reloader.pipeline(),
        store.clone(),
        replies,
    );
    Ok((service, reloader, store))
}

/// Runs the Telegram bot until `shutdown`: stops polling, lets running answers finish
/// within the grace period, and leaves the rest pending for the next start. Meanwhile the
/// pipeline reloads when its files change, on SIGHUP and on `/reload`.
pub async fn run_bot(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let bot = telegram::bot(&config.telegram);
    let replies = TelegramReplies::new(bot.clone(), config.telegram.admin_users.clone());
    let (service, reloader, store) = service(&config, replies).await?;
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
    // After recovery: a task's firing left pending by the last run is not fired again.
    let tasks = Scheduler::new(service.clone(), store, config.schedule.clone());
    tokio::spawn(tasks.clone().run(shutdown.clone()));
    let tell_admins = {
        let service = service.clone();
        move |text: String| {
            let service = service.clone();
            async move { service.tell_admins(&text).await }
        }
    };
    tokio::spawn(reloader.clone().watch(tell_admins, shutdown.clone()));
    let dashboard = web::Dashboard {
        chat: service.clone(),
        tasks: tasks.clone(),
        reloader: reloader.clone(),
    };
    web::start(&config.dashboard, dashboard, shutdown.clone()).await;
    // Start-up is over: what only it needed need not stay resident.
    memory::release_after_one_off_work();
    let services = Services {
        chat: service,
        tasks,
        access: Access::new(config.telegram),
        reloader,
    };
    telegram::poll(
        bot,
        me,
        services,
        Heartbeat::new(&config.data_dir),
        shutdown.clone(),
    )
    .await;
    shutdown.cancel();
    workers.await?;
    tracing::info!("stopped");
    Ok(())
}
