"""Problem documents (RFC 9457): every refusal of the API is made here.

The service's exceptions (``api/exceptions.py``) know nothing of HTTP; each is given its
status, headers and ``errors`` member here, in one table.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

import orjson
from flask import Response, current_app, request
from werkzeug.exceptions import HTTPException

from api import exceptions as ex
from api.json import shallow

PROBLEM_MIME = "application/problem+json"

_DEFAULT_DETAILS = {
    400: "The request could not be read.",
    404: "Nothing is served at this URL. See /docs for the operations of this API.",
    405: "This URL does not take this method; the Allow header lists the ones it takes.",
    415: "Send the request body as JSON, with Content-Type: application/json.",
    422: "Some fields of the request are invalid; `errors` says which and why.",
    500: "The service failed to handle this request. It has been logged; try again later.",
}


def problem(
    status: int,
    detail: str | None = None,
    *,
    errors: Mapping[str, Mapping[str, list[str]]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A problem response for ``status``, with a detail saying what was wrong."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail or _default_detail(status),
    }
    if errors is not None:
        body["errors"] = errors
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_MIME)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _default_detail(status: int) -> str:
    if status == 413:
        # The limit itself, not only the setting's name: a client can tell how far to cut.
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        if limit is not None:
            return (
                f"The request body is over the limit of {limit} bytes (TASKS_MAX_BODY_BYTES); "
                "send a smaller one."
            )
        return "The request body is larger than this service accepts (TASKS_MAX_BODY_BYTES)."
    return _DEFAULT_DETAILS.get(status, HTTPStatus(status).description)


def flatten_messages(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """Marshmallow's nested messages as ``{"params.x": ["..."]}``."""
    flat: dict[str, list[str]] = {}
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            for field, texts in flatten_messages(value, name).items():
                flat.setdefault(field, []).extend(texts)
    elif isinstance(messages, list | tuple):
        texts = [m for m in messages if isinstance(m, str)]
        if texts:
            flat[prefix or "_schema"] = texts
        for item in messages:
            if not isinstance(item, str):
                flat.update(flatten_messages(item, prefix))
    else:
        flat[prefix or "_schema"] = [str(messages)]
    return flat


def from_http_exception(error: HTTPException) -> Response:
    """Turn any HTTP error (Werkzeug's, webargs', ``abort``'s) into a problem."""
    status = error.code or 500
    headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
    data = getattr(error, "data", None) or {}
    headers.update(data.get("headers") or {})
    messages = data.get("messages")
    if status == 422 and messages is not None:
        errors = {location: flatten_messages(fields) for location, fields in messages.items()}
        return problem(422, data.get("message"), errors=errors, headers=headers)
    # An unexpected error (500) says nothing of its cause; its traceback goes to the log.
    detail = data.get("message") if status != 500 else None
    return problem(status, detail, headers=headers)


#: The status of each refusal of the service (its nearest class here, by inheritance).
SERVICE_STATUSES: dict[type[ex.ServiceError], int] = {
    ex.ServiceError: 400,
    ex.TaskNotFound: 404,
    ex.BatchNotFound: 404,
    ex.DependenciesNotFound: 422,
    ex.QueueNotFound: 404,
    ex.ScheduleNotFound: 404,
    ex.NotAScheduleName: 422,
    ex.ScheduleTypeUnknown: 409,
    ex.NotAnAdmin: 403,
    ex.TaskConflict: 409,
    ex.KeyReused: 422,
    ex.QueueFullError: 503,
}
#: The ``errors`` member of the refusals that name a field of the request.
SERVICE_FIELD_ERRORS: dict[type[ex.ServiceError], dict[str, dict[str, list[str]]]] = {
    ex.KeyReused: {"headers": {"Idempotency-Key": ["Already used with a different body."]}},
    ex.NotAScheduleName: {
        "path": {
            "name": [
                "Not a schedule name: 1 to 63 lower-case letters, digits, '_', '.' or '-', "
                "starting with a letter or a digit."
            ]
        }
    },
}


def dependency_errors(error: ex.DependenciesNotFound) -> dict[str, dict[str, list[str]]]:
    """The ``errors`` of ``depends_on`` naming tasks that are not the caller's: each id, under
    ``depends_on`` (``tasks.<index>.depends_on`` in a batch)."""
    fields: dict[str, list[str]] = {}
    for index, ids in sorted(error.missing.items()):
        name = f"tasks.{index}.depends_on" if error.in_batch else "depends_on"
        fields[name] = [
            f"{task_id}: no task of yours has this id (unknown, another caller's, deleted or "
            "expired)."
            for task_id in ids
        ]
    return {"json": fields}


def from_service_error(error: ex.ServiceError) -> Response:
    """The problem a refusal of the service answers with."""
    kind = type(error)
    status = next(SERVICE_STATUSES[k] for k in kind.__mro__ if k in SERVICE_STATUSES)
    headers = {} if error.retry_after is None else {"Retry-After": str(error.retry_after)}
    errors = (
        dependency_errors(error)
        if isinstance(error, ex.DependenciesNotFound)
        else SERVICE_FIELD_ERRORS.get(kind)
    )
    return problem(status, error.detail, errors=errors, headers=headers)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def require_json_body(view: Callable[..., Any]) -> Callable[..., Any]:
    """Refuse a body that is not JSON (415) or not well-formed JSON (400) before parsing.

    Runs ahead of webargs so that junk never reaches it: webargs would answer a text body as
    "missing data" (422) and let a too-deep or too-long-number document escape as a 500.
    """

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not request.is_json:
            return problem(
                415,
                f"This operation takes a JSON body with Content-Type: application/json; "
                f"got {request.mimetype or 'no Content-Type'}.",
            )
        body = request.get_data(cache=True)
        if _cut_at_the_limit(body):
            return problem(413)
        if not body.strip():
            return problem(400, "The request body is empty; send a JSON object.")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return problem(400, f"The body is not UTF-8: {exc.reason} at byte {exc.start}.")
        try:
            _check_json(text)
        except RecursionError:
            return problem(400, "The JSON body is nested too deeply.")
        except ValueError as exc:
            return problem(400, f"The body is not valid JSON: {_short(str(exc))}")
        return view(*args, **kwargs)

    return wrapper


def _check_json(text: str) -> None:
    """Raise ValueError (or RecursionError) when ``text`` is not one JSON document.

    orjson answers for most bodies, in a tenth of the time; what it refuses, ``json`` reads
    again, to accept what it accepts (an integer beyond 64 bits) and to say what is wrong in
    its words; a body with many brackets goes to ``json`` alone (api.json.shallow).
    """
    if shallow(text):
        try:
            orjson.loads(text)
            return
        except orjson.JSONDecodeError:
            pass
    json.loads(text, parse_constant=_reject_constant)


def _cut_at_the_limit(body: bytes) -> bool:
    """Whether a body sent without Content-Length went on past the size limit.

    Werkzeug refuses a declared length over the limit (413) but stops reading an undeclared
    one at the limit without a word, so the rest would silently be dropped.
    """
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if request.content_length is not None or limit is None or len(body) < limit:
        return False
    return bool(request.environ["wsgi.input"].read(1))


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
