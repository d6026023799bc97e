"""Prometheus metrics: tasks by type and outcome, queue depth, queues, run and wait times, HTTP.

One ``Metrics`` per app. Under ``taskapi serve`` every process (API and worker) writes its
samples to files in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode, set up
by api/server/supervisor.py), and a scrape of any process sums them all. Queue depth and the
state of each queue are read from the store at scrape time (a row per status, kept by the store;
one ``Store.queues`` read for every queue), so they are right whoever changed them.

prometheus_client reads that variable once, when it is first imported, to choose where
samples live; ``Metrics`` chooses again, from the variable as it is when the app is built.

Every series whose labels are known in advance (each task type, and each type and outcome)
starts at 0 when the app is built, in every process, so that dashboards, ``rate()`` and
absence alerts work from the first scrape (Prometheus' instrumentation guidance). The HTTP
families start with the scrape's own request. The queue families hold every queue the store
knows, ``default`` always, each status of each at 0 until it has tasks.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from api.models import TERMINAL, QueueState, Status, Task
from api.store import Store

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
#: Seconds: from a fast `add` to a task that runs for minutes.
TASK_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 60)
#: From a task's end to its callback's delivery: most within a second; a retry takes 5 s, 5
#: min, 30 min, 2 h, ... (CALLBACK_RETRY_DELAYS).
CALLBACK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60, 600, 3600, 21600, 86400)
#: The outcomes of a callback's attempt.
CALLBACK_OUTCOMES = ("delivered", "retry", "failed")


class _QueueDepth:
    """A collector: tasks in each status, and the state of each queue, read from the store
    when scraped."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        now = datetime.now(UTC)
        family = GaugeMetricFamily(
            "taskapi_tasks", "Tasks in the store now, by status.", labels=["status"]
        )
        counts = self.store.count_by_status(now)
        for status in Status:
            family.add_metric([status.value], counts.get(status, 0))
        yield family
        yield from queue_families(self.store.queues(now), now)


def queue_families(queues: Iterable[QueueState], now: datetime) -> Iterator[Any]:
    """The ``taskapi_queue_*`` gauges of ``queues`` as they are at ``now``.

    ``oldest_queued_seconds`` is 0 when no task of the queue is ready (as the usual queue
    exporters do: a gauge that vanishes would break ``max_over_time`` and alerts on it);
    ``concurrency_limit`` is there only for a queue with a limit (a missing limit is no
    number, as kube-state-metrics leaves out a container's unset limits).
    """
    from prometheus_client.core import GaugeMetricFamily

    tasks = GaugeMetricFamily(
        "taskapi_queue_tasks",
        "Tasks in the store now, by queue and status (every caller's).",
        labels=["queue", "status"],
    )
    oldest = GaugeMetricFamily(
        "taskapi_queue_oldest_queued_seconds",
        "Age of the queue's oldest ready queued task, from when it became ready; 0 when none "
        "is ready.",
        labels=["queue"],
    )
    paused = GaugeMetricFamily(
        "taskapi_queue_paused",
        "1 while the queue is paused (it starts none of its tasks).",
        labels=["queue"],
    )
    limit = GaugeMetricFamily(
        "taskapi_queue_concurrency_limit",
        "Most tasks of the queue running at once across every process; absent for a queue "
        "without a limit.",
        labels=["queue"],
    )
    for queue in queues:
        for status in Status:
            tasks.add_metric([queue.name, status.value], queue.counts.get(status, 0))
        age = 0.0
        if queue.oldest_ready_at is not None:
            age = max(0.0, (now - queue.oldest_ready_at).total_seconds())
        oldest.add_metric([queue.name], age)
        paused.add_metric([queue.name], 1 if queue.paused else 0)
        if queue.concurrency is not None:
            limit.add_metric([queue.name], queue.concurrency)
    yield from (tasks, oldest, paused, limit)


class Metrics:
    """What the service, the workers and the request hooks count."""

    def __init__(self, store: Store, task_types: Iterable[str] = ()) -> None:
        from prometheus_client import CollectorRegistry, disable_created_metrics, values

        disable_created_metrics()  # `_created` series only double what a scrape holds
        self.multiprocess = bool(os.environ.get(MULTIPROCESS_DIR))
        values.ValueClass = values.get_value_class()  # files, or this process's memory
        self._registry = CollectorRegistry()
        self._queue_depth = _QueueDepth(store)
        self._registry.register(self._queue_depth)
        # In multiprocess mode the samples go to files and a scrape reads the files: the
        # metrics themselves must not be collected from this process's memory too.
        self._declare(None if self.multiprocess else self._registry)
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}
        for outcome in CALLBACK_OUTCOMES:
            self._child(self.callback_attempts, outcome)
        for task_type in task_types:  # every series of a known type starts at 0
            for by_type in (
                self.created,
                self.retries,
                self.run_seconds,
                self.queue_wait_seconds,
                self.dependency_cancels,
            ):
                self._child(by_type, task_type)
            for outcome in sorted(TERMINAL):
                self._child(self.finished, task_type, outcome.value)

    def _declare(self, registry: Any) -> None:
        from prometheus_client import Counter, Histogram

        self.created = Counter(
            "taskapi_tasks_created", "Tasks created, by type.", ["type"], registry=registry
        )
        self.finished = Counter(
            "taskapi_tasks_finished",
            "Tasks that ended, by type and outcome (succeeded, failed, cancelled).",
            ["type", "outcome"],
            registry=registry,
        )
        self.retries = Counter(
            "taskapi_task_retries",
            "Attempts queued again (failed with attempts left, or cut short by a lost worker), "
            "by type.",
            ["type"],
            registry=registry,
        )
        self.run_seconds = Histogram(
            "taskapi_task_run_seconds",
            "Seconds an attempt ran, by type.",
            ["type"],
            buckets=TASK_BUCKETS,
            registry=registry,
        )
        self.queue_wait_seconds = Histogram(
            "taskapi_task_queue_wait_seconds",
            "Seconds from ready (submitted, or due) to started, by type.",
            ["type"],
            buckets=TASK_BUCKETS,
            registry=registry,
        )
        self.schedule_fires = Counter(
            "taskapi_schedule_fires",
            "Fire times of schedules that made a task, by owner (the caller, with API keys) and "
            "schedule.",
            ["owner", "schedule"],
            registry=registry,
        )
        self.schedule_skips = Counter(
            "taskapi_schedule_skips",
            "Fire times of schedules that made no task, by owner, schedule and reason (overlap: "
            "the previous task still queued or running; missed: passed while no worker ran, with "
            "catch_up none; unknown_type: the task type is no longer registered; queue_full).",
            ["owner", "schedule", "reason"],
            registry=registry,
        )
        self.batches = Counter(
            "taskapi_batches_created",
            "Batches created (POST /batches); their tasks count in taskapi_tasks_created.",
            registry=registry,
        )
        self.dependency_cancels = Counter(
            "taskapi_dependency_cancellations",
            "Tasks cancelled with DependencyFailed because a task they depend on (directly or "
            "down a chain) ended failed or cancelled, by type; also counted in "
            "taskapi_tasks_finished.",
            ["type"],
            registry=registry,
        )
        self.callback_attempts = Counter(
            "taskapi_callback_attempts",
            "Attempts to deliver a task's callback, by outcome: delivered (a 2xx answer), retry "
            "(it failed; another attempt is due) or failed (given up: attempts used, or 410 Gone).",
            ["outcome"],
            registry=registry,
        )
        self.callback_latency_seconds = Histogram(
            "taskapi_callback_latency_seconds",
            "Seconds from a task's end to the delivery of its callback.",
            buckets=CALLBACK_BUCKETS,
            registry=registry,
        )
        self.requests = Counter(
            "taskapi_http_requests",
            "HTTP requests answered, by method, route and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "taskapi_http_request_duration_seconds",
            "Seconds to answer an HTTP request, by method and route.",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
            registry=registry,
        )

    # -- what the service and the workers report ---------------------------------------------

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, found once per label set: prometheus_client checks and
        locks on each call, and the sets are few (task types, outcomes, methods, routes)."""
        child = self._children.get((metric, labels))
        if child is None:
            child = self._children[(metric, labels)] = metric.labels(*labels)
        return child

    def task_created(self, task_type: str, count: int = 1) -> None:
        self._child(self.created, task_type).inc(count)

    def task_started(self, task: Task) -> None:
        if task.started_at is not None:
            waited = (task.started_at - task.run_after).total_seconds()
            self._child(self.queue_wait_seconds, task.type).observe(max(waited, 0.0))

    def attempt_ended(self, task_type: str, seconds: float) -> None:
        self._child(self.run_seconds, task_type).observe(seconds)

    def task_finished(self, task_type: str, outcome: Status) -> None:
        self._child(self.finished, task_type, outcome.value).inc()

    def task_retried(self, task_type: str) -> None:
        self._child(self.retries, task_type).inc()

    def batch_created(self) -> None:
        self.batches.inc()

    def dependency_cancelled(self, task_type: str) -> None:
        """A task ended cancelled (DependencyFailed): counted as finished, and as this."""
        self._child(self.finished, task_type, Status.CANCELLED.value).inc()
        self._child(self.dependency_cancels, task_type).inc()

    def schedule_fired(self, owner: str, schedule: str) -> None:
        self._child(self.schedule_fires, owner, schedule).inc()

    def schedule_skipped(self, owner: str, schedule: str, reason: str) -> None:
        self._child(self.schedule_skips, owner, schedule, reason).inc()

    def callback_attempted(self, outcome: str, latency: float | None = None) -> None:
        """An attempt to deliver a callback ended ``outcome`` (delivered, retry, failed);
        ``latency``: seconds from the task's end, once delivered."""
        self._child(self.callback_attempts, outcome).inc()
        if latency is not None:
            self.callback_latency_seconds.observe(max(latency, 0.0))

    def request_answered(self, method: str, route: str, status: int, seconds: float) -> None:
        self._child(self.requests, method, route, str(status)).inc()
        self._child(self.request_seconds, method, route).observe(seconds)

    # -- the scrape --------------------------------------------------------------------------

    def exposition(self, viewer: str | None = None) -> tuple[bytes, str]:
        """The metrics in Prometheus text format, and its content type.

        With a ``viewer`` (a caller that is no admin, with API keys), the series of schedules
        are that caller's only: a schedule's name is its owner's, as its tasks are. The other
        families (task types, queues, HTTP) are the server's, shared by every caller.
        """
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

        registry = self._registry
        if self.multiprocess:
            from prometheus_client.multiprocess import MultiProcessCollector

            registry = CollectorRegistry()
            declared = [self.schedule_fires, self.schedule_skips, self.batches]
            registry.register(_Declaring(MultiProcessCollector(None), declared))
            registry.register(self._queue_depth)
        text = generate_latest(registry)
        if viewer is not None:
            text = _owned_by(text, viewer)
        return text, CONTENT_TYPE_PLAIN_0_0_4


class _Declaring:
    """A collector: the families of ``inner``, and each of the ``declared`` counters that
    ``inner`` has no sample of yet, empty. In multiprocess mode a family is read from the
    samples' files only, so one whose labels are not known in advance (a schedule's name)
    would be absent until its first sample; its HELP and TYPE are there from the first scrape
    instead, as in a single process."""

    def __init__(self, inner: Any, declared: Iterable[Any]) -> None:
        self._inner = inner
        self._declared = list(declared)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        seen = set()
        for family in self._inner.collect():
            seen.add(family.name)
            yield family
        for counter in self._declared:
            if counter._name not in seen:
                yield CounterMetricFamily(
                    counter._name, counter._documentation, labels=counter._labelnames
                )


#: The families whose series carry an ``owner`` label (their first: it sorts first in every
#: mode): shown to their owner only.
OWNED_FAMILIES = (b"taskapi_schedule_fires", b"taskapi_schedule_skips")


def _owned_by(text: bytes, viewer: str) -> bytes:
    """``text`` less the samples of OWNED_FAMILIES whose owner is not ``viewer``."""
    escaped = viewer.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    mine = f'{{owner="{escaped}",'.encode()
    kept = [
        line for line in text.split(b"\n") if not line.startswith(OWNED_FAMILIES) or mine in line
    ]
    return b"\n".join(kept)


def process_exited(pid: int) -> None:
    """Let a server process's samples go when it exits (multiprocess mode)."""
    if os.environ.get(MULTIPROCESS_DIR):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
