//! What a stage may reach beyond its sandbox, as its owner granted it in `pipeline.toml`:
//!
//! ```toml
//! [stage.grants]
//! http = ["https://api.open-meteo.com", "https://*.example.org", "http://192.168.1.10:8123"]
//! kv_kib = 256
//! ```
//!
//! Nothing is granted by default. An HTTP grant is an origin — scheme, host, port (the
//! scheme's default when left out) — with no path: a request matches when all three do.
//! `*.example.org` matches its subdomains, not `example.org` itself. A grant that names an
//! IP literal is the only way to reach a loopback, private or link-local address; a name
//! never does, whatever it resolves to (see `http`).

use std::fmt;
use std::net::IpAddr;

use serde::Deserialize;
use url::{Host, Url};

/// A stage's grants, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    pub http: Vec<HttpGrant>,
    /// `kv_kib`, in bytes; `None`: no key-value store.
    pub kv_quota_bytes: Option<u64>,
}

/// `[stage.grants]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGrants {
    #[serde(default)]
    http: Vec<String>,
    kv_kib: Option<u64>,
}

impl Grants {
    /// Validates `raw`; the error says which grant is wrong and how to write it.
    pub fn parse(raw: RawGrants) -> Result<Self, String> {
        let http = raw
            .http
            .iter()
            .map(|grant| HttpGrant::parse(grant))
            .collect::<Result<_, _>>()?;
        let kv_quota_bytes = match raw.kv_kib {
            Some(0) => return Err("grants.kv_kib must be greater than 0".into()),
            other => other.map(|kib| kib.saturating_mul(1024)),
        };
        Ok(Self {
            http,
            kv_quota_bytes,
        })
    }

    /// The grant that lets a request to `scheme://host:port` through, if any.
    pub fn http_grant(&self, scheme: &str, host: &str, port: u16) -> Option<&HttpGrant> {
        self.http.iter().find(|g| g.allows(scheme, host, port))
    }

    pub fn is_empty(&self) -> bool {
        self.http.is_empty() && self.kv_quota_bytes.is_none()
    }
}

/// One line for `pipeline check` and `/status`: `http https://a.org, https://*.b.org; kv 256 KiB`.
impl fmt::Display for Grants {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        let mut parts = Vec::new();
        if !self.http.is_empty() {
            let origins: Vec<String> = self.http.iter().map(ToString::to_string).collect();
            parts.push(format!("http {}", origins.join(", ")));
        }
        if let Some(bytes) = self.kv_quota_bytes {
            parts.push(format!("kv {} KiB", bytes / 1024));
        }
        f.write_str(&parts.join("; "))
    }
}

/// One granted origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGrant {
    scheme: String,
    host: GrantedHost,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum GrantedHost {
    /// Exactly this name (lowercase).
    Name(String),
    /// Any name ending in `.` + this (lowercase).
    SubdomainsOf(String),
    /// This address, written as an IP literal.
    Ip(IpAddr),
}

impl HttpGrant {
    fn parse(grant: &str) -> Result<Self, String> {
        let wrong = |why: &str| {
            format!(
                "grants.http: {grant:?} {why} — write an origin like \"https://api.example.org\", \
                 \"https://*.example.org\" or \"http://192.168.1.10:8123\""
            )
        };
        let url = Url::parse(grant).map_err(|e| wrong(&format!("is not a URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(wrong("is not http or https"));
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(wrong("has a path, query or fragment"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(wrong("has a user name or password"));
        }
        let host = match url.host() {
            Some(Host::Ipv4(ip)) => GrantedHost::Ip(ip.into()),
            Some(Host::Ipv6(ip)) => GrantedHost::Ip(ip.into()),
            Some(Host::Domain(name)) => match name.strip_prefix("*.") {
                Some(parent) if !parent.is_empty() && !parent.contains('*') => {
                    GrantedHost::SubdomainsOf(parent.to_ascii_lowercase())
                }
                _ if name.contains('*') => {
                    return Err(wrong("has a `*` that is not a leading `*.`"));
                }
                _ => GrantedHost::Name(name.to_ascii_lowercase()),
            },
            None => return Err(wrong("has no host")),
        };
        Ok(Self {
            scheme: url.scheme().to_owned(),
            host,
            port: url.port_or_known_default().unwrap_or(443),
        })
    }

    /// Whether a request to `scheme://host:port` is granted; `host` as in a URI (IPv6 in
    /// brackets).
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        if !scheme.eq_ignore_ascii_case(&self.scheme) || port != self.port {
            return false;
        }
        let host = host.trim_end_matches('.');
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        match (&self.host, literal.parse::<IpAddr>()) {
            (GrantedHost::Ip(granted), Ok(ip)) => *granted == ip,
            (GrantedHost::Ip(_), Err(_)) | (_, Ok(_)) => false,
            (GrantedHost::Name(name), Err(_)) => host.eq_ignore_ascii_case(name),
            (GrantedHost::SubdomainsOf(parent), Err(_)) => {
                let host = host.to_ascii_lowercase();
                host.len() > parent.len() + 1
                    && host.ends_with(parent.as_str())
                    && host.as_bytes()[host.len() - parent.len() - 1] == b'.'
            }
        }
    }
}

impl fmt::Display for HttpGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = match &self.host {
            GrantedHost::Name(name) => name.clone(),
            GrantedHost::SubdomainsOf(parent) => format!("*.{parent}"),
            GrantedHost::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
            GrantedHost::Ip(IpAddr::V4(ip)) => ip.to_string(),
        };
        let default_port = if self.scheme == "https" { 443 } else { 80 };
        if self.port == default_port {
            write!(f, "{}://{host}", self.scheme)
        } else {
            write!(f, "{}://{host}:{}", self.scheme, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(http: &[&str]) -> Result<Grants, String> {
        Grants::parse(RawGrants {
            http: http.iter().map(|s| s.to_string()).collect(),
            kv_kib: None,
        })
    }

    #[test]
    fn scheme_host_and_port_must_all_match() {
        let g = grants(&["https://api.open-meteo.com"]).unwrap();
        assert!(g.http_grant("https", "api.open-meteo.com", 443).is_some());
        assert!(g.http_grant("https", "API.Open-Meteo.com.", 443).is_some());
        assert!(g.http_grant("http", "api.open-meteo.com", 80).is_none());
        assert!(g.http_grant("https", "api.open-meteo.com", 8443).is_none());
        assert!(g.http_grant("https", "open-meteo.com", 443).is_none());
        assert!(
            g.http_grant("https", "api.open-meteo.com.evil.org", 443)
                .is_none()
        );
    }

    #[test]
    fn a_wildcard_means_subdomains_only() {
        let g = grants(&["https://*.example.org"]).unwrap();
        assert!(g.http_grant("https", "a.example.org", 443).is_some());
        assert!(g.http_grant("https", "a.b.example.org", 443).is_some());
        assert!(g.http_grant("https", "example.org", 443).is_none());
        assert!(g.http_grant("https", "badexample.org", 443).is_none());
    }

    #[test]
    fn ip_literals_match_only_the_same_address() {
        let g = grants(&["http://127.0.0.1:8089", "http://[::1]:8090"]).unwrap();
        assert!(g.http_grant("http", "127.0.0.1", 8089).is_some());
        assert!(g.http_grant("http", "localhost", 8089).is_none());
        assert!(g.http_grant("http", "127.0.0.2", 8089).is_none());
        assert!(g.http_grant("http", "[::1]", 8090).is_some());
    }

    #[test]
    fn wrong_grants_say_how_to_write_them() {
        for (grant, why) in [
            ("api.example.org", "is not a URL"),
            ("ftp://example.org", "not http or https"),
            ("https://example.org/v1", "has a path"),
            ("https://a.*.org", "leading `*.`"),
            ("https://user:pw@example.org", "user name"),
        ] {
            let error = grants(&[grant]).unwrap_err();
            assert!(
                error.contains(why) && error.contains("write an origin like"),
                "{error}"
            );
        }
        let zero = Grants::parse(RawGrants {
            http: vec![],
            kv_kib: Some(0),
        })
        .unwrap_err();
        assert!(zero.contains("kv_kib"), "{zero}");
    }

    #[test]
    fn grants_are_listed_in_one_line() {
        let mut g = grants(&["https://api.open-meteo.com", "http://127.0.0.1:8089"]).unwrap();
        g.kv_quota_bytes = Some(256 * 1024);
        assert_eq!(
            g.to_string(),
            "http https://api.open-meteo.com, http://127.0.0.1:8089; kv 256 KiB"
        );
        assert_eq!(Grants::default().to_string(), "none");
    }
}
