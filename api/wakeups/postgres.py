"""Wake-ups between the processes (and machines) of one PostgreSQL store: LISTEN/NOTIFY.

Two channels: ``taskapi_tasks`` for the worker processes (an empty payload when a task
became ready, sent by the store in the transaction that made it ready; ``C`` and a task id
for a cancel) and ``taskapi_ends`` for the API processes (``E`` and the ids of ended tasks).
Ends and cancels are sent by a thread of this process's own on a connection of its own, many
ids per NOTIFY when they come faster than one round trip: a worker never waits for them.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable

import psycopg

from api.wakeups import Listener, Role

log = logging.getLogger(__name__)

TASKS_CHANNEL = "taskapi_tasks"
ENDS_CHANNEL = "taskapi_ends"
#: A NOTIFY payload must stay under 8000 bytes.
PAYLOAD_BYTES = 7900
RECONNECT_SECONDS = 1.0
#: How often a listener looks whether it was told to stop.
STOP_CHECK_SECONDS = 0.5
#: A sender idle this long closes its connection and ends.
IDLE_SECONDS = 5.0


class PostgresWakeups:
    """LISTEN/NOTIFY on the database of ``url``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._outbox: queue.SimpleQueue[tuple[str, str] | None] = queue.SimpleQueue()
        self._sender: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- sending -------------------------------------------------------------------------------

    def ready(self) -> None:
        return None  # the store notifies in the transaction that made the task ready

    def ended(self, task_ids: Iterable[str]) -> None:
        for task_id in task_ids:
            self._post(ENDS_CHANNEL, task_id)

    def cancel(self, task_id: str) -> None:
        self._post(TASKS_CHANNEL, task_id)

    def _post(self, channel: str, task_id: str) -> None:
        with self._lock:
            self._outbox.put((channel, task_id))
            if self._sender is None:
                self._sender = threading.Thread(
                    target=self._send_all, name="taskapi-notify", daemon=True
                )
                self._sender.start()

    def _send_all(self) -> None:
        """Send what is posted, many ids per NOTIFY, until idle for IDLE_SECONDS (the thread
        and its connection end then; the next post starts them again) or closed."""
        conn: psycopg.Connection[tuple[object, ...]] | None = None
        try:
            while True:
                try:
                    first = self._outbox.get(timeout=IDLE_SECONDS)
                except queue.Empty:
                    with self._lock:
                        if self._outbox.empty():
                            self._sender = None
                            return
                    continue
                if first is None:
                    return
                batch = [first]
                while True:  # everything that came meanwhile goes in the same NOTIFYs
                    try:
                        more = self._outbox.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        self._outbox.put(None)
                        break
                    batch.append(more)
                try:
                    if conn is None or conn.closed:
                        conn = psycopg.connect(self.url, autocommit=True)
                    for channel, payload in _payloads(batch):
                        conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))
                except psycopg.Error as exc:
                    log.warning("NOTIFY failed (%s); readers poll the store meanwhile", exc)
                    conn = None
        finally:
            if conn is not None:
                conn.close()

    # -- listening -----------------------------------------------------------------------------

    def listen(self, roles: frozenset[Role], listener: Listener, stop: threading.Event) -> None:
        channels = ([TASKS_CHANNEL] if Role.WORKERS in roles else []) + (
            [ENDS_CHANNEL] if Role.READERS in roles else []
        )
        while channels and not stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True) as conn:
                    for channel in channels:
                        conn.execute(f"LISTEN {channel}")
                    while not stop.is_set():
                        # A generator: each notification is handed on as it comes.
                        for note in conn.notifies(timeout=STOP_CHECK_SECONDS):
                            _deliver(note, listener)
            except psycopg.Error as exc:
                log.warning("LISTEN lost (%s); polling the store meanwhile", exc)
                stop.wait(RECONNECT_SECONDS)

    def close(self) -> None:
        with self._lock:
            sender, self._sender = self._sender, None
        if sender is not None:
            self._outbox.put(None)
            sender.join(2.0)


def _payloads(batch: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The NOTIFYs for ``batch``: ends grouped many ids per payload, cancels one each."""
    out: list[tuple[str, str]] = []
    ends: list[str] = []
    size = 0
    for channel, task_id in batch:
        if channel == TASKS_CHANNEL:
            out.append((channel, "C" + task_id))
            continue
        if size + len(task_id) + 1 > PAYLOAD_BYTES:
            out.append((ENDS_CHANNEL, "E" + ",".join(ends)))
            ends, size = [], 0
        ends.append(task_id)
        size += len(task_id) + 1
    if ends:
        out.append((ENDS_CHANNEL, "E" + ",".join(ends)))
    return out


def _deliver(note: psycopg.Notify, listener: Listener) -> None:
    kind, body = note.payload[:1], note.payload[1:]
    try:
        if kind == "E":
            listener.tasks_ended(body.split(","))
        elif kind == "C":
            listener.cancel_asked(body)
        else:
            listener.tasks_ready()
    except Exception:
        log.exception("a wake-up from another process failed; carrying on")
