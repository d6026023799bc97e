"""What every HTTP request goes through: access, rate limits, hardening, request logs."""

from __future__ import annotations

import logging

from flask import Flask

from api.config import Settings
from api.http import hardening, request_log
from api.http.access import KEYS_EXTENSION, ApiKeys, authenticate, refuse_unauthenticated
from api.http.ratelimit import RateLimit
from api.metrics import Metrics

# Said once per app as it is made, under the name it always had.
log = logging.getLogger("api")


def init_app(app: Flask, settings: Settings, metrics: Metrics) -> None:
    """Add the hooks every request goes through, in their order, and the body size limit.

    Before a view: the request id, the caller (``authenticate``), the rate limit, then the 401
    of a caller without a valid key. After it: security headers, then CORS when allowed.
    """
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    keys = ApiKeys.load(settings.api_keys, settings.api_keys_file, settings.admins)
    app.extensions[KEYS_EXTENSION] = keys
    request_log.install(app, metrics)  # first: every request gets an id, refusals included
    app.before_request(lambda: authenticate(keys))
    if settings.rate_limit:
        limit = RateLimit(settings.rate_limit)
        app.before_request(limit.before_request)
        app.after_request(limit.after_request)
    app.before_request(refuse_unauthenticated)
    app.after_request(hardening.secure_headers)
    if settings.cors_origin_list:
        hardening.allow_origins(app, settings.cors_origin_list)
    if keys.enabled:
        log.info("API keys on: %d callers", len(set(keys.tokens.values())))
    else:
        log.warning("TASKS_API_KEYS is not set: the API is open to every caller")
