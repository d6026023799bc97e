"""SQLite's claim, in two steps of one transaction: the queues' rooms, then their tasks.

The first step (``claim_queues``) finds the queues a claim may take from and the room each
leaves. The second claims from them: for one queue, the ready index read in order and no
more (``claim``, as cheap as a claim was before queues); for several, each queue's next tasks
up to its room, and the queues taking turns among tasks of one priority (``claim_turns``).
One statement over every queue would read each one's tasks through a correlated IN list and
sort them by two windows: 260 µs a claim instead of 20 (bench: a claim of 32 on one queue).
SQLite runs one writer at a time, so the rooms counted in the first step hold in the second.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

#: A row, read by column name.
Row = Any


def open_queues(rows: list[Row]) -> list[tuple[str, int]]:
    """The queues of the first step's ``rows``, as (name, room): no more than the claim's
    limit, nor than 256 (a compound SELECT of SQLite takes at most 500 parts)."""
    return [(row["name"], row["room"]) for row in rows]


def second_step(
    queries: Mapping[str, str], rooms: list[tuple[str, int]], args: Mapping[str, Any]
) -> tuple[str, dict[str, Any]]:
    """The statement that claims from ``rooms`` (at least one), and its arguments (``args``:
    the claim's own: now, worker_id, lease_until, limit; a name a statement does not use is
    left unbound)."""
    if len(rooms) == 1:
        ((name, room),) = rooms
        return queries["claim"], {**args, "queue": name, "room": room}
    values = dict(args)
    for n, (name, room) in enumerate(rooms):
        values[f"queue_{n}"] = name
        values[f"room_{n}"] = room
    return _turns(queries["claim_turns"], queries["claim_each"], len(rooms)), values


@lru_cache(maxsize=64)
def _turns(turns: str, each: str, count: int) -> str:
    """``claim_turns`` with one part per queue (made once for each number of queues)."""
    parts = " UNION ALL ".join(each.replace("{n}", str(n)) for n in range(count))
    return turns.replace("{each}", parts)
