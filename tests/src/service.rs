//! The chat service in process, as the tests drive it: a real pipeline, the scripted LLM,
//! a database in a scratch directory, its workers running, and every reply recorded — the
//! way the workers' tests (on a paused clock) and the scheduler's (on a clock they move
//! forward) see what a chat was shown.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::future::BoxFuture;
use pi_agent::chat::{
    Accepted, AdminNotice, ChatConfig, ChatService, JobKind, NewJob, Notice, Origin, Replies,
    ReplySink,
};
use pi_agent::ids::{ChatId, UserId};
use pi_agent::llm::scripted::ScriptedLlm;
use pi_agent::llm::{Api, BackendSettings, LlmConfig};
use pi_agent::prompt::{Reply, ScheduledRun};
use pi_agent::store::Database;
use pi_agent::telegram::{admin, messages};
use pi_agent::zone::Zone;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Scratch;

/// How long the workers may finish answers at shutdown.
pub const GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq)]
pub enum Shown {
    Partial(String),
    Finish(String),
    Notice(String),
}

#[derive(Default)]
pub struct Recorder {
    /// (chat, when, what) in the order it happened; notices as Telegram words them.
    shown: Mutex<Vec<(i64, Instant, Shown)>>,
    admins: Mutex<Vec<String>>,
}

impl Recorder {
    pub fn shown(&self, chat: i64) -> Vec<(Instant, Shown)> {
        let shown = self.shown.lock().unwrap();
        shown
            .iter()
            .filter(|(c, ..)| *c == chat)
            .map(|(_, at, s)| (*at, s.clone()))
            .collect()
    }

    /// The final text or notice of `chat`'s answers, in order.
    pub fn endings(&self, chat: i64) -> Vec<Shown> {
        self.shown(chat)
            .into_iter()
            .map(|(_, s)| s)
            .filter(|s| !matches!(s, Shown::Partial(_)))
            .collect()
    }

    pub fn admin_messages(&self) -> Vec<String> {
        self.admins.lock().unwrap().clone()
    }
}

#[derive(Clone, Default)]
pub struct Recorded(pub Arc<Recorder>);

struct RecordedSink {
    recorder: Arc<Recorder>,
    chat: i64,
}

impl RecordedSink {
    fn record(&self, shown: Shown) {
        let entry = (self.chat, Instant::now(), shown);
        self.recorder.shown.lock().unwrap().push(entry);
    }
}

impl Replies for Recorded {
    fn open(&self, chat_id: ChatId, _message_id: Option<i32>) -> Box<dyn ReplySink> {
        Box::new(RecordedSink {
            recorder: self.0.clone(),
            chat: chat_id.0,
        })
    }

    fn tell_admins<'a>(&'a self, notice: &'a AdminNotice) -> BoxFuture<'a, ()> {
        self.0.admins.lock().unwrap().push(admin::notice(notice));
        Box::pin(async {})
    }

    fn announcement(&self, text: &str, run: &ScheduledRun, zone: &Zone) -> String {
        messages::announcement(text, run, zone)
    }
}

impl ReplySink for RecordedSink {
    fn working(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    fn partial<'a>(&'a mut self, reply: &'a Reply) -> BoxFuture<'a, ()> {
        self.record(Shown::Partial(reply.text.clone()));
        Box::pin(async {})
    }

    fn finish<'a>(&'a mut self, reply: &'a Reply) -> BoxFuture<'a, anyhow::Result<()>> {
        self.record(Shown::Finish(reply.text.clone()));
        Box::pin(async { Ok(()) })
    }

    fn notice<'a>(&'a mut self, notice: &'a Notice) -> BoxFuture<'a, anyhow::Result<()>> {
        self.record(Shown::Notice(messages::notice(notice)));
        Box::pin(async { Ok(()) })
    }
}

/// What the service under test is made of.
pub struct Options {
    pub manifest: PathBuf,
    pub workers: usize,
    /// The scripted LLM echoes the question a word per this.
    pub echo_every: Duration,
    /// The chats' default time zone.
    pub zone: Zone,
}

/// A chat service with its workers running.
pub struct Service {
    pub service: Arc<ChatService>,
    pub llm: Arc<ScriptedLlm>,
    pub recorder: Arc<Recorder>,
    pub database: Database,
    pub scratch: Scratch,
    shutdown: CancellationToken,
    workers: tokio::task::JoinHandle<()>,
    next_message: i32,
}

impl Service {
    /// Starts the service in `scratch` with `options`; `prepare` may fill the database first.
    pub async fn start(
        scratch: Scratch,
        options: Options,
        prepare: impl AsyncFnOnce(&Database),
    ) -> Self {
        let pipeline = crate::load(&options.manifest).await;
        let database = Database::open(&database_path(&scratch)).unwrap();
        prepare(&database).await;
        let llm = Arc::new(ScriptedLlm::new("the fake LLM", options.echo_every));
        let replies = Recorded::default();
        let recorder = replies.0.clone();
        let service = ChatService::new(
            ChatConfig {
                history_messages: 10,
                queue_capacity: 10,
                llm_concurrency: options.workers,
                shutdown_grace: GRACE,
                edit_interval: Duration::from_secs(1),
                time_zone: options.zone,
            },
            LlmConfig {
                primary: BackendSettings {
                    api: Api::Ollama,
                    url: String::new(),
                    api_key: None,
                    model: "test".into(),
                },
                fallback: None,
                timeouts: Default::default(),
                keep_alive: None,
                options: Default::default(),
            },
            llm.clone(),
            Arc::new(ArcSwap::from_pointee(pipeline)),
            &database,
            Arc::new(replies),
        );
        service.recover().await.unwrap();
        let shutdown = CancellationToken::new();
        let workers = tokio::spawn({
            let (service, shutdown) = (service.clone(), shutdown.clone());
            async move { service.run_workers(shutdown).await }
        });
        Self {
            service,
            llm,
            recorder,
            database,
            scratch,
            shutdown,
            workers,
            next_message: 0,
        }
    }

    /// `text` from `chat`, as its next message.
    pub async fn send(&mut self, chat: i64, text: &str) -> Accepted {
        self.next_message += 1;
        self.service
            .accept(new_job(chat, self.next_message, text))
            .await
            .unwrap()
    }

    /// Waits until `chat` has `n` answers or notices (10 minutes of the tokio clock: no
    /// wait at all on a paused one).
    pub async fn answered(&self, chat: i64, n: usize) {
        self.answered_within(chat, n, Duration::from_secs(600))
            .await
    }

    /// Waits up to `patience` until `chat` has `n` answers or notices.
    pub async fn answered_within(&self, chat: i64, n: usize, patience: Duration) {
        let give_up = Instant::now() + patience;
        while self.recorder.endings(chat).len() < n {
            assert!(
                Instant::now() < give_up,
                "chat {chat} got {:?}",
                self.recorder.shown(chat)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the workers as the bot does on SIGTERM; returns how long that took.
    pub async fn shut_down(self) -> (Duration, Scratch) {
        let started = Instant::now();
        self.shutdown.cancel();
        self.workers.await.unwrap();
        (started.elapsed(), self.scratch)
    }
}

/// The database file of a service started in `scratch`.
pub fn database_path(scratch: &Scratch) -> PathBuf {
    scratch.path().join("data/pi-agent.sqlite3")
}

/// Message `message_id` of `chat`, from its one user.
pub fn new_job(chat: i64, message_id: i32, text: &str) -> NewJob {
    NewJob {
        chat_id: ChatId(chat),
        kind: JobKind::Message { message_id },
        user_id: UserId(chat),
        text: text.to_owned(),
        origin: Origin::default(),
        received_unix_ms: 0,
    }
}
