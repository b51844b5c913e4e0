"""Outgoing HTTP through the standard ``wasi:http/outgoing-handler``: the host lets a
request through only to the origins this stage is granted in ``pipeline.toml``::

    [stage.grants]
    http = ["https://api.open-meteo.com"]

Everything else raises ``Denied``. A call may send 4 requests, read bodies up to 1 MiB,
and every request ends a little before the call's deadline, so a guest can always carry on
without the answer::

    try:
        response = pi.http.get("https://api.open-meteo.com/v1/forecast?latitude=52.5&longitude=13.4&current=temperature_2m")
        forecast = response.json() if response.status == 200 else None
    except pi.http.HttpError as e:
        pi.log.warn(f"weather: {e}")

(Python's own ``urllib``, ``http.client`` and ``socket`` reach nothing: the sandbox refuses
every socket.)
"""

import json
from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple
from urllib.parse import urljoin, urlsplit

from componentize_py_types import Err
from wit_world.imports import http_types as wasi_http
from wit_world.imports import outgoing_handler, streams

#: Redirects ``get`` follows; each hop is a new request, checked against the grants again.
MAX_REDIRECTS = 3


class HttpError(Exception):
    """A request got no response."""


class BadUrl(HttpError):
    """Not an ``http://`` or ``https://`` URL."""


class Denied(HttpError):
    """The host refused the request: the origin is not granted, the name resolves to a
    private address, or the call used up its requests. The host's log says which."""


class Failed(HttpError):
    """It was sent, but failed (a timeout, a refused connection, a body over the limit …)."""


@dataclass
class Response:
    """A complete response."""

    status: int
    #: Header names in lowercase, in the order received.
    headers: List[Tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> Optional[str]:
        """The first value of header ``name`` (any case)."""
        name = name.lower()
        return next((v for n, v in self.headers if n == name), None)

    def text(self) -> str:
        """The body as text (invalid UTF-8 replaced)."""
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body read as JSON (raises ``ValueError`` if it is not)."""
        return json.loads(self.body)


def get(url: str, headers: Optional[List[Tuple[str, str]]] = None) -> Response:
    """GETs ``url`` with ``headers``, following redirects (each hop checked by the host
    like any request)."""
    for _ in range(MAX_REDIRECTS + 1):
        response = _send_get(url, headers or [])
        location = response.header("location")
        if not (300 <= response.status < 400 and location):
            return response
        url = urljoin(url, location)
    raise HttpError(f"more than {MAX_REDIRECTS} redirects")


def _shown(url: str) -> str:
    # Without the query: it may hold a key, and errors end up in logs.
    return url.split("?", 1)[0]


def _failure(code: Any) -> HttpError:
    if isinstance(code, wasi_http.ErrorCode_HttpRequestDenied):
        return Denied("request refused by the host (origin not granted, or too many requests)")
    if isinstance(code, wasi_http.ErrorCode_DestinationIpProhibited):
        return Denied("request refused by the host (the name resolves to a private address)")
    return Failed(f"request failed ({type(code).__name__.removeprefix('ErrorCode_')})")


def _send_get(url: str, headers: List[Tuple[str, str]]) -> Response:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadUrl(f"not an http(s) URL: {_shown(url)}")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    fields = wasi_http.Fields.from_list([(n, v.encode()) for n, v in headers])
    request = wasi_http.OutgoingRequest(fields)
    scheme = wasi_http.Scheme_Https() if parts.scheme == "https" else wasi_http.Scheme_Http()
    try:
        request.set_method(wasi_http.Method_Get())
        request.set_scheme(scheme)
        request.set_authority(parts.netloc)
        request.set_path_with_query(path)
        wasi_http.OutgoingBody.finish(request.body(), None)
        pending = outgoing_handler.handle(request, None)
    except Err as e:
        raise (_failure(e.value) if e.value is not None else BadUrl(f"rejected: {_shown(url)}")) from None
    pending.subscribe().block()
    outcome = pending.get()  # Optional[Result[Result[IncomingResponse, ErrorCode], None]]
    if outcome is None or isinstance(outcome, Err):
        raise Failed("request failed (no response)")
    if isinstance(outcome.value, Err):
        raise _failure(outcome.value.value)
    response = outcome.value.value
    status = response.status()
    received = [(n.lower(), v.decode("utf-8", errors="replace")) for n, v in response.headers().entries()]
    incoming = response.consume()
    stream = incoming.stream()
    body = bytearray()
    while True:
        try:
            body += stream.blocking_read(64 * 1024)
        except Err as e:
            if isinstance(e.value, streams.StreamError_Closed):
                break
            error = e.value.value
            code = wasi_http.http_error_code(error)
            # The host's own body errors (a body over the limit, a read past the deadline)
            # come without an error code: their first line says what it was.
            raise (_failure(code) if code is not None else Failed(
                f"request failed ({error.to_debug_string().splitlines()[0]})"
            )) from None
    return Response(status, received, bytes(body))
