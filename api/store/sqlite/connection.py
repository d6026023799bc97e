"""SQLite's connections: how each is opened, and the turn that orders the writers."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

from api.store import StoreError

T = TypeVar("T")

BUSY_TIMEOUT_MS = 10_000
#: Page cache of each connection, in KiB. Every HTTP and worker thread has a connection, and
#: SQLite's default (2 MiB each) grows the process by tens of MiB as the store grows; pages
#: not cached here are read from the operating system's cache, shared by all of them.
CACHE_KIB = 256


def connect(path: str) -> sqlite3.Connection:
    """A connection to the store at ``path``, in autocommit mode, WAL, rows by name."""
    try:
        conn = sqlite3.connect(
            path,
            isolation_level=None,
            check_same_thread=False,
            timeout=BUSY_TIMEOUT_MS / 1000,
        )
    except sqlite3.Error as exc:
        raise StoreError(f"Cannot open the SQLite store at {path}: {exc}") from exc
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    return conn


def statements(script: str) -> Iterator[str]:
    """The statements of a script, one by one (a trigger's body has semicolons of its own).

    ``executescript`` would do it, but it commits first: a migration runs in one transaction.
    """
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip().strip(";").strip():
                yield pending
            pending = ""


#: Guards the set-up of write turns; a forked child gets a fresh one (the parent's may have
#: been held by another thread at the fork).
_SETUP = threading.Lock()


def _new_setup_lock() -> None:
    global _SETUP
    _SETUP = threading.Lock()


os.register_at_fork(after_in_child=_new_setup_lock)


class WriteTurn:
    """One writer at a time on this machine, handed from one to the next without sleeping.

    SQLite lets one connection write at a time and makes the others retry with sleeps that
    grow to 100 ms, so a busy store spends its time waiting rather than writing. Writers
    queue here instead, first on a lock of their process, then on a POSIX record lock of a
    file beside the database (``<store>-lock``), which the kernel hands over at once, which a
    forked child does not inherit, and which goes with its process if that dies. This only
    orders the writers: SQLite's own locking still guards the data, so anything that escapes
    the order (another program, a second store object on the same file in one process) waits
    on SQLite's busy timeout as before.
    """

    def __init__(self, path: str) -> None:
        self.path = f"{path}-lock"
        #: (pid, thread lock, lock file) of the process that made them.
        self._own: tuple[int, threading.Lock, int] | None = None

    def _for_this_process(self) -> tuple[threading.Lock, int]:
        pid, own = os.getpid(), self._own
        if own is None or own[0] != pid:
            with _SETUP:
                own = self._own
                if own is None or own[0] != pid:
                    try:
                        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
                    except OSError as exc:
                        raise StoreError(
                            f"Cannot open the SQLite store's lock file {self.path}: {exc}"
                        ) from exc
                    own = self._own = (pid, threading.Lock(), fd)
        return own[1], own[2]

    def held(self) -> Held[None]:
        """This thread's turn to write, until the block ends."""
        return Held(self, None)

    def close(self) -> None:
        """Close the lock file (after the writer holding the turn, if any)."""
        with _SETUP:
            own, self._own = self._own, None
        if own is not None and own[0] == os.getpid():
            with own[1]:  # after the writer holding it, if any
                os.close(own[2])


class Held(Generic[T]):
    """A write turn held for one block, which gets ``value`` (the writer's connection).

    A class rather than a generator: every write goes through it.
    """

    __slots__ = ("_fd", "_lock", "_turn", "_value")

    def __init__(self, turn: WriteTurn, value: T) -> None:
        self._turn = turn
        self._value = value

    def __enter__(self) -> T:
        # Released through the very same pair, whatever happens to the turn meanwhile.
        self._lock, self._fd = lock, fd = self._turn._for_this_process()
        lock.acquire()
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX)
        except BaseException:
            lock.release()
            raise
        return self._value

    def __exit__(self, *exc_info: object) -> None:
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)
        finally:
            self._lock.release()
