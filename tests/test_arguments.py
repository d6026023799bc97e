"""The arguments parser answers at once when a request carries none of a schema's arguments,
and parses exactly as webargs does otherwise."""

from __future__ import annotations

from typing import Any
from unittest.mock import patch

import pytest
from flask import Flask
from flask.testing import FlaskClient
from marshmallow import RAISE, Schema, ValidationError, fields, validates_schema
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import UnprocessableEntity

from api.views.arguments import ArgumentsParser
from tests.conftest import submit

ADD = {"type": "add", "params": {"x": 2, "y": 3}}


class Optional(Schema):
    wait = fields.Float()
    if_none_match = fields.String(data_key="If-None-Match")


class Required(Schema):
    token = fields.String(required=True)


class WithDefault(Schema):
    page = fields.Integer(load_default=1)


class WithValidator(Schema):
    token = fields.String()

    @validates_schema
    def needs_token(self, data: dict[str, Any], **kwargs: Any) -> None:
        if "token" not in data:
            raise ValidationError("token is required")


@pytest.fixture
def parse() -> Any:
    parser, app = ArgumentsParser(), Flask(__name__)

    def parse(schema: Schema, location: str, path: str = "/", **headers: str) -> Any:
        with app.test_request_context(path, headers=headers):
            return parser.parse(schema, location=location)

    return parse


def test_absent_arguments_load_as_nothing(parse: Any) -> None:
    assert parse(Optional(), "query", "/?unrelated=1") == {}
    assert parse(Optional(), "headers", Accept="application/json") == {}


def test_present_arguments_are_parsed_and_validated(parse: Any) -> None:
    assert parse(Optional(), "query", "/?wait=2.5") == {"wait": 2.5}
    assert parse(Optional(), "headers", **{"if-none-match": '"3"'}) == {"if_none_match": '"3"'}
    with pytest.raises(UnprocessableEntity):
        parse(Optional(), "query", "/?wait=soon")


def test_a_caller_asking_to_refuse_unknown_arguments_still_gets_refused() -> None:
    app = Flask(__name__)
    with app.test_request_context("/?stray=1"), pytest.raises(UnprocessableEntity):
        ArgumentsParser().parse(Optional(), location="query", unknown=RAISE)
    with app.test_request_context("/?stray=1"), pytest.raises(UnprocessableEntity):
        ArgumentsParser(unknown=RAISE).parse(Optional(), location="query")


def test_a_missing_required_argument_is_still_refused(parse: Any) -> None:
    with pytest.raises(UnprocessableEntity):
        parse(Required(), "headers")


def test_the_service_skips_webargs_for_a_read_without_arguments(client: FlaskClient) -> None:
    task = submit(client, ADD)
    loads: list[str] = []
    real = FlaskParser._load_location_data

    def counted(self: FlaskParser, *, schema: Any, req: Any, location: str) -> Any:
        loads.append(location)
        return real(self, schema=schema, req=req, location=location)

    with patch.object(FlaskParser, "_load_location_data", counted):
        assert client.get(f"/tasks/{task['id']}").status_code == 200
        assert loads == [], "no argument given: nothing for webargs to load"
        assert client.get(f"/tasks/{task['id']}?wait=0.01").status_code == 200
        assert "query" in loads


def test_defaults_and_schema_validators_still_apply_when_nothing_is_given(parse: Any) -> None:
    assert parse(WithDefault(), "query") == {"page": 1}
    with pytest.raises(UnprocessableEntity):
        parse(WithValidator(), "headers")


def test_a_bad_wait_is_still_refused_with_a_problem(client: FlaskClient) -> None:
    task = submit(client, ADD)
    response = client.get(f"/tasks/{task['id']}?wait=-1")
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert "wait" in response.get_data(as_text=True)
