"""One POST of a callback (api/callbacks/transport.py) against a real receiver on 127.0.0.1."""

from __future__ import annotations

import email.message
import email.utils
import ipaddress
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from api.callbacks.hosts import CallbackHosts, IPAddress
from api.callbacks.transport import USER_AGENT, Answer, lookup, post

BODY = b'{"type":"task.succeeded","data":{"id":"t1"}}'
SIGNED = {
    "webhook-id": "msg_1",
    "webhook-timestamp": "1700000000",
    "webhook-signature": "v1,c2lnbmF0dXJl",
}
LOCAL = CallbackHosts("127.0.0.1")


@dataclass(frozen=True)
class Seen:
    """One request as the receiver read it."""

    method: str
    path: str
    headers: email.message.Message
    body: bytes


Script = Callable[["Handler"], None]


class Receiver(ThreadingHTTPServer):
    """An HTTP(S) server on 127.0.0.1 that answers with ``script`` and records what came."""

    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.tls = tls
        self.script: Script = reply(204)
        self.seen: list[Seen] = []
        self.connections = 0
        #: The names TLS clients asked for (SNI).
        self.server_names: list[str | None] = []
        self.errors: list[BaseException | None] = []
        #: Set at teardown: a script that waits stops waiting.
        self.release = threading.Event()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, path: str = "/hook", host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def process_request(self, request: Any, client_address: Any) -> None:
        self.connections += 1  # only the serving thread calls this
        super().process_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.errors.append(sys.exc_info()[1])


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 5  # a stuck test ends; the fixture joins these threads
    server: Receiver

    def setup(self) -> None:
        if self.server.tls is not None:
            self.request.settimeout(self.timeout)
            self.request = self.server.tls.wrap_socket(self.request, server_side=True)
        super().setup()

    def finish(self) -> None:
        super().finish()
        if self.server.tls is not None:
            self.request.close()  # the server closes the socket it accepted, not this one

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.seen.append(Seen(self.command, self.path, self.headers, body))
        self.server.script(self)

    def log_message(self, format: str, *args: object) -> None:
        pass


def reply(status: int, headers: Sequence[tuple[str, str]] = (), body: bytes = b"") -> Script:
    def script(handler: Handler) -> None:
        handler.send_response(status)
        for name, value in headers:
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return script


def serve(server: Receiver) -> Iterator[Receiver]:
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()  # joins the handlers' threads
        thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from serve(Receiver())


class FakeResolver:
    """A fake resolver: every name has ``addresses``; the calls are kept in ``calls``."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = [ipaddress.ip_address(a) for a in addresses]
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.calls.append((host, port))
        return self.addresses


def no_lookup(host: str, port: int) -> list[IPAddress]:
    raise AssertionError(f"{host} was looked up")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Answers


def test_a_2xx_is_delivered_and_the_receiver_sees_the_exact_request(receiver: Receiver) -> None:
    receiver.script = reply(200, body=b'{"ok": true}')

    answer = post(receiver.url("/hook?tenant=7"), BODY, SIGNED, hosts=LOCAL, resolve=no_lookup)

    assert answer == Answer(200, None, None)
    assert answer.delivered and not answer.gone
    [seen] = receiver.seen
    assert (seen.method, seen.path, seen.body) == ("POST", "/hook?tenant=7", BODY)
    assert seen.headers["Host"] == f"127.0.0.1:{receiver.port}"
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["User-Agent"] == USER_AGENT
    assert seen.headers["Content-Length"] == str(len(BODY))
    assert seen.headers["Connection"] == "close"
    for name, value in SIGNED.items():
        assert seen.headers.get_all(name) == [value]


def test_a_500_is_an_error(receiver: Receiver) -> None:
    receiver.script = reply(500, body=b"boom")

    answer = post(receiver.url(), BODY, SIGNED, hosts=LOCAL)

    assert answer == Answer(500, "answered 500 Internal Server Error", None)
    assert not answer.delivered and not answer.gone


def test_a_503_with_retry_after_seconds(receiver: Receiver) -> None:
    receiver.script = reply(503, [("Retry-After", "7")])

    answer = post(receiver.url(), BODY, SIGNED, hosts=LOCAL)

    assert answer == Answer(503, "answered 503 Service Unavailable", 7.0)


def test_a_429_with_retry_after_an_http_date(receiver: Receiver) -> None:
    when = email.utils.formatdate(time.time() + 60, usegmt=True)
    receiver.script = reply(429, [("Retry-After", when)])

    answer = post(receiver.url(), BODY, SIGNED, hosts=LOCAL)

    assert (answer.status, answer.error) == (429, "answered 429 Too Many Requests")
    assert answer.retry_after is not None and 50 < answer.retry_after <= 60


@pytest.mark.parametrize(
    ("status", "value", "expected"),
    [
        (503, "Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # past: now, never negative
        (503, " 120 ", 120.0),
        (503, "-5", None),
        (503, "1.5", None),
        (503, "in a while", None),
        (503, "Mon, 01 Jan 99999999999999999999 00:00:00 GMT", None),  # overflows: unreadable
        (400, "7", None),  # only a 429 or a 5xx asks to wait
    ],
)
def test_retry_after_values(
    receiver: Receiver, status: int, value: str, expected: float | None
) -> None:
    receiver.script = reply(status, [("Retry-After", value)])

    assert post(receiver.url(), BODY, SIGNED, hosts=LOCAL).retry_after == expected


def test_a_redirect_is_not_followed(receiver: Receiver) -> None:
    elsewhere = receiver.url("/elsewhere")
    receiver.script = reply(302, [("Location", elsewhere)])

    answer = post(receiver.url(), BODY, SIGNED, hosts=LOCAL)

    assert answer == Answer(
        302, f"redirect (302 to {elsewhere}) not followed: callbacks follow no redirects", None
    )
    assert [seen.path for seen in receiver.seen] == ["/hook"]
    assert receiver.connections == 1


def test_a_410_is_gone(receiver: Receiver) -> None:
    receiver.script = reply(410)

    answer = post(receiver.url(), BODY, SIGNED, hosts=LOCAL)

    assert answer.gone and not answer.delivered
    assert (answer.status, answer.error) == (410, "answered 410 Gone")


# Time and size


def test_a_receiver_slower_than_the_timeout(receiver: Receiver) -> None:
    def sleep_then_answer(handler: Handler) -> None:
        handler.server.release.wait(10)
        reply(200)(handler)

    receiver.script = sleep_then_answer

    started = time.monotonic()
    answer = post(receiver.url(), BODY, SIGNED, hosts=LOCAL, timeout=0.5)

    assert time.monotonic() - started < 3
    assert answer == Answer(None, "timed out after 0.5 s", None)
    assert len(receiver.seen) == 1


def test_a_receiver_dripping_its_answer_is_cut_at_the_timeout(receiver: Receiver) -> None:
    """Each byte comes well within the socket timeout: only a deadline over all reads ends it."""

    def drip(handler: Handler) -> None:
        handler.wfile.write(b"HTTP/1.1 200 OK\r\nX")
        for _ in range(50):  # 5 s, then a complete 200
            if handler.server.release.wait(0.1):
                return
            handler.wfile.write(b"x")
        handler.wfile.write(b": y\r\nContent-Length: 0\r\n\r\n")

    receiver.script = drip

    started = time.monotonic()
    answer = post(receiver.url(), BODY, SIGNED, hosts=LOCAL, timeout=0.5)

    assert time.monotonic() - started < 3
    assert answer == Answer(None, "timed out after 0.5 s", None)


def test_a_huge_answer_body_is_not_read_whole(receiver: Receiver) -> None:
    total = 256 * 1024 * 1024
    sent: list[int] = []
    done = threading.Event()

    def huge(handler: Handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(total))
        handler.end_headers()
        chunk = b"x" * (1024 * 1024)
        written = 0
        try:
            while written < total:
                handler.wfile.write(chunk)
                written += len(chunk)
        except OSError:
            pass
        finally:
            sent.append(written)
            done.set()

    receiver.script = huge

    started = time.monotonic()
    answer = post(receiver.url(), BODY, SIGNED, hosts=LOCAL)

    assert answer == Answer(200, None, None)
    assert time.monotonic() - started < 3
    assert done.wait(5)
    assert sent[0] < total  # the connection was closed long before the end


def test_connection_refused() -> None:
    url = f"http://127.0.0.1:{closed_port()}/hook"

    assert post(url, BODY, SIGNED, hosts=LOCAL) == Answer(None, "connection refused", None)


def test_the_first_address_that_accepts_is_called(receiver: Receiver) -> None:
    resolve = FakeResolver("127.0.0.2", "127.0.0.1")  # nothing listens on 127.0.0.2
    hosts = CallbackHosts("hooks.test, 127.0.0.0/8")

    answer = post(receiver.url(host="hooks.test"), BODY, SIGNED, hosts=hosts, resolve=resolve)

    assert answer.delivered
    assert receiver.connections == 1


# What may be called


def test_a_host_no_longer_allowed_is_not_called(receiver: Receiver) -> None:
    hosts = CallbackHosts("hooks.example.com")

    answer = post(receiver.url(), BODY, SIGNED, hosts=hosts, resolve=no_lookup)

    assert answer.status is None and answer.retry_after is None
    assert answer.error is not None and "not allowed" in answer.error
    assert f"127.0.0.1:{receiver.port}" in answer.error
    assert receiver.connections == 0


def test_a_port_not_allowed_is_not_called(receiver: Receiver) -> None:
    hosts = CallbackHosts(f"127.0.0.1:{closed_port()}")

    answer = post(receiver.url(), BODY, SIGNED, hosts=hosts)

    assert answer.error is not None and "not allowed" in answer.error
    assert receiver.connections == 0


def test_a_name_resolving_to_an_address_not_allowed_is_not_called(receiver: Receiver) -> None:
    resolve = FakeResolver("127.0.0.1")

    answer = post(
        receiver.url(host="hooks.test"),
        BODY,
        SIGNED,
        hosts=CallbackHosts("hooks.test"),
        resolve=resolve,
    )

    assert answer == Answer(
        None,
        "hooks.test resolved to 127.0.0.1, an address TASKS_CALLBACK_HOSTS does not allow",
        None,
    )
    assert resolve.calls == [("hooks.test", receiver.port)]
    assert receiver.connections == 0


def test_one_address_not_allowed_refuses_the_name(receiver: Receiver) -> None:
    """A public address first does not let the call reach the internal one after it."""
    resolve = FakeResolver("93.184.215.14", "127.0.0.1")

    answer = post(
        receiver.url(host="hooks.test"),
        BODY,
        SIGNED,
        hosts=CallbackHosts("hooks.test"),
        resolve=resolve,
    )

    assert answer.error == (
        "hooks.test resolved to 127.0.0.1, an address TASKS_CALLBACK_HOSTS does not allow"
    )
    assert receiver.connections == 0


def test_a_name_is_called_at_its_checked_address(receiver: Receiver) -> None:
    resolve = FakeResolver("127.0.0.1")
    hosts = CallbackHosts("hooks.test, 127.0.0.1")

    answer = post(receiver.url(host="hooks.test"), BODY, SIGNED, hosts=hosts, resolve=resolve)

    assert answer == Answer(204, None, None)
    [seen] = receiver.seen
    assert seen.headers["Host"] == f"hooks.test:{receiver.port}"
    assert seen.body == BODY


def test_the_default_resolver_is_used(receiver: Receiver) -> None:
    assert ipaddress.ip_address("127.0.0.1") in lookup("localhost", receiver.port)
    hosts = CallbackHosts("localhost, 127.0.0.1, ::1")

    answer = post(receiver.url(host="localhost"), BODY, SIGNED, hosts=hosts)

    assert answer == Answer(204, None, None)
    assert receiver.seen[0].headers["Host"] == f"localhost:{receiver.port}"


def unknown_name(host: str, port: int) -> list[IPAddress]:
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


@pytest.mark.parametrize("resolve", [FakeResolver(), unknown_name])
def test_a_name_without_address(
    receiver: Receiver, resolve: Callable[[str, int], list[IPAddress]]
) -> None:
    hosts = CallbackHosts("hooks.test, 127.0.0.1")

    answer = post(receiver.url(host="hooks.test"), BODY, SIGNED, hosts=hosts, resolve=resolve)

    assert answer == Answer(None, "no address for hooks.test", None)
    assert receiver.connections == 0


def test_not_a_callback_url() -> None:
    answer = post("ftp://127.0.0.1/hook", BODY, SIGNED, hosts=LOCAL, resolve=no_lookup)

    assert answer.status is None
    assert answer.error is not None and answer.error.startswith("not a callback URL")


def test_the_caller_may_not_set_the_transports_headers(receiver: Receiver) -> None:
    with pytest.raises(ValueError, match="Host"):
        post(receiver.url(), BODY, {"Host": "elsewhere"}, hosts=LOCAL)
    assert receiver.connections == 0


# HTTPS


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for hooks.test, made with the openssl CLI."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl command to make a certificate with")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=hooks.test", "-addext", "subjectAltName=DNS:hooks.test",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return Certificate(cert, key)


@pytest.fixture
def tls_receiver(certificate: Certificate) -> Iterator[Receiver]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate.cert, certificate.key)
    server = Receiver(context)
    context.sni_callback = lambda sock, name, ctx: server.server_names.append(name)
    yield from serve(server)


def test_https_is_pinned_and_verifies_the_hosts_name(
    tls_receiver: Receiver, certificate: Certificate
) -> None:
    trust = ssl.create_default_context(cafile=certificate.cert)
    hosts = CallbackHosts("hooks.test, 127.0.0.1")
    url = tls_receiver.url(host="hooks.test", scheme="https")

    answer = post(url, BODY, SIGNED, hosts=hosts, resolve=FakeResolver("127.0.0.1"), tls=trust)

    assert answer == Answer(204, None, None)
    assert tls_receiver.server_names == ["hooks.test"]
    [seen] = tls_receiver.seen
    assert seen.headers["Host"] == f"hooks.test:{tls_receiver.port}"
    assert seen.body == BODY


def test_https_refuses_a_certificate_the_default_context_does_not_trust(
    tls_receiver: Receiver,
) -> None:
    hosts = CallbackHosts("hooks.test, 127.0.0.1")
    url = tls_receiver.url(host="hooks.test", scheme="https")

    answer = post(url, BODY, SIGNED, hosts=hosts, resolve=FakeResolver("127.0.0.1"))

    assert answer.status is None
    assert answer.error is not None and answer.error.startswith("TLS: certificate not accepted")
    assert tls_receiver.seen == []


def test_https_refuses_a_certificate_for_another_name(
    tls_receiver: Receiver, certificate: Certificate
) -> None:
    trust = ssl.create_default_context(cafile=certificate.cert)
    hosts = CallbackHosts("other.test, 127.0.0.1")
    url = tls_receiver.url(host="other.test", scheme="https")

    answer = post(url, BODY, SIGNED, hosts=hosts, resolve=FakeResolver("127.0.0.1"), tls=trust)

    assert answer.status is None
    assert answer.error is not None and "certificate not accepted" in answer.error
    assert "other.test" in answer.error
    assert tls_receiver.seen == []


def test_a_lookup_is_bounded_by_the_timeout(receiver: Receiver) -> None:
    def hanging(host: str, port: int) -> Sequence[IPAddress]:
        time.sleep(3)  # a resolver whose nameservers do not answer
        return [ipaddress.ip_address("127.0.0.1")]

    hosts = CallbackHosts("hooks.test, 127.0.0.1")
    started = time.monotonic()
    answer = post(
        receiver.url(host="hooks.test"), BODY, SIGNED, hosts=hosts, timeout=0.5, resolve=hanging
    )
    assert time.monotonic() - started < 2.5
    assert answer.status is None and answer.error is not None and "timed out" in answer.error
