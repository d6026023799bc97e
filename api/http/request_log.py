"""Request ids, and one log line and one metrics sample per request answered.

Each request gets an id: the client's ``X-Request-ID`` when it sent a usable one, else a new
one. It is kept in ``g.request_id`` (where api/logs.py's ``RequestContext`` finds it for every
line logged while the request is handled) and echoed in the answer.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, Response, g, request

from api.metrics import Metrics

REQUEST_ID_HEADER = "X-Request-ID"
#: A client's request id is kept when it is 1 to 128 of these characters; else a new one.
_USABLE_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")
#: Methods counted by name in the metrics; any other a client invents is counted as "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

requests_log = logging.getLogger("api.requests")


def begin() -> None:
    """Before a request: note when it started, and give it its id."""
    g.request_started = time.perf_counter()
    given = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = given if _USABLE_ID.fullmatch(given) else uuid.uuid4().hex


def answered(response: Response, metrics: Metrics) -> Response:
    """After a request: echo its id, count it, and log a line about it."""
    started = g.get("request_started")
    seconds = time.perf_counter() - started if started is not None else 0.0
    request_id = g.get("request_id") or uuid.uuid4().hex
    response.headers[REQUEST_ID_HEADER] = request_id
    rule, method, status = request.url_rule, request.method, response.status_code
    metrics.request_answered(
        method if method in METHODS else "other",
        rule.rule if rule is not None else "unmatched",
        status,
        seconds,
    )
    if requests_log.isEnabledFor(logging.INFO):
        requests_log.info(
            "%s %s %d",
            method,
            request.full_path if request.query_string else request.path,
            status,
            extra={
                "request_id": request_id,
                "method": method,
                "path": request.path,
                "status": status,
                "duration_ms": round(seconds * 1000, 2),
            },
        )
    return response


def install(app: Flask, metrics: Metrics) -> None:
    """Give every request an id, and log and count each one as it is answered.

    Call before any other request hook is added: ``begin`` then runs first (so refusals get an
    id too) and ``answered`` last (so it sees the final answer).
    """
    app.before_request(begin)
    app.after_request(lambda response: answered(response, metrics))
