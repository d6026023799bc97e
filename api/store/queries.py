"""Named SQL, loaded once from a backend's ``.sql`` file.

A file holds its statements one after the other, each under a ``-- name: <name>`` line; the
comment lines right below the name describe it and are not sent. A statement may hold slots
in braces, filled once at load:

- ``{columns}``: the columns of a task, as every read selects them (api.store.rows.COLUMNS),
  ``{schedule_columns}``, those of a schedule, and ``{delivery_columns}``, a callback's;
- ``{claim}``, ``{finish}``, ``{retry}``, ``{release}``, ``{recover}``, ``{cancel}``,
  ``{delete}``: the statuses a task may have for that verb to change it, quoted and comma
  separated, from the lifecycle table (api.models.VERBS), so that every conditional write
  reads its ``status IN (…)`` from the one source of truth.

A slot may also name a statement written earlier in the same file: a fragment that several
statements share, such as ``{queued_names}``, the queues that have queued tasks.

``{matching}`` (a listing's filter), ``{each}`` and ``{n}`` (SQLite's claim of several
queues) and ``{values}`` (SQLite's rows of a batch) are left for the caller, who fills them
at each call. Any other slot is an error at load.
"""

from __future__ import annotations

import re
from collections import ChainMap
from collections.abc import Mapping
from functools import partial
from importlib.resources import files
from types import MappingProxyType

from api.models import Verb, sources
from api.store.rows import COLUMNS, DELIVERY_COLUMNS, SCHEDULE_COLUMNS

#: The slots a caller fills at each call, left as they are at load.
CALL_SLOTS = frozenset({"matching", "each", "n", "values"})

_NAME = re.compile(r"^-- name: (\S+)[ \t]*$", re.MULTILINE)
_SLOT = re.compile(r"\{(\w+)\}")


def fills() -> dict[str, str]:
    """What each load-time slot becomes."""
    values = {
        "columns": COLUMNS,
        "schedule_columns": SCHEDULE_COLUMNS,
        "delivery_columns": DELIVERY_COLUMNS,
    }
    for verb in Verb:
        values[verb.value] = ", ".join(f"'{status.value}'" for status in sources(verb))
    return values


def parse(text: str, values: Mapping[str, str] | None) -> dict[str, str]:
    """The statements of ``text`` by name, in the order of the text, slots filled (none
    when ``values`` is None: the text as written)."""
    pieces = _NAME.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(pieces[1::2], pieces[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is named twice")
        lines = body.strip().splitlines()
        while lines and lines[0].startswith("--"):  # its description
            lines.pop(0)
        statement = "\n".join(lines)
        queries[name] = (
            statement
            if values is None
            else _SLOT.sub(partial(_fill, name, ChainMap(dict(values), queries)), statement)
        )
    return queries


def _fill(query: str, values: Mapping[str, str], match: re.Match[str]) -> str:
    slot = match.group(1)
    if slot in CALL_SLOTS:
        return "{" + slot + "}"
    try:
        return values[slot]
    except KeyError:
        raise ValueError(f"query {query!r}: unknown slot {{{slot}}}") from None


def load(package: str, filename: str, *, slots: bool = True) -> Mapping[str, str]:
    """The named statements of ``filename`` beside the modules of ``package``.

    With ``slots=False`` (migrations) nothing is filled in: a migration that shipped must run
    as it was written, whatever COLUMNS or the lifecycle table become later.
    """
    text = (files(package) / filename).read_text(encoding="utf-8")
    return MappingProxyType(parse(text, fills() if slots else None))
