//! Outgoing HTTP through the standard `wasi:http/outgoing-handler` — the host lets a
//! request through only to the origins this stage is granted in `pipeline.toml`:
//!
//! ```toml
//! [stage.grants]
//! http = ["https://api.open-meteo.com"]
//! ```
//!
//! Everything else fails with [`HttpError::Denied`]. A call may send 4 requests, read
//! bodies up to 1 MiB, and every request ends a little before the call's deadline, so a
//! guest can always carry on without the answer:
//!
//! ```ignore
//! match pi_agent_guest::http::get("https://api.open-meteo.com/v1/forecast?latitude=52.5&longitude=13.4&current=temperature_2m") {
//!     Ok(response) if response.status == 200 => { /* response.json::<Forecast>() */ }
//!     Ok(response) => pi_agent_guest::log::warn(&format!("weather: HTTP {}", response.status)),
//!     Err(e) => pi_agent_guest::log::warn(&format!("weather: {e}")),
//! }
//! ```
//!
//! Any other crate speaking `wasi:http` (`wasi`, `waki`, `wstd`) works the same way.

use std::fmt;

/// Redirects [`get`] follows; each hop is a new request, checked against the grants again.
pub const MAX_REDIRECTS: usize = 3;

/// A complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Header names in lowercase, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body read as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// Why a request got no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// Not a `http://` or `https://` URL.
    BadUrl(String),
    /// The host refused it: the origin is not granted, the name resolves to a private
    /// address, or the call used up its requests. The host's log says which.
    Denied(String),
    /// It was sent, but failed: the `wasi:http` error code (a timeout, a refused
    /// connection, a body over the limit …).
    Failed(String),
    /// More than [`MAX_REDIRECTS`] redirects.
    TooManyRedirects,
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Without the query: it may hold a key, and errors end up in logs.
            Self::BadUrl(url) => {
                let shown = url.split('?').next().unwrap_or_default();
                write!(f, "not an http(s) URL: {shown}")
            }
            Self::Denied(why) => write!(f, "request refused by the host ({why})"),
            Self::Failed(why) => write!(f, "request failed ({why})"),
            Self::TooManyRedirects => write!(f, "more than {MAX_REDIRECTS} redirects"),
        }
    }
}

impl std::error::Error for HttpError {}

/// GETs `url`, following redirects (each hop checked by the host like any request).
pub fn get(url: &str) -> Result<Response, HttpError> {
    let mut url = url.to_owned();
    for _ in 0..=MAX_REDIRECTS {
        let response = send_get(&Url::parse(&url)?)?;
        match response.header("location") {
            Some(location) if (300..400).contains(&response.status) => {
                url = resolve(&url, location);
            }
            _ => return Ok(response),
        }
    }
    Err(HttpError::TooManyRedirects)
}

/// A URL split the way `wasi:http` wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Url {
    https: bool,
    authority: String,
    path_with_query: String,
}

impl Url {
    fn parse(url: &str) -> Result<Self, HttpError> {
        let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(HttpError::BadUrl(url.to_owned()));
        };
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.is_empty() {
            return Err(HttpError::BadUrl(url.to_owned()));
        }
        let path_with_query = match path {
            "" => "/".to_owned(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_owned(),
        };
        Ok(Self {
            https,
            authority: authority.to_owned(),
            path_with_query,
        })
    }
}

/// A redirect's `Location`, absolute or relative to `base`.
fn resolve(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_owned();
    }
    let origin_end = base
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| base[start..].find('/').map(|i| start + i))
        .unwrap_or(base.len());
    let origin = &base[..origin_end];
    if location.starts_with('/') {
        format!("{origin}{location}")
    } else {
        let dir = base
            .rfind('/')
            .filter(|&i| i >= origin_end)
            .unwrap_or(origin_end);
        format!("{}/{location}", &base[..dir])
    }
}

#[cfg(target_arch = "wasm32")]
fn send_get(url: &Url) -> Result<Response, HttpError> {
    use wasi::http::outgoing_handler;
    use wasi::http::types::{
        ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme,
    };
    use wasi::io::streams::StreamError;

    let failed = |code: ErrorCode| match code {
        ErrorCode::HttpRequestDenied => {
            HttpError::Denied("origin not granted, or too many requests".into())
        }
        ErrorCode::DestinationIpProhibited => {
            HttpError::Denied("the name resolves to a private address".into())
        }
        other => HttpError::Failed(format!("{other:?}")),
    };
    let request = OutgoingRequest::new(Fields::new());
    let scheme = if url.https {
        Scheme::Https
    } else {
        Scheme::Http
    };
    let invalid = |what: &str| HttpError::BadUrl(format!("{what} rejected"));
    request
        .set_method(&Method::Get)
        .map_err(|()| invalid("method"))?;
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| invalid("scheme"))?;
    request
        .set_authority(Some(&url.authority))
        .map_err(|()| invalid("authority"))?;
    request
        .set_path_with_query(Some(&url.path_with_query))
        .map_err(|()| invalid("path"))?;
    let body = request.body().map_err(|()| invalid("body"))?;
    OutgoingBody::finish(body, None).map_err(failed)?;
    let pending = outgoing_handler::handle(request, None).map_err(failed)?;
    pending.subscribe().block();
    let response = pending
        .get()
        .ok_or_else(|| HttpError::Failed("no response".into()))?
        .map_err(|()| HttpError::Failed("response taken twice".into()))?
        .map_err(failed)?;
    let status = response.status();
    let headers = response
        .headers()
        .entries()
        .into_iter()
        .map(|(name, value)| {
            (
                name.to_ascii_lowercase(),
                String::from_utf8_lossy(&value).into_owned(),
            )
        })
        .collect();
    let incoming = response
        .consume()
        .map_err(|()| HttpError::Failed("body taken twice".into()))?;
    let stream = incoming
        .stream()
        .map_err(|()| HttpError::Failed("body stream taken twice".into()))?;
    let mut body = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => body.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(error)) => {
                let code = wasi::http::types::http_error_code(&error);
                // The host's own body errors (a body over the limit, a read past the
                // deadline) come without an error code: their first line says what it was.
                return Err(match code {
                    Some(code) => failed(code),
                    None => {
                        let text = error.to_debug_string();
                        HttpError::Failed(text.lines().next().unwrap_or_default().to_owned())
                    }
                });
            }
        }
    }
    drop(stream);
    IncomingBody::finish(incoming);
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// `wasi:http` exists only in the wasm build; natively (unit tests) every request fails.
#[cfg(not(target_arch = "wasm32"))]
fn send_get(_url: &Url) -> Result<Response, HttpError> {
    Err(HttpError::Failed(
        "HTTP needs the wasm32-wasip2 build".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_scheme_authority_and_path() {
        let url = Url::parse("https://api.open-meteo.com/v1/forecast?latitude=1").unwrap();
        assert_eq!(
            (
                url.https,
                url.authority.as_str(),
                url.path_with_query.as_str()
            ),
            (true, "api.open-meteo.com", "/v1/forecast?latitude=1")
        );
        let url = Url::parse("http://127.0.0.1:8089?x=1").unwrap();
        assert_eq!(
            (
                url.https,
                url.authority.as_str(),
                url.path_with_query.as_str()
            ),
            (false, "127.0.0.1:8089", "/?x=1")
        );
        assert!(Url::parse("ftp://x").is_err() && Url::parse("https://").is_err());
    }

    #[test]
    fn redirects_resolve_against_the_request() {
        let base = "http://a.org:81/v1/forecast?x=1";
        assert_eq!(resolve(base, "https://b.org/x"), "https://b.org/x");
        assert_eq!(resolve(base, "/other"), "http://a.org:81/other");
        assert_eq!(resolve(base, "next"), "http://a.org:81/v1/next");
        assert_eq!(resolve("http://a.org", "/x"), "http://a.org/x");
    }

    #[test]
    fn a_bad_url_is_shown_without_its_query() {
        let error = Url::parse("ftp://files.example.org/x?key=s3cr3t").unwrap_err();
        assert_eq!(
            error.to_string(),
            "not an http(s) URL: ftp://files.example.org/x"
        );
    }
}
