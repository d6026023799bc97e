"""Fixtures: an app on its own SQLite file, its client, its runtime, and ways to run tasks."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api import create_app
from api.runtime import EXTENSION_KEY, Runtime

TERMINAL = {"succeeded", "failed", "cancelled"}


def make_app(db_path: Path, **config: Any) -> Flask:
    settings = {
        "TASKS_DATABASE_URL": f"sqlite:///{db_path}",
        "TASKS_WORKERS": 2,
        "TASKS_POLL_INTERVAL": 0.05,
        "TASKS_SHUTDOWN_GRACE": 5,
    }
    settings.update(config)
    app = create_app(settings)
    app.config["TESTING"] = True
    return app


def runtime_of(app: Flask) -> Runtime:
    return app.extensions[EXTENSION_KEY]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "tasks.sqlite3"


def postgres_schema_url(base: str) -> Iterator[str]:
    """A fresh schema in the test database, as a URL whose search_path is that schema."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, db_path: Path) -> Iterator[str]:
    """Each store: a SQLite file, and a schema of its own in TASKS_TEST_DATABASE_URL."""
    if request.param == "sqlite":
        yield f"sqlite:///{db_path}"
        return
    base = os.environ.get("TASKS_TEST_DATABASE_URL")
    if not base:
        pytest.skip("TASKS_TEST_DATABASE_URL is not set: no PostgreSQL to test against")
    yield from postgres_schema_url(base)


@pytest.fixture
def app(db_path: Path, database_url: str) -> Iterator[Flask]:
    """An app on each store, whose workers are not started: run tasks with ``drain``."""
    app = make_app(db_path, TASKS_DATABASE_URL=database_url)
    yield app
    runtime = runtime_of(app)
    runtime.pool.stop(grace=5)
    runtime.store.close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runtime(app: Flask) -> Runtime:
    return runtime_of(app)


@pytest.fixture
def drain(runtime: Runtime) -> Callable[[], int]:
    """Run every ready task in the test's thread; how many ran."""
    return runtime.pool.drain


@pytest.fixture
def live(runtime: Runtime) -> Runtime:
    """The app's worker threads, started."""
    runtime.pool.start()
    return runtime


def wait_for(client: FlaskClient, task_id: str, *, timeout: float = 15.0) -> dict[str, Any]:
    """Poll a task until it is terminal (for tests with live workers)."""
    deadline = time.monotonic() + timeout
    while True:
        task = client.get(f"/tasks/{task_id}").get_json()
        if task["status"] in TERMINAL or time.monotonic() > deadline:
            return task
        time.sleep(0.02)


def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    """Poll ``condition`` until it holds (for tests with live workers or processes)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def submit(client: FlaskClient, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/tasks", json=body)
    assert response.status_code == 202, response.get_json()
    return response.get_json()
