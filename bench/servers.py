"""The two servers under test, as real processes on loopback, and their memory."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_SECONDS = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Running:
    """A server process group: its master's pid and the address it serves."""

    name: str
    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pids(self) -> list[int]:
        """The master and every process below it."""
        found = [self.process.pid]
        for pid in found:
            for task in Path(f"/proc/{pid}/task").glob("*/children"):
                found.extend(int(child) for child in task.read_text().split())
        return found

    def memory(self) -> tuple[int, int]:
        """(PSS summed over the processes, largest RSS of one), in bytes."""
        pss = rss = 0
        for pid in self.pids():
            try:
                rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            except OSError:
                continue
            fields = {
                line.split(":")[0]: int(line.split()[1]) * 1024
                for line in rollup.splitlines()[1:]
                if line.split()[-1] == "kB"
            }
            pss += fields.get("Pss", 0)
            rss = max(rss, fields.get("Rss", 0))
        return pss, rss

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start(name: str, command: list[str], env: dict[str, str], log: Path) -> Running:
    port = free_port()
    command = [part.replace("{port}", str(port)) for part in command]
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            env={**os.environ, **env},
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running = Running(name, process, port)
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"{running.url}/ready", timeout=2) as response:
                if response.status == 200:
                    return running
        except OSError:
            pass
        if time.monotonic() > deadline:
            running.stop()
            raise RuntimeError(f"{name} was not ready after {READY_TIMEOUT_SECONDS}s; see {log}")
        time.sleep(0.1)


def start_taskapi(
    database: Path, *, processes: int, threads: int, workers: int, log: Path
) -> Running:
    """``taskapi serve``, exactly as production starts it, on a SQLite file."""
    return start(
        "taskapi",
        [
            sys.executable, "-m", "api.cli", "serve", "--port", "{port}",
            "--processes", str(processes), "--threads", str(threads), "--workers", str(workers),
        ],
        {"TASKS_DATABASE_URL": f"sqlite:///{database}"},
        log,
    )  # fmt: skip


def start_bare(*, processes: int, threads: int, log: Path) -> Running:
    """The bare Flask app on the same server with the same processes and threads."""
    return _on_gunicorn("bare", "bench.bare_app:app", processes, threads, {}, log)


def start_floor(database: Path, *, processes: int, threads: int, log: Path) -> Running:
    """Flask and the SQLite store alone (bench/floor_app.py), on the same server and settings."""
    return _on_gunicorn(
        "floor", "bench.floor_app:app", processes, threads, {"FLOOR_DATABASE": str(database)}, log
    )


def _on_gunicorn(
    name: str, app: str, processes: int, threads: int, env: dict[str, str], log: Path
) -> Running:
    return start(
        name,
        [
            sys.executable, "-m", "gunicorn", "--bind", "127.0.0.1:{port}",
            "--worker-class", "gthread", "--workers", str(processes),
            "--threads", str(threads), app,
        ],
        env,
        log,
    )  # fmt: skip
