"""Headers every response carries, and CORS for the browser origins an operator allows."""

from __future__ import annotations

from collections.abc import Sequence

from flask import Flask, Response, request
from flask_cors import CORS

#: Responses that may be cached: the spec, Swagger UI and its assets. Everything else is a
#: task or the state of the service, and must not be stored by a cache on the way.
CACHEABLE_ENDPOINTS = frozenset(
    {"api-docs.openapi_json", "api-docs.openapi_swagger_ui", "docs_assets.swagger_asset"}
)
#: What a browser client may send and read across origins.
CORS_REQUEST_HEADERS = [
    "Authorization",
    "X-Request-ID",
    "Content-Type",
    "Idempotency-Key",
    "Prefer",
    "If-None-Match",
]
CORS_RESPONSE_HEADERS = [
    "Location",
    "ETag",
    "Retry-After",
    "X-Pagination",
    "Preference-Applied",
    "RateLimit",
    "RateLimit-Policy",
    "X-Request-ID",
]


def secure_headers(response: Response) -> Response:
    """``after_request``: no sniffing of content types; no caching of tasks."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if request.endpoint not in CACHEABLE_ENDPOINTS:
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def allow_origins(app: Flask, origins: Sequence[str]) -> None:
    """Let browser clients of these origins (and only these) call the API."""
    CORS(
        app,
        origins=list(origins),
        allow_headers=CORS_REQUEST_HEADERS,
        expose_headers=CORS_RESPONSE_HEADERS,
        methods=["GET", "POST", "PATCH", "DELETE"],
        max_age=600,
    )
