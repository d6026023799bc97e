"""The flask-smorest ``Api`` of the service: problem errors and a spec with ``oneOf`` bodies."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.common import (
    make_schema_key,
    resolve_schema_cls,
    resolve_schema_instance,
)
from flask_smorest import Api
from flask_smorest.pagination import PaginationMetadataSchema
from werkzeug.exceptions import HTTPException

from api import errors
from schemas.problems import ProblemSchema, ValidationProblemSchema
from schemas.tasks import OneOfSchema

OPENAPI_VERSION = "3.1.0"


class OneOfMarshmallowPlugin(MarshmallowPlugin):
    """Renders a ``schemas.tasks.OneOfSchema`` as ``oneOf`` its variants with a discriminator.

    apispec has no marshmallow spelling for ``oneOf`` (apispec issue 1012); every other schema
    is converted as usual.
    """

    # MarshmallowPlugin's own signature differs from BasePlugin's; we keep MarshmallowPlugin's.
    def schema_helper(  # type: ignore[override]
        self, name: Any, _: Any, schema: Any = None, **kwargs: Any
    ) -> Any:
        cls = resolve_schema_cls(schema) if schema is not None else None
        if not (isinstance(cls, type) and issubclass(cls, OneOfSchema) and cls.VARIANTS):
            return super().schema_helper(name, _, schema=schema, **kwargs)
        converter = self.converter
        assert converter is not None
        instance = resolve_schema_instance(schema)
        converter.refs[make_schema_key(instance)] = name
        refs = {tag: converter.resolve_nested_schema(v) for tag, v in sorted(cls.VARIANTS.items())}
        return {
            "description": (cls.__doc__ or "").strip(),
            "oneOf": list(refs.values()),
            "discriminator": {
                "propertyName": cls.DISCRIMINATOR,
                "mapping": {tag: ref["$ref"] for tag, ref in refs.items()},
            },
        }


class TaskApi(Api):
    """flask-smorest's Api, answering every error as an RFC 9457 problem."""

    DEFAULT_ERROR_RESPONSE_NAME = None

    def handle_http_exception(self, error: HTTPException) -> Any:
        return errors.from_http_exception(error)

    def _register_pagination_header(self) -> None:
        # The header carries JSON; flask-smorest documents it as a bare object schema, which
        # OpenAPI reads as the simple style (k,v,k,v). Say it is JSON content instead.
        self.spec.components.header(
            "PAGINATION",
            {
                "description": "Pagination metadata, as JSON.",
                "content": {"application/json": {"schema": PaginationMetadataSchema}},
            },
            lazy=True,
        )

    def _register_responses(self) -> None:
        # flask-smorest documents errors with its own {code, status} schema; ours are problems.
        for status in HTTPStatus:
            if status < 400:
                continue
            schema = ValidationProblemSchema if status == 422 else ProblemSchema
            self.spec.components.response(
                status.name,
                {
                    "description": status.phrase,
                    "content": {errors.PROBLEM_MIME: {"schema": schema}},
                },
                lazy=True,
            )


def make_api() -> TaskApi:
    return TaskApi(spec_kwargs={"marshmallow_plugin": OneOfMarshmallowPlugin()})
