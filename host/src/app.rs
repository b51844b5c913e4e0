//! Assembles the bot from its parts — pipeline, LLM backend, database, chat service,
//! scheduler, Telegram, dashboard — and runs it until shutdown. The one place that opens the
//! database and hands each room its handle, and that owns the background tasks.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::background::Background;
use crate::chat::{AdminNotice, ChatService, Replies};
use crate::clock::SystemClock;
use crate::config::Config;
use crate::health::Heartbeat;
use crate::llm;
use crate::memory;
use crate::pipeline::{Pipeline, PipelineConfig, Reloader};
use crate::schedule::Scheduler;
use crate::store::Database;
use crate::telegram::{self, Access, Services, TelegramReplies};
use crate::web;

/// How long background tasks get to end once the workers have (the dashboard's open
/// connections, a send in flight).
const BACKGROUND_SLACK: Duration = Duration::from_secs(3);

/// Loads the pipeline named by `manifest` (or the configured one), compiling through the
/// on-disk cache, with `database`'s kv stores.
pub async fn load_pipeline(
    config: &PipelineConfig,
    manifest: Option<PathBuf>,
    database: &Database,
) -> anyhow::Result<Arc<Pipeline>> {
    let mut config = config.clone();
    if let Some(manifest) = manifest {
        config.manifest = manifest;
    }
    Ok(Reloader::start(config, database.kv())
        .await?
        .pipeline()
        .load_full())
}

/// What `run` and the terminal `chat` share: the (reloadable) pipeline, the LLM backend, the
/// database and the chat service.
pub struct Parts {
    pub chat: Arc<ChatService>,
    pub reloader: Arc<Reloader>,
    pub database: Database,
}

/// Opens the database, loads the pipeline, connects the LLM backend (its probe runs in
/// `background`) and builds the chat service replying through `replies`.
pub async fn service(
    config: &Config,
    replies: Arc<dyn Replies>,
    background: &Background,
) -> anyhow::Result<Parts> {
    let database = Database::open(&config.database())?;
    let reloader = Reloader::start(config.pipeline.clone(), database.kv()).await?;
    for stage in reloader.pipeline().load().stages() {
        tracing::info!(stage = %stage.name, role = %stage.role, hash = %stage.hash.short(), load = ?stage.load_time, "stage loaded");
    }
    let llm = llm::connect(&config.llm, background)
        .context("cannot create the HTTP client for the LLM")?;
    // Not fatal: the server may still be starting (or restarting); messages wait for it,
    // or go to the fallback.
    let model = &config.llm.primary.model;
    match llm.check_model(model).await {
        Ok(()) => {
            tracing::info!(%model, serving = %llm.serving(), "the LLM server is up and has the model")
        }
        Err(e) => {
            let advice = telegram::messages::llm_error(&e);
            tracing::warn!(serving = %llm.serving(), "LLM check failed: {advice}")
        }
    }
    let chat = ChatService::new(
        config.chat.clone(),
        config.llm.clone(),
        llm,
        reloader.pipeline(),
        &database,
        replies,
    );
    Ok(Parts {
        chat,
        reloader,
        database,
    })
}

/// Runs the Telegram bot until `shutdown`: stops polling, lets running answers finish
/// within the grace period, leaves the rest pending for the next start, and waits for every
/// background task. Meanwhile the pipeline reloads when its files change, on SIGHUP and on
/// `/reload`.
pub async fn run_bot(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let background = Background::new(shutdown.clone());
    let bot = telegram::bot(&config.telegram);
    let replies = Arc::new(TelegramReplies::new(
        bot.clone(),
        config.telegram.admin_users.clone(),
    ));
    let Parts {
        chat: service,
        reloader,
        database,
    } = service(&config, replies.clone(), &background).await?;
    let Some(me) = telegram::identify(&bot, &shutdown).await? else {
        return Ok(());
    };
    telegram::register_commands(&bot).await;
    let recovered = service.recover().await?;
    if recovered > 0 {
        tracing::info!(recovered, "answering messages left pending by the last run");
    }
    background.spawn({
        let (service, shutdown) = (service.clone(), shutdown.clone());
        async move { service.run_workers(shutdown).await }
    });
    // After recovery: a task's firing left pending by the last run is not fired again.
    let tasks = Scheduler::new(
        service.clone(),
        database.tasks(),
        config.schedule.clone(),
        Arc::new(SystemClock),
    );
    background.spawn(tasks.clone().run(shutdown.clone()));
    let tell_admins = move |failure: crate::pipeline::ReloadFailure| {
        let replies = replies.clone();
        async move {
            let notice = AdminNotice::ReloadFailed {
                trigger: failure.trigger,
                error: failure.error,
            };
            replies.tell_admins(&notice).await;
        }
    };
    background.spawn(reloader.clone().watch(tell_admins, &background));
    let dashboard = web::Dashboard {
        chat: service.clone(),
        tasks: tasks.clone(),
        reloader: reloader.clone(),
        activity: database.activity(),
    };
    web::start(&config.dashboard, dashboard, &background).await;
    // Start-up is over: what only it needed need not stay resident.
    memory::release_after_one_off_work();
    let services = Services {
        chat: service,
        tasks,
        access: Access::new(config.telegram),
        reloader,
        offset: database.update_offset(),
        background: background.clone(),
    };
    telegram::poll(
        bot,
        me,
        services,
        Heartbeat::new(&config.data_dir),
        shutdown.clone(),
    )
    .await;
    // The workers take up to the grace period (and a second) to end their jobs.
    let patience = config.chat.shutdown_grace + BACKGROUND_SLACK;
    background.stop(patience).await;
    tracing::info!("stopped");
    Ok(())
}
