//! Shared pieces of pi-agent's integration tests: the guests built for them, manifests in
//! temporary directories, and fakes of the Telegram Bot API and Ollama on loopback.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use pi_agent::pipeline::{
    Arch, CompileCache, FormatOutcome, GuestEngine, Pipeline, StageError, StageLimits, precompile,
};
use pi_agent::prompt::{ChatContext, ChatMessage, Prompt, Reply, Role};
use pi_agent::store::{Database, Kv};

pub mod bot;
pub mod fake_calendar;
pub mod fake_llm;
pub mod fake_news;
pub mod fake_ollama;
pub mod fake_openai;
pub mod fake_telegram;
pub mod fake_weather;
pub mod manual_clock;
pub mod model_runner;
pub mod proc_stats;
pub mod samples;
pub mod service;
pub mod timing;

/// Paths of the guests the build script compiled (`PERSONA`, `TELEGRAM_HTML`, `HOSTILE`, …;
/// the Python ones, `PY_PERSONA`, …, through [`python`]).
pub mod guests {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));
}

/// `guest`, one of the Python guests, which are all compiled ahead of time for this machine
/// into `precompiled/` beside them the first time this is called in a test process (and
/// only when a guest changed since the last run): every load takes them from there, as a Pi
/// takes what a PC compiled, instead of spending Cranelift's seconds on an 18 MB component
/// in every test that loads one.
pub fn python(guest: &'static str) -> &'static str {
    static PRECOMPILED: OnceLock<()> = OnceLock::new();
    PRECOMPILED.get_or_init(|| {
        let compiler = Arch::host()
            .expect("tests run on aarch64 or x86_64")
            .compiler()
            .expect("an engine for this architecture");
        for guest in guests::PYTHON {
            precompile(&compiler, Path::new(guest)).unwrap_or_else(|e| panic!("{e:#}"));
        }
    });
    guest
}

/// Serves `app` on `127.0.0.1:<free port>` until the handle is aborted (the fakes abort it
/// when dropped); `what` names the fake in a panic.
pub async fn serve_on_loopback(
    app: axum::Router,
    what: &'static str,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local address");
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
    });
    (addr, server)
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// A temporary directory for manifests and caches, removed when dropped.
pub struct Scratch {
    dir: tempfile::TempDir,
    manifests: std::sync::atomic::AtomicUsize,
}

impl Default for Scratch {
    fn default() -> Self {
        Self {
            dir: tempfile::tempdir().expect("creating a temp dir"),
            manifests: Default::default(),
        }
    }
}

impl Scratch {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a new manifest file with `body` and returns its path.
    pub fn manifest(&self, body: &str) -> PathBuf {
        let n = self
            .manifests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self.dir.path().join(format!("pipeline-{n}.toml"));
        std::fs::write(&path, body).unwrap();
        path
    }

    /// The repository's default `pipeline.toml`, with every guest pointing at the test build
    /// and the fixtures at the repository's.
    pub fn default_manifest(&self) -> PathBuf {
        let text = std::fs::read_to_string(repo_root().join("pipeline.toml")).unwrap();
        let mut table: toml::Table = toml::from_str(&text).unwrap();
        let fixtures = repo_root().join(table["fixtures"].as_str().unwrap());
        table.insert("fixtures".into(), fixtures.display().to_string().into());
        for stage in table["stage"].as_array_mut().unwrap() {
            let stage = stage.as_table_mut().unwrap();
            let guest = match stage["name"].as_str().unwrap() {
                "persona" => guests::PERSONA,
                "telegram-html" => guests::TELEGRAM_HTML,
                other => panic!("no test build of guest '{other}'"),
            };
            stage.insert("guest".into(), guest.into());
        }
        self.manifest(&toml::to_string(&table).unwrap())
    }

    /// A manifest with one stage running `guest`, with optional extra TOML lines for it.
    pub fn single_stage(&self, name: &str, guest: &str, extra: &str) -> PathBuf {
        self.manifest(&format!(
            "[[stage]]\nname = {name:?}\nguest = {guest:?}\n{extra}\n"
        ))
    }
}

/// One user message, as a chat's first message reaches the formatters.
pub fn user_prompt(text: &str) -> Prompt {
    Prompt {
        model: "test".into(),
        messages: vec![ChatMessage::new(Role::User, text)],
        options: Default::default(),
    }
}

/// What the formatters of `pipeline` make of the user message `text` in a default chat.
pub async fn format(pipeline: &Pipeline, text: &str) -> Result<FormatOutcome, StageError> {
    pipeline
        .format(&ChatContext::default(), user_prompt(text))
        .await
}

/// What the shapers of `pipeline` make of the reply `text` (complete when `done`) to a
/// one-message prompt, in a default chat.
pub async fn shape(pipeline: &Pipeline, text: &str, done: bool) -> Result<Reply, StageError> {
    pipeline
        .shape(
            &ChatContext::default(),
            &user_prompt("q"),
            Reply::plain(text),
            done,
        )
        .await
}

/// The direct reply a formatter answered with.
pub fn direct_reply(outcome: FormatOutcome) -> String {
    match outcome {
        FormatOutcome::Reply { reply, .. } => reply.text,
        other => panic!("expected a direct reply, got {other:?}"),
    }
}

/// Loads the manifest at `path` with default limits and no compile cache.
pub async fn load(path: &Path) -> Pipeline {
    try_load(path, &CompileCache::disabled())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

pub async fn try_load(
    path: &Path,
    cache: &CompileCache,
) -> Result<Pipeline, pi_agent::pipeline::LoadError> {
    let engine = GuestEngine::new().expect("engine");
    let kv = Database::in_memory().kv();
    Pipeline::load_file(engine, path, &StageLimits::default(), cache, &kv).await
}

/// Loads the manifest at `path` with its stages' `kv` stores in `kv`.
pub async fn load_with_kv(path: &Path, kv: &Kv) -> Pipeline {
    let engine = GuestEngine::new().expect("engine");
    let cache = CompileCache::disabled();
    Pipeline::load_file(engine, path, &StageLimits::default(), &cache, kv)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}
