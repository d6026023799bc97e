"""Schemathesis hooks for this API: import it (tests/test_schemathesis.py does) or name it in
``SCHEMATHESIS_HOOKS=tests.schemathesis_hooks`` for ``schemathesis run``.

Both hooks change a valid value into another valid value just before the request is sent, and
leave invalid values alone, so what a case tests (positive or negative) stays the same.

- ``Idempotency-Key``: generated keys repeat across different bodies, and the contract answers
  "same key, other body" with 422, which ``positive_data_acceptance`` would rightly call a
  refused valid request. Each valid key becomes a fresh one. Not a digest of the body: keys
  outlive the tasks they created, so a replayed scenario of the stateful test would meet the
  keys of its first run and get other answers (Hypothesis then reports flaky generation).
- Long polls (``?wait=`` on reads, ``Prefer: wait=N`` on submits) are capped, so a run does
  not sit out up to 60 seconds per request on tasks that are not going to finish.
- A schedule's ``cron`` and ``timezone``: the spec says what they look like (a pattern), not
  which of those the service can read (a minute of 61, a February 31, a zone that does not
  exist); their descriptions and the documented 422 say so, and tests/test_schedules_api.py
  checks each refusal. A value of the right shape that the service cannot read becomes one it
  can (``*/5 * * * *``, ``UTC``); the other fields of the body, and every value of the wrong
  shape, are sent as generated.
- ``depends_on`` (of ``POST /tasks`` and of each item of ``POST /batches``): the spec says what
  an id looks like, not which tasks exist; random ids name none, which the contract refuses with
  422 (tests/test_dependencies_api.py checks it). A list of well-formed ids becomes an empty
  one; any other value is sent as generated.
- ``callback_url`` (of ``POST /tasks``, of each item of ``POST /batches``, of a schedule's
  ``task``): the spec says what a URL looks like (``format: uri``, ``maxLength``), not which
  hosts the server's TASKS_CALLBACK_HOSTS allows; any other host is refused with 422
  (tests/test_callbacks_api.py checks each refusal). A value the spec calls valid, as
  schemathesis itself reads ``format: uri``, becomes ``CALLBACK_URL`` (the receiver named in
  TASKS_TEST_CALLBACK_URL, if any), which the servers under test allow (``callback_settings``);
  any other value is sent as generated.
"""

from __future__ import annotations

import math
import os
import re
import uuid
from typing import Any
from urllib.parse import urlsplit

import jsonschema_rs
import schemathesis
from schemathesis import Case, HookContext

from api.models import MAX_CALLBACK_URL_LENGTH, MAX_DEPENDENCIES
from api.scheduler.cron import Timing, TimingError
from schemas.schedules import CRON_PATTERN, TIMEZONE_PATTERN

#: Longest a generated long poll may hold a request, in seconds.
MAX_WAIT_SECONDS = 0.1
_KEY = re.compile(r"[\x20-\x7e]{1,255}")
_PREFER_WAIT = re.compile(r"(?i)(\bwait\s*=\s*\"?)(\d*\.?\d+(?:e[+-]?\d+)?)")
#: What a schedule's timing fields must look like (the spec's patterns), and readable values.
_SHAPES = {"cron": re.compile(CRON_PATTERN), "timezone": re.compile(TIMEZONE_PATTERN)}
_READABLE = {"cron": "*/5 * * * *", "timezone": "UTC"}
#: The receiver every callback of a run goes to: TASKS_TEST_CALLBACK_URL (a receiver the test
#: runs, so that deliveries end and ``retryCallback`` has callbacks to send again), else one
#: where nothing listens (its deliveries are retried, and stay pending through a run).
CALLBACK_URL = os.environ.get("TASKS_TEST_CALLBACK_URL", "http://127.0.0.1:9/schemathesis")


def callback_settings(url: str = CALLBACK_URL) -> dict[str, str]:
    """The settings of a server whose callbacks may call ``url`` (an http://127.0.0.1 one)."""
    return {
        "TASKS_CALLBACK_HOSTS": urlsplit(url).netloc,
        "TASKS_WEBHOOK_SECRET": "whsec_c2NoZW1hdGhlc2lzLXNjaGVtYXRoZXNpcw==",
    }


#: What the spec's ``callback_url`` takes, checked as schemathesis checks formats.
_URL_SHAPE = jsonschema_rs.Draft202012Validator(
    {"type": "string", "format": "uri", "maxLength": MAX_CALLBACK_URL_LENGTH},
    validate_formats=True,
)
#: What ``format: uuid`` takes.
_ID = re.compile(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")


def _capped_wait(value: Any) -> Any:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return value
    if isinstance(value, bool) or not math.isfinite(seconds) or not 0 <= seconds <= 60:
        return value  # invalid: the service refuses it at once
    return min(seconds, MAX_WAIT_SECONDS)


def _capped_prefer(value: str) -> str:
    # The service holds a submit at most 60 s, whatever N says: any N is capped alike.
    return _PREFER_WAIT.sub(lambda m: m.group(1) + f"{min(float(m.group(2)), 1):g}", value)


def _unreadable(name: str, value: Any) -> bool:
    """Whether ``value`` has the shape the spec gives field ``name`` and yet the service cannot
    read it (``Timing.check`` refuses it, naming that field)."""
    if not isinstance(value, str) or _SHAPES[name].fullmatch(value) is None:
        return False
    timing = (
        Timing(cron=value, every_seconds=None)
        if name == "cron"
        else Timing(cron=None, every_seconds=60, timezone=value)
    )
    try:
        timing.check()
    except TimingError as error:
        return error.field == name
    return False


def _readable_timing(case: Case) -> None:
    body = case.body
    if case.method.upper() != "PUT" or not case.path.startswith("/schedules/"):
        return
    if not isinstance(body, dict):
        return
    for name, readable in _READABLE.items():
        if _unreadable(name, body.get(name)):
            body[name] = readable


def _well_formed_ids(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) <= MAX_DEPENDENCIES
        and all(isinstance(v, str) and _ID.fullmatch(v) for v in value)
    )


def _no_dependencies(case: Case) -> None:
    """Well-formed ``depends_on`` lists of a submit made empty (see the module's docstring)."""
    body = case.body
    if case.method.upper() != "POST" or not isinstance(body, dict):
        return
    if case.path == "/tasks":
        items: Any = [body]
    elif case.path == "/batches":
        items = body.get("tasks")
    else:
        return
    for item in items if isinstance(items, list) else ():
        if isinstance(item, dict) and _well_formed_ids(item.get("depends_on")):
            item["depends_on"] = []


def _allowed_callbacks(case: Case) -> None:
    """Spec-valid ``callback_url`` values made ``CALLBACK_URL`` (see the module's docstring)."""
    body, method = case.body, case.method.upper()
    if not isinstance(body, dict):
        return
    if method == "POST" and case.path == "/tasks":
        items: Any = [body]
    elif method == "POST" and case.path == "/batches":
        items = body.get("tasks")
    elif method == "PUT" and case.path.startswith("/schedules/"):
        items = [body.get("task")]
    else:
        return
    for item in items if isinstance(items, list) else ():
        if isinstance(item, dict) and _URL_SHAPE.is_valid(item.get("callback_url", 0)):
            item["callback_url"] = CALLBACK_URL


@schemathesis.hook
def before_call(context: HookContext, case: Case, kwargs: dict[str, Any]) -> None:
    _readable_timing(case)
    _no_dependencies(case)
    _allowed_callbacks(case)
    headers = case.headers
    if headers is not None:
        key = headers.get("Idempotency-Key")
        if isinstance(key, str) and _KEY.fullmatch(key):
            headers["Idempotency-Key"] = f"schemathesis-{uuid.uuid4()}"
        prefer = headers.get("Prefer")
        if isinstance(prefer, str):
            headers["Prefer"] = _capped_prefer(prefer)
    if case.query and "wait" in case.query:
        wait = case.query["wait"]
        if isinstance(wait, list):
            case.query["wait"] = [_capped_wait(v) for v in wait]
        else:
            case.query["wait"] = _capped_wait(wait)
