//! What the bot's admins read: `/status`, and the notices the bot sends them (a message given
//! up, a pipeline reload that failed).

use std::fmt::Write as _;
use std::time::Duration;

use super::messages::llm_error;
use crate::chat::{AdminNotice, GivenUpJob, Status};
use crate::schedule::Summary;
use crate::store::StoreError;

/// A notice for the admins, in their words.
pub fn notice(notice: &AdminNotice) -> String {
    match notice {
        AdminNotice::GaveUp {
            chat_id,
            job,
            attempts,
        } => {
            let what = match job {
                GivenUpJob::Message { message_id } => format!("message {message_id}"),
                GivenUpJob::Task { task_id } => format!("scheduled task {task_id}"),
                GivenUpJob::UnknownTask => "a scheduled task".to_owned(),
            };
            format!(
                "⚠️ Gave up on a message in chat {chat_id} ({what}): the bot stopped while \
                 answering it {attempts} times in a row. The log of those runs says why."
            )
        }
        AdminNotice::ReloadFailed { trigger, error } => format!(
            "⚠️ Pipeline reload failed ({trigger}); the old pipeline keeps serving.\n{error}"
        ),
    }
}

/// What `/status` shows.
pub fn status(status: Status, tasks: Result<Summary, StoreError>) -> String {
    let mut text = String::new();
    let (server, loaded) = match status.loaded_models {
        Ok(models) if models.is_empty() => ("up".to_owned(), "none".to_owned()),
        Ok(models) => (
            "up".to_owned(),
            models
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        ),
        Err(e) => (format!("DOWN — {}", llm_error(&e)), "?".to_owned()),
    };
    let _ = writeln!(text, "LLM: {}", status.serving);
    let _ = writeln!(text, "Server: {server}");
    let _ = writeln!(
        text,
        "Default model: {} (loaded: {loaded})",
        status.default_model
    );
    let stages: Vec<String> = status
        .stages
        .iter()
        .map(|s| {
            let age = s.loaded_at.elapsed().unwrap_or_default();
            let grants = if s.grants.is_empty() {
                String::new()
            } else {
                format!(", grants: {}", s.grants)
            };
            format!(
                "{} ({}, {}, WIT {}{grants}, loaded {} ago)",
                s.name,
                s.role,
                s.hash.short(),
                s.wit_version,
                human_duration(age)
            )
        })
        .collect();
    let _ = writeln!(
        text,
        "Pipeline: {}",
        if stages.is_empty() {
            "no stages".to_owned()
        } else {
            stages.join(" → ")
        }
    );
    let _ = writeln!(
        text,
        "Queue: {} waiting, {} running",
        status.waiting, status.running
    );
    let _ = match tasks {
        Ok(Summary { count, next: None }) => writeln!(text, "Tasks: {count}"),
        Ok(Summary {
            count,
            next: Some(next),
        }) => writeln!(
            text,
            "Tasks: {count}; next: task {} in chat {}, {}",
            next.id, next.chat_id, next.when
        ),
        Err(e) => writeln!(text, "Tasks: ? — {e}"),
    };
    let tps = status
        .last_tokens_per_second
        .map_or("—".to_owned(), |t| format!("{t:.1}"));
    let _ = writeln!(text, "Last speed: {tps} tokens/s");
    if let Some(cache) = status.prompt_cache {
        let _ = writeln!(
            text,
            "Prompt cache: {:.0}% of the prompt tokens of the last {} answer(s) came from the model's cache{}",
            cache.cached_share * 100.0,
            cache.answers,
            if cache.estimated { " (estimated)" } else { "" }
        );
    }
    if let Some(first) = status.first_token {
        let _ = writeln!(
            text,
            "First token: {:.1} s median, {:.1} s p90 (last {} answer(s))",
            first.p50.as_secs_f64(),
            first.p90.as_secs_f64(),
            first.answers
        );
    }
    let _ = write!(text, "Uptime: {}", human_duration(status.uptime));
    text
}

pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}
