//! The dashboard's pages and forms: each handler gathers what its page shows and renders
//! its template (`host/templates/`, compiled into the binary and HTML-escaped by askama).

use std::time::{Duration, Instant, UNIX_EPOCH};

use askama::Template;
use axum::Form;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::State;
use super::auth::{self, Auth, Login};
use super::chart::{self, Style};
use crate::clock;
use crate::ids::{ChatId, TaskId};
use crate::schedule::TaskKind;
use crate::store::ChatCounts;
use crate::telemetry::{self, Bucket};
use crate::zone::Zone;

/// What every page's frame needs: which tab is open, whether there is a session to end.
struct Frame {
    page: &'static str,
    logout: bool,
}

fn frame(state: &State, page: &'static str) -> Frame {
    Frame {
        page,
        logout: state.auth.required(),
    }
}

fn render(page: impl Template) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!("dashboard page failed to render: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page failed to render; see the log\n",
            )
                .into_response()
        }
    }
}

/// The zone the dashboard shows times in and counts "today" by: `TIMEZONE`.
fn zone(state: &State) -> Zone {
    state.parts.chat.preferences().default_zone().clone()
}

/// "3 d 4 h", "2 h 5 min", "40 s".
fn duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    frame: Frame,
    version: &'static str,
    uptime: String,
    memory: String,
    model: String,
    /// Which server answers now (the fallback when the primary is down).
    serving: String,
    /// `Ok`: the models loaded now, with their size when the server says; `Err`: why the
    /// LLM server could not be asked.
    llm: Result<Vec<(String, Option<String>)>, String>,
    waiting: usize,
    running: usize,
    messages_today: u32,
    errors_today: u32,
    first_token: String,
    tokens_per_second: String,
    cache_share: String,
    cache_note: String,
    first_token_p50: String,
    first_token_p90: String,
    first_token_note: String,
    charts: Vec<String>,
    zone: String,
}

pub async fn overview(state: State) -> Response {
    let status = state.parts.chat.status().await;
    let zone = zone(&state);
    let now = clock::unix_ms();
    let day = telemetry::stats().series.last_day(now);
    let midnight = zone.start_of_day(now);
    let today = day.iter().filter(|b| b.start_unix_ms >= midnight);
    let (messages_today, errors_today) =
        today.fold((0, 0), |(m, e), b| (m + b.messages, e + b.errors));
    let latest = |f: fn(&Bucket) -> Option<f64>| day.iter().rev().find_map(f);
    let series = |f: fn(&Bucket) -> Option<f64>| day.iter().map(f).collect::<Vec<_>>();
    let charts = vec![
        chart::last_day(
            "Messages per 15 min",
            &series(|b| Some(f64::from(b.messages))),
            "msgs",
            Style::Bars,
        ),
        chart::last_day(
            "Errors per 15 min",
            &series(|b| Some(f64::from(b.errors))),
            "errors",
            Style::Bars,
        ),
        chart::last_day(
            "First token (mean per 15 min)",
            &series(|b| b.first_token_ms().map(|ms| ms / 1000.0)),
            "s",
            Style::Line,
        ),
        chart::last_day(
            "Tokens per second",
            &series(Bucket::tokens_per_second),
            "t/s",
            Style::Line,
        ),
    ];
    let (cache_share, cache_note) = match status.prompt_cache {
        None => ("–".to_owned(), "no answer yet".to_owned()),
        Some(cache) => (
            format!("{:.0}%", cache.cached_share * 100.0),
            format!(
                "of {} prompt tokens, {}{}",
                cache.prompt_tokens,
                last_answers(cache.answers),
                if cache.estimated { " (estimated)" } else { "" }
            ),
        ),
    };
    let seconds = |d: Duration| format!("{:.1} s", d.as_secs_f64());
    let (first_token_p50, first_token_p90, first_token_note) = match status.first_token {
        None => ("–".to_owned(), "–".to_owned(), "no answer yet".to_owned()),
        Some(first) => (
            seconds(first.p50),
            seconds(first.p90),
            last_answers(first.answers),
        ),
    };
    render(OverviewPage {
        frame: frame(&state, "overview"),
        version: env!("CARGO_PKG_VERSION"),
        uptime: duration(status.uptime),
        memory: crate::memory::resident_bytes().map_or_else(|| "?".into(), mib),
        model: status.default_model,
        serving: status.serving,
        llm: status
            .loaded_models
            .map(|models| {
                models
                    .into_iter()
                    .map(|m| (m.name, (m.size_bytes > 0).then(|| mib(m.size_bytes))))
                    .collect()
            })
            .map_err(|e| e.to_string()),
        waiting: status.waiting,
        running: status.running,
        messages_today,
        errors_today,
        first_token: latest(Bucket::first_token_ms)
            .map_or_else(|| "–".into(), |ms| format!("{:.2} s", ms / 1000.0)),
        tokens_per_second: status
            .last_tokens_per_second
            .or_else(|| latest(Bucket::tokens_per_second))
            .map_or_else(|| "–".into(), |tps| format!("{tps:.1}")),
        cache_share,
        cache_note,
        first_token_p50,
        first_token_p90,
        first_token_note,
        charts,
        zone: zone.name().to_owned(),
    })
}

/// "the last answer", "the last 20 answers".
fn last_answers(count: usize) -> String {
    match count {
        1 => "the last answer".to_owned(),
        n => format!("the last {n} answers"),
    }
}

struct StageRow {
    name: String,
    role: String,
    wit: String,
    grants: String,
    hash: String,
    loaded_at: String,
    calls: u64,
    p50: String,
    p99: String,
    failures: Vec<(&'static str, u64)>,
    last_errors: Vec<(String, String)>,
}

struct ReloadView {
    when: String,
    trigger: String,
    ok: bool,
    text: String,
}

#[derive(Template)]
#[template(path = "pipeline.html")]
struct PipelinePage {
    frame: Frame,
    stages: Vec<StageRow>,
    reload: Option<ReloadView>,
}

pub async fn pipeline(state: State) -> Response {
    let zone = zone(&state);
    let now = clock::unix_ms();
    let when = |unix_ms: u64| zone.format(unix_ms, now);
    let ms = |v: Option<f64>| v.map_or_else(|| "–".into(), |ms| format!("{ms:.2}"));
    let stats = telemetry::stats();
    let stages = state
        .parts
        .chat
        .pipeline()
        .stages()
        .map(|info| {
            let figures = stats.stages.of(&info.name);
            let loaded_ms = info
                .loaded_at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            StageRow {
                name: info.name.clone(),
                role: info.role.to_string(),
                wit: info.wit_version.to_string(),
                grants: info.grants.to_string(),
                hash: info.hash.short(),
                loaded_at: when(loaded_ms),
                calls: figures.calls,
                p50: ms(figures.percentile_ms(50.0)),
                p99: ms(figures.percentile_ms(99.0)),
                failures: figures.failures.iter().map(|(k, n)| (*k, *n)).collect(),
                last_errors: figures
                    .last_errors
                    .iter()
                    .rev()
                    .map(|e| (when(e.at_unix_ms), e.failure.detail.to_string()))
                    .collect(),
            }
        })
        .collect();
    let reload = stats
        .last_reload
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .map(|r| ReloadView {
            when: when(r.at_unix_ms),
            trigger: r.trigger,
            ok: r.result.is_ok(),
            text: r.result.unwrap_or_else(|e| e),
        });
    render(PipelinePage {
        frame: frame(&state, "pipeline"),
        stages,
        reload,
    })
}

/// Reloads the pipeline; the Pipeline page shows the outcome.
pub async fn reload(state: State) -> Redirect {
    // The outcome is recorded by the reloader (and logged) whatever it was.
    let _ = state.parts.reloader.reload("dashboard").await;
    Redirect::to("/pipeline")
}

#[derive(Template)]
#[template(path = "logs.html")]
struct LogsPage {
    frame: Frame,
    capacity: usize,
}

pub async fn logs(state: State) -> Response {
    render(LogsPage {
        frame: frame(&state, "logs"),
        capacity: telemetry::logs::CAPACITY,
    })
}

struct TaskRow {
    id: TaskId,
    chat_id: ChatId,
    kind: &'static str,
    schedule: String,
    next: String,
    last: String,
}

#[derive(Template)]
#[template(path = "tasks.html")]
struct TasksPage {
    frame: Frame,
    tasks: Result<Vec<TaskRow>, String>,
}

/// Every chat's tasks: when, how often, how the last firing went — not what they say.
pub async fn tasks(state: State) -> Response {
    let zone = zone(&state);
    let now = clock::unix_ms();
    let outcomes = telemetry::stats()
        .task_outcomes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let tasks = state
        .parts
        .tasks
        .all_tasks()
        .await
        .map_err(|e| e.to_string());
    let rows = tasks.map(|tasks| {
        tasks
            .into_iter()
            .map(|(chat_id, task)| TaskRow {
                id: task.id,
                chat_id,
                kind: match task.kind {
                    TaskKind::Reminder => "reminder",
                    TaskKind::Prompt => "prompt",
                },
                schedule: task.recurrence.unwrap_or_else(|| "once".into()),
                next: task.next,
                last: outcomes.get(&task.id.0).map_or_else(
                    || "not fired since the bot started".into(),
                    |o| format!("{} ({})", o.outcome, zone.format(o.at_unix_ms, now)),
                ),
            })
            .collect()
    });
    render(TasksPage {
        frame: frame(&state, "tasks"),
        tasks: rows,
    })
}

#[derive(Debug, Deserialize)]
pub struct CancelForm {
    chat_id: i64,
    id: i64,
}

pub async fn cancel_task(state: State, Form(form): Form<CancelForm>) -> Response {
    let (chat_id, id) = (ChatId(form.chat_id), TaskId(form.id));
    match state.parts.tasks.cancel(chat_id, id).await {
        Ok(_) => Redirect::to("/tasks").into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot cancel: {e}\n"),
        )
            .into_response(),
    }
}

#[derive(Template)]
#[template(path = "chats.html")]
struct ChatsPage {
    frame: Frame,
    chats: Result<Vec<ChatCounts>, String>,
}

pub async fn chats(state: State) -> Response {
    let since = clock::unix_ms().saturating_sub(24 * 60 * 60 * 1000);
    let chats = state
        .parts
        .activity
        .chats(since)
        .await
        .map_err(|e| e.to_string());
    render(ChatsPage {
        frame: frame(&state, "chats"),
        chats,
    })
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    error: Option<&'static str>,
}

pub async fn login_form(state: State) -> Response {
    if !state.auth.required() {
        return Redirect::to("/").into_response();
    }
    render(LoginPage { error: None })
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
}

pub async fn login(
    state: State,
    client: ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if !auth::same_origin(&headers) {
        return (
            StatusCode::FORBIDDEN,
            "refused: the request did not come from this dashboard\n",
        )
            .into_response();
    }
    let refused = |status: StatusCode, error: &'static str| {
        (status, render(LoginPage { error: Some(error) })).into_response()
    };
    match state
        .auth
        .log_in(auth::client_ip(&client), form.token.trim(), Instant::now())
    {
        Login::Opened(id) => {
            ([(header::SET_COOKIE, Auth::cookie(&id))], Redirect::to("/")).into_response()
        }
        Login::Refused => {
            tracing::warn!(from = %client.0.ip(), "dashboard login refused: wrong token");
            refused(
                StatusCode::UNAUTHORIZED,
                "That is not the dashboard's token (DASHBOARD_TOKEN in .env).",
            )
        }
        Login::TooManyAttempts => refused(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many wrong tokens from this address: wait a minute and try again.",
        ),
    }
}

pub async fn logout(state: State, headers: HeaderMap) -> Response {
    state.auth.log_out(&headers);
    (
        [(header::SET_COOKIE, Auth::expired_cookie())],
        Redirect::to("/login"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration(Duration::from_secs(40)), "40 s");
        assert_eq!(duration(Duration::from_secs(125)), "2 min");
        assert_eq!(duration(Duration::from_secs(7500)), "2 h 5 min");
        assert_eq!(
            duration(Duration::from_secs(3 * 86_400 + 4 * 3600)),
            "3 d 4 h"
        );
    }
}
