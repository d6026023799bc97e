"""The servers under test, as real processes on loopback, and their memory.

A service may be more than one process group: ``taskapi serve`` with its worker processes, or a
peer's web server and its task worker. ``Running`` holds them all, counts the memory of every
process below any of them (found by parent pid, whatever their group or session), and stops them
together.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 30
#: The web server shape the peers' docs suggest, and the bare app's and the floor's unless the
#: bench is given ``--processes``/``--threads``: gunicorn gthread, 2 processes x 8 threads.
REFERENCE_PROCESSES = 2
REFERENCE_THREADS = 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children_by_parent() -> dict[int, list[int]]:
    """Every process's children, from each /proc/<pid>/stat's parent pid."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # ended meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        fields = text[text.rfind(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(text.split(" ", 1)[0]))
    return children


def descendants(roots: list[int]) -> list[int]:
    """The processes ``roots`` and every process below them, in their own groups or not."""
    children = _children_by_parent()
    found = list(roots)
    for pid in found:
        found.extend(child for child in children.get(pid, ()) if child not in found)
    return found


@dataclass
class Running:
    """A service: its main process (serving ``port``), its companions (workers), their pids."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    companions: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pids(self) -> list[int]:
        """Every process of the service: the main one, the companions, all their children."""
        return descendants([self.process.pid, *(c.pid for c in self.companions)])

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
        """SIGTERM to each process group (companions first), SIGKILL after a while."""
        for process in [*self.companions, self.process]:
            _stop_group(process)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def spawn(command: list[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A process in a session of its own, from the repository's root, its output to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            command,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def start(
    name: str,
    command: list[str],
    env: Mapping[str, str],
    log: Path,
    companions: Sequence[list[str]] = (),
) -> Running:
    """Start ``command`` ({port} filled in) and its companions; return once /ready says 200."""
    port = free_port()
    command = [part.replace("{port}", str(port)) for part in command]
    running = Running(name, spawn(command, env, log), port)
    running.companions = [spawn(c, env, log) for c in companions]
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while True:
        for process in [running.process, *running.companions]:
            if process.poll() is not None:
                running.stop()
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


def script(name: str) -> str:
    """A console script of this environment (``taskapi``, ``celery``, ...), beside python."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else name


def sizing(**flags: int | None) -> list[str]:
    """``--name value`` for each flag given; none for those left to the command's defaults."""
    return [
        part
        for name, value in flags.items()
        if value is not None
        for part in (f"--{name.replace('_', '-')}", str(value))
    ]


def start_taskapi(
    database: Path,
    *,
    processes: int | None = None,
    threads: int | None = None,
    workers: int | None = None,
    worker_processes: int | None = None,
    env: Mapping[str, str] | None = None,
    log: Path,
) -> Running:
    """``taskapi serve`` as a user starts it, on a SQLite file: its own defaults, unless told."""
    flags = sizing(
        processes=processes, threads=threads, workers=workers, worker_processes=worker_processes
    )
    return start(
        "taskapi",
        [script("taskapi"), "serve", "--port", "{port}", *flags],
        {"TASKS_DATABASE_URL": f"sqlite:///{database}", **(env or {})},
        log,
    )


def start_bare(*, processes: int, threads: int, log: Path) -> Running:
    """The bare Flask app on gunicorn gthread."""
    return on_gunicorn("bare", "bench.bare_app:app", processes, threads, {}, log)


def start_floor(database: Path, *, processes: int, threads: int, log: Path) -> Running:
    """Flask and the SQLite store alone (bench/floor_app.py), on gunicorn gthread."""
    return on_gunicorn(
        "floor", "bench.floor_app:app", processes, threads, {"FLOOR_DATABASE": str(database)}, log
    )


def on_gunicorn(
    name: str,
    app: str,
    processes: int,
    threads: int,
    env: Mapping[str, str],
    log: Path,
    companions: Sequence[list[str]] = (),
) -> Running:
    """``app`` on gunicorn gthread, ``processes`` x ``threads``, with companion processes."""
    return start(
        name,
        [
            sys.executable, "-m", "gunicorn", "--bind", "127.0.0.1:{port}",
            "--worker-class", "gthread", "--workers", str(processes),
            "--threads", str(threads), app,
        ],
        env,
        log,
        companions,
    )  # fmt: skip
