"""One POST of a delivery to its receiver, at an address checked against TASKS_CALLBACK_HOSTS.

The host is resolved here, each address is checked (``CallbackHosts.allows_address``), and the
connection goes to a checked address itself: the HTTP library never resolves the name again,
so DNS cannot move the call onto an address that was not allowed between the check and the
connection. TLS still verifies the certificate against the URL's host name.

No redirect is followed (``http.client`` follows none): a 3xx is a failed attempt. The whole
exchange (connecting, sending, reading the answer's head) is bounded by ``timeout``; at most
MAX_ANSWER_BYTES of the answer's body are read. Nothing the network or the receiver does
raises: every failure is an ``Answer`` with an error, said for a human.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from api.callbacks.hosts import CallbackHosts, IPAddress, target
from api.models import CALLBACK_TIMEOUT_SECONDS

#: How much of an answer's body is read (and dropped): the status is what counts.
MAX_ANSWER_BYTES = 4096
USER_AGENT = "taskapi-callbacks/1"

Resolve = Callable[[str, int], Sequence[IPAddress]]


@dataclass(frozen=True, slots=True)
class Answer:
    """What came of one POST."""

    #: The receiver's HTTP status; None when no answer came.
    status: int | None
    #: None for a 2xx; else what went wrong.
    error: str | None
    #: The seconds the receiver asked to wait (``Retry-After`` of a 429 or 5xx).
    retry_after: float | None = None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def gone(self) -> bool:
        """410 Gone: the receiver wants no more."""
        return self.status == 410


def resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses of ``host`` (an address literal is its own), in the resolver's order."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    found: dict[IPAddress, None] = {}
    for *_, sockaddr in infos:
        found[ipaddress.ip_address(str(sockaddr[0]).split("%")[0])] = None
    return list(found)


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def left(self) -> float:
        left = self.at - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left


def _connect(address: IPAddress, port: int, deadline: _Deadline) -> socket.socket:
    return socket.create_connection((str(address), port), timeout=deadline.left())


class _Pinned(http.client.HTTPConnection):
    """An HTTP connection to a checked address (its socket made beforehand)."""

    def __init__(self, host: str, port: int, sock: socket.socket, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.sock = sock

    def connect(self) -> None:  # the socket is there already
        return None


def post(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    hosts: CallbackHosts,
    timeout: float = CALLBACK_TIMEOUT_SECONDS,
    resolve: Resolve = resolve,
    tls: ssl.SSLContext | None = None,
) -> Answer:
    """POST ``body`` to ``url`` with ``headers`` (and the JSON content type), if ``hosts``
    allows it; what came of it. ``tls``: the context HTTPS verifies with (the system's)."""
    deadline = _Deadline(timeout)
    try:
        parts = urlsplit(url)
        host, port = target(parts)
    except ValueError as exc:
        return Answer(None, f"Not a callback URL: {exc}")
    if not hosts.allows_host(host, port):
        return Answer(None, f"{host}:{port} is not allowed by TASKS_CALLBACK_HOSTS (any more).")
    try:
        sock = _open(host, port, hosts, resolve, deadline)
    except _Refused as refused:
        return Answer(None, str(refused))
    except TimeoutError:
        return Answer(None, f"Timed out after {timeout:g} s connecting to {host}:{port}.")
    except OSError as exc:
        return Answer(None, f"Could not connect to {host}:{port}: {_reason(exc)}.")
    try:
        if parts.scheme == "https":
            context = tls or ssl.create_default_context()
            sock.settimeout(deadline.left())
            sock = context.wrap_socket(sock, server_hostname=host)
        connection = _Pinned(host, port, sock, deadline.left())
        if parts.scheme == "https":
            connection.default_port = 443  # the Host header leaves out a default port
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        sent = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Connection": "close",
            **headers,
        }
        sock.settimeout(deadline.left())
        connection.request("POST", path, body, sent)
        sock.settimeout(deadline.left())
        response = connection.getresponse()
        sock.settimeout(deadline.left())
        response.read(MAX_ANSWER_BYTES)
        return _answer(response)
    except TimeoutError:
        return Answer(None, f"Timed out after {timeout:g} s waiting for {host}:{port}.")
    except ssl.SSLError as exc:
        return Answer(None, f"TLS with {host}:{port} failed: {_reason(exc)}.")
    except (OSError, http.client.HTTPException) as exc:
        return Answer(None, f"The exchange with {host}:{port} failed: {_reason(exc)}.")
    finally:
        sock.close()


class _Refused(Exception):
    """No address of the host may be called (or it has none)."""


def _open(
    host: str, port: int, hosts: CallbackHosts, resolver: Resolve, deadline: _Deadline
) -> socket.socket:
    """A connection to the first allowed address of ``host`` that takes one."""
    try:
        named = True
        ipaddress.ip_address(host)
        named = False
    except ValueError:
        pass
    try:
        addresses = list(resolver(host, port))
    except OSError as exc:
        raise _Refused(f"No address for {host}: {_reason(exc)}.") from None
    if not addresses:
        raise _Refused(f"No address for {host}.")
    refused = [a for a in addresses if not hosts.allows_address(a, port, named=named)]
    if refused:
        # One internal address among public ones is enough to refuse them all: a resolver
        # that answers both may hand the internal one to the next lookup.
        listed = ", ".join(str(a) for a in refused)
        raise _Refused(
            f"{host} resolved to {listed}, an address TASKS_CALLBACK_HOSTS does not allow "
            "(an internal address is called only when an address or network pattern allows it)."
        )
    error: OSError | None = None
    for address in addresses:
        try:
            return _connect(address, port, deadline)
        except TimeoutError:
            raise
        except OSError as exc:
            error = exc
    assert error is not None
    raise error


def _answer(response: http.client.HTTPResponse) -> Answer:
    status = response.status
    if 200 <= status < 300:
        return Answer(status, None)
    reason = f"answered {status} {response.reason}".rstrip()
    if 300 <= status < 400:
        location = response.getheader("Location", "")[:200]
        return Answer(
            status,
            f"{reason}: a redirect to {location or '(no Location)'}, not followed: callbacks "
            "follow no redirects; give the final URL.",
        )
    retry_after = None
    if status == 429 or status >= 500:
        retry_after = _retry_after(response.getheader("Retry-After"))
    return Answer(status, f"The receiver {reason}.", retry_after)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` (delta-seconds, or an HTTP date); None if unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    text = str(exc) or type(exc).__name__
    return text[:200]
