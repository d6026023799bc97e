"""The flask-smorest ``Api`` of the service: problem errors, a spec with ``oneOf`` bodies, and
the views it documents (``init_app``)."""

from __future__ import annotations

import copy
import inspect
from http import HTTPStatus
from typing import Any

from apispec import BasePlugin
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.common import (
    make_schema_key,
    resolve_schema_cls,
    resolve_schema_instance,
)
from flask import Flask
from flask_smorest import Api
from flask_smorest.pagination import PaginationMetadataSchema
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Rule

from api import errors
from api.callbacks.hosts import CallbackHosts
from api.exceptions import ServiceError
from api.http.access import OPEN_ENDPOINTS
from api.registry import Registry
from schemas.batches import make_batch_create
from schemas.fields import AnyOf
from schemas.problems import ProblemSchema, ValidationProblemSchema
from schemas.tasks import CallbackEventSchema, OneOfSchema

OPENAPI_VERSION = "3.1.0"
BEARER = "bearerAuth"


def _signature_header(name: str, description: str, example: str) -> dict[str, Any]:
    return {
        "in": "header",
        "name": name,
        "required": True,
        "description": description,
        "schema": {"type": "string"},
        "example": example,
    }


#: The request the service makes to a task's ``callback_url`` when the task ends. apispec has
#: no verb for OpenAPI 3.1's ``webhooks``; it merges the spec's options into the document as
#: they are, and the event refers to its component (``CallbackEvent``, registered by
#: ``init_app``).
TASK_ENDED_WEBHOOK: dict[str, Any] = {
    "post": {
        "operationId": "taskEnded",
        "tags": ["tasks"],
        "summary": "A task ended (sent to its callback_url)",
        "description": "When a task submitted with a `callback_url` ends (succeeded, failed "
        "or cancelled), the service `POST`s this event to that URL, signed as the Standard "
        "Webhooks specification says: `webhook-signature` is `v1,` and the base64 HMAC-SHA256 "
        'of `"{webhook-id}.{webhook-timestamp}.{body}"`, keyed with the base64 part of '
        "TASKS_WEBHOOK_SECRET after `whsec_` (several, space-separated, while the secret is "
        "rotated). Check it, and drop events whose `webhook-id` you already handled: delivery "
        "is at least once. Any answer but a 2xx is tried again with backoff for more than 24 "
        "hours; redirects are not followed. The task's `callback` shows how it goes; "
        "`POST /tasks/{task_id}/callback/retry` sends it again.",
        "security": [],
        "parameters": [
            _signature_header(
                "webhook-id",
                "The event's id, `msg_<task id>`: the same on every attempt.",
                "msg_0b9f7d2e-8c1a-4f43-9d8e-5c2b1a7e6f10",
            ),
            _signature_header(
                "webhook-timestamp",
                "When this attempt was signed, in seconds since 1970-01-01 UTC; refuse one "
                "too far from your clock (a replay).",
                "1795559487",
            ),
            _signature_header(
                "webhook-signature",
                "`v1,<base64 HMAC-SHA256>` per key of TASKS_WEBHOOK_SECRET, space-separated.",
                "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
            ),
        ],
        "requestBody": {
            "required": True,
            "description": "The event: how the task ended, when, and the task.",
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/CallbackEvent"}}
            },
        },
        "responses": {
            "2XX": {"description": "Delivered: the event is not sent again unless asked."},
            "410": {"description": "Gone: the delivery fails at once, not tried again."},
            "default": {
                "description": "Any other answer, or none within 10 seconds: tried again "
                "later (after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h), then failed."
            },
        },
    }
}

#: What the spec says of the API as a whole, besides its title and version.
API_SPEC_OPTIONS: dict[str, Any] = {
    "info": {
        "description": "Background tasks for Flask: submit a task, let a worker run it, "
        "poll its status and result. Errors are RFC 9457 problems.",
        "license": {"name": "MIT", "identifier": "MIT"},
        "contact": {"name": "taskapi maintainers"},
    },
    # The API is served at the root of the host that serves the spec.
    "servers": [{"url": "/", "description": "The server that serves this document."}],
    "webhooks": {"taskEnded": TASK_ENDED_WEBHOOK},
}
_RETRY_AFTER = {
    "description": "Seconds to wait before trying again.",
    "schema": {"type": "integer", "minimum": 0},
}
#: Headers of the problem responses that carry some.
ERROR_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": 'The scheme to use: `Bearer realm="taskapi"`, with `error` when the '
            "token was malformed or wrong.",
            "schema": {"type": "string"},
        }
    },
    429: {
        "Retry-After": _RETRY_AFTER,
        "RateLimit": {
            "description": 'What is left of the quota: `"default";r=<remaining>;t=<seconds>`.',
            "schema": {"type": "string"},
        },
        "RateLimit-Policy": {
            "description": 'The quota: `"default";q=<requests>;w=<seconds>`.',
            "schema": {"type": "string"},
        },
    },
}

#: flask-smorest's pagination query parameters carry no description of their own.
PAGINATION_PARAMETER_DESCRIPTIONS = {
    "page": "The page to answer, counting from 1.",
    "page_size": "How many items a page holds.",
}


def schema_description(schema_cls: Any) -> str | None:
    """The first paragraph of a schema class's docstring, as one line of Markdown."""
    doc = getattr(schema_cls, "__doc__", None) if isinstance(schema_cls, type) else None
    if not doc:
        return None
    first = inspect.cleandoc(doc).split("\n\n")[0]
    return " ".join(first.split()).replace("``", "`")


def _describe_pagination_parameter(self: Any, field: Any, ret: dict[str, Any], **_: Any) -> dict:
    """A parameter attribute function: describe ``page`` and ``page_size``."""
    name = ret.get("name")
    if ret.get("in") == "query" and "description" not in ret and name:
        text = PAGINATION_PARAMETER_DESCRIPTIONS.get(name)
        if text:
            return {"description": text}
    return {}


def _any_of(converter: Any, field: Any, ret: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """A ``schemas.fields.AnyOf`` field: ``anyOf`` references to its schemas' components."""
    if not isinstance(field, AnyOf):
        return {}
    return {"anyOf": [converter.resolve_nested_schema(schema) for schema in field.schemas]}


class OneOfMarshmallowPlugin(MarshmallowPlugin):
    """Renders a ``schemas.tasks.OneOfSchema`` as ``oneOf`` its variants with a discriminator.

    apispec has no marshmallow spelling for ``oneOf`` (apispec issue 1012); every other schema
    is converted as usual. Every component gets a description: the first paragraph of its
    class's docstring (apispec reads only ``Meta.description``, and setting that drops
    ``additionalProperties: false``), and what its class's ``SPEC_EXTRA`` adds (JSON Schema
    that marshmallow cannot say, like "exactly one of two fields").
    """

    # MarshmallowPlugin's own signature differs from BasePlugin's; we keep MarshmallowPlugin's.
    def schema_helper(  # type: ignore[override]
        self, name: Any, _: Any, schema: Any = None, **kwargs: Any
    ) -> Any:
        cls = resolve_schema_cls(schema) if schema is not None else None
        if not (isinstance(cls, type) and issubclass(cls, OneOfSchema) and cls.VARIANTS):
            result = super().schema_helper(name, _, schema=schema, **kwargs)
            description = schema_description(cls)
            if result is not None and description and "description" not in (_ or {}):
                result.setdefault("description", description)
            extra = getattr(cls, "SPEC_EXTRA", None)
            if result is not None and extra:
                result.update(copy.deepcopy(extra))
            return result
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

    def _init_spec(self, **kwargs: Any) -> None:
        super()._init_spec(**kwargs)
        self.spec.components.security_scheme(
            BEARER,
            {
                "type": "http",
                "scheme": "bearer",
                "description": "An API key of TASKS_API_KEYS, sent as `Authorization: Bearer "
                "<token>`. Needed only when the service runs with keys.",
            },
        )
        converter = self.ma_plugin.converter
        assert converter is not None
        converter.add_parameter_attribute_function(_describe_pagination_parameter)
        converter.add_attribute_function(_any_of)

    def handle_http_exception(self, error: HTTPException) -> Any:
        return errors.from_http_exception(error)

    def _register_pagination_header(self) -> None:
        # The header carries JSON; flask-smorest documents it as a bare object schema, which
        # OpenAPI reads as the simple style (k,v,k,v). Say it is JSON content instead.
        self.spec.components.schema(
            "PaginationMetadata",
            {"description": "Where a page lies in the listing: the `X-Pagination` header."},
            schema=PaginationMetadataSchema,
        )
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
            response: dict[str, Any] = {
                "description": status.phrase,
                "content": {errors.PROBLEM_MIME: {"schema": schema}},
            }
            if status in ERROR_HEADERS:
                response["headers"] = ERROR_HEADERS[status]
            self.spec.components.response(status.name, response, lazy=True)


class AccessDocsPlugin(BasePlugin):
    """Says who may call each operation: the bearer scheme, and the 401 and 429 it can meet.

    The bearer requirement is written as optional (``[{bearerAuth: []}, {}]``): one spec
    serves a service run with keys and one run without them. The operations of an endpoint
    of ``OPEN_ENDPOINTS`` (flask-smorest passes each path's URL rule) need no key.
    """

    def operation_helper(
        self,
        path: str | None = None,
        operations: dict[str, Any] | None = None,
        rule: Rule | None = None,
        **kwargs: Any,
    ) -> None:
        is_open = rule is not None and rule.endpoint in OPEN_ENDPOINTS
        for operation in (operations or {}).values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            if is_open:
                operation["security"] = []
                continue
            operation["security"] = [{BEARER: []}, {}]
            responses = operation["responses"]
            for status in (HTTPStatus.UNAUTHORIZED, HTTPStatus.TOO_MANY_REQUESTS):
                if int(status) not in responses and str(int(status)) not in responses:
                    responses[int(status)] = status.name


def make_api() -> TaskApi:
    return TaskApi(
        spec_kwargs={
            "marshmallow_plugin": OneOfMarshmallowPlugin(),
            "extra_plugins": [AccessDocsPlugin()],
        }
    )


def init_app(
    app: Flask, registry: Registry, *, version: str, callback_hosts: CallbackHosts | None = None
) -> TaskApi:
    """Serve the API on ``app``: its spec and Swagger UI, every blueprint, problem errors.

    A ``callback_url`` is checked against ``callback_hosts`` (TASKS_CALLBACK_HOSTS; none:
    callbacks are off); the spec is the same whatever they are."""
    from api.views import (
        activity,
        batches,
        dashboard,
        docs,
        legacy,
        ops,
        queues,
        schedules,
        task_types,
        tasks,
    )
    from api.views.arguments import IdConverter, id_param_schema

    app.config.update(
        API_TITLE="taskapi",
        API_VERSION=version,
        OPENAPI_VERSION=OPENAPI_VERSION,
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL=docs.ASSETS_URL,
        API_SPEC_OPTIONS=copy.deepcopy(API_SPEC_OPTIONS),
    )
    api = make_api()
    api.init_app(app)
    app.url_map.converters["task_id"] = IdConverter
    app.url_map.converters["batch_id"] = IdConverter
    api.register_converter(IdConverter, id_param_schema)
    refusal = (callback_hosts or CallbackHosts()).refusal
    task_create = tasks.make_task_create_schema(registry, refusal)
    api.register_blueprint(tasks.make_blueprint(registry, task_create))
    api.register_blueprint(batches.make_blueprint(make_batch_create(task_create)()))
    api.register_blueprint(task_types.make_blueprint())
    api.register_blueprint(queues.make_blueprint())
    api.register_blueprint(schedules.make_blueprint(registry, refusal))
    api.register_blueprint(ops.blp)
    api.register_blueprint(activity.make_blueprint())
    api.register_blueprint(legacy.blp)
    app.register_blueprint(docs.make_blueprint())
    app.register_blueprint(dashboard.make_blueprint())
    api.spec.components.schema("CallbackEvent", schema=CallbackEventSchema)
    app.register_error_handler(ServiceError, errors.from_service_error)
    converter = api.ma_plugin.converter
    assert converter is not None
    task_types.describe(app, registry, converter)
    return api
