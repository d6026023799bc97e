"""Logs: one line per request and per task transition, as text or as JSON.

Each request gets an id: the client's ``X-Request-ID`` when it sent a usable one, else a new
one; it is echoed in the answer and attached to every line logged while the request is
handled (a submit's "queued" line included). Lines about a task carry its ``task_id``.
``TASKS_LOG_FORMAT=json`` writes one JSON object per line, for log pipelines.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, has_request_context, request

from api.metrics import Metrics

REQUEST_ID_HEADER = "X-Request-ID"
#: A client's request id is kept when it is 1 to 128 of these characters; else a new one.
_USABLE_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")
#: Fields that a line may carry beside its message (JSON lines have them all; text lines
#: those the message does not already say).
FIELDS = ("request_id", "task_id", "method", "path", "status", "duration_ms")
TEXT_FIELDS = ("request_id", "task_id", "duration_ms")
FORMATS = ("text", "json")
#: Methods counted by name in the metrics; any other a client invents is counted as "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

requests_log = logging.getLogger("api.requests")


class RequestContext(logging.Filter):
    """Attach the current request's id to lines logged while it is handled."""

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


def handler(fmt: str) -> logging.Handler:
    """A handler to stderr writing ``fmt`` lines (text or json), with request ids."""
    if fmt not in FORMATS:
        raise ValueError(f"TASKS_LOG_FORMAT must be text or json, not {fmt!r}.")
    made = logging.StreamHandler()
    made.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    made.addFilter(RequestContext())
    return made


def configure(level: str, fmt: str) -> None:
    """Log to stderr at ``level`` in ``fmt`` (text or json), for a process of the service.

    As ``logging.basicConfig``: a process whose logging is already set up (a test run, an
    embedding application) keeps its own handlers.
    """
    logging.basicConfig(level=level.upper(), handlers=[handler(fmt)])


def gunicorn_config(level: str, fmt: str) -> dict[str, Any]:
    """gunicorn's ``logconfig_dict``: its own lines go through the same handler and format."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "root": {"level": level.upper(), "handlers": ["taskapi"]},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
            # Requests are logged by install()'s hook, with their id: not twice.
            "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
        },
        "handlers": {"taskapi": {"()": handler, "fmt": fmt}},
        "formatters": {},
    }


def install(app: Flask, metrics: Metrics) -> None:
    """Give every request an id, and log and count each one as it is answered.

    Call before any other request hook is added: its ``before_request`` then runs first (so
    refusals get an id too) and its ``after_request`` last (so it sees the final answer).
    """

    @app.before_request
    def begin() -> None:
        g.request_started = time.perf_counter()
        given = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = given if _USABLE_ID.fullmatch(given) else uuid.uuid4().hex

    @app.after_request
    def answered(response: Response) -> Response:
        started = g.get("request_started")
        seconds = time.perf_counter() - started if started is not None else 0.0
        request_id = g.get("request_id") or uuid.uuid4().hex
        response.headers[REQUEST_ID_HEADER] = request_id
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        method = request.method if request.method in METHODS else "other"
        metrics.request_answered(method, route, response.status_code, seconds)
        if requests_log.isEnabledFor(logging.INFO):
            requests_log.info(
                "%s %s %d",
                request.method,
                request.full_path if request.query_string else request.path,
                response.status_code,
                extra={
                    "request_id": request_id,
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": round(seconds * 1000, 2),
                },
            )
        return response
