"""Wake-ups between the processes of one machine that share a SQLite file: a FIFO each.

Each listening process makes a named pipe in a directory beside the database file
(``tasks.db-wakeups/``, mode 0700, used only if it is this user's alone), and reads it; the
pipe's name says what the process wants to hear (``Role``) and who it is. A sender writes one
line per message to the pipe of each process that wants it: ``R`` (tasks are ready), ``E`` and
task ids (they ended), ``C`` and a task id (cancel it). A write of at most PIPE_BUF bytes
lands whole, whoever else writes at once, and costs about a microsecond.

Why pipes: a datagram socket would do as much, but Linux queues only
``net.unix.max_dgram_qlen`` (10 by default) datagrams per socket, and a burst of task ends
would lose most of them; a pipe holds 64 KiB, a thousand and more ends. A pipe that is full is
skipped (the reader polls the store meanwhile); the pipe of a process that died is removed by
the first sender that finds no reader on it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import select
import stat
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from api.wakeups import Listener, Role

log = logging.getLogger(__name__)

#: A write of at most this many bytes to a pipe is never interleaved with another.
LINE_BYTES = select.PIPE_BUF
#: How often a listener looks whether it was told to stop.
STOP_CHECK_SECONDS = 0.5
#: While no process listens (no directory), how often a sender looks again.
MISSING_RECHECK_SECONDS = 0.1
#: How often a sender lists the pipes again, whether or not the directory's time changed.
RELIST_SECONDS = 1.0


def directory_for(database: str) -> Path:
    """The directory of the pipes of the processes sharing the SQLite file ``database``:
    beside it (``tasks.db-wakeups``), where only those who may write the database may write."""
    return Path(os.path.realpath(database) + "-wakeups")


def _trusted(directory: Path) -> bool:
    """Whether ``directory`` is a real directory of this user that no one else may enter."""
    try:
        found = os.lstat(directory)
    except OSError:
        return False
    return (
        stat.S_ISDIR(found.st_mode)
        and found.st_uid == os.getuid()
        and not found.st_mode & (stat.S_IRWXG | stat.S_IRWXO)
    )


def lines(kind: bytes, task_ids: Iterable[str]) -> list[bytes]:
    """``kind`` and the ids, comma-separated, in lines of at most LINE_BYTES each."""
    out: list[bytes] = []
    line = bytearray(kind)
    for task_id in task_ids:
        item = task_id.encode()
        if len(line) + len(item) + 2 > LINE_BYTES:
            out.append(bytes(line) + b"\n")
            line = bytearray(kind)
        if len(line) > 1:
            line += b","
        line += item
    if len(line) > 1:
        out.append(bytes(line) + b"\n")
    return out


class LocalWakeups:
    """The pipes of the processes that share one SQLite file."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        #: Open write ends, by pipe name.
        self._open: dict[str, int] = {}
        #: The pipes found at the last look, with the roles each wants; and when we looked.
        self._peers: list[tuple[str, str]] = []
        self._seen: int | None = None
        #: This process's own pipe (it hears itself without one).
        self._own: str | None = None
        #: While no directory exists, when to look for it again (``time.monotonic``).
        self._missing_until = 0.0
        #: When to list the directory again even if its time has not changed.
        self._relist_at = 0.0

    @classmethod
    def for_database(cls, database: str) -> LocalWakeups:
        return cls(directory_for(database))

    # -- sending -------------------------------------------------------------------------------

    def ready(self) -> None:
        self._send(Role.WORKERS, [b"R\n"])

    def ended(self, task_ids: Iterable[str]) -> None:
        self._send(Role.READERS, lines(b"E", task_ids))

    def cancel(self, task_id: str) -> None:
        self._send(Role.WORKERS, lines(b"C", [task_id]))

    def _send(self, role: Role, messages: list[bytes]) -> None:
        if not messages:
            return
        # Under the lock: a write is a microsecond, and no other thread may close (and the
        # process reuse) a descriptor between our lookup of it and our write to it.
        with self._lock:
            for name in self._listening(role):
                fd = self._write_end(name)
                if fd is None:
                    continue
                try:
                    for message in messages:
                        os.write(fd, message)
                except BlockingIOError:
                    continue  # its pipe is full: it is behind, and polls the store meanwhile
                except OSError as exc:  # EPIPE: the process that read it is gone
                    self._forget(name, remove=exc.errno == errno.EPIPE)

    def _listening(self, role: Role) -> list[str]:
        """The pipes of the other processes that want ``role``; looked up again when the
        directory changed (a stat, about a microsecond). With the lock held."""
        if self._missing_until and time.monotonic() < self._missing_until:
            return []
        try:
            changed = os.stat(self.directory).st_mtime_ns
        except FileNotFoundError:
            # No process listens yet: look again in a while, not at every message (a failed
            # stat raises, ten times the cost of one that succeeds).
            self._missing_until = time.monotonic() + MISSING_RECHECK_SECONDS
            return []
        self._missing_until = 0.0
        # Listed again when the directory changed, and at least every RELIST_SECONDS: its
        # time may move in ticks of a few milliseconds (tmpfs), so two changes in one tick
        # would otherwise hide the second.
        now = time.monotonic()
        if changed != self._seen or now >= self._relist_at:
            self._relist_at = now + RELIST_SECONDS
            names = os.listdir(self.directory) if _trusted(self.directory) else []
            self._peers = [
                (name, name.partition("-")[0]) for name in names if not name.startswith(".")
            ]
            self._seen = changed
            for gone in set(self._open) - {name for name, _ in self._peers}:
                self._forget(gone, remove=False)
        return [name for name, roles in self._peers if role in roles and name != self._own]

    def _write_end(self, name: str) -> int | None:
        """The open write end of pipe ``name`` (with the lock held), or None."""
        fd = self._open.get(name)
        if fd is not None:
            return fd
        path = self.directory / name
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # a pipe no process reads: its process died
                _unlink(path)
            return None
        found = os.fstat(fd)
        if not stat.S_ISFIFO(found.st_mode) or found.st_uid != os.getuid():
            os.close(fd)  # not one of ours: never written to
            return None
        self._open[name] = fd
        return fd

    def _forget(self, name: str, *, remove: bool) -> None:
        """Close the write end of pipe ``name`` (with the lock held); ``remove`` the pipe."""
        fd = self._open.pop(name, None)
        if fd is not None:
            os.close(fd)
        if remove:
            _unlink(self.directory / name)

    # -- listening -----------------------------------------------------------------------------

    def listen(self, roles: frozenset[Role], listener: Listener, stop: threading.Event) -> None:
        name = "".join(sorted(roles)) + f"-{os.getpid()}-{secrets.token_hex(4)}"
        path = self.directory / name
        try:
            with contextlib.suppress(FileExistsError):
                self.directory.mkdir(mode=0o700)
            if not _trusted(self.directory):
                raise PermissionError(
                    f"{self.directory} is not a directory of this user's alone (mode 0700)"
                )
            # Made under a hidden name and opened before it is named: a sender never finds
            # it without a reader (and so never takes it for the pipe of a dead process).
            hidden = self.directory / f".{name}"
            os.mkfifo(hidden, 0o600)
            read_end = os.open(hidden, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            # Our own write end keeps the pipe open: a read never sees an end of file.
            keep_open = os.open(hidden, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            os.rename(hidden, path)
        except OSError as exc:
            log.warning("no wake-ups from other processes (%s): polling the store instead", exc)
            return
        self._own = name
        pending = b""
        try:
            while not stop.is_set():
                readable, _, _ = select.select([read_end], [], [], STOP_CHECK_SECONDS)
                if not readable:
                    continue
                try:
                    chunk = os.read(read_end, 1 << 16)
                except BlockingIOError:
                    continue
                pending += chunk
                complete, _, pending = pending.rpartition(b"\n")
                if complete:
                    try:
                        _deliver(complete.split(b"\n"), listener)
                    except Exception:
                        log.exception("a wake-up from another process failed; carrying on")
        finally:
            _unlink(path)
            os.close(read_end)
            os.close(keep_open)
            self._own = None

    def close(self) -> None:
        with self._lock:
            opened, self._open = list(self._open.values()), {}
            for fd in opened:
                os.close(fd)


def _deliver(messages: list[bytes], listener: Listener) -> None:
    """Hand a burst of messages to ``listener``: one wake-up for all the ready ones."""
    ready = False
    ended: list[str] = []
    for message in messages:
        kind, body = message[:1], message[1:]
        if kind == b"R":
            ready = True
        elif kind == b"E":
            ended.extend(body.decode().split(","))
        elif kind == b"C":
            listener.cancel_asked(body.decode())
    if ended:
        listener.tasks_ended(ended)
    if ready:
        listener.tasks_ready()


def _unlink(path: Path) -> None:
    try:
        if stat.S_ISFIFO(os.lstat(path).st_mode):
            path.unlink()
    except OSError:
        pass
