"""A webhook receiver for tests: a real HTTP server on 127.0.0.1, in a thread of the test, that
records what it got and answers as the test scripts it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

#: A scripted answer: (status, headers, seconds to wait before answering).
Reply = tuple[int, dict[str, str], float]

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    #: time.time() when the request was read.
    at: float


class Receiver:
    """Answers each POST with the next reply of ``replies`` (then 204 for every other one)."""

    def __init__(self, replies: list[Reply] | None = None) -> None:
        self.replies = list(replies or [])
        self.received: list[Received] = []
        self.got = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with receiver.got:
                    receiver.received.append(
                        Received(
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                            time.time(),
                        )
                    )
                    reply = receiver.replies.pop(0) if receiver.replies else (204, {}, 0.0)
                    receiver.got.notify_all()
                status, headers, delay = reply
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sender gave up waiting (a timeout): nobody reads the answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.hosts = f"127.0.0.1:{self.port}"

    def wait(self, count: int, timeout: float = 30.0) -> list[Received]:
        """The first ``count`` requests, once they came; fails after ``timeout`` seconds."""
        with self.got:
            if not self.got.wait_for(lambda: len(self.received) >= count, timeout):
                raise AssertionError(f"got {len(self.received)} of {count} deliveries")
            return self.received[:count]


@contextmanager
def receiving(replies: list[Reply] | None = None) -> Iterator[Receiver]:
    receiver = Receiver(replies)
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)
