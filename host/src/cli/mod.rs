//! The `pi-agent` command line: parses arguments, reads the config, sets up logging and
//! hands over to the command. Exit codes: 0 success, 1 failure, 2 invalid configuration.

mod chat;
mod doctor;
mod fixtures;
mod logging;
mod pipeline;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, Env, LogFormat, data_dir, default_model};
use crate::pipeline::Arch;

#[derive(Parser)]
#[command(
    name = "pi-agent",
    version,
    about = "A private LLM assistant for a Raspberry Pi"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the Telegram bot (the default).
    Run,
    /// Chat in this terminal through the same pipeline and Ollama, without Telegram.
    Chat,
    /// Check the configuration, pipeline, data directory, Ollama and Telegram token.
    /// Exit 0 when every check passes, 1 when any fails (an invalid variable included).
    Doctor,
    /// Is a running bot's polling loop alive and reaching Telegram? For container
    /// healthchecks: reads the heartbeat in DATA_DIR, touches no network. Exit 0 or 1.
    Health,
    /// Load, run and test guest pipelines in the sandbox, without Telegram or Ollama.
    #[command(subcommand)]
    Pipeline(PipelineCommand),
}

#[derive(Subcommand)]
pub enum PipelineCommand {
    /// Load every stage and print name, role, size, compile time and limits.
    Check {
        /// Manifest to load [default: $PIPELINE_MANIFEST or pipeline.toml]
        #[arg(long)]
        manifest: Option<PathBuf>,
    },
    /// Print the prompt the LLM would get for MESSAGE, and the shaped form of REPLY.
    Run {
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// The user's message.
        #[arg(long)]
        message: String,
        /// A reply as the LLM would write it, to run through the shapers.
        #[arg(long)]
        reply: Option<String>,
        /// Earlier turns: a TOML file with `[[history]]` entries (`role`, `content`).
        #[arg(long)]
        history: Option<PathBuf>,
    },
    /// Run the fixture files (*.toml) in DIR and print a pass/fail table.
    Test {
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Fixture directory [default: the manifest's `fixtures`]
        dir: Option<PathBuf>,
    },
    /// Compile guests ahead of time for a machine of ARCH, into `precompiled/` beside each
    /// guest, where a bot on such a machine loads them instead of compiling: on a PC,
    /// `--target aarch64` compiles a Python guest for the Pi in seconds, which would take
    /// the Pi minutes and much of its memory.
    Compile {
        /// Manifest whose guests to compile [default: $PIPELINE_MANIFEST or pipeline.toml]
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// aarch64 (a Raspberry Pi 4 or 5 with a 64-bit OS) or x86_64 [default: this
        /// machine's]
        #[arg(long)]
        target: Option<Arch>,
        /// Guest files to compile [default: every guest of the manifest]
        guests: Vec<PathBuf>,
        /// Compile the guest on stdin into the compile cache in DIR, for this machine: the
        /// bot runs this as a short-lived child, so Cranelift's memory leaves with it.
        #[arg(long, hide = true, conflicts_with_all = ["manifest", "target", "guests"])]
        cache_dir: Option<PathBuf>,
    },
}

/// Runs the command line; the binary's whole `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut env = Env::from_process();
    let log_format = env.parse("LOG_FORMAT", LogFormat::Pretty, "pretty or json", |_| true);
    let secrets: logging::Secrets = [
        ("TELEGRAM_BOT_TOKEN", "[bot token]"),
        ("DASHBOARD_TOKEN", "[dashboard token]"),
        ("LLM_API_KEY", "[LLM API key]"),
        ("LLM_FALLBACK_API_KEY", "[LLM API key]"),
    ]
    .into_iter()
    .filter_map(|(name, replacement)| Some((env.get(name)?, replacement)))
    .collect();
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Doctor => {
            logging::init(log_format, secrets);
            return runtime().block_on(doctor::run(env));
        }
        Command::Health => {
            let data_dir = data_dir(&env);
            if let Err(code) = finish_config(env) {
                return code;
            }
            return match crate::health::check(&data_dir, std::time::SystemTime::now()) {
                Ok(summary) => {
                    println!("{summary}");
                    ExitCode::SUCCESS
                }
                Err(unhealthy) => {
                    eprintln!("unhealthy: {unhealthy}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Pipeline(command) => {
            let pipeline = crate::config::pipeline(&mut env);
            let database = crate::config::database(&env);
            let model = default_model(&env);
            if let Err(code) = finish_config(env) {
                return code;
            }
            logging::init(log_format, secrets);
            runtime().block_on(pipeline::run(command, pipeline, &database, &model))
        }
        command @ (Command::Run | Command::Chat) => {
            let with_telegram = matches!(command, Command::Run);
            let config = Config::from_env(&mut env, with_telegram);
            if let Err(code) = finish_config(env) {
                return code;
            }
            logging::init(log_format, secrets);
            let runtime = runtime();
            let outcome = if with_telegram {
                runtime.block_on(run_until_signal(config))
            } else {
                runtime.block_on(chat::run(config))
            };
            outcome.map(|()| ExitCode::SUCCESS)
        }
    };
    result.unwrap_or_else(|error| {
        eprintln!("error: {error:#}");
        ExitCode::FAILURE
    })
}

/// Invalid configuration: the message lists every bad variable; exit code 2 (`doctor`
/// instead reports them among its checks).
fn finish_config(env: Env) -> Result<(), ExitCode> {
    env.finish().map_err(|problems| {
        eprint!("{problems}");
        ExitCode::from(2)
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("starting the async runtime")
}

/// Runs the bot until ctrl-c or SIGTERM.
async fn run_until_signal(config: Config) -> anyhow::Result<()> {
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            wait_for_signal().await;
            tracing::info!("shutting down: no new messages; running answers may finish");
            shutdown.cancel();
        }
    });
    crate::app::run_bot(config, shutdown).await
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
