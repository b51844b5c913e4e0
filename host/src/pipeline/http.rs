//! Guests' outgoing HTTP (`wasi:http/outgoing-handler`), through the host's check: every
//! request must match one of its stage's grants (see `grants`), and a host *name* is only
//! ever connected to at public addresses — never loopback, private, link-local, shared
//! (CGNAT, Tailscale) or one of the Pi's own — so a guest cannot reach Ollama, the router
//! or the LAN by a name that happens to resolve there. Only a grant naming an IP literal
//! reaches such an address.
//!
//! Per call: at most [`REQUESTS_PER_CALL`] requests, response bodies up to
//! [`MAX_RESPONSE_BODY`] (more is an error the guest reads, not a silent cut), and every
//! request ends a little before the call's deadline, so the guest can carry on without it
//! (fail soft) instead of being stopped with it. Redirects are not followed: the guest gets
//! the 3xx and any next hop is a new request, checked again. A refusal is one log line
//! naming the stage and the host, never the URL (query strings carry keys).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::time::{Instant, timeout_at};
use wasmtime_wasi_http::{Error, WasiBody, WasiHttpHooks};

use super::grants::Grants;

/// Requests one guest call may send.
pub const REQUESTS_PER_CALL: usize = 4;
/// The largest response body a guest may read; a longer one fails at this size.
pub const MAX_RESPONSE_BODY: usize = 1024 * 1024;
/// The largest request body a guest may send.
const MAX_REQUEST_BODY: usize = 1024 * 1024;

/// What a request's future resolves to, as `wasmtime_wasi_http` wants it.
type Sent = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

/// The `wasi:http` hooks of one guest call.
pub struct GuestHttp {
    stage: Arc<str>,
    grants: Arc<Grants>,
    requests_left: usize,
    /// When every request of this call must be over.
    deadline: Instant,
}

impl GuestHttp {
    /// Hooks for a call that must end at `call_deadline`. Requests end a quarter of the
    /// call's time (at most a second) before it, which the guest keeps for going on without
    /// the answer.
    pub fn new(stage: Arc<str>, grants: Arc<Grants>, call_timeout: Duration) -> Self {
        let reserve = (call_timeout / 4).min(Duration::from_secs(1));
        Self {
            stage,
            grants,
            requests_left: REQUESTS_PER_CALL,
            deadline: Instant::now() + call_timeout - reserve,
        }
    }

    /// Logs the refusal (stage and host, not the URL) and returns it for the guest.
    fn refuse(&self, authority: &str, why: &str, error: Error) -> Sent {
        tracing::warn!(stage = %self.stage, host = authority, "HTTP request refused: {why}");
        Box::new(std::future::ready(Err(error)))
    }
}

impl WasiHttpHooks for GuestHttp {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Sent {
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("https").to_owned();
        let host = uri.host().unwrap_or_default().to_owned();
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "http" { 80 } else { 443 });
        let authority = format!("{host}:{port}");
        if self.grants.http_grant(&scheme, &host, port).is_none() {
            let why = format!("{scheme}://{authority} is not granted to this stage");
            return self.refuse(&authority, &why, Error::HttpRequestDenied);
        }
        if self.requests_left == 0 {
            let why = format!("more than {REQUESTS_PER_CALL} requests in one call");
            return self.refuse(&authority, &why, Error::HttpRequestDenied);
        }
        self.requests_left -= 1;
        // A name is resolved by the client's guarded resolver; an IP literal is connected
        // to as written, which only a grant naming that very address allows.
        let (stage, deadline) = (self.stage.clone(), self.deadline);
        Box::new(async move {
            let response = send(request, deadline).await.inspect_err(|error| {
                tracing::warn!(stage = %stage, host = authority, "HTTP request failed: {error}");
            })?;
            let done: Box<dyn Future<Output = Result<(), Error>> + Send> =
                Box::new(std::future::ready(Ok(())));
            Ok((response, done))
        })
    }
}

/// Sends `request` with the guarded client and hands back the response with its body
/// capped and bounded by `deadline`.
async fn send(
    request: http::Request<WasiBody>,
    deadline: Instant,
) -> Result<http::Response<WasiBody>, Error> {
    let (parts, body) = request.into_parts();
    let body = timeout_at(deadline, read_request_body(body))
        .await
        .map_err(|_| Error::ConnectionWriteTimeout)??;
    let mut outgoing = reqwest::Request::new(
        parts.method,
        parts
            .uri
            .to_string()
            .parse()
            .map_err(|_| Error::HttpRequestUriInvalid)?,
    );
    *outgoing.headers_mut() = parts.headers;
    // reqwest writes `Host` from the URL; the guest's copy would be sent twice.
    outgoing.headers_mut().remove(http::header::HOST);
    *outgoing.body_mut() = Some(body.into());
    let response = match timeout_at(deadline, client().execute(outgoing)).await {
        Err(_) => return Err(Error::HttpResponseTimeout),
        Ok(Err(error)) => return Err(send_error(&error)),
        Ok(Ok(response)) => response,
    };
    let mut builder = http::Response::builder()
        .status(response.status())
        .version(response.version());
    if let Some(headers) = builder.headers_mut() {
        *headers = response.headers().clone();
    }
    let body = capped_body(response.bytes_stream(), deadline);
    builder
        .body(body)
        .map_err(|e| Error::InternalError(Some(e.to_string())))
}

async fn read_request_body(body: WasiBody) -> Result<Bytes, Error> {
    let bytes = body.collect().await?.to_bytes();
    if bytes.len() > MAX_REQUEST_BODY {
        return Err(Error::HttpRequestBodySize(Some(bytes.len() as u64)));
    }
    Ok(bytes)
}

/// The response body as the guest reads it: an error instead of the chunk that would take
/// it past [`MAX_RESPONSE_BODY`], and a timeout at `deadline`.
fn capped_body(
    chunks: impl futures_util::Stream<Item = reqwest::Result<Bytes>> + Send + 'static,
    deadline: Instant,
) -> WasiBody {
    let mut received = 0usize;
    let mut over = false;
    let frames = chunks
        .map(move |chunk| {
            let chunk = chunk.map_err(|e| send_error(&e))?;
            received += chunk.len();
            if received > MAX_RESPONSE_BODY {
                return Err(Error::HttpResponseBodySize(Some(received as u64)));
            }
            Ok(Frame::data(chunk))
        })
        // The first error ends the body.
        .take_while(move |frame| {
            let keep = !over;
            over |= frame.is_err();
            std::future::ready(keep)
        });
    let bounded = tokio_stream_deadline(frames, deadline);
    StreamBody::new(bounded).boxed_unsync()
}

/// `stream` until `deadline`, then one `ConnectionReadTimeout` error and the end.
fn tokio_stream_deadline<S>(
    stream: S,
    deadline: Instant,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, Error>> + Send + 'static
where
    S: futures_util::Stream<Item = Result<Frame<Bytes>, Error>> + Send + 'static,
{
    futures_util::stream::unfold(Some(Box::pin(stream)), move |state| async move {
        let mut stream = state?;
        match timeout_at(deadline, stream.next()).await {
            Ok(Some(item)) => Some((item, Some(stream))),
            Ok(None) => None,
            Err(_) => Some((Err(Error::ConnectionReadTimeout), None)),
        }
    })
}

/// What went wrong, in `wasi:http`'s terms.
fn send_error(error: &reqwest::Error) -> Error {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if e.downcast_ref::<ProhibitedAddress>().is_some() {
            return Error::DestinationIpProhibited;
        }
        cause = e.source();
    }
    if error.is_timeout() {
        Error::ConnectionTimeout
    } else if error.is_connect() {
        Error::ConnectionRefused
    } else if error.is_body() || error.is_decode() {
        Error::HttpResponseIncomplete
    } else {
        Error::HttpProtocolError
    }
}

/// The one client for guests' requests: no proxy, no redirects, names resolved by
/// [`GuardedResolver`]. Built on first use; guests that never send cost nothing.
fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(GuardedResolver))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .expect("building the HTTP client for guests")
    })
}

/// Resolves names to their public addresses only.
struct GuardedResolver;

/// A name that resolves to no public address.
#[derive(Debug)]
struct ProhibitedAddress(String);

impl std::fmt::Display for ProhibitedAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} resolves only to loopback, private, link-local or this machine's addresses",
            self.0
        )
    }
}

impl std::error::Error for ProhibitedAddress {}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let name = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let own = own_addresses();
            let public: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|a| is_public(a.ip()) && !own.contains(&a.ip().to_canonical()))
                .collect();
            if public.is_empty() {
                return Err(Box::new(ProhibitedAddress(name)) as _);
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Whether `ip` is an address on the public internet (not loopback, private, link-local,
/// shared, multicast, documentation, reserved; IPv4 inside IPv6 judged as IPv4).
fn is_public(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared: CGNAT, Tailscale
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || a >= 240) // reserved
        }
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            // NAT64 (64:ff9b::/96) carries an IPv4 address: judge that.
            if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let o = v6.octets();
                return is_public(IpAddr::from([o[12], o[13], o[14], o[15]]));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (segments[0] & 0xfe00) == 0xfc00 // unique local
                || (segments[0] & 0xffc0) == 0xfe80 // link-local
                || (segments[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || segments[0] == 0x2001 && segments[1] == 0xdb8) // documentation
        }
    }
}

/// The addresses of this machine's interfaces (a public one included, on a Pi with one).
fn own_addresses() -> Vec<IpAddr> {
    let mut addresses = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list we only read and then free.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return addresses;
    }
    let mut entry = list;
    while !entry.is_null() {
        // SAFETY: `entry` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*entry };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points to a sockaddr whose family says its real type.
            match i32::from(unsafe { (*ifa.ifa_addr).sa_family }) {
                libc::AF_INET => {
                    let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                    addresses.push(IpAddr::from(
                        u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                    ));
                }
                libc::AF_INET6 => {
                    let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                    addresses.push(IpAddr::from(sin6.sin6_addr.s6_addr));
                }
                _ => {}
            }
        }
        entry = ifa.ifa_next;
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    addresses
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.10",
            "169.254.1.1",
            "100.100.1.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:192.168.0.1",
            "64:ff9b::7f00:1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in [
            "1.1.1.1",
            "151.101.1.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn this_machines_loopback_is_among_its_own_addresses() {
        assert!(own_addresses().contains(&IpAddr::from([127, 0, 0, 1])));
    }
}
