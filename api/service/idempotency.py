"""Idempotency-Key: what identifies a request's body, the key a submit takes, and the answer a
repeated request gets."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from api.exceptions import KeyInFlight, KeyReused, KeyTaskGone
from api.models import IdempotencyKey, Task
from api.store import KeyTaken, Store

#: How long an Idempotency-Key is remembered (the contract: at least 24 hours).
IDEMPOTENCY_KEY_TTL = timedelta(hours=24)
#: The longest a request that took a key counts as in flight: its longest wait and a margin,
#: so a key whose request died with its process is not refused for long.
IDEMPOTENCY_IN_FLIGHT = timedelta(seconds=90)


def _same_numbers(value: Any) -> Any:
    """``0`` and ``0.0`` are the same JSON number: write integral floats as integers."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {k: _same_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_same_numbers(v) for v in value]
    return value


def fingerprint(request: Mapping[str, Any]) -> str:
    """What identifies a request body for Idempotency-Key: a hash of its canonical JSON."""
    canonical = json.dumps(
        _same_numbers(request), sort_keys=True, separators=(",", ":"), default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def take(owner: str, key: str, request: Mapping[str, Any], now: datetime) -> IdempotencyKey:
    """The key ``owner`` sends with ``request``, as the store keeps it from ``now`` on."""
    return IdempotencyKey(
        owner,
        key,
        fingerprint(request),
        expires_at=now + IDEMPOTENCY_KEY_TTL,
        in_flight_until=now + IDEMPOTENCY_IN_FLIGHT,
    )


def check_replay(taken: KeyTaken, print_: str) -> None:
    """Refuse to answer a key already taken for a request with another body (KeyReused), or
    while its first request is still being handled (KeyInFlight)."""
    if taken.fingerprint != print_:
        raise KeyReused()
    if taken.in_flight:
        raise KeyInFlight()


def replay(store: Store, taken: KeyTaken, print_: str, clock: Callable[[], datetime]) -> Task:
    """The task a key already created, for a request repeated with the same body.

    Refuses another body (KeyReused), a key whose first request is still being handled
    (KeyInFlight) and one whose task is gone (KeyTaskGone).
    """
    check_replay(taken, print_)
    task = store.get(taken.task_id, clock())
    if task is None:
        raise KeyTaskGone()
    return task
