"""Rate limits per caller (``TASKS_RATE_LIMIT``, e.g. ``100/second``), with the IETF fields.

Limited responses carry ``RateLimit-Policy`` and ``RateLimit`` (draft-ietf-httpapi-ratelimit-
headers); a caller over the limit gets a 429 problem with ``Retry-After``. Counters live in the
process: with several server processes each counts its own share.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import limits
from flask import Response, g, request
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter

from api.config import ConfigError
from api.errors import problem
from api.http.access import OPEN_ENDPOINTS, caller

POLICY = "default"


@dataclass(frozen=True)
class Window:
    allowed: bool
    remaining: int
    reset_seconds: int


class RateLimit:
    """One limit, counted per caller in a fixed window."""

    def __init__(self, spec: str) -> None:
        try:
            self.item = limits.parse(spec)
        except ValueError:
            raise ConfigError(
                f"TASKS_RATE_LIMIT={spec!r} is not a rate: write it like 100/second."
            ) from None
        self._limiter = FixedWindowRateLimiter(MemoryStorage())

    def hit(self, key: str) -> Window:
        allowed = self._limiter.hit(self.item, key)
        stats = self._limiter.get_window_stats(self.item, key)
        reset = max(1, math.ceil(stats.reset_time - time.time()))
        return Window(allowed, stats.remaining, reset)

    def headers(self, window: Window) -> dict[str, str]:
        return {
            "RateLimit-Policy": f'"{POLICY}";q={self.item.amount};w={self.item.get_expiry()}',
            "RateLimit": f'"{POLICY}";r={window.remaining};t={window.reset_seconds}',
        }

    def before_request(self) -> Response | None:
        """Count this request against its caller; refuse it with 429 when over the limit."""
        if request.endpoint in OPEN_ENDPOINTS or request.endpoint is None:
            return None
        # A refused token is counted against its address, like a caller without keys.
        known = caller() if g.get("refusal") is None else ""
        window = self.hit(known or f"addr:{request.remote_addr}")
        g.rate_window = window
        if window.allowed:
            return None
        return problem(
            429,
            f"Over the rate limit of {self.item.amount} requests per "
            f"{self.item.get_expiry()} s for this caller; retry after {window.reset_seconds} s.",
            headers={"Retry-After": str(window.reset_seconds)},
        )

    def after_request(self, response: Response) -> Response:
        window = g.pop("rate_window", None)
        if window is not None:
            response.headers.update(self.headers(window))
        return response
