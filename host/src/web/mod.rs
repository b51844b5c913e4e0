//! The dashboard: server-rendered pages (Overview, Pipeline, Logs, Tasks, Chats), a live log
//! over Server-Sent Events and `/metrics`, served by axum inside the bot's runtime on
//! `DASHBOARD_ADDR`, behind [`auth`].
//!
//! Everything it shows is read when a page is asked for: the chat service's status (the
//! same as `/status`), [`crate::telemetry`]'s figures, the store's counts. With nobody
//! watching it costs an idle listener.

mod auth;
mod chart;
mod live;
mod pages;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;

use crate::chat::{ChatService, Replies};
use crate::config::DashboardConfig;
use crate::pipeline::Reloader;
use crate::schedule::Scheduler;

/// What the pages read and act on.
pub struct Dashboard<R: Replies> {
    pub chat: Arc<ChatService<R>>,
    pub tasks: Arc<Scheduler<R>>,
    pub reloader: Arc<Reloader>,
}

struct AppState<R: Replies> {
    parts: Dashboard<R>,
    auth: Arc<auth::Auth>,
    shutdown: CancellationToken,
}

type State<R> = axum::extract::State<Arc<AppState<R>>>;

/// Starts serving the dashboard if `config` has an address; returns at once. A port already
/// in use is logged, and the bot runs on without a dashboard.
pub async fn start<R: Replies>(
    config: &DashboardConfig,
    parts: Dashboard<R>,
    shutdown: CancellationToken,
) {
    let Some(addr) = config.addr else {
        return;
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(
                "the dashboard cannot listen on {addr}: {e} — set DASHBOARD_ADDR to a free port (or empty to turn it off); the bot runs on without it"
            );
            return;
        }
    };
    let bound = listener.local_addr().unwrap_or(addr);
    crate::telemetry::logs::enable();
    crate::telemetry::prometheus::install();
    let auth = Arc::new(auth::Auth::new(config.token.clone()));
    let state = Arc::new(AppState {
        parts,
        auth: auth.clone(),
        shutdown: shutdown.clone(),
    });
    let app = router(state, auth).into_make_service_with_connect_info::<SocketAddr>();
    let login = if config.token.is_some() {
        "login with DASHBOARD_TOKEN"
    } else {
        "open on loopback, no login"
    };
    tracing::info!("dashboard on http://{bound}/ ({login})");
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::error!("the dashboard stopped: {e}");
        }
    });
}

fn router<R: Replies>(state: Arc<AppState<R>>, auth: Arc<auth::Auth>) -> Router {
    let pages = Router::new()
        .route("/", get(pages::overview::<R>))
        .route("/pipeline", get(pages::pipeline::<R>))
        .route("/pipeline/reload", post(pages::reload::<R>))
        .route("/logs", get(pages::logs::<R>))
        .route("/logs/stream", get(live::stream::<R>))
        .route("/tasks", get(pages::tasks::<R>))
        .route("/tasks/cancel", post(pages::cancel_task::<R>))
        .route("/chats", get(pages::chats::<R>))
        .route("/logout", post(pages::logout::<R>))
        .route_layer(axum::middleware::from_fn_with_state(auth, auth::guard));
    Router::new()
        .merge(pages)
        .route(
            "/login",
            get(pages::login_form::<R>).post(pages::login::<R>),
        )
        .route("/metrics", get(metrics::<R>))
        .route("/assets/style.css", get(style))
        .route("/assets/logs.js", get(logs_script))
        .with_state(state)
}

/// `/metrics`: Prometheus text; the token as a bearer when one is configured.
async fn metrics<R: Replies>(state: State<R>, headers: HeaderMap) -> axum::response::Response {
    if !state.auth.bearer_ok(&headers) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "send DASHBOARD_TOKEN as `Authorization: Bearer <token>`\n",
        )
            .into_response();
    }
    let text = crate::telemetry::prometheus::render(state.parts.chat.queue_depth());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn style() -> impl IntoResponse {
    asset("text/css", include_str!("../../assets/style.css"))
}

async fn logs_script() -> impl IntoResponse {
    asset("text/javascript", include_str!("../../assets/logs.js"))
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        body,
    )
}
