//! The real `pi-agent run` as a child process, wired to a fake Telegram and a fake Ollama
//! on loopback, with its log captured to a file.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::Scratch;
use crate::fake_llm::{Backend, FakeLlm};
use crate::fake_telegram::{FakeTelegram, SentMessage};

/// A token of the right shape; no test output may ever contain it.
pub const TOKEN: &str = "123456789:AAHtestTokenThatMustNeverLeak_0123456";
/// The owner: allowed and admin.
pub const OWNER: i64 = 1001;
/// Allowed, not admin.
pub const FRIEND: i64 = 1002;
/// Neither.
pub const STRANGER: i64 = 6666;
/// How long a test waits for the bot before failing.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Fakes, a data directory and a manifest for one test.
pub struct Harness {
    /// The `pi-agent` binary (integration tests pass `env!("CARGO_BIN_EXE_pi-agent-cli")`).
    binary: &'static str,
    pub telegram: FakeTelegram,
    /// The model server: the fake Ollama unless started with another backend.
    pub llm: FakeLlm,
    pub scratch: Scratch,
    manifest: PathBuf,
    started: usize,
}

impl Harness {
    pub async fn start(binary: &'static str) -> Self {
        Self::with_backend(binary, Backend::Ollama).await
    }

    /// A harness whose bots talk to a fake server of `backend`'s API.
    pub async fn with_backend(binary: &'static str, backend: Backend) -> Self {
        let scratch = Scratch::default();
        let manifest = scratch.default_manifest();
        Self {
            binary,
            telegram: FakeTelegram::start(TOKEN).await,
            llm: FakeLlm::start(backend).await,
            scratch,
            manifest,
            started: 0,
        }
    }

    /// Uses the manifest at `path` instead of the default one for bots started from now on.
    pub fn use_manifest(&mut self, path: PathBuf) {
        self.manifest = path;
    }

    /// Starts `pi-agent run` with the standard settings plus `extra` (which win).
    pub fn bot(&mut self, extra: &[(&str, &str)]) -> RunningBot {
        self.started += 1;
        let log = self
            .scratch
            .path()
            .join(format!("bot-{}.log", self.started));
        let mut command = self.command("run", extra);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("log file"));
        RunningBot {
            child: command.spawn().expect("starting pi-agent"),
            log,
        }
    }

    /// `pi-agent <subcommand>` configured for the fakes, plus `extra` (which win).
    pub fn command(&self, subcommand: &str, extra: &[(&str, &str)]) -> Command {
        let mut command = Command::new(self.binary);
        command
            .arg(subcommand)
            .current_dir(self.scratch.path())
            .env_clear()
            .env("TELEGRAM_BOT_TOKEN", TOKEN)
            .env("TELEGRAM_API_URL", self.telegram.url().as_str())
            .env("TELEGRAM_ALLOWED_USERS", FRIEND.to_string())
            .env("TELEGRAM_ADMIN_USERS", OWNER.to_string())
            .envs(self.llm.env())
            .env("PIPELINE_MANIFEST", &self.manifest)
            .env("DATA_DIR", self.scratch.path().join("data"))
            .env("STREAM_EDIT_INTERVAL_MS", "200")
            .env("SHUTDOWN_GRACE_SECS", "5")
            .env("RUST_LOG", "info")
            // Off unless a test turns it on: parallel bots would fight over port 8080.
            .env("DASHBOARD_ADDR", "");
        for (key, value) in extra {
            command.env(key, value);
        }
        command
    }

    /// Every log the bots of this test wrote.
    pub fn logs(&self) -> String {
        (1..=self.started)
            .map(|n| {
                std::fs::read_to_string(self.scratch.path().join(format!("bot-{n}.log")))
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Waits until a message of the bot in `chat` satisfies `predicate`; returns it.
    pub async fn wait_for_message(
        &self,
        chat: i64,
        predicate: impl Fn(&SentMessage) -> bool,
    ) -> SentMessage {
        let found = self
            .telegram
            .wait_for(|t| t.sent_messages(chat).iter().any(&predicate), PATIENCE)
            .await;
        let messages = self.telegram.sent_messages(chat);
        assert!(
            found,
            "no matching message in chat {chat}; sent: {messages:#?}\nlog:\n{}",
            self.logs()
        );
        messages.into_iter().find(|m| predicate(m)).unwrap()
    }

    /// Waits until the bot has started up and polls Telegram.
    pub async fn wait_until_polling(&self) {
        let polling = self
            .telegram
            .wait_for(|t| !t.calls("getUpdates").is_empty(), PATIENCE)
            .await;
        assert!(polling, "the bot did not start; log:\n{}", self.logs());
    }

    /// Starts a bot as [`Self::bot`] does and waits for its first `getUpdates`.
    pub async fn polling_bot(&mut self, extra: &[(&str, &str)]) -> RunningBot {
        let polls = self.telegram.calls("getUpdates").len();
        let bot = self.bot(extra);
        let polling = self
            .telegram
            .wait_for(|t| t.calls("getUpdates").len() > polls, PATIENCE)
            .await;
        assert!(polling, "the bot never polled; log:\n{}", self.logs());
        bot
    }

    /// Sends `text` to the bot in the private chat `chat` and waits until its newest
    /// message there reads `answer`.
    pub async fn exchange(&self, chat: i64, text: &str, answer: &str) {
        let seen = self.telegram.sent_messages(chat).len();
        self.telegram.push_message(chat, chat, text);
        let answered = self
            .telegram
            .wait_for(
                |t| {
                    let sent = t.sent_messages(chat);
                    sent.len() > seen && sent.last().is_some_and(|m| m.visible_text == answer)
                },
                PATIENCE,
            )
            .await;
        assert!(answered, "'{text}' not answered; log:\n{}", self.logs());
    }

    /// Waits until the bot acknowledged every update pushed so far.
    pub async fn wait_until_acknowledged(&self) {
        let done = self
            .telegram
            .wait_for(|t| t.pending_updates() == 0, PATIENCE)
            .await;
        assert!(
            done,
            "the bot did not take its updates; log:\n{}",
            self.logs()
        );
    }
}

/// A running bot; killed when dropped.
pub struct RunningBot {
    child: Child,
    pub log: PathBuf,
}

impl RunningBot {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running (it did not crash or exit).
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("polling pi-agent").is_none()
    }

    /// `kill -9`: no shutdown code runs.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The base URL (`http://127.0.0.1:PORT`) of this bot's dashboard, once it logged it.
    pub async fn dashboard_url(&self) -> String {
        let started = std::time::Instant::now();
        loop {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(at) = log.find("dashboard on http://") {
                let rest = &log[at + "dashboard on ".len()..];
                return rest.split('/').take(3).collect::<Vec<_>>().join("/");
            }
            assert!(started.elapsed() < PATIENCE, "no dashboard; log:\n{log}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        self.child.wait().expect("waiting for pi-agent")
    }
}

impl Drop for RunningBot {
    fn drop(&mut self) {
        self.kill();
    }
}
