//! The dashboard over HTTP, against the real bot: the login and its session, refused
//! POSTs, the live log, `/metrics`, and the refusal to serve off loopback without a token.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use pi_agent_tests::bot::{FRIEND, Harness, PATIENCE, RunningBot, TOKEN};
use pi_agent_tests::fake_ollama::Script;
use pi_agent_tests::model_runner::RunnerSettings;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, ORIGIN, SET_COOKIE};

const DASHBOARD_TOKEN: &str = "dashboard-token-for-tests-0123456789";

/// A bot with its dashboard on a free loopback port, and that dashboard's base URL.
async fn bot_with_dashboard(h: &mut Harness) -> (RunningBot, String) {
    let bot = h.bot(&[
        ("DASHBOARD_ADDR", "127.0.0.1:0"),
        ("DASHBOARD_TOKEN", DASHBOARD_TOKEN),
    ]);
    let url = bot.dashboard_url().await;
    (bot, url)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Logs in with the token; the session cookie (`name=value`).
async fn log_in(base: &str) -> String {
    let response = client()
        .post(format!("{base}/login"))
        .header(ORIGIN, base)
        .form(&[("token", DASHBOARD_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    cookie.split(';').next().unwrap().to_owned()
}

async fn page(base: &str, path: &str, session: &str) -> String {
    let response = client()
        .get(format!("{base}{path}"))
        .header(COOKIE, session)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    response.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_need_a_session_and_posts_come_from_the_dashboard() {
    let mut h = Harness::start(env!("CARGO_BIN_EXE_pi-agent-cli")).await;
    let (_bot, base) = bot_with_dashboard(&mut h).await;
    let http = client();

    let anonymous = http.get(format!("{base}/pipeline")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    assert_eq!(anonymous.headers()[LOCATION], "/login");
    let login = http.get(format!("{base}/login")).send().await.unwrap();
    assert!(login.text().await.unwrap().contains("Dashboard token"));

    let no_session = http
        .post(format!("{base}/pipeline/reload"))
        .header(ORIGIN, &base)
        .send()
        .await
        .unwrap();
    assert_eq!(no_session.status(), StatusCode::UNAUTHORIZED);

    let wrong = http
        .post(format!("{base}/login"))
        .header(ORIGIN, &base)
        .form(&[("token", "not-the-token-at-all-0000")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get(SET_COOKIE).is_none());
    assert!(
        wrong
            .text()
            .await
            .unwrap()
            .contains("That is not the dashboard")
    );

    let session = log_in(&base).await;
    let pipeline = page(&base, "/pipeline", &session).await;
    for stage in ["persona", "telegram-html"] {
        assert!(pipeline.contains(&format!("<b>{stage}</b>")), "{pipeline}");
    }

    for origin in [Some("http://evil.example"), None] {
        let mut request = http
            .post(format!("{base}/pipeline/reload"))
            .header(COOKIE, &session);
        if let Some(origin) = origin {
            request = request.header(ORIGIN, origin);
        }
        let refused = request.send().await.unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "Origin {origin:?}");
    }
    assert!(
        !h.logs().contains("trigger=\"dashboard\""),
        "a refused POST reloads nothing"
    );

    let reload = http
        .post(format!("{base}/pipeline/reload"))
        .header(COOKIE, &session)
        .header(ORIGIN, &base)
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status(), StatusCode::SEE_OTHER);
    let pipeline = page(&base, "/pipeline", &session).await;
    assert!(pipeline.contains("Last reload (dashboard"), "{pipeline}");
    assert!(pipeline.contains("pipeline reloaded in"), "{pipeline}");

    for path in ["/", "/logs", "/tasks", "/chats"] {
        page(&base, path, &session).await;
    }
    let logged_out = http
        .post(format!("{base}/logout"))
        .header(COOKIE, &session)
        .header(ORIGIN, &base)
        .send()
        .await
        .unwrap();
    assert_eq!(logged_out.status(), StatusCode::SEE_OTHER);
    let after = http
        .get(format!("{base}/"))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::SEE_OTHER, "the session ended");

    let logs = h.logs();
    assert!(!logs.contains(DASHBOARD_TOKEN) && !logs.contains(TOKEN));
}

/// `metric{labels}`'s value in a scrape, 0 when absent.
fn value(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(buckets) => {
                buckets.iter().map(|b| b.count).fold(0.0, f64::max)
            }
            prometheus_parse::Value::Summary(_) => 0.0,
        })
        .sum()
}

async fn scrape(base: &str) -> prometheus_parse::Scrape {
    let text = client()
        .get(format!("{base}/metrics"))
        .bearer_auth(DASHBOARD_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    prometheus_parse::Scrape::parse(lines).expect("Prometheus text")
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_parse_and_count_a_message_that_the_live_log_shows() {
    let mut h = Harness::start(env!("CARGO_BIN_EXE_pi-agent-cli")).await;
    h.llm.push_script(Script::reply("Hello from the Pi."));
    let (_bot, base) = bot_with_dashboard(&mut h).await;
    h.wait_until_polling().await;

    let refused = client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let before = scrape(&base).await;
    assert!(value(&before, "pi_agent_resident_memory_bytes", &[]) > 1e6);

    // The live log: opened before the message, it must show the message's line.
    let session = log_in(&base).await;
    let stream = client()
        .get(format!("{base}/logs/stream?level=info"))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let mut body = stream.bytes_stream();

    h.telegram.push_message(FRIEND, FRIEND, "hi");
    h.wait_for_message(FRIEND, |m| m.visible_text == "Hello from the Pi.")
        .await;

    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !(seen.contains("answering") && seen.contains(&format!("chat_id={FRIEND}"))) {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .unwrap_or_else(|_| panic!("no live log line for the message; got:\n{seen}"))
            .expect("the stream stays open")
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("event: line"), "{seen}");
    assert!(!seen.contains(TOKEN));

    // Counted once the job is done, just after the reply went out; the queue empties after.
    let answered = &[("outcome", "answered")];
    let started = Instant::now();
    let after = loop {
        let after = scrape(&base).await;
        let done = value(&after, "pi_agent_messages_total", answered) >= 1.0
            && value(&after, "pi_agent_queue_depth", &[]) == 0.0;
        if done || started.elapsed() > PATIENCE {
            break after;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        value(&after, "pi_agent_messages_total", answered)
            - value(&before, "pi_agent_messages_total", answered),
        1.0
    );
    let sent = &[("method", "sendMessage"), ("outcome", "ok")];
    assert!(
        value(&after, "pi_agent_telegram_requests_total", sent)
            > value(&before, "pi_agent_telegram_requests_total", sent)
    );
    assert!(
        value(
            &after,
            "pi_agent_telegram_requests_total",
            &[("method", "getUpdates")]
        ) >= 1.0
    );
    let persona = &[("stage", "persona"), ("role", "formatter")];
    assert!(value(&after, "pi_agent_stage_duration_seconds_count", persona) >= 1.0);
    assert!(value(&after, "pi_agent_llm_first_token_seconds_count", &[]) >= 1.0);
    assert!(value(&after, "pi_agent_llm_tokens_total", &[]) >= 1.0);
    assert_eq!(value(&after, "pi_agent_queue_depth", &[]), 0.0);
    // The prompt's tokens by kind (a first message finds nothing cached), the model's load.
    let prompt = "pi_agent_llm_prompt_tokens_total";
    assert!(value(&after, prompt, &[("kind", "evaluated")]) >= 1.0);
    let cached_sample = after
        .samples
        .iter()
        .any(|s| s.metric == prompt && s.labels.get("kind") == Some("cached"));
    assert!(cached_sample, "no {prompt}{{kind=\"cached\"}}");
    assert!(value(&after, "pi_agent_llm_model_load_seconds_count", &[]) >= 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dashboard_reachable_from_other_machines_needs_a_token() {
    let h = Harness::start(env!("CARGO_BIN_EXE_pi-agent-cli")).await;
    let output = h
        .command("run", &[("DASHBOARD_ADDR", "0.0.0.0:0")])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("DASHBOARD_TOKEN"), "{stderr}");
    assert!(stderr.contains("reachable from other machines"), "{stderr}");
    assert!(
        h.telegram.calls("getUpdates").is_empty(),
        "it did not start"
    );
}

/// `chromedriver` on a free loopback port, stopped when dropped.
struct ChromeDriver {
    child: std::process::Child,
    url: String,
}

impl ChromeDriver {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let child = std::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver; `bash .ci/setup` installs it)");
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while reqwest::get(format!("{url}/status")).await.is_err() {
            assert!(started.elapsed() < PATIENCE, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self { child, url }
    }

    async fn browser(&self) -> fantoccini::Client {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1000"]
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        fantoccini::ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a headless chromium session")
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Saves what the browser shows as `target/dashboard-screenshots/<name>.png`.
async fn screenshot(browser: &fantoccini::Client, name: &str) {
    let dir = pi_agent_tests::repo_root().join("target/dashboard-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = browser.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// Polls until the element's text satisfies `ready`; returns it.
async fn wait_for_text(
    browser: &fantoccini::Client,
    css: &str,
    ready: impl Fn(&str) -> bool,
) -> String {
    let started = Instant::now();
    loop {
        // The page may be replaced between finding the element and reading it (a form
        // submitted, a redirect): then read the new one.
        let found = browser.find(fantoccini::Locator::Css(css)).await;
        let text = match found {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if ready(&text) {
            return text;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "{css} never matched; it says:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn log_in_with(browser: &fantoccini::Client, base: &str, token: &str) {
    browser.goto(&format!("{base}/login")).await.unwrap();
    let field = browser
        .wait()
        .at_most(PATIENCE)
        .for_element(fantoccini::Locator::Id("token"))
        .await
        .unwrap();
    field.send_keys(token).await.unwrap();
    browser
        .find(fantoccini::Locator::Id("login"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn in_a_real_browser_the_owner_logs_in_reloads_and_watches_the_log() {
    let mut h = Harness::start(env!("CARGO_BIN_EXE_pi-agent-cli")).await;
    // A Pi behind the fake Ollama, ten times faster: the Overview shows its figures.
    h.llm.simulate(RunnerSettings {
        speedup: 10.0,
        ..RunnerSettings::default()
    });
    h.llm.push_script(Script::reply("Hello from the Pi."));
    let (_bot, base) = bot_with_dashboard(&mut h).await;
    h.wait_until_polling().await;
    let driver = ChromeDriver::start().await;
    let browser = driver.browser().await;

    log_in_with(&browser, &base, "a-wrong-token-of-some-length").await;
    let refused = wait_for_text(&browser, "#login-error", |t| !t.is_empty()).await;
    assert!(refused.contains("not the dashboard's token"), "{refused}");
    screenshot(&browser, "login-refused").await;

    log_in_with(&browser, &base, DASHBOARD_TOKEN).await;
    wait_for_text(&browser, "h1", |t| t == "Overview").await;
    screenshot(&browser, "overview").await;

    browser.goto(&format!("{base}/pipeline")).await.unwrap();
    let stages = wait_for_text(&browser, "table", |t| t.contains("persona")).await;
    assert!(
        stages.contains("persona") && stages.contains("telegram-html"),
        "{stages}"
    );
    browser
        .find(fantoccini::Locator::Id("reload"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let outcome = wait_for_text(&browser, "#reload-outcome", |t| t.contains("Last reload")).await;
    assert!(outcome.contains("pipeline reloaded in"), "{outcome}");
    screenshot(&browser, "pipeline").await;

    browser.goto(&format!("{base}/logs")).await.unwrap();
    wait_for_text(&browser, "#state", |t| t == "live").await;
    h.telegram.push_message(FRIEND, FRIEND, "hi");
    let log = wait_for_text(&browser, "#log", |t| {
        t.contains("answering") && t.contains(&format!("chat_id={FRIEND}"))
    })
    .await;
    assert!(!log.contains(TOKEN) && !log.contains(DASHBOARD_TOKEN));
    h.wait_for_message(FRIEND, |m| m.visible_text == "Hello from the Pi.")
        .await;
    screenshot(&browser, "logs").await;

    for page in ["tasks", "chats"] {
        browser.goto(&format!("{base}/{page}")).await.unwrap();
        wait_for_text(&browser, "h1", |t| t.to_lowercase().starts_with(page)).await;
        screenshot(&browser, page).await;
    }
    browser.goto(&format!("{base}/")).await.unwrap();
    let overview = wait_for_text(&browser, "#messages-today", |t| t != "0").await;
    assert_eq!(overview, "1");
    // The first message found nothing in the cache; its first token took the Pi's time.
    let share = wait_for_text(&browser, "#cache-share", |t| t.ends_with('%')).await;
    assert_eq!(share, "0%");
    let first_token = wait_for_text(&browser, "#first-token-p50", |t| t.ends_with(" s")).await;
    assert_ne!(first_token, "0.0 s");
    screenshot(&browser, "overview-after-a-message").await;
    browser.close().await.unwrap();
}
