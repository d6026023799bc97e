"""The application object: what it remembers per function stays bounded and correct."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import submit

ADD = {"type": "add", "params": {"x": 2, "y": 3}}


def test_remembered_hooks_do_not_grow_with_requests(app: Flask, client: FlaskClient) -> None:
    task = submit(client, ADD)
    client.get(f"/tasks/{task['id']}")
    remembered = len(app._sync)  # type: ignore[attr-defined]
    for _ in range(50):
        assert client.get(f"/tasks/{task['id']}").status_code == 200
        submit(client, ADD)
    assert len(app._sync) == remembered  # type: ignore[attr-defined]


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
