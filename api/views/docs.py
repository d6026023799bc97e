"""Swagger UI: its assets, served from the installed flask-swagger-ui package (no CDN), and
whether its page offers to authorize (``api/templates/swagger_ui.html``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import flask_swagger_ui
from flask import Blueprint, Response, current_app, send_from_directory

from api.http.access import KEYS_EXTENSION, ApiKeys

ASSETS_URL = "/docs/assets/"
_DIST = Path(flask_swagger_ui.__file__).parent / "dist"


def api_keys_on() -> bool:
    """Whether this server runs with API keys (as ``api.http.init_app`` loaded them)."""
    keys: ApiKeys = current_app.extensions[KEYS_EXTENSION]
    return keys.enabled


def make_blueprint() -> Blueprint:
    blp = Blueprint("docs_assets", __name__)

    @blp.get(ASSETS_URL + "<path:filename>")
    def swagger_asset(filename: str) -> Response:
        return send_from_directory(_DIST, filename, max_age=86400)

    @blp.app_context_processor
    def access() -> dict[str, Any]:
        return {"taskapi_api_keys": api_keys_on()}

    return blp
