"""The Flask application class: Flask, remembering which of its functions are plain."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from types import FunctionType
from typing import Any

from flask import Flask

from api.json import OrjsonProvider


class TaskApp(Flask):
    """Flask with orjson (api/json.py), remembering which of its functions are plain (not
    coroutines).

    Flask asks it of every hook and view on every request (``ensure_sync``, through
    ``inspect.iscoroutinefunction``), and for a function the answer never changes. Functions
    are remembered only while they live (one made per request, as ``after_this_request``
    takes, goes with its request), and bound methods not at all: a view instance's is new on
    each request.
    """

    json_provider_class = OrjsonProvider

    def __init__(self, import_name: str) -> None:
        super().__init__(import_name)
        self._plain: weakref.WeakSet[Callable[..., Any]] = weakref.WeakSet()

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        if type(func) is not FunctionType:
            return super().ensure_sync(func)
        if func in self._plain:
            return func
        made = super().ensure_sync(func)
        if made is func:
            self._plain.add(func)
        return made
