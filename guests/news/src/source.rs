//! The configured feeds, and how a feed that could not be read is named: by its host and a
//! few words of reason — never its whole URL, whose path or query may hold a key.

use pi_agent_guest::http::{HttpError, Response};

use crate::feed::{self, Feed, ParseError};

/// Requests the host lets one call send: one per feed (a redirect takes another).
pub const MAX_FEEDS: usize = 4;

/// The `feeds` config value: a TOML array of URLs (the host passes it as its TOML text,
/// which for an array of URLs is also JSON), or one string of comma-separated URLs.
pub fn feed_urls(configured: &str) -> Result<Vec<String>, String> {
    let configured = configured.trim();
    let urls: Vec<String> = if configured.starts_with('[') {
        serde_json::from_str(configured).map_err(|_| {
            "feeds in [stage.config] must be an array of URL strings, \
             e.g. feeds = [\"https://example.org/rss\"]"
                .to_owned()
        })?
    } else {
        configured.split(',').map(str::to_owned).collect()
    };
    let urls: Vec<String> = urls
        .into_iter()
        .map(|url| url.trim().to_owned())
        .filter(|url| !url.is_empty())
        .collect();
    if urls.is_empty() {
        return Err("feeds in [stage.config] lists no URL".to_owned());
    }
    Ok(urls)
}

/// The host (and port) of `url`: what logs and the prompt call a feed.
pub fn host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // `user:password@host`: the part before `@` is a secret.
    authority.rsplit('@').next().unwrap_or_default()
}

/// A feed that could not be read, as the prompt and the log name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub host: String,
    pub reason: String,
}

impl Failure {
    pub fn new(url: &str, reason: impl Into<String>) -> Self {
        Self {
            host: host(url).to_owned(),
            reason: reason.into(),
        }
    }
}

/// A few words for why a request got no response.
pub fn http_reason(error: &HttpError) -> String {
    match error {
        HttpError::BadUrl(_) => "not an http(s) URL".to_owned(),
        HttpError::Denied(why) => format!("refused: {why}"),
        HttpError::Failed(code) => {
            // `wasi:http` error codes, as the SDK spells them (`ErrorCode::DnsTimeout`), or
            // the host's own first line for a body it stopped reading.
            let known = [
                ("Timeout", "timed out"),
                ("ConnectionRefused", "connection refused"),
                ("DnsError", "unknown host name"),
                ("Tls", "TLS failed"),
                ("size exceeds limit", "larger than 1 MiB"),
            ];
            known
                .iter()
                .find(|(needle, _)| code.contains(needle))
                .map_or_else(
                    || crate::text::capped(code, 60),
                    |(_, words)| (*words).to_owned(),
                )
        }
        HttpError::TooManyRedirects => error.to_string(),
    }
}

/// What one feed's request brought: the feed (named by its host when it has no title), or
/// why not.
pub fn read(url: &str, answer: Result<Response, HttpError>) -> Result<Feed, Failure> {
    let fail = |reason: String| Failure::new(url, reason);
    let response = answer.map_err(|e| fail(http_reason(&e)))?;
    if !(200..300).contains(&response.status) {
        return Err(fail(format!("HTTP {}", response.status)));
    }
    let mut feed = feed::parse(&response.body).map_err(|e| {
        // What it is instead says most: an HTML page is a moved feed or a consent wall.
        match (&e, response.header("content-type")) {
            (ParseError::NotAFeed, Some(kind)) => {
                let mime = kind.split(';').next().unwrap_or_default().trim();
                fail(format!("{e}: {mime}"))
            }
            _ => fail(e.to_string()),
        }
    })?;
    if feed.title.is_empty() {
        feed.title = host(url).to_owned();
    }
    Ok(feed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feeds_come_as_a_toml_array_or_a_comma_separated_string() {
        assert_eq!(
            feed_urls(r#"["https://a.example/rss", "https://b.example/atom"]"#).unwrap(),
            ["https://a.example/rss", "https://b.example/atom"]
        );
        assert_eq!(
            feed_urls("https://a.example/rss, https://b.example/atom").unwrap(),
            ["https://a.example/rss", "https://b.example/atom"]
        );
        assert!(feed_urls("[]").unwrap_err().contains("no URL"));
        assert!(feed_urls("[1, 2]").unwrap_err().contains("e.g. feeds = ["));
    }

    #[test]
    fn a_feed_is_named_by_its_host_without_path_query_or_credentials() {
        assert_eq!(
            host("https://feeds.example.org/world/rss.xml?key=s3cr3t"),
            "feeds.example.org"
        );
        assert_eq!(host("http://127.0.0.1:8080?token=x"), "127.0.0.1:8080");
        assert_eq!(
            host("https://user:pa55@news.example.org/private"),
            "news.example.org"
        );
        let failure = Failure::new("https://a.example/rss?key=s3cr3t", "HTTP 500");
        assert_eq!(failure.host, "a.example");
    }

    #[test]
    fn request_errors_are_told_in_a_few_words() {
        let cases = [
            (
                HttpError::Failed("ErrorCode::HttpResponseTimeout".into()),
                "timed out",
            ),
            (
                HttpError::Failed("ErrorCode::ConnectionRefused".into()),
                "connection refused",
            ),
            (
                HttpError::Failed("HTTP response body size exceeds limit 1048576".into()),
                "larger than 1 MiB",
            ),
            (
                HttpError::Denied("origin not granted, or too many requests".into()),
                "refused: origin not granted, or too many requests",
            ),
            (
                HttpError::BadUrl("ftp://x/?key=1".into()),
                "not an http(s) URL",
            ),
            (
                HttpError::Failed("ErrorCode::InternalError(None)".into()),
                "ErrorCode::InternalError(None)",
            ),
        ];
        for (error, words) in cases {
            assert_eq!(http_reason(&error), words, "{error:?}");
        }
    }

    fn response(status: u16, content_type: &str, body: &[u8]) -> Result<Response, HttpError> {
        Ok(Response {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.to_vec(),
        })
    }

    #[test]
    fn a_feed_that_cannot_be_read_is_named_with_the_reason() {
        let url = "https://feeds.example.org/top.rss?key=s3cr3t";
        let failed = |answer| read(url, answer).unwrap_err();
        let html = b"<!DOCTYPE html><html><body>Moved</body></html>";
        let cases = [
            (failed(response(404, "text/html", html)), "HTTP 404"),
            (failed(response(500, "text/plain", b"oops")), "HTTP 500"),
            (
                failed(response(200, "text/html; charset=utf-8", html)),
                "not an RSS or Atom feed: text/html",
            ),
            (
                failed(Err(HttpError::Failed(
                    "ErrorCode::ConnectionReadTimeout".into(),
                ))),
                "timed out",
            ),
        ];
        for (failure, reason) in cases {
            assert_eq!(
                failure,
                Failure {
                    host: "feeds.example.org".into(),
                    reason: reason.into()
                }
            );
        }
    }

    #[test]
    fn a_feed_without_a_title_is_named_by_its_host() {
        let body = b"<rss version=\"2.0\"><channel><title> </title><item><title>x</title></item></channel></rss>";
        let feed = read(
            "https://feeds.example.org/rss",
            response(200, "application/rss+xml", body),
        )
        .unwrap();
        assert_eq!(feed.title, "feeds.example.org");
        assert_eq!(feed.items.len(), 1);
    }
}
