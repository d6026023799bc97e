"""One POST of a callback to a checked address: no redirects, bounded in time and size.

The URL's host is checked against TASKS_CALLBACK_HOSTS again (the list may have changed since
the task was submitted), resolved here, and every address it resolves to is checked too; the
connection is then made to a checked address, so the HTTP library never looks the name up a
second time (DNS rebinding cannot move the call onto an internal address). TLS still verifies
the certificate against the URL's host name, and the ``Host`` header is that name.

Whatever the network or the receiver does comes back as an :class:`Answer`; only a bug raises.
The body and the headers carry signatures: nothing here logs them.
"""

from __future__ import annotations

import concurrent.futures
import email.utils
import functools
import http.client
import io
import ipaddress
import logging
import math
import socket
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from api.callbacks.hosts import CallbackHosts, IPAddress, target
from api.models import CALLBACK_TIMEOUT_SECONDS

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

log = logging.getLogger(__name__)

USER_AGENT = "taskapi-callbacks/1"
#: How much of an answer's body is read (and discarded); the rest is never waited for.
MAX_ANSWER_BODY_BYTES = 4 * 1024
#: The longest Location quoted in an error.
_MAX_QUOTED_LOCATION = 200
#: Headers this module writes itself; the caller's headers may not set them.
_OWN_HEADERS = frozenset({"host", "content-length", "connection", "transfer-encoding"})
#: What a request target may hold unquoted (RFC 3986 pchar, "/", "?" and "%").
_SAFE_TARGET = "/?%:@!$&'()*+,;=-._~"

Resolver = Callable[[str, int], Sequence[IPAddress]]


@dataclass(frozen=True, slots=True)
class Answer:
    """How one attempt ended."""

    #: The receiver's HTTP status; None when no answer came.
    status: int | None
    #: None for a 2xx; else what went wrong, for a human.
    error: str | None
    #: Seconds the receiver asked to wait (Retry-After on a 429 or 5xx), never negative.
    retry_after: float | None = None

    @property
    def delivered(self) -> bool:
        """Whether the receiver took the event (a 2xx)."""
        return self.status is not None and 200 <= self.status < 300

    @property
    def gone(self) -> bool:
        """Whether the receiver said 410 Gone: stop trying."""
        return self.status == 410


def lookup(host: str, port: int) -> list[IPAddress]:
    """The addresses of ``host`` (getaddrinfo's order, each once); raises OSError."""
    addresses: list[IPAddress] = []
    for family, _, _, _, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ipaddress.ip_address(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def post(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    hosts: CallbackHosts,
    timeout: float = CALLBACK_TIMEOUT_SECONDS,
    resolve: Resolver = lookup,
    tls: ssl.SSLContext | None = None,
) -> Answer:
    """POST ``body`` as JSON to ``url`` with ``headers``, once, within ``timeout`` seconds.

    ``hosts`` is checked again for the URL's host and for every address it resolves to;
    ``resolve`` looks the host up (tests pass a fake). ``tls`` verifies an https receiver
    (default: the system's trust, one context made once: making one takes about 30 ms).
    """
    deadline = time.monotonic() + timeout
    request_headers = _request_headers(headers, len(body))
    parts = urlsplit(url)
    try:
        host, port = target(parts)
    except ValueError as exc:
        return Answer(None, f"not a callback URL: {exc}")
    if not hosts.allows_host(host, port):
        return Answer(
            None, f"{host}:{port} is not allowed: TASKS_CALLBACK_HOSTS no longer lists it"
        )
    addresses = _checked_addresses(host, port, hosts, _bounded(resolve, deadline))
    if isinstance(addresses, str):
        return Answer(None, addresses)
    if time.monotonic() >= deadline:
        return Answer(None, _timed_out(timeout))

    path = quote(parts.path or "/", safe=_SAFE_TARGET)
    if parts.query:
        path += "?" + quote(parts.query, safe=_SAFE_TARGET)
    if parts.scheme != "https":
        tls = None
    elif tls is None:
        tls = _default_tls()

    failure = "no address"
    for address in addresses:  # the first that accepts; every one was checked
        conn: http.client.HTTPConnection
        if tls is not None:
            conn = _PinnedHTTPSConnection(host, port, address, deadline, tls)
        else:
            conn = _PinnedHTTPConnection(host, port, address, deadline)
        try:
            try:
                conn.connect()
            except OSError as exc:  # ssl.SSLError included
                failure = _failure(exc, timeout)
                log.debug("callback to %s:%s at %s: %s", host, port, address, failure)
                if time.monotonic() >= deadline or isinstance(exc, ssl.SSLError):
                    break
                continue
            return _exchange(conn, path, body, request_headers, deadline, timeout)
        finally:
            conn.close()
    return Answer(None, failure)


#: The threads lookups run on, so that a lookup is bounded by the attempt's timeout
#: (getaddrinfo cannot be interrupted: one that hangs keeps its thread until the resolver's
#: own limits end it, and the attempt goes on without it).
_LOOKUPS = ThreadPoolExecutor(4, thread_name_prefix="taskapi-dns")


def _bounded(resolver: Resolver, deadline: float) -> Resolver:
    """``resolver``, giving up (TimeoutError) at ``deadline``."""

    def resolve(host: str, port: int) -> Sequence[IPAddress]:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline passed")
        future = _LOOKUPS.submit(resolver, host, port)
        try:
            return future.result(timeout=left)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError("the lookup took longer than the timeout") from None

    return resolve


def _checked_addresses(
    host: str, port: int, hosts: CallbackHosts, resolver: Resolver
) -> list[IPAddress] | str:
    """The addresses of ``host``, every one allowed on ``port``; else why not (a str)."""
    try:
        addresses = [ipaddress.ip_address(host)]
        named = False
    except ValueError:
        named = True
        try:
            addresses = list(resolver(host, port))
        except TimeoutError:
            return f"timed out looking {host} up"
        except (OSError, UnicodeError) as exc:
            log.debug("callback host %s: no address: %s", host, exc)
            return f"no address for {host}"
        if not addresses:
            return f"no address for {host}"
    for address in addresses:
        # Every one, not only the first: a name that also points inside is refused whole.
        if not hosts.allows_address(address, port, named=named):
            return f"{host} resolved to {address}, an address TASKS_CALLBACK_HOSTS does not allow"
    return addresses


def _request_headers(headers: Mapping[str, str], length: int) -> dict[str, str]:
    own = [name for name in headers if name.lower() in _OWN_HEADERS]
    if own:
        raise ValueError(f"callback headers may not set {', '.join(own)}: the transport does")
    merged = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    for name, value in headers.items():
        for known in [k for k in merged if k.lower() == name.lower()]:
            del merged[known]
        merged[name] = value
    merged["Content-Length"] = str(length)
    merged["Connection"] = "close"
    return merged


def _exchange(
    conn: http.client.HTTPConnection,
    path: str,
    body: bytes,
    headers: Mapping[str, str],
    deadline: float,
    timeout: float,
) -> Answer:
    """Send the request on a connected ``conn`` and read the answer, all before ``deadline``."""
    try:
        _settimeout(conn, deadline)
        conn.request("POST", path, body=body, headers=dict(headers))
        _settimeout(conn, deadline)  # the answer's whole reading, not each read (see below)
        response = conn.getresponse()
    except (OSError, http.client.HTTPException) as exc:
        return Answer(None, _failure(exc, timeout))
    try:
        _drain(response)
    except (OSError, http.client.HTTPException) as exc:
        log.debug("callback answer %s: body not read: %s", response.status, exc)
    finally:
        response.close()
    status = response.status
    if 200 <= status < 300:
        return Answer(status, None)
    retry_after = None
    if status == 429 or status >= 500:
        retry_after = _retry_after(response.getheader("Retry-After"))
    if 300 <= status < 400:
        location = response.getheader("Location")
        where = f"to {_shorten(location)}" if location else "without a Location"
        error = f"redirect ({status} {where}) not followed: callbacks follow no redirects"
    else:
        error = f"answered {status} {_shorten(response.reason or '')}".rstrip()
    return Answer(status, error, retry_after)


def _drain(response: http.client.HTTPResponse) -> None:
    """Read at most MAX_ANSWER_BODY_BYTES of the body, taking what has come, and discard it."""
    left = MAX_ANSWER_BODY_BYTES
    while left > 0 and not response.isclosed():
        chunk = response.read1(left)
        if not chunk:
            break
        left -= len(chunk)


def _settimeout(conn: http.client.HTTPConnection, deadline: float) -> None:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline passed")
    if conn.sock is not None:
        conn.sock.settimeout(left)


@functools.cache
def _default_tls() -> ssl.SSLContext:
    """The context of every https call: the system's trust, made once (it is thread-safe)."""
    return ssl.create_default_context()


def _failure(exc: BaseException, timeout: float) -> str:
    """What ``exc``, raised while calling a receiver, means for a human."""
    if isinstance(exc, TimeoutError):
        return _timed_out(timeout)
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: certificate not accepted: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {getattr(exc, 'reason', None) or exc}"
    if isinstance(exc, http.client.RemoteDisconnected | ConnectionResetError | BrokenPipeError):
        return "the receiver closed the connection without an answer"
    if isinstance(exc, http.client.HTTPException):
        return f"not an HTTP answer: {type(exc).__name__}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return f"{type(exc).__name__}: {exc}"


def _timed_out(timeout: float) -> str:
    return f"timed out after {timeout:g} s"


def _shorten(text: str) -> str:
    printable = "".join(c if c.isprintable() else "?" for c in text)
    if len(printable) <= _MAX_QUOTED_LOCATION:
        return printable
    return printable[: _MAX_QUOTED_LOCATION - 1] + "…"


def _retry_after(value: str | None) -> float | None:
    """Retry-After's delay in seconds (delta-seconds or an HTTP date), never negative."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        seconds = float(value)
        return seconds if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, says RFC 5322
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _connect(address: IPAddress, port: int, deadline: float) -> socket.socket:
    """A TCP connection to ``address`` (numeric: no lookup) with the time left."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline passed")
    sock = socket.create_connection((str(address), port), timeout=left)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class _DeadlineReader(io.RawIOBase):
    """A socket's reads, all of them together bounded by its timeout when this was made.

    A socket timeout bounds each read; a receiver that drips a byte now and then would hold
    the answer open forever. Here every read gets only what is left of one deadline.
    """

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock
        timeout = sock.gettimeout()
        self._deadline = None if timeout is None else time.monotonic() + timeout

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        if self._deadline is not None:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("deadline passed")
            self._sock.settimeout(left)
        return self._sock.recv_into(buffer)


class _BoundedResponse(http.client.HTTPResponse):
    """An answer read within the socket's timeout as set just before it (not per read)."""

    def __init__(
        self,
        sock: socket.socket,
        debuglevel: int = 0,
        method: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(sock, debuglevel, method, url)
        self.fp.close()  # the makefile() of HTTPResponse, whose reads each get the timeout
        self.fp = io.BufferedReader(_DeadlineReader(sock))


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to ``host`` (its Host header), connected to the checked ``address``."""

    response_class = _BoundedResponse

    def __init__(self, host: str, port: int, address: IPAddress, deadline: float) -> None:
        super().__init__(host, port)
        self.address = address
        self.deadline = deadline

    def connect(self) -> None:
        self.sock = _connect(self.address, self.port, self.deadline)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to ``host`` (Host header, SNI, the certificate's name), at the checked ``address``."""

    response_class = _BoundedResponse

    def __init__(
        self, host: str, port: int, address: IPAddress, deadline: float, tls: ssl.SSLContext
    ) -> None:
        super().__init__(host, port, context=tls)
        self.address = address
        self.deadline = deadline
        self.tls = tls

    def connect(self) -> None:
        sock = _connect(self.address, self.port, self.deadline)
        try:
            # One timeout for the whole handshake: CPython's handshake keeps one deadline.
            sock.settimeout(max(self.deadline - time.monotonic(), 0.001))
            self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
