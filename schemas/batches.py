"""BatchCreate, the body of ``POST /batches``, and Batch, a batch as read.

``BatchCreate`` is ``{tasks: [TaskCreate, …]}`` (1..1000 items), documented by its fields as any
schema is. Its ``load`` gives what marshmallow's own load of those fields gives, data and error
messages alike, in a fraction of the time: marshmallow spends most of a ``List(Nested(oneOf))``
load on the machinery around each item (a ``Schema.load`` per item, then one per params), not on
the checks. ``ItemsLoader`` groups the items by ``type``, runs each item's options through the
type's own field objects (their validators, their messages) and loads the params of a whole
group with one ``many=True`` load of the type's params schema. A schema with hooks (``pre_load``,
``validates_schema``, …), which that shortcut would call differently, is loaded item by item by
marshmallow itself. tests/test_batch_schemas.py holds the two loads equal.

A batch's errors are keyed by item: ``tasks.3.params.x`` once flattened (``api.errors``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, missing, validate
from marshmallow.utils import is_collection

from api.models import MAX_BATCH_SIZE, Batch, Status
from schemas.tasks import OneOfSchema, UTCDateTime, utc_text

_TASKS = (
    f"The tasks (1..{MAX_BATCH_SIZE}), each a `POST /tasks` body: created all in one "
    "transaction, or none. An invalid item is refused (422) with its errors keyed "
    "`tasks.<index>.<field>` (`tasks.3.params.x`). Its tasks may depend (`depends_on`) on "
    "tasks that exist already, not on each other."
)
#: Messages and their keys: {item index: {field: messages}}.
ItemErrors = dict[int, Any]


def _batchable(field: fields.Field) -> bool:
    """Whether a field's values can be loaded for many items at once: a plain ``Nested`` (one
    object, nothing run on its output)."""
    return (
        isinstance(field, fields.Nested)
        and not field.many
        and not field.validators
        and not field.pre_load
        and not field.post_load
        and not field.schema.many
    )


class VariantLoader:
    """Loads many items with one schema, each as ``schema.load`` would.

    An item's fields absent from it get their ``load_default`` (or their "required" message)
    without a call; a present one goes through ``field.deserialize``, its own checks and
    messages; the objects of a ``Nested`` field are loaded together, by a loader of their
    schema. The fields of ``checked`` were checked already (the discriminator that chose this
    schema): their values are taken as they are. A schema whose hooks would see the whole item,
    or that does not refuse unknown fields, is loaded item by item by marshmallow.
    """

    def __init__(
        self, schema: Schema, *, unknown: str | None = None, checked: Collection[str] = ()
    ) -> None:
        self.schema = schema
        self.unknown = unknown
        #: Per key in the data: its key in the result, its field, and the loader of its
        #: objects when they are loaded together.
        self.by_key: dict[str, tuple[str, fields.Field, VariantLoader | None]] = {}
        #: What an item without the field gets: a value, a value made by a call, a message.
        self.defaults: dict[str, Any] = {}
        self.made: dict[str, tuple[str, Callable[[], Any]]] = {}
        self.required: dict[str, Any] = {}
        for name, field in schema.load_fields.items():
            key, attribute = field.data_key or name, field.attribute or name
            nested = _nested_loader(field) if _batchable(field) else None
            self.by_key[key] = (attribute, field, nested)
            default = field.load_default
            if field.required:
                self.required[key] = field.error_messages["required"]
            elif callable(default):
                self.made[key] = (attribute, default)
            elif default is not missing:
                self.defaults[attribute] = default
        self.checked = frozenset(checked) & self.by_key.keys()
        self.type_message = schema.error_messages["type"]
        self.unknown_message = schema.error_messages["unknown"]
        self.shortcut = (
            not any(schema._hooks.values())
            and (unknown or schema.opts.unknown) == RAISE
            and schema.opts.index_errors
            and not any("." in attribute for attribute, _, _ in self.by_key.values())
        )

    def load(self, items: Sequence[Any]) -> tuple[list[dict[str, Any]], ItemErrors]:
        """Each item loaded, and the messages of those refused, by position in ``items``."""
        if not self.shortcut:
            return self._load_each(items)
        errors: ItemErrors = {}
        results: list[dict[str, Any]] = []
        #: Per nested field: its key, and the positions and values of the objects it got.
        later: dict[str, tuple[list[int], list[Any]]] = {}
        by_key, checked, required, made = self.by_key, self.checked, self.required, self.made
        required_keys = frozenset(required)
        for position, item in enumerate(items):
            result = dict(self.defaults)
            results.append(result)
            if type(item) is not dict and not isinstance(item, Mapping):
                errors[position] = {"_schema": [self.type_message]}
                continue
            refused: dict[str, Any] = {}
            for key, value in item.items():
                known = by_key.get(key)
                if known is None:
                    refused[key] = [self.unknown_message]
                    continue
                attribute, field, nested = known
                if key in checked:
                    result[attribute] = value
                elif nested is not None and value is not None:
                    positions, values = later.setdefault(key, ([], []))
                    positions.append(position)
                    values.append(value)
                else:
                    try:
                        loaded = field.deserialize(value, key, item)
                    except ValidationError as error:
                        refused[key] = error.messages
                        continue
                    if loaded is not missing:
                        result[attribute] = loaded
            if not required_keys <= item.keys():
                for key in required_keys - item.keys():
                    refused[key] = [required[key]]
            if made:
                for key in made.keys() - item.keys():
                    attribute, make = made[key]
                    result[attribute] = make()
            if refused:
                errors[position] = refused
        for key, (positions, values) in later.items():
            attribute, _, nested = by_key[key]
            assert nested is not None
            loaded_values, refused_values = nested.load(values)
            for index, messages in refused_values.items():
                errors.setdefault(positions[index], {})[key] = messages
            for position, loaded in zip(positions, loaded_values, strict=True):
                results[position][attribute] = loaded
        return results, errors

    def _load_each(self, items: Sequence[Any]) -> tuple[list[Any], ItemErrors]:
        """``schema.load`` of each item, as marshmallow does it."""
        results: list[Any] = []
        errors: ItemErrors = {}
        for index, item in enumerate(items):
            try:
                results.append(self.schema.load(item, unknown=self.unknown))  # type: ignore[arg-type]
            except ValidationError as error:
                errors[index] = error.messages
                results.append(None)
        return results, errors


def _nested_loader(field: fields.Field) -> VariantLoader:
    assert isinstance(field, fields.Nested)
    return VariantLoader(field.schema, unknown=field.unknown)


class ItemsLoader:
    """Loads a batch's items, the values of a ``Nested`` field of a ``OneOfSchema``: grouped
    by variant, a group at a time."""

    def __init__(self, items: fields.Nested) -> None:
        one_of = items.schema
        assert isinstance(one_of, OneOfSchema)
        self.items = items
        self.one_of = one_of
        self.loaders: dict[int, VariantLoader] = {}

    def load(self, items: Sequence[Any]) -> tuple[list[dict[str, Any]], ItemErrors]:
        groups: dict[int, tuple[Schema, list[int]]] = {}
        errors: ItemErrors = {}
        results: list[Any] = [None] * len(items)  # all filled unless some item is refused
        for index, item in enumerate(items):
            try:
                if item is None:  # the field's answer (it takes no null)
                    results[index] = self.items.deserialize(item)
                    continue
                variant = self.one_of.variant_for(item)
            except ValidationError as error:
                errors[index] = error.messages
                continue
            groups.setdefault(id(variant), (variant, []))[1].append(index)
        for key, (variant, indexes) in groups.items():
            loader = self.loaders.get(key)
            if loader is None:
                checked = (self.one_of.DISCRIMINATOR,)
                loader = self.loaders[key] = VariantLoader(variant, checked=checked)
            loaded, refused = loader.load([items[index] for index in indexes])
            for position, messages in refused.items():
                errors[indexes[position]] = messages
            if not refused:
                for index, result in zip(indexes, loaded, strict=True):
                    results[index] = result
        return results, dict(sorted(errors.items()))


class BatchCreateBase(Schema):
    """Tasks submitted together, created all of them or none (`POST /batches`)."""

    class Meta:
        unknown = RAISE

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        tasks = self.fields["tasks"]
        assert isinstance(tasks, fields.List) and isinstance(tasks.inner, fields.Nested)
        self._tasks = tasks
        self._items = ItemsLoader(tasks.inner)
        (self._length,) = (v for v in tasks.validators if isinstance(v, validate.Length))

    def load(self, data: Any, *, many: bool | None = None, **kwargs: Any) -> Any:
        """What marshmallow's load of this schema answers (see the module's docstring); a
        batch of the wrong size is refused without looking at its items."""
        if many or kwargs.get("partial") or kwargs.get("unknown") not in (None, RAISE):
            return super().load(data, many=many, **kwargs)
        if not isinstance(data, Mapping):
            raise ValidationError({"_schema": [self.error_messages["type"]]})
        errors: dict[str, Any] = {
            key: [self.error_messages["unknown"]] for key in data.keys() - {"tasks"}
        }
        result: dict[str, Any] = {}
        items = data.get("tasks", missing)
        try:
            if items is missing or items is None or not is_collection(items):
                self._tasks.deserialize(items)  # raises: required, null or not a list
            self._length(items)
        except ValidationError as error:
            errors["tasks"] = error.messages
        else:
            loaded, refused = self._items.load(items)
            if refused:
                errors["tasks"] = refused
            result["tasks"] = loaded
        if errors:
            raise ValidationError(errors)
        return result


def make_batch_create(task_create: type[OneOfSchema]) -> type[Schema]:
    """``BatchCreate`` over ``task_create`` (the very class ``POST /tasks`` takes, so that the
    spec refers to one ``TaskCreate``)."""
    tasks = fields.List(
        fields.Nested(task_create),
        required=True,
        validate=validate.Length(min=1, max=MAX_BATCH_SIZE),
        metadata={"description": _TASKS},
    )
    return type("BatchCreate", (BatchCreateBase,), {"tasks": tasks, "__doc__": _BATCH_CREATE})


_BATCH_CREATE = BatchCreateBase.__doc__


def _count(status: str) -> fields.Integer:
    return fields.Integer(
        required=True, validate=validate.Range(min=0), metadata={"description": f"Tasks {status}."}
    )


class BatchCountsSchema(Schema):
    """How many of the batch's tasks are in each status (deleted and expired ones gone)."""

    queued = _count("waiting to run (delayed, blocked by their dependencies, or ready)")
    running = _count("running now")
    succeeded = _count("that succeeded")
    failed = _count("that failed")
    cancelled = _count("cancelled (asked for, or a dependency did not succeed)")


class BatchSchema(Schema):
    """A batch: its tasks, where they are, and whether every one has ended."""

    id = fields.UUID(required=True, metadata={"description": "The batch's id."})
    size = fields.Integer(
        required=True,
        validate=validate.Range(min=1, max=MAX_BATCH_SIZE),
        metadata={"description": "How many tasks it was submitted with."},
    )
    task_ids = fields.List(
        fields.UUID(),
        required=True,
        metadata={
            "description": "Its tasks' ids, in the order given (also those deleted or expired "
            "since); `GET /tasks?batch={id}` lists the tasks."
        },
    )
    counts = fields.Nested(
        BatchCountsSchema, required=True, metadata={"description": "Its tasks by status."}
    )
    done = fields.Boolean(
        required=True,
        metadata={
            "description": "Whether every one of its tasks has ended (none queued or running)."
        },
    )
    created_at = UTCDateTime(required=True, metadata={"description": "When it was submitted."})
    finished_at = UTCDateTime(
        required=True,
        allow_none=True,
        metadata={"description": "When its last task ended, once every one has; else null."},
    )

    def dump(self, obj: Any, *, many: bool | None = None) -> Any:
        """What marshmallow's dump makes of the fields above, built directly (1 000 ids
        through ``List(UUID)`` cost a millisecond); tests/test_batch_schemas.py holds the two
        equal."""
        if self.many if many is None else many:
            return [batch_document(batch) for batch in obj]
        return batch_document(obj)


def batch_document(batch: Batch) -> dict[str, Any]:
    """A batch as clients read it (``Batch``)."""
    counts = batch.counts
    return {
        "id": batch.id,
        "size": batch.size,
        "task_ids": list(batch.task_ids),
        "counts": {status.value: counts.get(status, 0) for status in Status},
        "done": batch.done,
        "created_at": utc_text(batch.created_at),
        "finished_at": utc_text(batch.finished_at),
    }
