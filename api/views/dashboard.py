"""``/dashboard``: a live view of the queue, served with its assets (no CDN)."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_from_directory

ASSETS = Path(__file__).resolve().parent.parent / "dashboard"


def make_blueprint() -> Blueprint:
    blp = Blueprint("dashboard", __name__)

    @blp.get("/dashboard")
    def page() -> Response:
        return send_from_directory(ASSETS, "index.html", max_age=0)

    @blp.get("/dashboard/assets/<path:filename>")
    def asset(filename: str) -> Response:
        return send_from_directory(ASSETS, filename, max_age=3600)

    return blp
