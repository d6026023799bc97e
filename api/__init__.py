"""taskapi: durable background tasks for Flask behind an OpenAPI-first HTTP API."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Mapping
from types import FunctionType
from typing import Any

from flask import Flask

from api.config import Settings

__version__ = "0.1.0"

log = logging.getLogger(__name__)


class TaskApp(Flask):
    """Flask, remembering which of its functions are plain (not coroutines).

    Flask asks it of every hook and view on every request (fourteen times for a task read),
    and for a function the answer never changes. Functions are remembered only while they
    live (one made per request, as ``after_this_request`` takes, goes with its request), and
    bound methods not at all: a view instance's is new on each request.
    """

    def __init__(self, import_name: str) -> None:
        super().__init__(import_name)
        self._plain: weakref.WeakSet[Callable[..., Any]] = weakref.WeakSet()

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        if type(func) is not FunctionType:
            return super().ensure_sync(func)
        if func in self._plain:
            return func
        made = super().ensure_sync(func)
        if made is func:
            self._plain.add(func)
        return made


def _flask_config(settings: Settings) -> dict[str, Any]:
    from api.openapi import OPENAPI_VERSION
    from api.views.docs import ASSETS_URL

    return {
        "API_TITLE": "taskapi",
        "API_VERSION": __version__,
        "OPENAPI_VERSION": OPENAPI_VERSION,
        "OPENAPI_URL_PREFIX": "/",
        "OPENAPI_JSON_PATH": "openapi.json",
        "OPENAPI_SWAGGER_UI_PATH": "docs",
        "OPENAPI_SWAGGER_UI_URL": ASSETS_URL,
        "API_SPEC_OPTIONS": {
            "info": {
                "description": "Background tasks for Flask: submit a task, let a worker run it, "
                "poll its status and result. Errors are RFC 9457 problems.",
                "license": {"name": "MIT", "identifier": "MIT"},
                "contact": {"name": "taskapi maintainers"},
            },
            # The API is served at the root of the host that serves the spec.
            "servers": [{"url": "/", "description": "The server that serves this document."}],
        },
        "MAX_CONTENT_LENGTH": settings.max_body_bytes,
    }


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the application: defaults, then ``TASKS_*`` variables, then ``config``.

    Worker threads are created but not started: ``taskapi serve`` and ``taskapi worker`` start
    them, and tests use ``pool.drain()`` or start them themselves.
    """
    from api import builtin_tasks, errors, hardening
    from api.access import ApiKeys, authenticate, refuse_unauthenticated
    from api.events import TaskEvents
    from api.http import request_log
    from api.metrics import Metrics
    from api.openapi import make_api
    from api.ratelimit import RateLimit
    from api.registry import Registry
    from api.runtime import EXTENSION_KEY, Runtime
    from api.service import ServiceError, TaskService
    from api.store import open_store
    from api.views import activity, dashboard, docs, legacy, ops, task_types, tasks
    from api.worker import WorkerPool

    app = TaskApp(__name__)
    app.config.from_mapping(Settings.defaults())
    app.config.from_mapping(Settings.from_environ())
    app.config.from_mapping(config or {})
    settings = Settings.from_mapping(app.config)
    app.config.update(_flask_config(settings))

    registry = Registry()
    builtin_tasks.register(registry)
    for module in settings.import_modules:
        registry.load_module(module)

    store = open_store(settings.database_url)
    events = TaskEvents()
    metrics = Metrics(store, (t.name for t in registry))
    pool = WorkerPool(
        store,
        registry,
        size=settings.workers,
        result_ttl=settings.result_ttl,
        poll_interval=settings.poll_interval,
        lease_seconds=settings.lease_seconds,
        events=events,
        metrics=metrics,
    )
    service = TaskService(
        store,
        registry,
        result_ttl=settings.result_ttl,
        max_queued=settings.max_queued,
        notifier=pool,
        events=events,
        metrics=metrics,
    )

    api = make_api()
    api.init_app(app)
    app.url_map.converters["task_id"] = tasks.TaskIdConverter
    api.register_converter(tasks.TaskIdConverter, tasks.task_id_param_schema)
    api.register_blueprint(tasks.make_blueprint(registry))
    api.register_blueprint(task_types.make_blueprint())
    api.register_blueprint(ops.blp)
    api.register_blueprint(activity.make_blueprint())
    api.register_blueprint(legacy.blp)
    app.register_blueprint(docs.make_blueprint())
    app.register_blueprint(dashboard.make_blueprint())
    app.register_error_handler(ServiceError, errors.from_service_error)

    keys = ApiKeys.load(settings.api_keys, settings.api_keys_file)
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

    converter = api.ma_plugin.converter
    assert converter is not None
    app.extensions[EXTENSION_KEY] = Runtime(
        settings=settings,
        store=store,
        registry=registry,
        service=service,
        pool=pool,
        metrics=metrics,
        task_types=[
            {
                "name": t.name,
                "description": t.description,
                "params_schema": converter.schema2jsonschema(t.params),
                "max_attempts": t.max_attempts,
                "timeout_seconds": t.timeout_seconds,
            }
            for t in registry
        ],
    )
    if keys.enabled:
        log.info("API keys on: %d callers", len(set(keys.tokens.values())))
    else:
        log.warning("TASKS_API_KEYS is not set: the API is open to every caller")
    return app
