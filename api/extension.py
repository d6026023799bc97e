"""The taskapi extension: the engine of one application, made from its ``TASKS_*`` config."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask

from api import builtin_tasks
from api.callbacks.sender import Sender
from api.config import Settings
from api.events import TaskEvents
from api.metrics import Metrics
from api.registry import Registry
from api.runtime import EXTENSION_KEY, Runtime
from api.service import BatchService, QueueService, ScheduleService, TaskService
from api.service.dependants import DependantsReporter
from api.store import open_store
from api.wakeups import open_wakeups
from api.wakeups.link import Link
from api.worker import WorkerPool
from schemas.tasks import task_document


class TaskAPI:
    """Settings, task types, store, metrics, worker pool and services (tasks, queues,
    schedules, batches) of an app, kept as its ``Runtime`` in ``app.extensions["taskapi"]`` (reached
    with ``api.runtime.current()``).

    As Flask extensions are: ``TaskAPI(app)``, or ``TaskAPI().init_app(app)`` in a factory.
    The worker threads are made, not started: ``taskapi serve`` and ``taskapi worker`` start
    them; tests call ``pool.drain()`` or start them themselves.
    """

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> Runtime:
        """Make the runtime of ``app`` from its config (defaults and checks of ``Settings``)."""
        settings = Settings.from_mapping(app.config)
        registry = Registry()
        builtin_tasks.register(registry)
        for module in settings.import_modules:
            registry.load_module(module)
        store = open_store(settings.database_url)
        events = TaskEvents()
        metrics = Metrics(store, (t.name for t in registry))
        sender = Sender(
            store,
            settings.hosts,
            settings.webhook_keys,
            task_document,
            holder="",  # the pool names it when it starts it
            metrics=metrics,
            lease_margin=timedelta(seconds=settings.lease_seconds),
        )
        pool = WorkerPool(
            store,
            registry,
            size=settings.workers,
            result_ttl=settings.result_ttl,
            poll_interval=settings.poll_interval,
            lease_seconds=settings.lease_seconds,
            events=events,
            metrics=metrics,
            queues=settings.queues,
            max_queued=settings.max_queued,
            sender=sender,
        )
        # Submits, cancels and ends reach the other processes of the store through the link.
        link = Link(open_wakeups(settings.database_url), pool, events)
        events.relay = link.ended
        store.on_settled(DependantsReporter(events, metrics, link))
        service = TaskService(
            store,
            registry,
            result_ttl=settings.result_ttl,
            max_queued=settings.max_queued,
            notifier=link,
            poll_interval=settings.poll_interval,
            events=events,
            metrics=metrics,
            callback_due=sender.wake,
            callback_hosts=settings.hosts,
        )
        runtime = Runtime(
            settings=settings,
            store=store,
            registry=registry,
            service=service,
            pool=pool,
            metrics=metrics,
            link=link,
            queues=QueueService(store, notifier=link),
            schedules=ScheduleService(
                store,
                registry,
                max_queued=settings.max_queued,
                notifier=link,
                metrics=metrics,
            ),
            batches=BatchService(
                store,
                registry,
                result_ttl=settings.result_ttl,
                max_queued=settings.max_queued,
                notifier=link,
                poll_interval=settings.poll_interval,
                events=events,
                metrics=metrics,
            ),
        )
        app.extensions[EXTENSION_KEY] = runtime
        return runtime
