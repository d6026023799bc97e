"""The application: the factory's config layers, and the extension that holds the engine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from flask import Flask

from api.config import Settings
from api.extension import TaskAPI
from api.runtime import EXTENSION_KEY, Runtime
from tests.conftest import make_app, runtime_of


def test_the_config_is_defaults_then_environment_then_the_mapping(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKS_MAX_QUEUED", "7")
    monkeypatch.setenv("TASKS_RESULT_TTL", "60")
    app = make_app(db_path, TASKS_RESULT_TTL=30)
    runtime = runtime_of(app)
    try:
        assert runtime.settings.max_queued == 7
        assert runtime.settings.result_ttl == 30
        assert runtime.settings.lease_seconds == Settings().lease_seconds
        assert app.config["MAX_CONTENT_LENGTH"] == runtime.settings.max_body_bytes
    finally:
        runtime.store.close()


def test_the_runtime_is_the_apps_extension_and_its_workers_wait(db_path: Path) -> None:
    app = make_app(db_path)
    runtime = app.extensions[EXTENSION_KEY]
    try:
        assert isinstance(runtime, Runtime)
        assert runtime.service.store is runtime.store
        assert not runtime.pool.alive()  # made, not started: serve and worker start them
    finally:
        runtime.store.close()


def test_the_extension_serves_a_plain_flask_app(db_path: Path) -> None:
    app = Flask(__name__)
    app.config.from_mapping(Settings.defaults())
    app.config["TASKS_DATABASE_URL"] = f"sqlite:///{db_path}"
    runtime = TaskAPI().init_app(app)
    try:
        assert app.extensions[EXTENSION_KEY] is runtime
        assert {"add", "sleep", "fail"} <= {t.name for t in runtime.registry}
        with app.app_context():
            from api.runtime import current

            assert current() is runtime
    finally:
        runtime.store.close()


def test_the_service_and_its_exceptions_load_no_http() -> None:
    """Imports go views -> service -> store -> models: the service knows no Flask or Werkzeug."""
    code = (
        "import sys, api.service, api.exceptions; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'flask', 'werkzeug'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
