"""taskapi: durable background tasks for Flask behind an OpenAPI-first HTTP API."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from api.config import Settings

if TYPE_CHECKING:  # flask is imported by create_app: importing api.service must not load it
    from flask import Flask

__version__ = "0.1.0"


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the application: defaults, then ``TASKS_*`` variables, then ``config``.

    Worker threads are created but not started: ``taskapi serve`` and ``taskapi worker`` start
    them, and tests use ``pool.drain()`` or start them themselves.
    """
    from api import http, openapi
    from api.app import TaskApp
    from api.extension import TaskAPI

    app = TaskApp(__name__)
    app.config.from_mapping(Settings.defaults())
    app.config.from_mapping(Settings.from_environ())
    app.config.from_mapping(config or {})
    runtime = TaskAPI().init_app(app)
    openapi.init_app(
        app, runtime.registry, version=__version__, callback_hosts=runtime.settings.hosts
    )
    http.init_app(app, runtime.settings, runtime.metrics)
    return app
