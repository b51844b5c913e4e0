//! `pi-agent doctor`: checks the configuration, the pipeline, the data directory, Ollama and
//! the Telegram token, printing ✓ or ✗ with the fix for each problem. Every check runs,
//! an invalid variable included; exits 0 when all pass, 1 when any fails.

use std::process::ExitCode;

use teloxide::prelude::Requester;

use crate::app;
use crate::config::{self, Config, ConfigError, Env};
use crate::llm::{self, Api, BackendSettings};
use crate::store::Database;
use crate::telegram::{self, messages};

pub async fn run(mut env: Env) -> ExitCode {
    let config = Config::from_env(&mut env, true);
    let mut report = Report::default();
    for old in config::llm::overridden(&env) {
        let new = old.replacen("OLLAMA", "LLM", 1);
        report.pass(&new, &format!("set, and wins over {old}"));
    }
    match env.finish() {
        Ok(()) => report.pass("configuration", "all variables valid"),
        Err(ConfigError(problems)) => {
            for p in problems {
                report.fail(
                    &format!("configuration: {}", p.variable),
                    &format!("set it to {} in .env", p.expected),
                );
            }
        }
    }

    let database = Database::open(&config.database());
    // The pipeline's kv stores are in the database; without it, a private one will do to
    // check the guests.
    let kv_database = database
        .as_ref()
        .map_or_else(|_| Database::in_memory(), Clone::clone);
    match app::load_pipeline(&config.pipeline, None, &kv_database).await {
        Ok(p) => report.pass(
            "pipeline",
            &format!(
                "{} stage(s) from {}",
                p.stages().len(),
                p.manifest().path.display()
            ),
        ),
        Err(e) => report.fail("pipeline", &format!("{e:#}")),
    }

    match database {
        Ok(_) => report.pass("data directory", &config.database().display().to_string()),
        Err(e) => report.fail("data directory", &e.to_string()),
    }

    let primary = match config.llm.primary.api {
        Api::Ollama => "Ollama",
        Api::OpenAi => "LLM server",
    };
    check_server(&mut report, primary, &config.llm.primary, &config).await;
    if let Some(fallback) = &config.llm.fallback {
        check_server(&mut report, "fallback", &fallback.backend, &config).await;
    }

    if !config.telegram.token.expose().is_empty() {
        let bot = telegram::bot(&config.telegram);
        match bot.get_me().await {
            Ok(me) => report.pass("Telegram", &format!("token valid: @{}", me.username())),
            Err(e) => report.fail(
                "Telegram",
                &format!(
                    "{} — check TELEGRAM_BOT_TOKEN and the network",
                    telegram::redact(&e.to_string(), &bot)
                ),
            ),
        }
    }
    if config.telegram.allowed_users.is_empty() && config.telegram.admin_users.is_empty() {
        report.fail("access", "nobody may use the bot: set TELEGRAM_ALLOWED_USERS (send the bot a message to learn your id)");
    }
    report.finish()
}

/// The server is up and has its model.
async fn check_server(report: &mut Report, what: &str, server: &BackendSettings, config: &Config) {
    let checked = match llm::backend(server, &config.llm) {
        Ok(client) => client
            .check_model(&server.model)
            .await
            .map_err(|e| messages::llm_error(&e)),
        Err(e) => Err(e.to_string()),
    };
    match checked {
        Ok(()) => report.pass(
            what,
            &format!(
                "{} ({}) is up and has {}",
                server.url, server.api, server.model
            ),
        ),
        Err(e) => report.fail(what, &e),
    }
}

#[derive(Default)]
struct Report {
    failed: usize,
}

impl Report {
    fn pass(&mut self, what: &str, detail: &str) {
        println!("✓ {what}: {detail}");
    }

    fn fail(&mut self, what: &str, fix: &str) {
        self.failed += 1;
        println!("✗ {what}: {fix}");
    }

    fn finish(self) -> ExitCode {
        if self.failed == 0 {
            println!("All good.");
            ExitCode::SUCCESS
        } else {
            println!("{} problem(s).", self.failed);
            ExitCode::FAILURE
        }
    }
}
