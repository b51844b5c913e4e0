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

use crate::background::Background;
use crate::chat::ChatService;
use crate::pipeline::Reloader;
use crate::schedule::Scheduler;
use crate::secret::Secret;
use crate::store::Activity;

/// The dashboard's settings (read from the environment by `config`).
#[derive(Debug, Clone, PartialEq)]
pub struct DashboardConfig {
    /// `DASHBOARD_ADDR` (default `127.0.0.1:8080`; set to empty or `off`: no dashboard).
    pub addr: Option<SocketAddr>,
    /// `DASHBOARD_TOKEN`: the login, and the bearer token for `/metrics`. Without one, the
    /// dashboard is open to whoever can reach the address, which must then be loopback.
    pub token: Option<Secret>,
}

/// What the pages read and act on.
pub struct Dashboard {
    pub chat: Arc<ChatService>,
    pub tasks: Arc<Scheduler>,
    pub reloader: Arc<Reloader>,
    /// Per-chat counts for the Chats page.
    pub activity: Activity,
}

struct AppState {
    parts: Dashboard,
    auth: Arc<auth::Auth>,
    shutdown: CancellationToken,
}

type State = axum::extract::State<Arc<AppState>>;

/// Starts serving the dashboard in `background` if `config` has an address; returns at
/// once. A port already in use is logged, and the bot runs on without a dashboard.
pub async fn start(config: &DashboardConfig, parts: Dashboard, background: &Background) {
    let shutdown = background.shutdown().clone();
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
    background.spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::error!("the dashboard stopped: {e}");
        }
    });
}

fn router(state: Arc<AppState>, auth: Arc<auth::Auth>) -> Router {
    let pages = Router::new()
        .route("/", get(pages::overview))
        .route("/pipeline", get(pages::pipeline))
        .route("/pipeline/reload", post(pages::reload))
        .route("/logs", get(pages::logs))
        .route("/logs/stream", get(live::stream))
        .route("/tasks", get(pages::tasks))
        .route("/tasks/cancel", post(pages::cancel_task))
        .route("/chats", get(pages::chats))
        .route("/logout", post(pages::logout))
        .route_layer(axum::middleware::from_fn_with_state(auth, auth::guard));
    Router::new()
        .merge(pages)
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/metrics", get(metrics))
        .route("/assets/style.css", get(style))
        .route("/assets/logs.js", get(logs_script))
        .with_state(state)
}

/// `/metrics`: Prometheus text; the token as a bearer when one is configured.
async fn metrics(state: State, headers: HeaderMap) -> axum::response::Response {
    if !state.auth.bearer_ok(&headers) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "send DASHBOARD_TOKEN as `Authorization: Bearer <token>`\n",
        )
            .into_response();
    }
    let text = crate::telemetry::prometheus::render(
        state.parts.chat.queue_depth(),
        crate::memory::resident_bytes(),
    );
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
