"""The application's JSON: orjson, with the standard library's ``json`` where orjson declines.

Every answer is a JSON document, and every body a client sends is read twice (checked, then
loaded by webargs): orjson does each about ten times as fast as ``json`` (a task's body: 0.6 µs
instead of 12). Where orjson declines what ``json`` accepts (an integer beyond 64 bits, a type
only Flask's provider knows), ``json`` does it, so that nothing a client could send or a task
could return is answered differently. Keys stay sorted, as Flask's own provider sorts them.
"""

from __future__ import annotations

from typing import Any

import orjson
from flask.json.provider import DefaultJSONProvider

_OPTIONS = orjson.OPT_SORT_KEYS
#: A document with fewer brackets than this cannot nest deeper: orjson may read it. A deeper
#: one is read by ``json``, whose RecursionError says "nested too deeply" (api/errors.py) where
#: orjson would accept up to 1024 levels that later code could not walk.
SHALLOW_BRACKETS = 256


def shallow(text: str | bytes) -> bool:
    """Whether ``text`` has too few brackets to nest past SHALLOW_BRACKETS levels."""
    if isinstance(text, str):
        return text.count("[") + text.count("{") < SHALLOW_BRACKETS
    return text.count(b"[") + text.count(b"{") < SHALLOW_BRACKETS


class OrjsonProvider(DefaultJSONProvider):
    """Flask's JSON provider, through orjson where it can."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        if not kwargs:
            try:
                return orjson.dumps(obj, option=_OPTIONS).decode()
            except TypeError:
                pass  # e.g. an integer beyond 64 bits: json writes it
        return super().dumps(obj, **kwargs)

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        if not kwargs and shallow(s):
            try:
                return orjson.loads(s)
            except orjson.JSONDecodeError:
                pass  # e.g. an integer beyond 64 bits; json says what is wrong, if anything
        return super().loads(s, **kwargs)

    def response(self, *args: Any, **kwargs: Any) -> Any:
        obj = self._prepare_response_obj(args, kwargs)
        try:
            body = orjson.dumps(obj, option=_OPTIONS)
        except TypeError:
            body = super().dumps(obj).encode()
        app: Any = self._app  # typed as the sans-I/O app, whose response_class takes no body
        return app.response_class(body + b"\n", mimetype=self.mimetype)
