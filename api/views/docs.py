"""Swagger UI's assets, served from the installed flask-swagger-ui package (no CDN)."""

from __future__ import annotations

from pathlib import Path

import flask_swagger_ui
from flask import Blueprint, Response, send_from_directory

ASSETS_URL = "/docs/assets/"
_DIST = Path(flask_swagger_ui.__file__).parent / "dist"


def make_blueprint() -> Blueprint:
    blp = Blueprint("docs_assets", __name__)

    @blp.get(ASSETS_URL + "<path:filename>")
    def swagger_asset(filename: str) -> Response:
        return send_from_directory(_DIST, filename, max_age=86400)

    return blp
