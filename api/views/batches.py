"""``/batches``: submit many tasks in one request, follow them as one, cancel what is left.

A batch belongs to its caller, as its tasks do. A malformed id is answered as an unknown one
(404), as for tasks.
"""

from __future__ import annotations

import hashlib
from typing import Any

from flask import Response, url_for
from flask.views import MethodView
from marshmallow import Schema
from werkzeug.http import parse_etags, quote_etag

from api.errors import PROBLEM_MIME, require_json_body
from api.http.access import caller
from api.models import Batch, Status
from api.runtime import current
from api.views.arguments import Blueprint, id_link
from api.views.examples import BATCH_CREATE_EXAMPLES, BATCH_EXAMPLE, BATCH_QUEUED_EXAMPLE
from api.views.headers import RETRY_AFTER_HEADER, queue_full_response
from schemas.batches import BatchSchema
from schemas.problems import ProblemSchema
from schemas.queries import BatchReadHeaders, BatchReadQuery, BatchSubmitHeaders

#: The answer of an operation whose body is one batch, and the headers it sends with it.
Answer = tuple[Batch, int, dict[str, str]]

BATCH_LOCATION = {
    "Location": {"description": "The URL of the batch.", "schema": {"type": "string"}}
}
BATCH_ETAG = {
    "ETag": {
        "description": "Changes whenever one of its tasks does; send it in `If-None-Match`.",
        "schema": {"type": "string"},
    }
}
NOT_FOUND: dict[str, Any] = {
    "schema": ProblemSchema,
    "content_type": PROBLEM_MIME,
    "description": "The caller has no batch with this id (or every task of it was deleted or "
    "has expired).",
}


BATCH_ID_PARAMETER = {
    "in": "path",
    "name": "batch_id",
    "description": "The batch's id, as `POST /batches` answered it.",
}


def _batch_link(operation_id: str, description: str) -> dict[str, Any]:
    return id_link(operation_id, "batch_id", description)


#: OpenAPI links from a batch to its tasks (schemathesis's stateful phase follows them).
TASKS_LINK = {
    "ListBatchTasks": {
        "operationId": "listTasks",
        "parameters": {"batch": "$response.body#/id"},
        "description": "The batch's tasks: `GET /tasks?batch={id}`.",
    }
}
#: ... and from a batch just created to what can be done with it.
CREATED_LINKS = {
    "GetBatch": _batch_link("getBatch", "Read the batch: `GET /batches/{batch_id}`."),
    "CancelBatch": _batch_link(
        "cancelBatch", "Cancel what is left of it: `POST /batches/{batch_id}/cancel`."
    ),
    **TASKS_LINK,
}


def etag(batch: Batch) -> str:
    """What changes whenever one of the batch's tasks does (``members_version``), is deleted
    or expires (``counts``), and when the batch is done (``finished_at``)."""
    counts = ".".join(str(batch.counts.get(status, 0)) for status in Status)
    finished = "" if batch.finished_at is None else batch.finished_at.isoformat()
    state = f"{batch.id}/{batch.members_version}/{counts}/{finished}"
    return hashlib.blake2b(state.encode(), digest_size=12).hexdigest()


def read_headers(batch: Batch, tag: str) -> dict[str, str]:
    """The headers of a batch read: its ETag, and when to ask again while it is not done."""
    headers = {"ETag": quote_etag(tag)}
    if not batch.done:
        headers["Retry-After"] = "1"
    return headers


def unchanged(tag: str, if_none_match: str | None) -> Response | None:
    """A 304 when ``If-None-Match`` names the batch's current ETag; else None."""
    if if_none_match is None or not parse_etags(if_none_match).contains_weak(tag):
        return None
    response = Response(status=304)
    del response.headers["Content-Type"]
    response.set_etag(tag)
    return response


def make_blueprint(batch_create: Schema) -> Blueprint:
    """The batches blueprint; ``batch_create`` is made of the same TaskCreate as ``/tasks``."""
    blp = Blueprint(
        "batches",
        __name__,
        url_prefix="/batches",
        description="Batches: up to 1000 tasks submitted in one request and one transaction "
        "(all of them or none), followed and cancelled as one.",
    )
    _route_collection(blp, batch_create)
    _route_item(blp)
    _route_cancel(blp)
    return blp


def _route_collection(blp: Blueprint, batch_create: Schema) -> None:
    @blp.route("")
    class BatchCollection(MethodView):
        @blp.doc(
            operationId="createBatch",
            responses={200: {"links": CREATED_LINKS}, 202: {"links": CREATED_LINKS}},
        )
        @blp.response(
            202,
            BatchSchema,
            description="Its tasks are queued; follow the batch at `Location`.",
            example=BATCH_QUEUED_EXAMPLE,
            headers=BATCH_LOCATION,
        )
        @blp.alt_response(
            200,
            schema=BatchSchema,
            success=True,
            description="The batch created earlier with this `Idempotency-Key` (as it is now); "
            "nothing was created.",
            headers=BATCH_LOCATION,
        )
        @blp.alt_response(400, "BAD_REQUEST")
        @blp.alt_response(409, "CONFLICT")
        @blp.alt_response(413, "REQUEST_ENTITY_TOO_LARGE")
        @blp.alt_response(415, "UNSUPPORTED_MEDIA_TYPE")
        @blp.alt_response(503, **queue_full_response())
        @require_json_body
        @blp.arguments(
            batch_create,
            description="The tasks, each a `POST /tasks` body.",
            examples=BATCH_CREATE_EXAMPLES,
        )
        @blp.arguments(BatchSubmitHeaders(), location="headers", as_kwargs=True)
        def post(self, body: dict[str, Any], **headers: str) -> Answer:
            """Submit a batch of tasks

            Up to 1000 tasks in one request, created in one transaction: all of them, or none
            when any is invalid (422, its errors keyed `tasks.<index>.<field>`) or the queue
            cannot hold them all (503). Follow them as one at the `Location` answered, list
            them with `GET /tasks?batch={id}`. A task may depend on tasks that exist already
            (`depends_on`), not on another task of the same batch.
            """
            submitted = current().batches.create(
                body, owner=caller(), idempotency_key=headers.get("idempotency_key")
            )
            batch = submitted.batch
            answer = {"Location": url_for(".BatchItem", batch_id=batch.id)}
            return batch, 202 if submitted.created else 200, answer


def _route_item(blp: Blueprint) -> None:
    @blp.route("/<batch_id:batch_id>", parameters=[BATCH_ID_PARAMETER])
    class BatchItem(MethodView):
        @blp.doc(operationId="getBatch", responses={200: {"links": TASKS_LINK}})
        @blp.arguments(BatchReadQuery(), location="query", as_kwargs=True)
        @blp.arguments(BatchReadHeaders(), location="headers", as_kwargs=True)
        @blp.response(
            200,
            BatchSchema,
            description="The batch.",
            example=BATCH_EXAMPLE,
            headers={**BATCH_ETAG, **RETRY_AFTER_HEADER},
        )
        @blp.alt_response(
            304,
            description="Unchanged since the ETag given in `If-None-Match`.",
            headers=BATCH_ETAG,
        )
        @blp.alt_response(404, **NOT_FOUND)
        def get(
            self, batch_id: str, wait: float | None = None, if_none_match: str | None = None
        ) -> Answer | Response:
            """Read a batch

            How many of its tasks are in each status, and whether every one has ended
            (`done`). With `wait`, the answer is held until it is done or `wait` seconds pass.
            """
            service = current().batches
            batch = (
                service.wait(batch_id, wait, owner=caller())
                if wait
                else service.get(batch_id, owner=caller())
            )
            tag = etag(batch)
            return unchanged(tag, if_none_match) or (batch, 200, read_headers(batch, tag))


def _route_cancel(blp: Blueprint) -> None:
    @blp.route("/<batch_id:batch_id>/cancel", parameters=[BATCH_ID_PARAMETER])
    class BatchCancel(MethodView):
        @blp.doc(operationId="cancelBatch", responses={200: {"links": TASKS_LINK}})
        @blp.response(200, BatchSchema, description="The batch after the request.")
        @blp.alt_response(404, **NOT_FOUND)
        def post(self, batch_id: str) -> Batch:
            """Cancel a batch

            Each of its tasks that has not ended is cancelled as by `POST /tasks/{id}/cancel`:
            a queued one at once, a running one is asked to stop and ends `cancelled` when it
            next checks. Its ended tasks stay as they are; a batch already done is answered as
            it is.
            """
            return current().batches.cancel(batch_id, owner=caller())
