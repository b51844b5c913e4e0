//! `pi-agent pipeline check | run | test`: guest pipelines in the sandbox, no Telegram, no
//! Ollama.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;

use super::PipelineCommand;
use super::fixtures::{self, Run};
use crate::pipeline::PipelineConfig;
use crate::pipeline::{
    Arch, ContentHash, FormatOutcome, Manifest, PRECOMPILED_DIR, Pipeline, compile_into,
    native_compiler, precompile,
};
use crate::prompt::{ChatContext, ChatMessage, Prompt, Reply, Role};
use crate::store::Database;

pub async fn run(
    command: PipelineCommand,
    config: PipelineConfig,
    database: &Path,
    model: &str,
) -> anyhow::Result<ExitCode> {
    // Guests with a `kv` grant use the bot's own stores, as they would in the bot.
    let load = async |manifest| {
        let database = Database::open(database)?;
        crate::app::load_pipeline(&config, manifest, &database).await
    };
    match command {
        PipelineCommand::Check { manifest } => check(&*load(manifest).await?),
        PipelineCommand::Run {
            manifest,
            message,
            reply,
            history,
        } => {
            let history = history
                .map(|path| fixtures::read_history(&path))
                .transpose()?
                .unwrap_or_default();
            let pipeline = load(manifest).await?;
            print_run(&simulate(&pipeline, model, history, &message, reply).await?);
            Ok(ExitCode::SUCCESS)
        }
        PipelineCommand::Test { manifest, dir } => {
            let pipeline = load(manifest).await?;
            let dir = dir.or_else(|| pipeline.manifest().fixtures.clone()).context(
                "no fixture directory: pass one (`pipeline test DIR`) or set `fixtures` in the manifest",
            )?;
            test(&pipeline, model, &dir).await
        }
        PipelineCommand::Compile {
            cache_dir: Some(cache_dir),
            ..
        } => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("cannot read the guest from stdin")?;
            let hash = ContentHash::of(&bytes);
            compile_into(&native_compiler()?, &cache_dir, &bytes, hash)?;
            Ok(ExitCode::SUCCESS)
        }
        PipelineCommand::Compile {
            manifest,
            target,
            guests,
            cache_dir: None,
        } => {
            let guests = if guests.is_empty() {
                Manifest::guest_paths(&manifest.unwrap_or(config.manifest))?
            } else {
                guests
            };
            let target = target.or_else(Arch::host).context(
                "this machine's architecture has no precompiled guests: pass --target aarch64 or x86_64",
            )?;
            compile(target, &guests)
        }
    }
}

/// `pipeline compile --target`: each guest into `precompiled/` beside it, one line each.
fn compile(target: Arch, guests: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let compiler = target.compiler()?;
    println!(
        "{} guest(s) for {target}, into {PRECOMPILED_DIR}/ beside each:",
        guests.len()
    );
    for guest in guests {
        let done = precompile(&compiler, guest)?;
        let what = match done.compile_time {
            Some(took) => format!("compiled in {:.1} s", took.as_secs_f64()),
            None => "up to date".into(),
        };
        let removed = match done.removed {
            0 => String::new(),
            n => format!(", {n} old entr{} removed", if n == 1 { "y" } else { "ies" }),
        };
        println!(
            "{}  {:>7.1} MB  {what}{removed}",
            guest.display(),
            done.size_bytes as f64 / 1e6
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// One message through the pipeline, as the bot would run it, with `reply` standing in for
/// the LLM.
pub async fn simulate(
    pipeline: &Pipeline,
    model: &str,
    history: Vec<ChatMessage>,
    message: &str,
    reply: Option<String>,
) -> anyhow::Result<Run> {
    let ctx = ChatContext {
        unix_ms: crate::clock::unix_ms(),
        ..ChatContext::default()
    };
    let mut messages = history;
    messages.push(ChatMessage::new(Role::User, message));
    let prompt = Prompt {
        model: model.to_owned(),
        messages,
        options: Default::default(),
    };
    Ok(match pipeline.format(&ctx, prompt).await? {
        FormatOutcome::Rejected { stage, reason } => Run::Rejected { stage, reason },
        FormatOutcome::Reply { prompt, reply } => {
            let shaped = pipeline.shape(&ctx, &prompt, reply, true).await?;
            Run::Answered { prompt, shaped }
        }
        FormatOutcome::Prompt(prompt) => {
            let shaped = match reply {
                Some(text) => Some(
                    pipeline
                        .shape(&ctx, &prompt, Reply::plain(text), true)
                        .await?,
                ),
                None => None,
            };
            Run::Asked { prompt, shaped }
        }
    })
}

fn check(pipeline: &Pipeline) -> anyhow::Result<ExitCode> {
    println!(
        "{}: {} stage(s), all loaded",
        pipeline.manifest().path.display(),
        pipeline.stages().len()
    );
    println!(
        "{:<16} {:<17} {:<5} {:>10} {:<12} {:>9} {:<11} {:>8} {:>8} {:>8}  grants",
        "stage", "role", "wit", "size", "hash", "load", "compile", "memory", "timeout", "output"
    );
    for s in pipeline.stages() {
        println!(
            "{:<16} {:<17} {:<5} {:>6} KiB {:<12} {:>6} ms {:<11} {:>4} MiB {:>5} ms {:>4} KiB  {}",
            s.name,
            s.role.to_string(),
            s.wit_version.to_string(),
            s.size_bytes.div_ceil(1024),
            s.hash.short(),
            s.load_time.as_millis(),
            s.source.label(),
            s.limits.memory_mib(),
            s.limits.timeout.as_millis(),
            s.limits.max_output_bytes / 1024,
            s.grants,
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_run(run: &Run) {
    let (prompt, shaped, heading) = match run {
        Run::Rejected { stage, reason } => {
            println!("Rejected by stage '{stage}': {reason}");
            return;
        }
        Run::Asked { prompt, shaped } => (prompt, shaped.as_ref(), "Reply (shaped)"),
        Run::Answered { prompt, shaped } => (
            prompt,
            Some(shaped),
            "Direct reply from a formatter (the LLM is not asked)",
        ),
    };
    println!(
        "── Prompt for {} ({} messages)",
        prompt.model,
        prompt.messages.len()
    );
    for message in &prompt.messages {
        println!("[{}] {}", message.role, message.content);
    }
    if let Some(reply) = shaped {
        println!("── {heading}, format {:?}", reply.format);
        println!("{}", reply.text);
    }
}

async fn test(pipeline: &Pipeline, model: &str, dir: &Path) -> anyhow::Result<ExitCode> {
    let cases = fixtures::load_dir(dir)?;
    anyhow::ensure!(
        !cases.is_empty(),
        "no fixture files (*.toml) in {}",
        dir.display()
    );
    let width = cases
        .iter()
        .map(|(p, _)| name(p).len())
        .max()
        .unwrap_or(0)
        .max(7);
    println!("{:<width$}  result  time", "fixture");
    let (mut passed, mut failed) = (0, 0);
    for (path, fixture) in cases {
        let started = Instant::now();
        let failures = match fixture {
            Err(e) => vec![format!("{e:#}")],
            Ok(f) => match simulate(pipeline, model, f.history, &f.message, f.reply).await {
                Ok(run) => fixtures::evaluate(&f.expect, &run),
                Err(e) => vec![format!("{e:#}")],
            },
        };
        let verdict = if failures.is_empty() { "PASS" } else { "FAIL" };
        println!(
            "{:<width$}  {verdict}    {:>4} ms",
            name(&path),
            started.elapsed().as_millis()
        );
        for failure in &failures {
            println!("{:<width$}    - {failure}", "");
        }
        if failures.is_empty() {
            passed += 1
        } else {
            failed += 1
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}
