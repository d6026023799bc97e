"""Real ``taskapi`` processes for tests about processes: start, talk, signal, wait."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TASKAPI = [sys.executable, "-m", "api.cli"]


def default_sigint() -> None:
    """Give a started process the SIGINT of a foreground command (``preexec_fn``).

    A shell starting the suite in the background (``.ci/run &``) leaves SIGINT ignored, and
    every process started from it would inherit that: a test of what Ctrl-C does would then
    depend on how the suite was launched.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path, data, {"Content-Type": "application/json"}, method=method
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30, *, group: bool = False) -> int:
        """Signal the server and wait. ``group``: its process group, as Ctrl-C does (the
        supervisor alone: its children have groups of their own); with SIGKILL, every process
        of the service, as a machine that loses power."""
        if self.process.poll() is None:
            if group:
                below = descendants(self.process.pid) if sig == signal.SIGKILL else []
                os.killpg(self.process.pid, sig)
                for pid in below:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, sig)
            else:
                self.process.send_signal(sig)
        return self.process.wait(timeout)

    def api_master(self) -> int:
        """The pid of gunicorn's master, as its log says once it listens."""
        deadline = time.monotonic() + 20
        while not (found := re.search(r"Listening at: \S+ \((\d+)\)", self.log.read_text())):
            assert time.monotonic() < deadline, "the API did not start"
            time.sleep(0.05)
        return int(found.group(1))


def children(pid: int) -> list[int]:
    """The processes ``pid`` started, in pid order (none once it is gone)."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").glob("*/children"))
        return sorted(int(child) for task in tasks for child in task.read_text().split())
    except OSError:
        return []


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``."""
    found = children(pid)
    for child in list(found):
        found.extend(descendants(child))
    return found


def start_server(db: Path, workdir: Path, *args: str, **env: str) -> Server:
    """``taskapi serve`` on a free port with extra ``args``, once it answers /ready."""
    port = free_port()
    log = workdir / f"server-{port}.log"
    environ = {
        **os.environ,
        "TASKS_DATABASE_URL": f"sqlite:///{db}",
        "TASKS_POLL_INTERVAL": "0.1",
        "TASKS_SHUTDOWN_GRACE": "10",
        **env,
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*TASKAPI, "serve", "--port", str(port), *args],
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parent.parent,
            start_new_session=True,
            preexec_fn=default_sigint,
        )
    server = Server(process, f"http://127.0.0.1:{port}", log, environ)
    deadline = time.monotonic() + 30
    while True:
        try:
            if server.request("GET", "/ready")[0] == 200:
                return server
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop(signal.SIGKILL)
            raise RuntimeError(f"server did not start:\n{log.read_text()}")
        time.sleep(0.1)


def wait_terminal(server: Server, task_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status, task = server.request("GET", f"/tasks/{task_id}")
        assert status == 200, task
        if task["status"] in ("succeeded", "failed", "cancelled") or time.monotonic() > deadline:
            return task
        time.sleep(0.05)


def wait_output(log: Path, text: str, timeout: float = 20) -> str:
    """The output in ``log`` once it holds ``text`` (else all of it, when ``timeout`` is up)."""
    deadline = time.monotonic() + timeout
    while True:
        output = log.read_text()
        if text in output or time.monotonic() > deadline:
            return output
        time.sleep(0.05)


def start_worker(workdir: Path, name: str, **env: str) -> subprocess.Popen[bytes]:
    """A ``taskapi worker`` process (in a session of its own, so a signal reaches it alone)."""
    log = workdir / f"worker-{name}.log"
    with log.open("wb") as out:
        return subprocess.Popen(
            [*TASKAPI, "worker"],
            env={**os.environ, "TASKS_POLL_INTERVAL": "0.1", **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parent.parent,
            start_new_session=True,
            preexec_fn=default_sigint,
        )


def wait_until(condition: Callable[[], bool], timeout: float = 60) -> None:
    """Poll ``condition`` every 50 ms until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@contextmanager
def running_workers(
    workdir: Path, database_url: str, count: int, threads: int, **env: str
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` ``taskapi worker`` processes of ``threads`` threads on ``database_url``,
    stopped with SIGTERM (and waited for) at the end."""
    name = uuid.uuid4().hex[:6]
    workers = [
        start_worker(
            workdir,
            f"{name}-{n}",
            TASKS_DATABASE_URL=database_url,
            TASKS_WORKERS=str(threads),
            TASKS_LOG_LEVEL="WARNING",
            **env,
        )
        for n in range(count)
    ]
    try:
        yield workers
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(30)
