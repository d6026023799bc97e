"""The sender, against a real HTTP receiver on 127.0.0.1: signed deliveries, retries with the
same webhook-id, Retry-After, 410, redirects, the size bound, the send-time host check, key
rotation. Each store (``database_url``). The retry schedule is shortened; its default is the
Standard Webhooks one (api.models.CALLBACK_RETRY_DELAYS)."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from api.callbacks.hosts import CallbackHosts
from api.callbacks.sender import Sender
from api.callbacks.signing import parse_secrets
from api.metrics import Metrics
from api.models import (
    CALLBACK_RETRY_DELAYS,
    MAX_CALLBACK_BODY_BYTES,
    DeliveryState,
    NewTask,
    Status,
    Task,
)
from api.store import Ending, Store, open_store
from schemas.tasks import task_document
from tests.receiver import SECRET, Receiver, receiving

SHORT = (0.05, 0.05, 0.05, 0.05)
OTHER_SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    s = open_store(database_url)
    yield s
    s.close()


def ended(store: Store, url: str, *, status: Status = Status.SUCCEEDED, result: Any = 3) -> Task:
    """A task with ``url`` for its callback, run and ended ``status`` now."""
    now = datetime.now(UTC)
    task = NewTask(
        id=str(uuid.uuid4()),
        type="add",
        params={"x": 1, "y": 2},
        max_attempts=1,
        timeout_seconds=None,
        priority=0,
        created_at=now,
        run_after=now,
        callback_url=url,
    )
    store.create(task)
    (claimed,) = store.claim_many("w", 1, now, now + timedelta(minutes=1))
    assert claimed.id == task.id
    store.complete(
        [
            Ending(
                task.id,
                "w",
                status,
                now,
                now + timedelta(days=1),
                result if status is Status.SUCCEEDED else None,
            )
        ]
    )
    got = store.get(task.id, now)
    assert got is not None
    return got


def sender(store: Store, receiver: Receiver, **options: Any) -> Sender:
    settings: dict[str, Any] = {
        "holder": "test:callbacks",
        "delays": SHORT,
        "timeout": 0.5,
    }
    settings.update(options)
    hosts = settings.pop("hosts", receiver.hosts)
    keys = settings.pop("keys", parse_secrets(SECRET))
    return Sender(store, CallbackHosts(hosts), keys, task_document, **settings)


def send_until_settled(s: Sender, store: Store, task_id: str, timeout: float = 20) -> Any:
    """Tick ``s`` (each attempt inline) until the delivery of ``task_id`` is not pending."""
    deadline = time.monotonic() + timeout
    while True:
        delivery = store.deliveries([task_id])[task_id]
        if delivery.state is not DeliveryState.PENDING:
            return delivery
        assert time.monotonic() < deadline, delivery
        time.sleep(min(s.tick(), 0.05))


def test_a_delivery_is_signed_as_standard_webhooks_says(store: Store) -> None:
    with receiving() as receiver:
        task = ended(store, receiver.url)
        delivery = send_until_settled(sender(store, receiver), store, task.id)
        (got,) = receiver.wait(1)
    assert delivery.state is DeliveryState.DELIVERED and delivery.attempts == 1
    assert delivery.last_status == 204 and delivery.last_error is None
    # The reference implementation verifies it (and the timestamp is fresh).
    event = Webhook(SECRET).verify(got.body, got.headers)
    assert got.headers["webhook-id"] == f"msg_{task.id}"
    assert got.headers["content-type"] == "application/json"
    assert event["type"] == "task.succeeded"
    assert event["data"]["id"] == task.id and event["data"]["result"] == 3
    assert event["data"]["status"] == "succeeded" and event["data"]["callback"] is None
    assert event["timestamp"] == event["data"]["finished_at"]
    assert "omitted" not in event


def test_two_500s_and_a_timeout_are_retried_with_the_same_id_and_body(store: Store) -> None:
    metrics = Metrics(store)
    replies = [(500, {}, 0.0), (500, {}, 0.0), (200, {}, 1.5)]  # the third comes too late
    with receiving(replies) as receiver:
        task = ended(store, receiver.url)
        delivery = send_until_settled(sender(store, receiver, metrics=metrics), store, task.id)
        got = receiver.wait(4)
    assert delivery.state is DeliveryState.DELIVERED and delivery.attempts == 4
    assert {r.headers["webhook-id"] for r in got} == {f"msg_{task.id}"}
    assert {r.body for r in got} == {got[0].body}
    for request in got:  # each attempt signed afresh
        Webhook(SECRET).verify(request.body, request.headers)
    text = metrics.exposition()[0].decode()
    assert 'taskapi_callback_attempts_total{outcome="retry"} 3.0' in text
    assert 'taskapi_callback_attempts_total{outcome="delivered"} 1.0' in text
    assert "taskapi_callback_latency_seconds_count 1.0" in text


def test_what_went_wrong_is_kept_while_it_is_retried(store: Store) -> None:
    with receiving([(500, {}, 0.0)]) as receiver:
        task = ended(store, receiver.url)
        s = sender(store, receiver, delays=(60, 60))
        s.tick()
        receiver.wait(1)
    delivery = store.deliveries([task.id])[task.id]
    assert delivery.state is DeliveryState.PENDING and delivery.attempts == 1
    assert delivery.last_status == 500 and delivery.last_error
    assert delivery.next_attempt_at is not None
    wait = (delivery.next_attempt_at - delivery.last_attempt_at).total_seconds()  # type: ignore[operator]
    assert 59 <= wait <= 61


def test_retry_after_is_honoured(store: Store) -> None:
    with receiving([(503, {"Retry-After": "2"}, 0.0)]) as receiver:
        task = ended(store, receiver.url)
        send_until_settled(sender(store, receiver), store, task.id)
        first, second = receiver.wait(2)
    assert second.at - first.at >= 1.9


def test_410_stops_it(store: Store) -> None:
    with receiving([(410, {}, 0.0)]) as receiver:
        task = ended(store, receiver.url)
        delivery = send_until_settled(sender(store, receiver), store, task.id)
        time.sleep(0.3)
        assert len(receiver.received) == 1
    assert delivery.state is DeliveryState.FAILED and delivery.attempts == 1
    assert delivery.last_status == 410 and "410" in delivery.last_error


def test_after_the_last_attempt_it_is_failed(store: Store) -> None:
    with receiving([(500, {}, 0.0)] * 10) as receiver:
        task = ended(store, receiver.url)
        delivery = send_until_settled(sender(store, receiver, delays=(0.05, 0.05)), store, task.id)
        assert len(receiver.received) == 3
    assert delivery.state is DeliveryState.FAILED and delivery.attempts == 3


def test_the_default_schedule_keeps_trying_for_more_than_a_day() -> None:
    assert len(CALLBACK_RETRY_DELAYS) + 1 >= 8
    assert CALLBACK_RETRY_DELAYS[:4] == (5, 300, 1800, 7200)
    assert sum(CALLBACK_RETRY_DELAYS) >= 24 * 3600


def test_a_redirect_is_not_followed(store: Store) -> None:
    with receiving() as target, receiving([(302, {"Location": "x"}, 0.0)]) as receiver:
        receiver.replies[0] = (302, {"Location": target.url}, 0.0)
        task = ended(store, receiver.url)
        s = sender(store, receiver, hosts=f"{receiver.hosts},{target.hosts}", delays=(60,))
        s.tick()
        receiver.wait(1)
        time.sleep(0.3)
        assert target.received == []
    delivery = store.deliveries([task.id])[task.id]
    assert delivery.state is DeliveryState.PENDING and delivery.last_status == 302
    assert "redirect" in delivery.last_error.lower()


def test_a_host_no_longer_allowed_is_not_called(store: Store) -> None:
    with receiving() as receiver:
        task = ended(store, receiver.url)
        s = sender(store, receiver, hosts="hooks.example.com", delays=(60,))
        s.tick()
        time.sleep(0.3)
        assert receiver.received == []
    delivery = store.deliveries([task.id])[task.id]
    assert delivery.state is DeliveryState.PENDING and delivery.last_status is None
    assert "allow" in delivery.last_error


def test_a_large_result_is_left_out_with_a_link(store: Store) -> None:
    with receiving() as receiver:
        task = ended(store, receiver.url, result="x" * (2 * MAX_CALLBACK_BODY_BYTES))
        send_until_settled(sender(store, receiver), store, task.id)
        (got,) = receiver.wait(1)
    assert len(got.body) <= MAX_CALLBACK_BODY_BYTES
    event = json.loads(got.body)
    assert event["omitted"] == ["result"] and event["data"]["result"] is None
    assert event["task_url"] == f"/tasks/{task.id}"
    assert event["data"]["params"] == {"x": 1, "y": 2}


def test_every_secret_signs_for_a_rotation(store: Store) -> None:
    with receiving() as receiver:
        task = ended(store, receiver.url, status=Status.CANCELLED)
        keys = parse_secrets(f"{SECRET} {OTHER_SECRET}")
        send_until_settled(sender(store, receiver, keys=keys), store, task.id)
        (got,) = receiver.wait(1)
    assert len(got.headers["webhook-signature"].split()) == 2
    for secret in (SECRET, OTHER_SECRET):
        assert Webhook(secret).verify(got.body, got.headers)["type"] == "task.cancelled"


def test_without_a_secret_nothing_is_sent_unsigned(store: Store) -> None:
    with receiving() as receiver:
        task = ended(store, receiver.url)
        sender(store, receiver, keys=(), delays=(60,)).tick()
        time.sleep(0.2)
        assert receiver.received == []
    delivery = store.deliveries([task.id])[task.id]
    assert delivery.state is DeliveryState.PENDING and "TASKS_WEBHOOK_SECRET" in delivery.last_error


def test_one_process_sends_a_given_attempt(store: Store) -> None:
    with receiving() as receiver:
        tasks = [ended(store, receiver.url) for _ in range(6)]
        senders = [sender(store, receiver, holder=f"p{n}:callbacks") for n in range(3)]
        for s in senders:
            s.tick()
        receiver.wait(6)
        time.sleep(0.3)
        assert sorted(r.headers["webhook-id"] for r in receiver.received) == sorted(
            f"msg_{t.id}" for t in tasks
        )


def test_an_event_renders_the_task_as_it_ended(store: Store) -> None:
    with receiving() as receiver:
        task = ended(store, receiver.url)
        s = sender(store, receiver)
        body = s.body(store.deliveries([task.id])[task.id], dataclasses.replace(task))
    assert body is not None and json.loads(body)["data"]["type"] == "add"


def test_an_error_of_taskapi_itself_is_a_failed_attempt_on_the_schedule(store: Store) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    with receiving() as receiver:
        task = ended(store, receiver.url)
        sender(store, receiver, delays=(60,), post=broken).tick()
    delivery = store.deliveries([task.id])[task.id]
    assert delivery.state is DeliveryState.PENDING and delivery.attempts == 1
    assert "RuntimeError" in delivery.last_error and delivery.next_attempt_at is not None


def test_a_stop_records_the_attempts_under_way_and_hands_back_the_rest(store: Store) -> None:
    with receiving([(204, {}, 1.0)] * 6) as receiver:
        tasks = [ended(store, receiver.url) for _ in range(6)]
        s = sender(store, receiver, threads=2, timeout=5)
        stop = threading.Event()
        running = threading.Thread(target=s.run, args=(stop,))
        running.start()
        receiver.wait(2)  # two attempts under way, two more claimed and waiting for a thread
        stop.set()
        s.wake()
        running.join(10)
        assert not running.is_alive()
    found = store.deliveries([t.id for t in tasks])
    states = sorted((d.state.value, d.attempts) for d in found.values())
    assert states.count(("delivered", 1)) == 2, states
    assert all(d.attempts == 0 for d in found.values() if d.state is DeliveryState.PENDING)
    now = datetime.now(UTC)
    due = store.next_delivery_at()
    assert due is not None and due <= now  # the handed-back ones are due at once
