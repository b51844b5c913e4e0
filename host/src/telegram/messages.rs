//! Everything a person reads in a Telegram chat that is not the model's answer: notices
//! from the chat service (given as data), replies to commands, and what the LLM's errors
//! mean for them — each saying what happened and what to do next. The terminal chat
//! (`pi-agent chat`) words its notices with these too.

use std::fmt::Write as _;
use std::time::Duration;

use crate::chat::{ModelChoice, ModelSwitch, Notice};
use crate::ids::{TaskId, UserId};
use crate::llm::{Api, LlmError};
use crate::prompt::ScheduledRun;
use crate::schedule::{Added, Listed, ScheduleError, TaskKind};
use crate::zone::Zone;

/// A notice from the chat service, in the chat's words.
pub fn notice(notice: &Notice) -> String {
    match notice {
        Notice::Rejected { reason } => format!("🚫 {reason}"),
        Notice::StageFailed(error) => format!(
            "⚠️ Sorry, I could not process that: {error}. The bot's owner can find details in the log."
        ),
        Notice::LlmFailed(error) => format!("⚠️ {}", llm_error(error)),
        Notice::DatabaseFailed => {
            "⚠️ The bot's database is not working; your message was not answered.".to_owned()
        }
        Notice::TooLong(too_long) => format!(
            "⚠️ That message is too long for the model: it takes about {} tokens, and a prompt \
             may hold {} here (OLLAMA_NUM_CTX). Send a shorter one, or split it.",
            too_long.needed, too_long.limit
        ),
        Notice::Stopped => "⏹ Stopped.".to_owned(),
        Notice::CutOff {
            num_predict_set: true,
        } => "✂️ The answer reached the length limit (OLLAMA_NUM_PREDICT) and was cut off."
            .to_owned(),
        Notice::CutOff {
            num_predict_set: false,
        } => "✂️ The answer reached the model server's length limit (or the end of its context) and was cut off."
            .to_owned(),
        Notice::GivenUp => "⚠️ Sorry, your message could not be processed: the bot stopped while \
             answering it, several times. The bot's owner has been told."
            .to_owned(),
        Notice::FellBack {
            unavailable,
            model,
            server,
        } => format!(
            "ℹ️ {} is unavailable — answering with {model} on {server}.",
            capitalised(unavailable)
        ),
        Notice::TaskSkipped {
            task_id,
            text,
            was_due,
        } => format!(
            "⏰ Skipped “{text}” (task {task_id}): it was due {was_due}, while the bot was not \
             running — too long ago to send now."
        ),
    }
}

/// What the model server's failure means for the user, and what to do about it.
pub fn llm_error(error: &LlmError) -> String {
    match error {
        LlmError::Unreachable { server, url } => format!(
            "{} is not reachable at {url} — is it running? {}",
            server_name(*server),
            match server {
                Api::Ollama => "(on the Pi: `systemctl status ollama`)",
                Api::OpenAi => "(check LLM_URL, and that the machine is on)",
            }
        ),
        LlmError::ModelNotFound { server, model } => match server {
            Api::Ollama => format!("model {model} is not installed — run `ollama pull {model}`"),
            Api::OpenAi => format!(
                "model {model} is not served by the LLM server — /model lists the ones it serves"
            ),
        },
        LlmError::Unauthorized { server } => format!(
            "{} refused the API key — check LLM_API_KEY (or LLM_FALLBACK_API_KEY)",
            server_name(*server)
        ),
        LlmError::Busy {
            server,
            retry_after,
        } => format!(
            "{} is busy with other requests — try again {}",
            server_name(*server),
            try_again(*retry_after)
        ),
        LlmError::RateLimited {
            server,
            retry_after,
        } => format!(
            "{} is limiting how often it answers — try again {}",
            server_name(*server),
            try_again(*retry_after)
        ),
        LlmError::Http {
            server,
            status,
            message,
        } => format!(
            "{} answered HTTP {status}: {message} — {}",
            server_name(*server),
            match server {
                Api::Ollama => "see `journalctl -u ollama`",
                Api::OpenAi => "see the LLM server's log",
            }
        ),
        LlmError::Generation(why) => format!("the model failed while answering: {why} — try again"),
        LlmError::FirstTokenTimeout(wait) => format!(
            "the model did not start answering within {wait:?} (it may still be loading) — try again in a minute"
        ),
        LlmError::Stalled(wait) => {
            format!("the model server stopped answering for {wait:?} — try again")
        }
        LlmError::TotalTimeout(limit) => format!(
            "the answer took longer than {limit:?} and was cut off — ask for something shorter"
        ),
        LlmError::Interrupted(why) => {
            format!("the connection to the model server broke ({why}) — try again")
        }
        LlmError::Protocol(why) => {
            format!("unexpected answer from the model server ({why}) — is it a compatible version?")
        }
    }
}

/// How the user's messages name a server.
fn server_name(api: Api) -> &'static str {
    match api {
        Api::Ollama => "Ollama",
        Api::OpenAi => "the LLM server",
    }
}

/// "in 30 s" when the server said when, else "shortly".
fn try_again(retry_after: Option<Duration>) -> String {
    match retry_after {
        Some(after) => format!("in {} s", after.as_secs().max(1)),
        None => "shortly".to_owned(),
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The first line of a scheduled task's reply, and the whole of a reminder: "⏰ buy
/// candles", with when it was due if it fires late (the bot was not running, or the clock
/// jumped).
pub fn announcement(text: &str, run: &ScheduledRun, zone: &Zone) -> String {
    if !run.late {
        return format!("⏰ {text}");
    }
    format!(
        "⏰ {text}\n(late: it was due {})",
        zone.format(run.due_unix_ms, crate::clock::unix_ms())
    )
}

/// What a stranger is told: their id, so the owner can let them in.
pub fn stranger(user_id: UserId) -> String {
    format!(
        "This is a private bot. Your Telegram user id is {user_id} — to be let in, ask the owner to add it to TELEGRAM_ALLOWED_USERS."
    )
}

pub const TEXT_ONLY: &str = "I can only read text messages.";
pub const QUEUE_FULL: &str =
    "I'm busy with too many messages right now. Please try again in a few minutes.";
pub const HISTORY_FORGOTTEN: &str = "Done — I've forgotten this chat's history.";
pub const ADMINS_ONLY: &str = "That command is for the bot's admins.";
pub const NOTHING_TO_STOP: &str = "Nothing to stop.";
pub const WHICH_TASK: &str = "Which task? /cancel 3 — /tasks lists them with their ids.";

/// Where a message stands in the queue.
pub fn queue_position(ahead: usize) -> String {
    format!("⏳ {ahead} message(s) ahead of yours — I'll answer as soon as I can.")
}

pub fn task_cancelled(id: TaskId) -> String {
    format!("Cancelled task {id}.")
}

pub fn no_such_task(id: TaskId) -> String {
    format!("This chat has no task {id}: /tasks lists them.")
}

pub fn time_zone_is(zone: &Zone) -> String {
    format!(
        "This chat's time zone is {}. Change it with /timezone Europe/Madrid (any IANA name).",
        zone.name()
    )
}

pub fn time_zone_set(result: Result<Zone, ScheduleError>) -> String {
    match result {
        Ok(zone) => format!(
            "This chat's time zone is now {}; recurring tasks follow it.",
            zone.name()
        ),
        Err(e) => format!("⚠️ {e}"),
    }
}

/// What `/reload` answers.
pub fn reloaded(result: Result<String, String>) -> String {
    match result {
        Ok(report) => format!("✅ {report}"),
        Err(e) => format!("⚠️ Reload failed; the old pipeline keeps serving.\n{e}"),
    }
}

/// What `/model <name>` did.
pub fn model_switch(switch: ModelSwitch) -> String {
    match switch {
        ModelSwitch::Switched { model } => format!("This chat now uses {model}."),
        ModelSwitch::BackToDefault { model } => format!("Back to the default model, {model}."),
        ModelSwitch::NotInstalled { model } => format!(
            "{model} is not on the model server: see /model for the list (with Ollama on the Pi, `ollama pull {model}` installs it)."
        ),
        ModelSwitch::CannotCheck(e) => {
            format!("I can't check the models right now: {}", llm_error(&e))
        }
    }
}

/// What `/model` lists.
pub fn model_list(choice: ModelChoice) -> String {
    let current = &choice.current;
    match &choice.installed {
        Ok(models) => {
            let mut text = format!("This chat uses {current}. Models on the server:\n");
            for m in models {
                let marker = if choice.is_current(m) { "▶" } else { "•" };
                // OpenAI-compatible servers do not say how big a model is.
                let size = match m.size_bytes / 1_000_000 {
                    0 => String::new(),
                    mb => format!(" ({mb} MB)"),
                };
                let _ = writeln!(text, "{marker} {}{size}", m.name);
            }
            text + "Switch with /model <name>."
        }
        Err(e) => format!(
            "This chat uses {current}. I can't list models: {}",
            llm_error(e)
        ),
    }
}

/// What `/remind` and `/every` answer: the exact time understood, or why none was.
pub fn task_added(added: Result<Added, ScheduleError>) -> String {
    match added {
        Ok(added) => {
            let when = match &added.recurrence {
                None => added.first.clone(),
                Some(recurrence) => format!("{recurrence}, first {}", added.first),
            };
            format!(
                "⏰ {when}: {}\n(task {id}, {zone} time · /cancel {id})",
                added.text,
                id = added.id,
                zone = added.zone.name()
            )
        }
        Err(e) => format!("⚠️ {e}"),
    }
}

/// What `/tasks` lists.
pub fn tasks((tasks, zone): (Vec<Listed>, Zone)) -> String {
    if tasks.is_empty() {
        return "No tasks in this chat. Add one with /remind or /every.".to_owned();
    }
    let mut text = format!("Tasks in this chat ({} time):\n", zone.name());
    for task in tasks {
        let what = match task.kind {
            TaskKind::Reminder => "reminder",
            TaskKind::Prompt => "prompt",
        };
        let schedule = match &task.recurrence {
            Some(recurrence) => format!("{recurrence}, next {}", task.next),
            None => task.next,
        };
        let _ = writeln!(text, "{} · {schedule} · {what}: {}", task.id, task.text);
    }
    text + "Cancel one with /cancel <id>."
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llm_errors_say_what_to_do() {
        let missing = LlmError::ModelNotFound {
            server: Api::Ollama,
            model: "gemma2:2b".into(),
        };
        assert_eq!(
            llm_error(&missing),
            "model gemma2:2b is not installed — run `ollama pull gemma2:2b`"
        );
        let slow = LlmError::FirstTokenTimeout(Duration::from_secs(120));
        assert!(
            llm_error(&slow).contains("within 120s"),
            "{}",
            llm_error(&slow)
        );
        let limited = LlmError::RateLimited {
            server: Api::OpenAi,
            retry_after: Some(Duration::from_secs(20)),
        };
        assert_eq!(
            llm_error(&limited),
            "the LLM server is limiting how often it answers — try again in 20 s"
        );
        let busy = LlmError::Busy {
            server: Api::Ollama,
            retry_after: None,
        };
        assert_eq!(
            llm_error(&busy),
            "Ollama is busy with other requests — try again shortly"
        );
    }

    #[test]
    fn the_fallbacks_note_names_both_servers() {
        let note = Notice::FellBack {
            unavailable: "the OpenAI-compatible server at http://gpu-box:8000/v1".into(),
            model: "gemma2:2b".into(),
            server: "Ollama at http://127.0.0.1:11434".into(),
        };
        assert_eq!(
            notice(&note),
            "ℹ️ The OpenAI-compatible server at http://gpu-box:8000/v1 is unavailable — \
             answering with gemma2:2b on Ollama at http://127.0.0.1:11434."
        );
    }

    #[test]
    fn a_late_announcement_says_when_it_was_due() {
        let run = ScheduledRun {
            task_id: TaskId(3),
            due_unix_ms: 1_700_000_000_000,
            late: true,
        };
        let text = announcement("tea", &run, &Zone::utc());
        assert!(text.starts_with("⏰ tea\n(late: it was due "), "{text}");
        let on_time = ScheduledRun { late: false, ..run };
        assert_eq!(announcement("tea", &on_time, &Zone::utc()), "⏰ tea");
    }
}
