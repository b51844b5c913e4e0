//! Typed settings from the environment and `.env` (the real environment wins), built into
//! each room's own settings type (`chat::ChatConfig`, `llm::LlmConfig`, …): this module
//! depends on the rooms, none depends on it. Every problem is collected and reported at
//! once, and no value is ever echoed back, since some are secrets.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::chat::ChatConfig;
use crate::ids::UserId;
use crate::llm::LlmConfig;
use crate::pipeline::{PipelineConfig, StageLimits};
use crate::schedule::ScheduleConfig;
use crate::secret::Secret;
use crate::store::KEPT_MESSAGES;
use crate::telegram::TelegramConfig;
use crate::web::DashboardConfig;
use crate::zone::Zone;

/// `PIPELINE_MANIFEST`, `DATA_DIR`, `GUEST_*`: the guest pipeline's settings.
pub fn pipeline(env: &mut Env) -> PipelineConfig {
    let defaults = StageLimits::default();
    let max_mib = (crate::pipeline::MAX_GUEST_MEMORY >> 20) as u64;
    let memory_mib = env.parse(
        "GUEST_MEMORY_LIMIT_MIB",
        defaults.memory_mib(),
        &format!("a whole number of MiB from 1 to {max_mib}, e.g. 64"),
        |v| (1..=max_mib).contains(v),
    );
    let timeout_ms = env.parse(
        "GUEST_TIMEOUT_MS",
        defaults.timeout.as_millis() as u64,
        "milliseconds, e.g. 1000",
        |v| *v > 0,
    );
    let output_kib = env.parse(
        "GUEST_MAX_OUTPUT_KIB",
        (defaults.max_output_bytes / 1024) as u64,
        "a whole number of KiB, e.g. 1024",
        |v| *v > 0,
    );
    PipelineConfig {
        manifest: env.path("PIPELINE_MANIFEST", "pipeline.toml"),
        cache_dir: data_dir(env).join("cache"),
        default_limits: StageLimits {
            memory_bytes: memory_mib.saturating_mul(1 << 20),
            timeout: Duration::from_millis(timeout_ms),
            max_output_bytes: usize::try_from(output_kib.saturating_mul(1024))
                .unwrap_or(usize::MAX),
        },
    }
}

/// `DATA_DIR`: where the database, the compile cache and the heartbeat file live.
pub fn data_dir(env: &Env) -> PathBuf {
    env.path("DATA_DIR", "data")
}

/// The database file in `DATA_DIR` (the pipeline's `kv` stores live there too).
pub fn database(env: &Env) -> PathBuf {
    data_dir(env).join(DATABASE_FILE)
}

const DATABASE_FILE: &str = "pi-agent.db";

pub mod llm;

pub use llm::default_model;

/// `TELEGRAM_*`; the token is a problem when missing only if `required`.
pub fn telegram(env: &mut Env, required: bool) -> TelegramConfig {
    let token = match env.get("TELEGRAM_BOT_TOKEN") {
        Some(token) if looks_like_bot_token(&token) => token,
        Some(_) => {
            env.problem(
                "TELEGRAM_BOT_TOKEN",
                "the token @BotFather gave you, like 123456789:AAE…",
            );
            String::new()
        }
        None => {
            if required {
                env.problem(
                    "TELEGRAM_BOT_TOKEN",
                    "the token @BotFather gave you (required to run the bot)",
                );
            }
            String::new()
        }
    };
    let api_url = env.parse(
        "TELEGRAM_API_URL",
        default_api_url(),
        "an http(s) URL, e.g. https://api.telegram.org",
        |u: &reqwest::Url| matches!(u.scheme(), "http" | "https"),
    );
    TelegramConfig {
        token: Secret::new(token),
        api_url,
        allowed_users: env.user_ids("TELEGRAM_ALLOWED_USERS"),
        admin_users: env.user_ids("TELEGRAM_ADMIN_USERS"),
    }
}

fn default_api_url() -> reqwest::Url {
    reqwest::Url::parse("https://api.telegram.org").expect("a valid URL")
}

/// `<bot id>:<35 characters>`; checked loosely so a future format change does not lock
/// anyone out, strictly enough to catch a pasted user id or a stray quote.
fn looks_like_bot_token(token: &str) -> bool {
    token.split_once(':').is_some_and(|(id, secret)| {
        !id.is_empty()
            && id.bytes().all(|b| b.is_ascii_digit())
            && secret.len() >= 30
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    })
}

/// `HISTORY_MESSAGES`, `QUEUE_CAPACITY`, `LLM_CONCURRENCY`, … : the chat service's settings.
pub fn chat(env: &mut Env) -> ChatConfig {
    ChatConfig {
        // More than the store keeps would silently be fewer.
        history_messages: env.parse(
            "HISTORY_MESSAGES",
            KEPT_MESSAGES,
            &format!("a whole number up to {KEPT_MESSAGES}, e.g. 60"),
            |v: &usize| *v <= KEPT_MESSAGES,
        ),
        queue_capacity: env.parse(
            "QUEUE_CAPACITY",
            32,
            "a whole number > 0, e.g. 32",
            |v: &usize| *v > 0,
        ),
        llm_concurrency: env.parse(
            "LLM_CONCURRENCY",
            1,
            "a whole number > 0 (1 on a Pi)",
            |v: &usize| *v > 0,
        ),
        shutdown_grace: Duration::from_secs(env.parse(
            "SHUTDOWN_GRACE_SECS",
            20,
            "whole seconds, e.g. 20",
            |_: &u64| true,
        )),
        edit_interval: Duration::from_millis(env.parse(
            "STREAM_EDIT_INTERVAL_MS",
            1000,
            "milliseconds ≥ 100, e.g. 1000",
            |v: &u64| *v >= 100,
        )),
        time_zone: env.parse(
            "TIMEZONE",
            Zone::utc(),
            "an IANA time zone name, e.g. Europe/Madrid, America/New_York or UTC",
            |_| true,
        ),
    }
}

/// A dashboard token shorter than this is refused: it could be guessed.
pub const MIN_DASHBOARD_TOKEN: usize = 16;

/// `DASHBOARD_ADDR`, `DASHBOARD_TOKEN`.
pub fn dashboard(env: &mut Env) -> DashboardConfig {
    let addr = if env.is_blank("DASHBOARD_ADDR")
        || env
            .get("DASHBOARD_ADDR")
            .is_some_and(|v| v.eq_ignore_ascii_case("off"))
    {
        None
    } else {
        Some(env.parse(
            "DASHBOARD_ADDR",
            SocketAddr::from(([127, 0, 0, 1], 8080)),
            "an IP address and port, e.g. 127.0.0.1:8080, or your tailnet IP such as \
                 100.101.102.103:8080 (empty or `off`: no dashboard)",
            |_| true,
        ))
    };
    let token = env.get("DASHBOARD_TOKEN").map(Secret::new);
    if token
        .as_ref()
        .is_some_and(|t| t.expose().chars().count() < MIN_DASHBOARD_TOKEN)
    {
        env.problem(
                "DASHBOARD_TOKEN",
                format!(
                    "at least {MIN_DASHBOARD_TOKEN} characters (e.g. the output of `openssl rand -hex 24`)"
                ),
            );
    }
    if let Some(addr) = addr
        && !addr.ip().is_loopback()
        && token.is_none()
    {
        env.problem(
            "DASHBOARD_TOKEN",
            format!(
                "a token (e.g. `openssl rand -hex 24`): DASHBOARD_ADDR={addr} is reachable \
                     from other machines, and the dashboard is only served off loopback with \
                     a login (or set DASHBOARD_ADDR=127.0.0.1:8080 and use `tailscale serve`)"
            ),
        );
    }
    DashboardConfig { addr, token }
}

/// `MISSED_TASK_GRACE`.
pub fn schedule(env: &mut Env) -> ScheduleConfig {
    let grace: GraceDuration = env.parse(
        "MISSED_TASK_GRACE",
        GraceDuration(Duration::from_secs(6 * 60 * 60)),
        "a duration such as 90m, 6h or 1d, or whole seconds",
        |_| true,
    );
    ScheduleConfig {
        missed_grace: grace.0,
    }
}

/// `90m`, `6h`, `1d`, `45s` or whole seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
struct GraceDuration(Duration);

impl FromStr for GraceDuration {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (number, unit) = s.split_at(split);
        let number: u64 = number.parse().map_err(|_| ())?;
        let seconds = match unit.trim() {
            "" | "s" => 1,
            "m" | "min" => 60,
            "h" => 60 * 60,
            "d" => 24 * 60 * 60,
            _ => return Err(()),
        };
        Ok(Self(Duration::from_secs(
            number.checked_mul(seconds).ok_or(())?,
        )))
    }
}

/// How log lines look: `pretty` for a terminal, `json` for log collectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

impl FromStr for LogFormat {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s.to_ascii_lowercase().as_str() {
            "pretty" => Ok(Self::Pretty),
            "json" => Ok(Self::Json),
            _ => Err(()),
        }
    }
}

/// Everything the bot needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub telegram: TelegramConfig,
    pub llm: LlmConfig,
    pub chat: ChatConfig,
    pub pipeline: PipelineConfig,
    pub schedule: ScheduleConfig,
    pub dashboard: DashboardConfig,
    /// `DATA_DIR`: the database, the compile cache and the heartbeat file.
    pub data_dir: PathBuf,
}

impl Config {
    /// Reads every setting; `with_telegram` makes the bot token required.
    pub fn from_env(env: &mut Env, with_telegram: bool) -> Self {
        let data_dir = data_dir(env);
        Self {
            telegram: telegram(env, with_telegram),
            llm: llm::from_env(env),
            chat: chat(env),
            pipeline: pipeline(env),
            schedule: schedule(env),
            dashboard: dashboard(env),
            data_dir,
        }
    }

    /// The database file (the pipeline's `kv` stores live there too).
    pub fn database(&self) -> PathBuf {
        self.data_dir.join(DATABASE_FILE)
    }
}

/// One invalid variable: its name and what was expected (never its value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub variable: &'static str,
    pub expected: String,
}

/// Every invalid variable at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError(pub Vec<Problem>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invalid configuration (set these in .env or the environment; see .env.example):"
        )?;
        for p in &self.0 {
            writeln!(f, "  {}: expected {}", p.variable, p.expected)?;
        }
        Ok(())
    }
}

/// Finds a variable's raw value by name.
type Lookup = dyn Fn(&str) -> Option<String>;

/// Reads variables through a lookup function and records problems instead of failing
/// on the first one.
pub struct Env {
    lookup: Box<Lookup>,
    problems: Vec<Problem>,
}

impl Env {
    /// The process environment, after loading `.env` from the working directory if present
    /// (variables already set are not overridden).
    pub fn from_process() -> Self {
        let _ = dotenvy::dotenv();
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String> + 'static) -> Self {
        Self {
            lookup: Box::new(lookup),
            problems: Vec::new(),
        }
    }

    /// A set, non-blank value, trimmed.
    pub fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// Set, but to nothing: `NAME=` turns an optional feature off.
    pub fn is_blank(&self, name: &str) -> bool {
        (self.lookup)(name).is_some_and(|v| v.trim().is_empty())
    }

    pub fn string(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or_else(|| default.to_owned())
    }

    pub fn path(&self, name: &str, default: &str) -> PathBuf {
        PathBuf::from(self.string(name, default))
    }

    /// Parses `name` as `T`, falling back to `default` when unset; a value that does not
    /// parse or fails `valid` is recorded as a problem described by `expected`.
    pub fn parse<T: FromStr>(
        &mut self,
        name: &'static str,
        default: T,
        expected: &str,
        valid: impl Fn(&T) -> bool,
    ) -> T {
        match self.get(name) {
            None => default,
            Some(text) => match text.parse::<T>() {
                Ok(value) if valid(&value) => value,
                _ => {
                    self.problem(name, expected);
                    default
                }
            },
        }
    }

    /// Like `parse`, for a variable with no default.
    pub fn optional<T: FromStr>(
        &mut self,
        name: &'static str,
        expected: &str,
        valid: impl Fn(&T) -> bool,
    ) -> Option<T> {
        let text = self.get(name)?;
        match text.parse::<T>() {
            Ok(value) if valid(&value) => Some(value),
            _ => {
                self.problem(name, expected);
                None
            }
        }
    }

    /// A comma-separated list of numeric Telegram user ids.
    pub fn user_ids(&mut self, name: &'static str) -> BTreeSet<UserId> {
        let Some(text) = self.get(name) else {
            return BTreeSet::new();
        };
        let ids: Result<BTreeSet<UserId>, _> = text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|id| id.parse().map(UserId))
            .collect();
        ids.unwrap_or_else(|_| {
            self.problem(name, "comma-separated numeric user ids, e.g. 12345678,87654321 (send /start to the bot to see yours)");
            BTreeSet::new()
        })
    }

    pub fn problem(&mut self, variable: &'static str, expected: impl Into<String>) {
        self.problems.push(Problem {
            variable,
            expected: expected.into(),
        });
    }

    /// Ends reading: the collected problems, if any.
    pub fn finish(self) -> Result<(), ConfigError> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(self.problems))
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    /// An environment holding just `vars`.
    pub fn env(vars: &[(&str, &str)]) -> Env {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env::from_lookup(move |k| map.get(k).cloned())
    }

    #[test]
    fn defaults_apply_when_unset() {
        let mut e = env(&[]);
        let config = pipeline(&mut e);
        e.finish().unwrap();
        assert_eq!(config.manifest, PathBuf::from("pipeline.toml"));
        assert_eq!(config.cache_dir, PathBuf::from("data/cache"));
        assert_eq!(config.default_limits, StageLimits::default());
    }

    #[test]
    fn every_bad_variable_is_reported_without_its_value() {
        let mut e = env(&[
            ("GUEST_MEMORY_LIMIT_MIB", "lots"),
            ("GUEST_TIMEOUT_MS", "0"),
            ("GUEST_MAX_OUTPUT_KIB", "secret-ish"),
        ]);
        pipeline(&mut e);
        let message = e.finish().unwrap_err().to_string();
        for name in [
            "GUEST_MEMORY_LIMIT_MIB",
            "GUEST_TIMEOUT_MS",
            "GUEST_MAX_OUTPUT_KIB",
        ] {
            assert!(message.contains(name), "{message}");
        }
        assert!(
            !message.contains("lots") && !message.contains("secret-ish"),
            "{message}"
        );
    }

    #[test]
    fn the_dashboard_is_on_loopback_by_default_and_needs_a_token_elsewhere() {
        let mut e = env(&[]);
        let config = dashboard(&mut e);
        e.finish().unwrap();
        assert_eq!(config.addr, Some(SocketAddr::from(([127, 0, 0, 1], 8080))));
        assert_eq!(config.token, None);

        for off in ["", "off"] {
            let mut e = env(&[("DASHBOARD_ADDR", off)]);
            assert_eq!(dashboard(&mut e).addr, None, "{off:?}");
            e.finish().unwrap();
        }

        let mut e = env(&[("DASHBOARD_ADDR", "100.101.102.103:8080")]);
        dashboard(&mut e);
        let message = e.finish().unwrap_err().to_string();
        assert!(message.contains("DASHBOARD_TOKEN"), "{message}");
        assert!(
            message.contains("reachable from other machines"),
            "{message}"
        );

        let token = "0123456789abcdef0123";
        let mut e = env(&[
            ("DASHBOARD_ADDR", "0.0.0.0:9000"),
            ("DASHBOARD_TOKEN", token),
        ]);
        let config = dashboard(&mut e);
        e.finish().unwrap();
        assert_eq!(config.token.unwrap().expose(), token);

        let mut e = env(&[("DASHBOARD_TOKEN", "short")]);
        dashboard(&mut e);
        let message = e.finish().unwrap_err().to_string();
        assert!(
            message.contains("at least 16 characters") && !message.contains("short"),
            "{message}"
        );
    }

    #[test]
    fn missed_task_grace_takes_minutes_hours_or_seconds() {
        for (text, seconds) in [
            ("90m", 5400),
            ("6h", 21_600),
            ("1d", 86_400),
            ("3600", 3600),
        ] {
            let mut e = env(&[("MISSED_TASK_GRACE", text)]);
            let config = schedule(&mut e);
            e.finish().unwrap();
            assert_eq!(config.missed_grace, Duration::from_secs(seconds), "{text}");
        }
        let mut e = env(&[]);
        assert_eq!(schedule(&mut e).missed_grace, Duration::from_secs(6 * 3600));
        let mut e = env(&[("MISSED_TASK_GRACE", "soon"), ("TIMEZONE", "Mars/Olympus")]);
        schedule(&mut e);
        chat(&mut e);
        let message = e.finish().unwrap_err().to_string();
        assert!(
            message.contains("MISSED_TASK_GRACE: expected a duration"),
            "{message}"
        );
        assert!(
            message.contains("TIMEZONE: expected an IANA time zone"),
            "{message}"
        );
        let mut e = env(&[("TIMEZONE", "europe/madrid")]);
        assert_eq!(chat(&mut e).time_zone.name(), "Europe/Madrid");
    }

    #[test]
    fn history_sent_is_at_most_what_the_store_keeps() {
        let mut e = env(&[("HISTORY_MESSAGES", "200")]);
        assert_eq!(chat(&mut e).history_messages, KEPT_MESSAGES);
        e.finish().unwrap();
        let mut e = env(&[("HISTORY_MESSAGES", "201")]);
        chat(&mut e);
        let message = e.finish().unwrap_err().to_string();
        assert!(
            message.contains("HISTORY_MESSAGES: expected a whole number up to 200"),
            "{message}"
        );
    }
}
