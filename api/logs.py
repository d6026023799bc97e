"""Log lines as text or as JSON, written to stderr by a handler that batches them.

Lines logged while a request is handled carry its id (api/http/request_log.py gives each
request one); lines about a task carry its ``task_id``. ``TASKS_LOG_FORMAT=json`` writes one
JSON object per line, for log pipelines.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import g, has_request_context

#: Fields that a line may carry beside its message (JSON lines have them all; text lines
#: those the message does not already say).
FIELDS = ("request_id", "task_id", "method", "path", "status", "duration_ms")
TEXT_FIELDS = ("request_id", "task_id", "duration_ms")

#: The longest a line waits before it is written, and the most lines that wait.
FLUSH_SECONDS = 0.1
BATCH_LINES = 256


class RequestContext(logging.Filter):
    """Attach the current request's id (``g.request_id``) to lines logged while it is handled."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id") and has_request_context():
            record.request_id = g.get("request_id")
        return True


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value…``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        # A path or a task's error message is the client's text: it must not start a line
        # that looks like a log line of its own.
        record.message = record.message.replace("\r", "\\r").replace("\n", "\\n")
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = " ".join(
            f"{name}={value}"
            for name in TEXT_FIELDS
            if (value := getattr(record, name, None)) is not None
        )
        if not extra:
            return line
        head, newline, rest = line.partition("\n")  # keep a traceback below the fields
        return f"{head} {extra}{newline}{rest}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the fields it has."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class BatchingHandler(logging.StreamHandler):  # type: ignore[type-arg, unused-ignore]
    """Lines to a stream, written a batch at a time.

    Writing each request's line at once costs a system call per request, and, with many
    request threads, a switch of the GIL to another thread each time. Here a line is formatted
    when it is logged (so it has its request id), then kept for at most ``FLUSH_SECONDS``
    and written with the others by a thread of the handler's own. A WARNING or worse is written
    at once, with every line before it; so is a full batch. Pending lines are written at exit
    and before the process forks, and a forked child starts with none. Once the handler is
    closed (``logging.shutdown`` at exit does it), each line is written at once.
    """

    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        #: This process's flusher thread was started (a forked child starts its own).
        self._flusher_started = False
        self._closed = False
        mine = weakref.ref(self)
        os.register_at_fork(
            before=lambda: _if_alive(mine, BatchingHandler.flush),
            after_in_child=lambda: _if_alive(mine, BatchingHandler.forget_pending),
        )

    def emit(self, record: logging.LogRecord) -> None:  # called with self.lock held
        try:
            self._pending.append(self.format(record) + self.terminator)
        except Exception:
            self.handleError(record)
            return
        if (
            record.levelno >= logging.WARNING
            or len(self._pending) >= BATCH_LINES
            or self._closed
            or not self._flusher_running()
        ):
            self._write_pending()

    def _flusher_running(self) -> bool:
        """Start this process's flusher thread if need be; False if it cannot run."""
        if self._flusher_started:
            return True
        try:
            threading.Thread(
                target=self._flush_every, args=(weakref.ref(self),), name="log-flusher", daemon=True
            ).start()
        except RuntimeError:  # no threads left, or the interpreter is exiting
            return False
        self._flusher_started = True
        return True

    def _write_pending(self) -> None:
        if not self._pending:
            return
        text = "".join(self._pending)
        self._pending.clear()
        try:
            self.stream.write(text)
            if hasattr(self.stream, "flush"):
                self.stream.flush()
        except (OSError, ValueError):  # the stream is gone (a closed pipe, a closed file)
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.write(f"taskapi: {len(text.splitlines())} log lines lost\n")

    def flush(self) -> None:
        self.acquire()
        try:
            self._write_pending()
        finally:
            self.release()

    def close(self) -> None:
        self.acquire()
        try:
            self._write_pending()
            self._closed = True
        finally:
            self.release()
        super().close()

    def forget_pending(self) -> None:
        """In a forked child: the lines pending are the parent's to write, and the parent's
        flusher thread did not come along."""
        self._pending.clear()
        self._flusher_started = False

    @staticmethod
    def _flush_every(handler: weakref.ref[BatchingHandler]) -> None:
        while (alive := handler()) is not None and not alive._closed:
            alive.flush()
            del alive
            time.sleep(FLUSH_SECONDS)


def _if_alive(ref: weakref.ref[BatchingHandler], do: Callable[[BatchingHandler], None]) -> None:
    alive = ref()
    if alive is not None:
        do(alive)


def handler(fmt: str) -> logging.Handler:
    """A handler to stderr writing ``fmt`` lines (text or json), with request ids."""
    made = BatchingHandler()
    made.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    made.addFilter(RequestContext())
    return made


def configure(level: str, fmt: str) -> None:
    """Log to stderr at ``level`` in ``fmt`` (text or json), for a process of the service.

    As ``logging.basicConfig``: a process whose logging is already set up (a test run, an
    embedding application) keeps its own handlers.
    """
    logging.basicConfig(level=level.upper(), handlers=[handler(fmt)])
    lean_records()


def lean_records() -> None:
    """Make log records without what the service's lines never show: where the call was
    made, and the multiprocessing process's name (the logging HOWTO's "Optimization": finding
    the caller's frame alone is a fifth of a line's cost, and a worker logs a line per task)."""
    logging._srcfile = None
    logging.logMultiprocessing = False


def gunicorn_config(level: str, fmt: str) -> dict[str, Any]:
    """gunicorn's ``logconfig_dict``: its own lines go through the same handler and format."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "root": {"level": level.upper(), "handlers": ["taskapi"]},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
            # Requests are logged by api/http/request_log.py, with their id: not twice.
            "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
        },
        "handlers": {"taskapi": {"()": handler, "fmt": fmt}},
        "formatters": {},
    }
