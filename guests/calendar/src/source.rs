//! One calendar address, fetched through the SDK's `http` and named by its host only: the
//! path of a secret iCal address is the key to the calendar, so it goes in no log line and
//! no prompt.

use pi_agent_guest::http::{self, HttpError};

use crate::ics::Document;

/// Why a calendar could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Which calendar: its host (`calendar.google.com`).
    pub source: String,
    /// What went wrong, in a few words (for the prompt and the log).
    pub why: String,
    /// What the bot's owner can do about it (for the log).
    pub fix: &'static str,
}

impl Failure {
    pub fn new(source: &str, why: impl Into<String>, fix: &'static str) -> Self {
        Self {
            source: source.to_owned(),
            why: why.into(),
            fix,
        }
    }
}

/// Fetches and reads the calendar at `url`, which `source` names.
pub fn read(url: &str, source: &str) -> Result<Document, Failure> {
    // Google's "public address" links are often given as webcal://, which is HTTPS.
    let url = match url.strip_prefix("webcal://") {
        Some(rest) => format!("https://{rest}"),
        None => url.to_owned(),
    };
    let response = http::get(&url).map_err(|error| request_failed(source, &error))?;
    if !(200..300).contains(&response.status) {
        return Err(status_failed(source, response.status));
    }
    Document::parse(&response.body).map_err(|why| {
        let fix = "check that the address is the calendar's iCal (.ics) address, not its web page";
        Failure::new(source, why, fix)
    })
}

/// The host of `url` (`calendar.google.com`), without any `user:password@`.
pub fn host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    match authority.rsplit('@').next() {
        Some(host) if !host.is_empty() => host.to_owned(),
        _ => "the configured address".to_owned(),
    }
}

/// An answer other than 2xx. Google answers 404 to a secret address with a wrong key.
pub fn status_failed(source: &str, status: u16) -> Failure {
    let fix = match status {
        401 | 403 | 404 | 410 => {
            "the secret address is wrong or was reset: copy \"Secret address in iCal format\" \
             again from the calendar's settings into the variable ics_url names in .env"
        }
        _ => "the calendar's server had a problem; the next message about the day tries again",
    };
    Failure::new(source, format!("HTTP {status}"), fix)
}

/// A request that got no answer.
pub fn request_failed(source: &str, error: &HttpError) -> Failure {
    match error {
        // Its text would show the address, path and key included.
        HttpError::BadUrl(_) => Failure::new(
            source,
            "the address is not an http(s) URL",
            "set ics_url to the calendar's https:// address",
        ),
        HttpError::Denied(_) => Failure::new(
            source,
            error.to_string(),
            "grant the address's origin (like https://calendar.google.com) in the stage's \
             [stage.grants] http; a call may send at most 4 requests",
        ),
        HttpError::Failed(_) | HttpError::TooManyRedirects => Failure::new(
            source,
            error.to_string(),
            "check the network; a timeout may need a larger timeout_ms for this stage",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "https://calendar.google.com/calendar/ical/me%40gmail.com/private-0123456789abcdef/basic.ics";

    #[test]
    fn a_calendar_is_named_by_its_host_only() {
        assert_eq!(host(SECRET), "calendar.google.com");
        assert_eq!(host("http://127.0.0.1:8089/x.ics?key=1"), "127.0.0.1:8089");
        assert_eq!(host("https://me:pw@cal.example.org/x"), "cal.example.org");
        assert_eq!(host("not a url"), "not a url");
        assert_eq!(host("https:///x"), "the configured address");
    }

    #[test]
    fn failures_say_what_went_wrong_without_the_address() {
        let source = host(SECRET);
        let failures = [
            status_failed(&source, 404),
            status_failed(&source, 503),
            request_failed(&source, &HttpError::BadUrl(SECRET.replace("https", "ftp"))),
            request_failed(&source, &HttpError::Denied("origin not granted".into())),
            request_failed(
                &source,
                &HttpError::Failed("ErrorCode::HttpResponseTimeout".into()),
            ),
        ];
        for failure in &failures {
            let shown = format!("{failure:?}");
            assert!(
                !shown.contains("private-") && !shown.contains("0123456789abcdef"),
                "{shown}"
            );
            assert_eq!(failure.source, "calendar.google.com");
        }
        assert_eq!(failures[0].why, "HTTP 404");
        assert!(failures[0].fix.contains("Secret address in iCal format"));
        assert_eq!(failures[2].why, "the address is not an http(s) URL");
        assert!(failures[3].why.contains("refused") && failures[3].fix.contains("[stage.grants]"));
        assert!(failures[4].why.contains("HttpResponseTimeout"));
    }
}
