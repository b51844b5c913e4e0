//! A fake news site on `127.0.0.1:<free port>`, speaking the feeds' wire format: `/rss` is
//! an RSS 2.0 channel (`application/rss+xml; charset=utf-8`) and `/atom` an Atom 1.0 feed
//! (`application/atom+xml`) — the news guest's own fixtures, so its unit tests and these
//! tests read the same bytes. Beside them, what a feed reader must survive: `/missing`
//! (404), `/error` (500), `/html` (a 200 HTML page, not a feed) and `/hang` (headers that
//! never come). [`FakeNews::publish`] puts a new item on top of the RSS channel, as a
//! newsroom does.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The RSS channel's title.
pub const RSS_TITLE: &str = "Example News";
/// The Atom feed's title.
pub const ATOM_TITLE: &str = "Other Feed";
/// The RSS channel's headlines, newest first (the last has no date).
pub const RSS_HEADLINES: [&str; 4] = [
    "Council approves new tram line & cycle lanes",
    "Storm Bert: rail services cut across the north",
    "Museum returns bronze sculptures to Benin",
    "Letters: readers on the tram vote",
];
/// The Atom feed's headlines that the RSS channel does not carry, newest first.
pub const ATOM_HEADLINES: [&str; 2] = [
    "Raspberry Pi 6 announced with 16 GB of RAM",
    "Open-source office suite\u{2019}s users pass 10 million",
];
/// Both feeds merged, newest first, each story once (the Atom feed repeats two RSS ones).
pub const HEADLINES: [&str; 6] = [
    RSS_HEADLINES[0],
    ATOM_HEADLINES[0],
    RSS_HEADLINES[1],
    ATOM_HEADLINES[1],
    RSS_HEADLINES[2],
    RSS_HEADLINES[3],
];

const RSS: &str = include_str!("../../guests/news/fixtures/example-news.rss");
const ATOM: &str = include_str!("../../guests/news/fixtures/other-feed.atom");

#[derive(Default)]
struct Site {
    requests: Mutex<Vec<String>>,
    /// Titles of published items, oldest first.
    published: Mutex<Vec<String>>,
}

type Shared = Arc<Site>;

pub struct FakeNews {
    addr: SocketAddr,
    site: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl FakeNews {
    pub async fn start() -> Self {
        let site = Shared::default();
        let app = Router::new()
            .route("/rss", get(rss))
            .route("/atom", get(atom))
            .route("/missing", get(missing))
            .route("/error", get(error))
            .route("/html", get(html))
            .route("/hang", get(hang))
            .with_state(site.clone());
        let (addr, server) = crate::serve_on_loopback(app, "fake news site").await;
        Self { addr, site, server }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:<port>`: how the guest names this site.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Each request's path and query, oldest first.
    pub fn requests(&self) -> Vec<String> {
        self.site.requests.lock().unwrap().clone()
    }

    /// Puts an item titled `title` on top of the RSS channel, newer than every other.
    pub fn publish(&self, title: &str) {
        self.site.published.lock().unwrap().push(title.to_owned());
    }
}

impl Drop for FakeNews {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn record(site: &Site, uri: &Uri) {
    site.requests.lock().unwrap().push(uri.to_string());
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

async fn rss(State(site): State<Shared>, uri: Uri) -> Response {
    record(&site, &uri);
    // Published items go above the fixture's, newest first, 10:00 +0100 on and a minute
    // apart: after the fixture's newest (09:30 +0100).
    let published = site.published.lock().unwrap().clone();
    let items: String = published
        .iter()
        .enumerate()
        .rev()
        .map(|(n, title)| {
            format!(
                "<item>\n      <title>{}</title>\n      \
                 <link>https://news.example.org/live/{n}</link>\n      \
                 <guid isPermaLink=\"true\">https://news.example.org/live/{n}</guid>\n      \
                 <description><![CDATA[<p>Developing story &mdash; more soon.</p>]]></description>\n      \
                 <pubDate>Wed, 02 Dec 2026 10:{n:02}:00 +0100</pubDate>\n    </item>\n    ",
                escape(title)
            )
        })
        .collect();
    let first = RSS.find("<item>").expect("the fixture has items");
    let body = format!("{}{items}{}", &RSS[..first], &RSS[first..]);
    (
        [(header::CONTENT_TYPE, "application/rss+xml; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn atom(State(site): State<Shared>, uri: Uri) -> Response {
    record(&site, &uri);
    ([(header::CONTENT_TYPE, "application/atom+xml")], ATOM).into_response()
}

/// What nginx answers for a feed that moved away.
async fn missing(State(site): State<Shared>, uri: Uri) -> Response {
    record(&site, &uri);
    let body = "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n\
                <center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n\
                </body>\r\n</html>\r\n";
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/html")],
        body,
    )
        .into_response()
}

async fn error(State(site): State<Shared>, uri: Uri) -> Response {
    record(&site, &uri);
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "Internal Server Error",
    )
        .into_response()
}

/// A consent wall where the feed was: 200, but HTML.
async fn html(State(site): State<Shared>, uri: Uri) -> Response {
    record(&site, &uri);
    let body = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
                <title>Before you continue</title>\n</head>\n<body>\n\
                <form method=\"post\" action=\"/consent\"><p>We use cookies &amp; data to \
                deliver our services.</p><button>Accept all</button></form>\n</body>\n</html>\n";
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

async fn hang(State(site): State<Shared>, uri: Uri) -> Response {
    record(&site, &uri);
    std::future::pending::<()>().await;
    unreachable!()
}
