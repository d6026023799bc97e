"""BatchCreate's load answers what marshmallow's own load of its fields answers, data and error
messages alike (it only gets there sooner: schemas/batches.py); Batch's dump likewise."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from api.callbacks.hosts import CallbackHosts
from api.models import MAX_BATCH_SIZE, MAX_CALLBACK_URL_LENGTH, MAX_DEPENDENCIES, Batch, Status
from schemas.batches import BatchSchema, make_batch_create
from schemas.params import AddParams, FailParams, SleepParams
from schemas.tasks import make_task_create, make_variant


class CheckedParams(Schema):
    """Params whose schema has a hook: loaded item by item by marshmallow itself."""

    low = fields.Integer(required=True)
    high = fields.Integer(required=True, validate=validate.Range(max=10))

    @validates_schema
    def _ordered(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data["low"] > data["high"]:
            raise ValidationError("low must not be above high.", "low")


class TaggedParams(Schema):
    """Params with a nested object, a data_key, a callable default, and unknown fields kept."""

    class Meta:
        unknown = "include"

    label = fields.String(data_key="Label", load_default=lambda: "none")
    inner = fields.Nested(AddParams)


TYPES = {
    "add": AddParams,
    "sleep": SleepParams,
    "fail": FailParams,
    "checked": CheckedParams,
    "tagged": TaggedParams,
}
HOOKS = CallbackHosts("hooks.example.com,127.0.0.1:8080")
TASK_CREATE = make_task_create(
    {n: make_variant(n, p, "", callback_refusal=HOOKS.refusal) for n, p in TYPES.items()}
)
BATCH_CREATE = make_batch_create(TASK_CREATE)
ID = "0b9f7d2e-8c1a-4f43-9d8e-5c2b1a7e6f10"
OTHER = "3F6C1A2B-7D4E-4B8A-9C0D-1E2F3A4B5C6D"

ADD = {"type": "add", "params": {"x": 1, "y": 2}}
VALID_ITEMS = [
    ADD,
    {"type": "add", "params": {"x": 2**62, "y": -3, "delay_seconds": 0.5}, "priority": 7},
    {"type": "sleep", "params": {"seconds": 1}, "queue": "reports", "delay_seconds": 3},
    {"type": "fail", "params": {"message": "x", "succeed_after": None}, "max_attempts": 2},
    {"type": "fail", "params": {"message": "y"}, "timeout_seconds": 0.5},
    {**ADD, "depends_on": []},
    {**ADD, "depends_on": [ID, OTHER, ID.upper(), OTHER.lower()]},
    {"type": "checked", "params": {"low": 1, "high": 2}},
    {"type": "tagged", "params": {"Label": "a", "inner": {"x": 1, "y": 1}, "extra": [1]}},
    {"type": "tagged", "params": {}},
    {**ADD, "priority": 3.0},
    {**ADD, "callback_url": "https://hooks.example.com/taskapi?x=1"},
    {"type": "sleep", "params": {"seconds": 1}, "callback_url": "http://127.0.0.1:8080/"},
]
INVALID_ITEMS = [
    "not an object",
    None,
    [],
    {},
    {"params": {"x": 1, "y": 2}},
    {"type": None, "params": {}},
    {"type": 3, "params": {}},
    {"type": "nope", "params": {}},
    {"type": "add"},
    {"type": "add", "params": None},
    {"type": "add", "params": [1, 2]},
    {"type": "add", "params": "x=1"},
    {"type": "add", "params": {"x": 1}},
    {"type": "add", "params": {"x": "1", "y": True, "z": 0}},
    {"type": "add", "params": {"x": 2**63, "y": 1.5}},
    {**ADD, "priority": 101},
    {**ADD, "priority": True},
    {**ADD, "priority": None},
    {**ADD, "max_attempts": 0},
    {**ADD, "timeout_seconds": 0},
    {**ADD, "delay_seconds": -1},
    {**ADD, "queue": "Not A Queue"},
    {**ADD, "queue": "ok\n"},
    {**ADD, "retries": 3, "also": None},
    {**ADD, "depends_on": ID},
    {**ADD, "depends_on": None},
    {**ADD, "depends_on": {"id": ID}},
    {**ADD, "depends_on": [ID, ID, ID, "nope"]},
    {**ADD, "depends_on": [ID, None, 3, ID.replace("-", "")]},
    {**ADD, "depends_on": ["{" + ID + "}", "urn:uuid:" + ID]},
    {**ADD, "depends_on": [ID] * (MAX_DEPENDENCIES + 1)},
    {"type": "checked", "params": {"low": 5, "high": 2}},
    {"type": "checked", "params": {"low": 5, "high": 20}},
    {"type": "checked", "params": "no"},
    {"type": "tagged", "params": {"Label": 3, "inner": {"x": "a"}}},
    {"type": "tagged", "params": {"inner": None}},
    {**ADD, "callback_url": None},
    {**ADD, "callback_url": 3},
    {**ADD, "callback_url": ["https://hooks.example.com/"]},
    {**ADD, "callback_url": "hooks.example.com/taskapi"},
    {**ADD, "callback_url": "ftp://hooks.example.com/"},
    {**ADD, "callback_url": "https://elsewhere.example.com/"},
    {**ADD, "callback_url": "http://127.0.0.1:8081/"},
    {**ADD, "callback_url": "https://u:p@hooks.example.com/"},
    {**ADD, "callback_url": "https://hooks.example.com/a b"},
    {**ADD, "callback_url": "https://hooks.example.com/" + "x" * MAX_CALLBACK_URL_LENGTH},
    {**ADD, "priority": 101, "callback_url": "https://elsewhere.example.com/"},
]


def marshmallow_load(body: Any) -> tuple[Any, Any]:
    """What marshmallow's own load of BatchCreate's fields answers: (data, messages)."""
    try:
        return Schema.load(BATCH_CREATE(), body), None
    except ValidationError as error:
        return None, error.messages


def fast_load(body: Any) -> tuple[Any, Any]:
    try:
        return BATCH_CREATE().load(body), None
    except ValidationError as error:
        return None, error.messages


MIXED = [item for pair in zip(VALID_ITEMS, INVALID_ITEMS, strict=False) for item in pair]
ONE_BAD = [ADD] * 500 + [{"type": "add", "params": {"x": 1}}] + [ADD] * 499
BODIES = {
    "every valid item": {"tasks": VALID_ITEMS},
    "one item": {"tasks": [ADD]},
    "the largest batch": {"tasks": [ADD] * MAX_BATCH_SIZE},
    **{
        f"invalid item {i}: {item!r:.60}": {"tasks": [ADD, item, ADD]}
        for i, item in enumerate(INVALID_ITEMS)
    },
    "every invalid item": {"tasks": INVALID_ITEMS},
    "valid and invalid mixed": {"tasks": MIXED},
    "a bad item among a thousand": {"tasks": ONE_BAD},
    "empty": {"tasks": []},
    "too many": {"tasks": [ADD] * (MAX_BATCH_SIZE + 1)},
    "no tasks": {},
    "null tasks": {"tasks": None},
    "tasks as an object": {"tasks": {"0": ADD}},
    "tasks as a string": {"tasks": "add"},
    "an unknown field": {"tasks": [ADD], "name": "nightly"},
    "an unknown field and no tasks": {"wait": 1},
    "not an object": [ADD],
    "null": None,
}


@pytest.mark.parametrize("body", BODIES.values(), ids=BODIES.keys())
def test_batch_create_loads_as_marshmallow_does(body: Any) -> None:
    assert fast_load(body) == marshmallow_load(body)


def test_errors_are_keyed_by_item_then_field() -> None:
    _, messages = fast_load(
        {"tasks": [ADD, ADD, ADD, {"type": "add", "params": {"x": 1, "y": "2"}}]}
    )
    assert messages == {"tasks": {3: {"params": {"y": ["Not a valid integer."]}}}}
    _, messages = fast_load({"tasks": [{**ADD, "depends_on": [ID, ID, ID, "x"]}]})
    assert list(messages["tasks"][0]["depends_on"]) == [3]


def test_depends_on_keeps_the_first_of_each_id_in_order_and_in_lower_case() -> None:
    data, _ = fast_load({"tasks": [{**ADD, "depends_on": [OTHER, ID, OTHER.lower(), ID]}]})
    assert data["tasks"][0]["depends_on"] == [OTHER.lower(), ID]


def test_an_item_without_depends_on_loads_without_it() -> None:
    """A submit without dependencies has the body (and Idempotency-Key fingerprint) it had."""
    data, _ = fast_load({"tasks": [ADD]})
    assert data == {"tasks": [{"type": "add", "params": {"x": 1, "y": 2, "delay_seconds": 0},
                               "delay_seconds": 0, "priority": 0}]}  # fmt: skip


T0 = datetime(2026, 11, 24, 12, 0, 0, 123456, tzinfo=UTC)
IDS = tuple(str(uuid.UUID(int=i)) for i in range(1, 4))
BATCHES = {
    "running": Batch(
        id=ID,
        owner="",
        task_ids=IDS,
        counts={Status.QUEUED: 1, Status.RUNNING: 1, Status.SUCCEEDED: 1,
                Status.FAILED: 0, Status.CANCELLED: 0},
        created_at=T0,
        finished_at=None,
        members_version=7,
    ),
    "done, one task gone": Batch(
        id=ID,
        owner="alice",
        task_ids=IDS,
        counts={Status.QUEUED: 0, Status.RUNNING: 0, Status.SUCCEEDED: 1,
                Status.FAILED: 1, Status.CANCELLED: 0},
        created_at=T0,
        finished_at=T0 + timedelta(seconds=1),
        members_version=12,
    ),
}  # fmt: skip


@pytest.mark.parametrize("batch", BATCHES.values(), ids=BATCHES.keys())
def test_the_batch_dump_equals_marshmallows_dump_of_its_fields(batch: Batch) -> None:
    document = BatchSchema().dump(batch)
    assert document == Schema.dump(BatchSchema(), batch)
    assert list(document) == sorted(BatchSchema().fields) or set(document) == set(
        BatchSchema().fields
    )
    assert document["done"] is (batch.counts[Status.QUEUED] + batch.counts[Status.RUNNING] == 0)
    assert document["size"] == 3 and document["task_ids"] == list(IDS)
