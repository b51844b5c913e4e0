//! Who may use the dashboard: a login with `DASHBOARD_TOKEN` that sets an HttpOnly,
//! `SameSite=Strict` session cookie; login attempts limited per address; every POST checked
//! for a session and a same-origin `Origin`. Without a token the dashboard is on loopback
//! (the configuration refuses anything else) and only a loopback `Host` is served, so a web
//! page cannot reach it through DNS rebinding.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use subtle::ConstantTimeEq;

use crate::secret::Secret;

/// The session cookie's name.
pub const COOKIE: &str = "pi_agent_session";
/// How long a login lasts: a week, for a page left open on a second screen.
const SESSION_LIFETIME: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// Sessions kept at once; the oldest goes first.
const MAX_SESSIONS: usize = 32;
/// Failed logins allowed per address per [`ATTEMPT_WINDOW`].
const MAX_FAILED_LOGINS: u32 = 5;
const ATTEMPT_WINDOW: Duration = Duration::from_secs(60);

/// The login token, the sessions it opened, and recent failed attempts.
pub struct Auth {
    token: Option<Secret>,
    sessions: Mutex<HashMap<String, Instant>>,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

/// What a login attempt got.
#[derive(Debug, PartialEq, Eq)]
pub enum Login {
    /// The token matched: the new session's id, for the cookie.
    Opened(String),
    Refused,
    /// Too many failures from this address lately; not even checked.
    TooManyAttempts,
}

impl Auth {
    pub fn new(token: Option<Secret>) -> Self {
        Self {
            token,
            sessions: Mutex::default(),
            failures: Mutex::default(),
        }
    }

    /// Whether a login is needed at all (a token is configured).
    pub fn required(&self) -> bool {
        self.token.is_some()
    }

    /// Checks `attempt` against the token in constant time, counting failures from `from`.
    pub fn log_in(&self, from: IpAddr, attempt: &str, now: Instant) -> Login {
        let Some(token) = &self.token else {
            return Login::Refused;
        };
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.retain(|_, (since, _)| now.duration_since(*since) < ATTEMPT_WINDOW);
        if failures
            .get(&from)
            .is_some_and(|(_, n)| *n >= MAX_FAILED_LOGINS)
        {
            return Login::TooManyAttempts;
        }
        if !token_matches(token, attempt) {
            failures.entry(from).or_insert((now, 0)).1 += 1;
            return Login::Refused;
        }
        failures.remove(&from);
        drop(failures);
        let id = new_session_id();
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, expires| *expires > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, e)| **e)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(id.clone(), now + SESSION_LIFETIME);
        Login::Opened(id)
    }

    pub fn log_out(&self, headers: &HeaderMap) {
        if let Some(id) = session_cookie(headers) {
            self.lock_sessions().remove(id);
        }
    }

    /// Whether the request carries a live session (always true without a token).
    pub fn has_session(&self, headers: &HeaderMap, now: Instant) -> bool {
        if !self.required() {
            return true;
        }
        session_cookie(headers)
            .is_some_and(|id| self.lock_sessions().get(id).is_some_and(|e| *e > now))
    }

    /// `Authorization: Bearer <token>`, for `/metrics` (no token configured: open).
    pub fn bearer_ok(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| token_matches(token, given.trim()))
    }

    /// The `Set-Cookie` value for session `id`.
    pub fn cookie(id: &str) -> String {
        format!(
            "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
            SESSION_LIFETIME.as_secs()
        )
    }

    /// The `Set-Cookie` value that ends the session in the browser.
    pub fn expired_cookie() -> String {
        format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
    }

    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Compares in time that depends on the lengths only, never on where they differ.
fn token_matches(token: &Secret, attempt: &str) -> bool {
    token.expose().as_bytes().ct_eq(attempt.as_bytes()).into()
}

/// 32 random bytes, hex.
fn new_session_id() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random source");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

/// Whether `Origin` names the host the request was sent to: a form on this dashboard, not
/// on some other site. A POST without an `Origin` is refused too (browsers send one).
pub fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    match (host, origin) {
        (Some(host), Some(origin)) => origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .is_some_and(|authority| authority.eq_ignore_ascii_case(host)),
        _ => false,
    }
}

/// Whether the `Host` header names this machine's loopback (what a browser sends for
/// `http://127.0.0.1:8080` or `http://localhost:8080`).
fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Guards every page: the `Host` check when open on loopback, a session when a token is set
/// (else the login page), and same-origin POSTs.
pub async fn guard(
    State(auth): State<std::sync::Arc<Auth>>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    if !auth.required() && !loopback_host(headers) {
        return (
            StatusCode::MISDIRECTED_REQUEST,
            "this dashboard answers on localhost only\n",
        )
            .into_response();
    }
    if request.method() == Method::POST && !same_origin(headers) {
        return (
            StatusCode::FORBIDDEN,
            "refused: the request did not come from this dashboard\n",
        )
            .into_response();
    }
    if !auth.has_session(headers, Instant::now()) {
        return match *request.method() {
            Method::GET => Redirect::to("/login").into_response(),
            _ => (StatusCode::UNAUTHORIZED, "log in first\n").into_response(),
        };
    }
    next.run(request).await
}

/// The client's address (behind `tailscale serve`, the proxy's: then the limit is shared).
pub fn client_ip(info: &ConnectInfo<SocketAddr>) -> IpAddr {
    info.0.ip()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "correct-horse-battery-staple";

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), value.parse().unwrap());
        }
        map
    }

    #[test]
    fn a_session_opens_with_the_token_only_and_failures_are_limited() {
        let auth = Auth::new(Some(Secret::new(TOKEN)));
        let now = Instant::now();
        let ip: IpAddr = [100, 64, 0, 7].into();
        for _ in 0..MAX_FAILED_LOGINS {
            assert_eq!(auth.log_in(ip, "guess", now), Login::Refused);
        }
        assert_eq!(auth.log_in(ip, TOKEN, now), Login::TooManyAttempts);
        // Another address is not held up; the first may try again after the window.
        let Login::Opened(id) = auth.log_in([100, 64, 0, 8].into(), TOKEN, now) else {
            panic!("the right token from another address opens a session");
        };
        assert!(matches!(
            auth.log_in(ip, TOKEN, now + ATTEMPT_WINDOW),
            Login::Opened(_)
        ));

        let cookie = headers(&[(header::COOKIE, &format!("theme=dark; {COOKIE}={id}"))]);
        assert!(auth.has_session(&cookie, now));
        assert!(!auth.has_session(&cookie, now + SESSION_LIFETIME));
        assert!(!auth.has_session(
            &headers(&[(header::COOKIE, "pi_agent_session=forged")]),
            now
        ));
        auth.log_out(&cookie);
        assert!(!auth.has_session(&cookie, now));
    }

    #[test]
    fn metrics_take_the_token_as_a_bearer() {
        let auth = Auth::new(Some(Secret::new(TOKEN)));
        let bearer = format!("Bearer {TOKEN}");
        assert!(auth.bearer_ok(&headers(&[(header::AUTHORIZATION, &bearer)])));
        assert!(!auth.bearer_ok(&headers(&[(header::AUTHORIZATION, "Bearer nope")])));
        assert!(!auth.bearer_ok(&HeaderMap::new()));
        assert!(Auth::new(None).bearer_ok(&HeaderMap::new()));
    }

    #[test]
    fn origin_must_be_the_host_itself() {
        let host = (header::HOST, "100.101.102.103:8080");
        assert!(same_origin(&headers(&[
            host.clone(),
            (header::ORIGIN, "http://100.101.102.103:8080")
        ])));
        assert!(!same_origin(&headers(&[
            host.clone(),
            (header::ORIGIN, "http://evil.example")
        ])));
        assert!(!same_origin(&headers(&[host, (header::ORIGIN, "null")])));
        assert!(!same_origin(&headers(&[(header::HOST, "localhost:8080")])));
    }

    #[test]
    fn only_loopback_hosts_are_loopback() {
        for host in [
            "127.0.0.1:8080",
            "localhost:8080",
            "[::1]:8080",
            "LOCALHOST",
        ] {
            assert!(loopback_host(&headers(&[(header::HOST, host)])), "{host}");
        }
        for host in [
            "rebind.example:8080",
            "100.101.102.103:8080",
            "127.0.0.1.evil.example",
        ] {
            assert!(!loopback_host(&headers(&[(header::HOST, host)])), "{host}");
        }
    }
}
