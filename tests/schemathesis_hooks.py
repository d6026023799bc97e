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
"""

from __future__ import annotations

import math
import re
import uuid
from typing import Any

import schemathesis
from schemathesis import Case, HookContext

#: Longest a generated long poll may hold a request, in seconds.
MAX_WAIT_SECONDS = 0.1
_KEY = re.compile(r"[\x20-\x7e]{1,255}")
_PREFER_WAIT = re.compile(r"(?i)(\bwait\s*=\s*\"?)(\d*\.?\d+(?:e[+-]?\d+)?)")


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


@schemathesis.hook
def before_call(context: HookContext, case: Case, kwargs: dict[str, Any]) -> None:
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
