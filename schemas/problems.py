"""RFC 9457 problem documents, as every error of the API is answered."""

from __future__ import annotations

from marshmallow import Schema, fields


class ProblemSchema(Schema):
    """An RFC 9457 problem: what went wrong and how to fix it."""

    type = fields.String(
        required=True,
        metadata={
            "description": "A URI reference naming the kind of problem.",
            "example": "about:blank",
        },
    )
    title = fields.String(
        required=True, metadata={"description": "Short summary of the kind of problem."}
    )
    status = fields.Integer(required=True, metadata={"description": "The HTTP status code."})
    detail = fields.String(
        required=True,
        metadata={"description": "What was wrong with this request, and how to fix it."},
    )


class ValidationProblemSchema(ProblemSchema):
    """A problem with the request's fields: ``errors`` says which, and why."""

    errors = fields.Dict(
        keys=fields.String(),
        values=fields.Dict(keys=fields.String(), values=fields.List(fields.String())),
        required=True,
        metadata={
            "description": "Location (json, query, headers, path) -> field -> messages. "
            "Nested fields are dotted: `params.x`.",
            "example": {"json": {"params.x": ["Missing data for required field."]}},
        },
    )
