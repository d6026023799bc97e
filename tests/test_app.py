"""The application object: what it remembers per function stays bounded and correct."""

from __future__ import annotations

import gc
from pathlib import Path

from flask import Flask, Response, after_this_request
from flask.testing import FlaskClient

from tests.conftest import make_app, submit

ADD = {"type": "add", "params": {"x": 2, "y": 3}}


def test_hooks_are_remembered_once_not_per_request(app: Flask, client: FlaskClient) -> None:
    task = submit(client, ADD)
    client.get(f"/tasks/{task['id']}")
    remembered = len(app._plain)  # type: ignore[attr-defined]
    assert remembered >= 4, "the app's own hooks are remembered"
    for _ in range(50):
        assert client.get(f"/tasks/{task['id']}").status_code == 200
        submit(client, ADD)
    assert len(app._plain) == remembered  # type: ignore[attr-defined]


def test_functions_made_per_request_are_not_kept(db_path: Path) -> None:
    app = make_app(db_path)

    @app.get("/probe")
    def probe() -> str:
        @after_this_request
        def stamp(response: Response) -> Response:
            response.headers["X-Probe"] = "1"
            return response

        return "ok"

    client = app.test_client()
    client.get("/probe")
    gc.collect()
    remembered = len(app._plain)  # type: ignore[attr-defined]
    for _ in range(50):
        assert client.get("/probe").headers["X-Probe"] == "1"
    gc.collect()
    assert len(app._plain) == remembered  # type: ignore[attr-defined]


def test_a_coroutine_function_is_still_not_run_as_a_plain_one(app: Flask) -> None:
    async def view() -> str:
        return "ok"

    def plain() -> str:
        return "ok"

    assert app.ensure_sync(plain) is plain
    try:
        wrapped = app.ensure_sync(view)
    except RuntimeError as missing:  # Flask without its async extra says so
        assert "async" in str(missing)
    else:
        assert wrapped is not view and wrapped() == "ok"
