//! The `pi-agent` command line: parses arguments, reads the config, sets up logging and
//! hands over to the command. Exit codes: 0 success, 1 failure, 2 invalid configuration.

mod fixtures;
mod pipeline;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Env, PipelineConfig};

#[derive(Parser)]
#[command(
    name = "pi-agent",
    version,
    about = "A private LLM assistant for a Raspberry Pi"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
}

/// Runs the command line; the binary's whole `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut env = Env::from_process();
    let config = PipelineConfig::from_env(&mut env);
    if let Err(problems) = env.finish() {
        eprint!("{problems}");
        return ExitCode::from(2);
    }
    init_tracing();
    let result = match cli.command {
        Command::Pipeline(command) => pipeline::run(command, config),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr; `RUST_LOG` filters (default: info for pi-agent and guests, warn for
/// libraries).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,pi_agent=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}
