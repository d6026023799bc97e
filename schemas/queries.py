"""Query strings of the listing."""

from __future__ import annotations

from collections.abc import Iterable

from marshmallow import Schema, fields, validate

from api.models import Status


def make_list_query(type_names: Iterable[str]) -> type[Schema]:
    """The filters of ``GET /tasks`` for the registered task types."""
    attrs = {
        "status": fields.List(
            fields.String(validate=validate.OneOf([s.value for s in Status])),
            metadata={"description": "Only tasks in these statuses (repeat to give several)."},
        ),
        "type": fields.String(
            validate=validate.OneOf(sorted(type_names)),
            metadata={"description": "Only tasks of this type."},
        ),
        "__doc__": "Filters of the task list.",
    }
    return type("TaskListQuery", (Schema,), attrs)
