"""The sender: the outbox's deliveries, POSTed signed to their receivers, each attempt once.

Every worker process runs one (a thread of its pool, beside the ticker), with a few threads
of its own for the HTTP exchanges: a slow receiver (up to CALLBACK_TIMEOUT_SECONDS) never
holds a worker slot nor the thread that ran a task. No sender is a leader: a delivery due is
claimed (``Store.claim_deliveries``) by one process for one attempt, with a lease, and is due
again when the lease ends if that process is lost.

``Sender.tick()`` is one iteration: record the answers the sending threads got since the
last one (all in one transaction), claim what is due (up to ``backlog`` at once), hand it to
the sending threads, and say how long to wait before the next look. Without ``run`` it makes
the attempts inline: tests call it with a clock of their own.

An attempt ends one of three ways:

- **delivered**: a 2xx answer;
- **retry**: anything else (a timeout, a refused connection, a 3xx: no redirect is followed,
  a 4xx, a 5xx, an address TASKS_CALLBACK_HOSTS does not allow): the next attempt is due
  after CALLBACK_RETRY_DELAYS' next wait, or the receiver's ``Retry-After`` (429, 5xx) when
  longer;
- **failed**: the last attempt failed, or the receiver answered 410 Gone.

Every attempt of a delivery sends the same body (kept by the store after the first) with the
same ``webhook-id``, and a ``webhook-timestamp`` and signature of its own.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

from api.callbacks.hosts import CallbackHosts
from api.callbacks.signing import sign
from api.callbacks.transport import Answer
from api.callbacks.transport import post as http_post
from api.metrics import Metrics
from api.models import (
    CALLBACK_OMITTABLE,
    CALLBACK_RETRY_DELAYS,
    CALLBACK_TIMEOUT_SECONDS,
    MAX_CALLBACK_BODY_BYTES,
    Delivery,
    DeliveryState,
    Task,
)
from api.store import DeliveryAttempt, DeliveryJob, Store

log = logging.getLogger("api.callbacks")

#: The longest a sender waits between two looks at the store: a delivery written by another
#: process (a cancel in an API process, a task ended elsewhere) is sent within this.
IDLE_SECONDS = 0.5
#: The shortest wait between two looks (a store that keeps failing is not hammered).
MIN_WAIT_SECONDS = 0.01
#: How many deliveries one process sends at once: most of an attempt is waiting for the
#: receiver. With 8, python -m bench.callbacks delivered 728/s with a p50 of 2.4 s behind the
#: tasks' ends; with 32, 889/s with a p50 of 0.11 s (threads are started as they are needed).
SENDING_THREADS = 32
#: How long a claimed delivery is held beyond the attempt's timeout: past it, the attempt is
#: taken for lost (its process was killed) and the delivery is due again.
LEASE_MARGIN = timedelta(seconds=30)
#: The longest ``Retry-After`` honoured: a receiver cannot park a delivery for longer than the
#: schedule's longest wait.
MAX_RETRY_AFTER = max(CALLBACK_RETRY_DELAYS)


class Post(Protocol):
    """One POST of a body to a checked address (api.callbacks.transport.post)."""

    def __call__(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        hosts: CallbackHosts,
        timeout: float = ...,
    ) -> Answer: ...


def utcnow() -> datetime:
    return datetime.now(UTC)


class Sender:
    """Sends the due deliveries of ``store`` to receivers ``hosts`` allows, signed with
    ``keys``; ``render`` gives a task's TaskStatus document (the event's ``data``)."""

    def __init__(
        self,
        store: Store,
        hosts: CallbackHosts,
        keys: tuple[bytes, ...],
        render: Callable[[Task], dict[str, Any]],
        *,
        holder: str,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = utcnow,
        delays: tuple[float, ...] = CALLBACK_RETRY_DELAYS,
        timeout: float = CALLBACK_TIMEOUT_SECONDS,
        threads: int = SENDING_THREADS,
        lease_margin: timedelta = LEASE_MARGIN,
        post: Post | None = None,
    ) -> None:
        self.store = store
        self.hosts = hosts
        self.keys = keys
        self.render = render
        self.holder = holder
        self.metrics = metrics
        self.clock = clock
        self.delays = delays
        self.timeout = timeout
        self.threads = threads
        self.lease = timedelta(seconds=timeout) + lease_margin
        self._post: Post = post or http_post
        #: Claimed at most this many at once: each waits for a free thread, and must be sent
        #: before its lease ends even behind receivers that take the whole timeout.
        self.backlog = 2 * threads
        self._wake = threading.Event()
        self._lock = threading.Lock()
        #: Claimed, and not yet made (sending, or waiting for a thread).
        self._outstanding = 0
        #: Attempts made, waiting to be recorded together by the loop.
        self._made: list[_Made] = []
        #: The attempts handed to the sending threads, by task id (started or not).
        self._futures: dict[Future[None], str] = {}
        self._executor: ThreadPoolExecutor | None = None

    # -- the loop -----------------------------------------------------------------------------

    def wake(self) -> None:
        """A delivery may be due now (a task with a callback ended here): look at once."""
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        """Send until ``stop`` (and ``wake()`` after setting it); an error is logged, never
        fatal. Attempts under way are finished (each within the timeout) and recorded before
        it returns."""
        self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="taskapi-callback")
        try:
            while not stop.is_set():
                self._wake.clear()  # before the tick: a wake-up during it is kept
                try:
                    wait = self.tick()
                except Exception:
                    log.exception("callbacks: error; carrying on")
                    wait = IDLE_SECONDS
                self._wake.wait(wait)
        finally:
            self._wind_down()
            self.store.detach_thread()

    def _wind_down(self) -> None:
        """At the stop: hand back the deliveries claimed and not started, let the attempts
        under way end (each within the timeout), and record them."""
        assert self._executor is not None
        self._executor.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            started = [f for f in self._futures if not f.cancelled()]
            unstarted = [self._futures[f] for f in self._futures if f.cancelled()]
            self._futures = {}
        try:
            if unstarted:
                self.store.release_deliveries(self.holder, unstarted, self.clock())
        except Exception:
            log.exception("callbacks: deliveries not handed back; due again at their lease")
        wait(started, timeout=self.timeout + 1)
        self._executor = None
        try:
            self.flush()
        except Exception:
            log.exception("callbacks: the last answers were not recorded; they are sent again")

    def tick(self) -> float:
        """Record the attempts made since the last tick (in one transaction), claim the
        deliveries due now (as many as the backlog has room for) and hand them to the sending
        threads (or make them inline, without ``run``); the seconds to wait before the next
        look."""
        self.flush()
        with self._lock:
            room = self.backlog - self._outstanding
        if room <= 0:
            return IDLE_SECONDS  # an attempt made wakes the loop
        now = self.clock()
        # A read first: a claim is a write (on SQLite, the one write turn of the file).
        due = self.store.next_delivery_at()
        if due is None:
            return IDLE_SECONDS
        if due > now:
            return min(max((due - now).total_seconds(), MIN_WAIT_SECONDS), IDLE_SECONDS)
        jobs = self.store.claim_deliveries(self.holder, room, now, now + self.lease)
        if self._executor is None:
            self._record([self._attempt_safely(job) for job in jobs])
        else:
            with self._lock:
                self._outstanding += len(jobs)
                for job in jobs:
                    future = self._executor.submit(self._attempt_in_thread, job)
                    self._futures[future] = job.delivery.task_id
        # More may be due (or one was taken by another process meanwhile): look again soon.
        return MIN_WAIT_SECONDS if jobs else IDLE_SECONDS

    def flush(self) -> None:
        """Record the attempts the sending threads made (one transaction for them all)."""
        with self._lock:
            made, self._made = self._made, []
        if not made:
            return
        try:
            self._record(made)
        except Exception:
            with self._lock:  # not written: first in the next flush
                self._made[:0] = made
            raise

    def _attempt_in_thread(self, job: DeliveryJob) -> None:
        made: _Made | None = None
        try:
            made = self._attempt_safely(job)
        finally:
            with self._lock:
                self._outstanding -= 1
                if made is not None:
                    self._made.append(made)
                self._futures = {f: t for f, t in self._futures.items() if not f.done()}
            self._wake.set()

    # -- one attempt --------------------------------------------------------------------------

    def _attempt_safely(self, job: DeliveryJob) -> _Made:
        """``attempt``; an error of this code is a failed attempt too (logged), so that the
        schedule goes on and the delivery ends failed at its last attempt."""
        try:
            return self.attempt(job)
        except Exception as exc:
            log.exception("callback of task %s: error sending it", job.delivery.task_id)
            refused = Answer(None, f"not sent: an error in taskapi ({type(exc).__name__})")
            return self._made_of(job.delivery, refused, None, None)

    def attempt(self, job: DeliveryJob) -> _Made:
        """Make the attempt ``job`` was claimed for: what to record of it."""
        delivery = job.delivery
        body = job.body if job.body is not None else self.body(delivery, job.task)
        if body is None:  # its task is gone: nothing to send, ever
            return self._made_of(delivery, None, None, "the task was deleted before it was sent")
        if not self.keys:  # never unsigned; the operator may yet set it (it is retried)
            return self._made_of(delivery, _NOT_SIGNED, body, None)
        timestamp = int(self.clock().timestamp())
        headers = {
            "webhook-id": delivery.webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self.keys, delivery.webhook_id, timestamp, body),
        }
        answer = self._post(delivery.url, body, headers, hosts=self.hosts, timeout=self.timeout)
        return self._made_of(delivery, answer, body, None)

    def body(self, delivery: Delivery, task: Task | None) -> bytes | None:
        """The event of ``delivery``, as JSON: at most MAX_CALLBACK_BODY_BYTES, leaving out
        of ``data`` what it must (CALLBACK_OMITTABLE), named in ``omitted``, with
        ``task_url`` to read the task whole. None when its task is gone."""
        if task is None:
            return None
        data = self.render(replace(task, callback=None))
        # When the task ended, as the task's own times are written.
        event: dict[str, Any] = {
            "type": delivery.event,
            "timestamp": data["finished_at"],
            "data": data,
        }
        encoded = _dumps(event)
        omitted: list[str] = []
        for name, empty in CALLBACK_OMITTABLE:
            if len(encoded) <= MAX_CALLBACK_BODY_BYTES:
                break
            event["data"][name] = empty
            omitted.append(name)
            event["omitted"] = omitted
            event["task_url"] = f"/tasks/{task.id}"
            encoded = _dumps(event)
        return encoded

    def _made_of(
        self, delivery: Delivery, answer: Answer | None, body: bytes | None, why: str | None
    ) -> _Made:
        """What an attempt of ``delivery`` that got ``answer`` (None: none was made, for
        ``why``) comes to: delivered, another attempt due, or failed."""
        now = self.clock()
        attempts = delivery.attempts
        if answer is not None and answer.delivered:
            state, next_at, outcome = DeliveryState.DELIVERED, None, "delivered"
        elif answer is None or answer.gone or attempts > len(self.delays):
            state, next_at, outcome = DeliveryState.FAILED, None, "failed"
        else:
            wait = self.delays[attempts - 1]
            if answer.retry_after is not None:
                wait = max(wait, min(answer.retry_after, MAX_RETRY_AFTER))
            state, next_at, outcome = DeliveryState.PENDING, now + timedelta(seconds=wait), "retry"
        status = None if answer is None else answer.status
        error = why if answer is None else answer.error
        if answer is not None and answer.gone:
            error = "answered 410 Gone: the receiver wants no more attempts"
        attempt = DeliveryAttempt(
            delivery.task_id,
            self.holder,
            now,
            state,
            next_at,
            status,
            error,
            body,
            attempts=delivery.attempts,
        )
        return _Made(delivery, attempt, outcome)

    def _record(self, made: list[_Made]) -> None:
        """Write ``made`` in one transaction; count and log what applied."""
        if not made:
            return
        recorded = self.store.record_deliveries([one.attempt for one in made])
        for one, delivery in zip(made, recorded, strict=True):
            if delivery is None:
                log.warning(
                    "callback of task %s: its lease ran out before the answer was recorded; "
                    "another attempt is made",
                    one.delivery.task_id,
                )
                continue
            latency = None
            if one.outcome == "delivered":
                latency = (one.attempt.now - one.delivery.ended_at).total_seconds()
            if self.metrics is not None:
                self.metrics.callback_attempted(one.outcome, latency)
            self._log(delivery, one.outcome)

    def _log(self, delivery: Delivery, outcome: str) -> None:
        # The URL may carry a receiver's token in its query: only its host is logged.
        host = _host_of(delivery.url)
        if outcome == "delivered":
            log.info(
                "callback of task %s delivered to %s (attempt %d)",
                delivery.task_id,
                host,
                delivery.attempts,
            )
        elif outcome == "retry":
            assert delivery.next_attempt_at is not None
            log.info(
                "callback of task %s to %s: attempt %d failed (%s); next at %s",
                delivery.task_id,
                host,
                delivery.attempts,
                delivery.last_error,
                delivery.next_attempt_at.isoformat(),
            )
        else:
            log.warning(
                "callback of task %s to %s failed after %d attempts: %s",
                delivery.task_id,
                host,
                delivery.attempts,
                delivery.last_error,
            )


@dataclass(frozen=True, slots=True)
class _Made:
    """An attempt made: the delivery as claimed, what to record, and its outcome."""

    delivery: Delivery
    attempt: DeliveryAttempt
    #: delivered, retry or failed (the metric's label).
    outcome: str


#: The answer of an attempt this process may not make: retried as any other failed one.
_NOT_SIGNED = Answer(
    None,
    "not sent: TASKS_WEBHOOK_SECRET is not set in this worker process, and callbacks are "
    "never sent unsigned",
)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _host_of(url: str) -> str:
    try:
        return urlsplit(url).netloc.rpartition("@")[2] or url
    except ValueError:
        return "?"
