"""A schedule's timing: is it valid (``Timing.check``), when does it fire next
(``Timing.next_after``), and which missed fire time does a catch-up make (``Timing.latest``).

A schedule fires either every ``every_seconds`` (a chain of fire times, each that many seconds
of real time after the previous one, whatever the clocks do) or at the times a 5-field cron
expression names, read on the wall clock of ``timezone`` (an IANA name, UTC by default).

Daylight saving (the contract: "a local time that does not exist fires right after the gap; a
repeated one fires once"):

- A wall time that does not exist (in the gap when clocks go forward) fires at the instant the
  gap ends: in Europe/Berlin on 2026-03-29 (02:00 -> 03:00), ``30 2 * * *`` fires at 03:00 local
  (01:00 UTC). Every wall time of the gap fires at that same instant, so they fire *once* between
  them: ``*/15 * * * *`` fires at 01:45 local, then once at 03:00 for 02:00, 02:15, 02:30, 02:45
  and 03:00 together, then at 03:15.
- A wall time that happens twice (in the hour repeated when clocks go back) fires at its first
  occurrence only (``fold=0``). In Europe/Berlin on 2026-10-25 (03:00 -> 02:00), ``30 2 * * *``
  fires at the first 02:30 (00:30 UTC) and not at the second (01:30 UTC). This holds for every
  expression, however often it fires: in the second pass through the repeated hour nothing fires,
  as each of its wall times has fired already. So ``0 * * * *`` fires at the first 02:00
  (00:00 UTC) and next at 03:00 (02:00 UTC), two hours of real time later; ``*/15 * * * *``
  fires at 02:45 (00:45 UTC) and next at 03:00 (02:00 UTC). A day with a repeated hour has as
  many fire times as any other day, not more.

Why cronsim: it follows Debian cron's reading of the fields (day-of-month and day-of-week are
OR-ed unless one of them starts with ``*``), has no dependencies, and gives up after 50 years
without a match instead of looping forever. Its own daylight saving rules are Debian cron's
(a repeated hour fires twice for expressions that fire every hour or more often), which are not
the contract's, so it is only ever given naive wall times: it does calendar arithmetic on the
wall clock, and this module maps each wall time it yields to an instant with the rule above.
That mapping never goes back in time as the wall time goes forward, which is what lets
``next_after`` take the first wall time whose instant is past ``after``, and ``latest`` the
last one whose instant is not past ``now``. cronsim has no ``@daily``-style names: ``ALIASES``
maps them to 5 fields.
"""

from __future__ import annotations

import functools
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from api.models import MAX_EVERY_SECONDS, ScheduleSpec

#: The time zone a schedule's cron is read in unless it names one.
DEFAULT_TIMEZONE = "UTC"
#: The longest cron expression accepted: longer ones are refused before they are parsed.
MAX_CRON_LENGTH = 200
#: The longest time zone name accepted (the longest IANA name has 32 characters).
MAX_TIMEZONE_LENGTH = 64
#: The fields of a cron expression, in order.
CRON_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
#: What each field may hold, for the messages of a bad one.
FIELD_VALUES = {
    "minute": "minutes are 0..59",
    "hour": "hours are 0..23",
    "day-of-month": "days of the month are 1..31 (or L for the last)",
    "month": "months are 1..12 or JAN..DEC",
    "day-of-week": "days of the week are 0..7 (0 and 7 are Sunday) or SUN..SAT",
}
#: The names that stand for an expression, and the expression (cronsim knows none of them).
ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
#: Names a zone file may have on a host that are no IANA time zone: their meaning is the host's.
HOST_ZONE_NAMES = frozenset({"localtime", "posixrules"})
#: Where ``check`` looks for a first fire time. cronsim gives up after 50 years without one, and
#: the rarest expression that can fire (February 29 on a given weekday) does so at least every
#: 40 years, so finding none means it never fires.
NEVER_FIRES_PROBE = datetime(2000, 1, 1)

_ONE_SECOND = timedelta(seconds=1)
_FIELDS_HINT = "minute hour day-of-month month day-of-week"
_ALIASES_HINT = ", ".join(ALIASES)
_ZONE_HINT = "use an IANA name such as 'Europe/Berlin', 'America/New_York' or 'UTC'"


class TimingError(ValueError):
    """A schedule's timing is wrong; ``field`` names it: "cron", "timezone" or "every_seconds"."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class Timing:
    """When a schedule fires: a cron read in ``timezone``, or every ``every_seconds``."""

    cron: str | None
    every_seconds: int | None
    timezone: str = DEFAULT_TIMEZONE

    @classmethod
    def of(cls, spec: ScheduleSpec) -> Timing:
        return cls(cron=spec.cron, every_seconds=spec.every_seconds, timezone=spec.timezone)

    def check(self) -> None:
        """Raise TimingError unless the timing is valid. Quick for any input."""
        if (self.cron is None) == (self.every_seconds is None):
            which = "both" if self.cron is not None else "neither"
            raise TimingError("cron", f"give exactly one of cron and every_seconds, got {which}")
        if self.every_seconds is not None:
            _check_every_seconds(self.every_seconds)
        _zone(self.timezone)
        if self.cron is not None:
            _expression(self.cron)

    def next_after(self, after: datetime) -> datetime | None:
        """The first fire time strictly after ``after`` (aware), in UTC; None if there is none.

        For ``every_seconds``, ``after`` is the previous fire time (or now, for the first).
        """
        self.check()
        after = _utc(after, "after")
        if self.every_seconds is not None:
            return after + timedelta(seconds=self.every_seconds)
        assert self.cron is not None  # check() makes sure
        return _next_fire(_expression(self.cron), _zone(self.timezone), after)

    def latest(self, due: datetime, now: datetime) -> datetime:
        """The latest fire time in [due, now], in UTC, given a fire time ``due`` <= ``now``.

        ``due`` itself when the next fire time after it is later than ``now`` (or when ``now``
        is before ``due``). Quick however far ``due`` is behind ``now``.
        """
        self.check()
        due, now = _utc(due, "due"), _utc(now, "now")
        if now <= due:
            return due
        if self.every_seconds is not None:
            step = timedelta(seconds=self.every_seconds)
            return due + (now - due) // step * step
        assert self.cron is not None  # check() makes sure
        fire = _last_fire(_expression(self.cron), _zone(self.timezone), now)
        return due if fire is None or fire < due else fire


def _utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {moment!r}")
    return moment.astimezone(UTC)


def _check_every_seconds(every_seconds: object) -> None:
    # bool is an int to Python, not to a client: True seconds is a mistake.
    if type(every_seconds) is not int or not 1 <= every_seconds <= MAX_EVERY_SECONDS:
        raise TimingError(
            "every_seconds",
            f"every_seconds must be a whole number of seconds from 1 to {MAX_EVERY_SECONDS} "
            f"(a year), got {every_seconds!r}",
        )


def _zone(name: object) -> ZoneInfo:
    """The zone named ``name``, or TimingError."""
    if not isinstance(name, str) or not name:
        raise TimingError("timezone", f"no time zone given ({name!r}): {_ZONE_HINT}")
    return _load_zone(name)


@functools.cache
def _iana_names() -> frozenset[str]:
    """The IANA zone names of the system's and tzdata's zone files."""
    return frozenset(
        name
        for name in zoneinfo.available_timezones()
        if not name.startswith(("posix/", "right/")) and name != "Factory"
    )


@functools.lru_cache(maxsize=256)
def _load_zone(name: str) -> ZoneInfo:
    if len(name) > MAX_TIMEZONE_LENGTH:
        raise TimingError(
            "timezone",
            f"time zone name too long ({len(name)} characters, at most {MAX_TIMEZONE_LENGTH}): "
            f"{_ZONE_HINT}",
        )
    if name in HOST_ZONE_NAMES:
        message = f"{name!r} names this host's zone, not an IANA one: {_ZONE_HINT}"
        raise TimingError("timezone", message)
    if name not in _iana_names():
        # posix/ and right/ (leap seconds: a cron drifts) copies, "Factory": files, not zones.
        raise TimingError("timezone", f"{name!r} is not a known IANA time zone: {_ZONE_HINT}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # ValueError: keys such as "../etc" or with a NUL; OSError: names the OS refuses.
        raise TimingError(
            "timezone", f"{name!r} is not a known IANA time zone: {_ZONE_HINT}"
        ) from None


def _expression(cron: object) -> str:
    """The 5-field expression ``cron`` stands for (itself, or its alias's), or TimingError."""
    if not isinstance(cron, str):
        raise TimingError("cron", f"cron must be a string, got {cron!r}")
    return _parse(cron)


@functools.lru_cache(maxsize=1024)
def _parse(cron: str) -> str:
    if len(cron) > MAX_CRON_LENGTH:
        raise TimingError(
            "cron",
            f"cron expression too long ({len(cron)} characters, at most {MAX_CRON_LENGTH}): "
            f"give 5 fields: {_FIELDS_HINT}",
        )
    expression = _unalias(cron)
    _check_field_count(cron, expression.split())
    try:
        first = next(CronSim(expression, NEVER_FIRES_PROBE))
    except CronSimError:
        raise _field_error(cron, expression.split()) from None
    except StopIteration:
        first = None
    if first is None:
        raise _never_fires(cron)
    return expression


def _unalias(cron: str) -> str:
    name = cron.strip().lower()
    if not name.startswith("@"):
        return cron
    if name == "@reboot":
        raise TimingError(
            "cron", f"'@reboot' is not supported: a schedule fires at times; use {_ALIASES_HINT}"
        )
    if name not in ALIASES:
        raise TimingError("cron", f"{cron!r} is no known name: use {_ALIASES_HINT}")
    return ALIASES[name]


def _check_field_count(cron: str, fields: list[str]) -> None:
    if len(fields) == len(CRON_FIELDS):
        return
    if not fields:
        problem = "empty"
    elif len(fields) == 6:
        problem = f"{cron!r} has 6 fields: seconds are not supported"
    elif len(fields) == 7:
        problem = f"{cron!r} has 7 fields: seconds and years are not supported"
    else:
        problem = f"{cron!r} has {len(fields)} fields"
    raise TimingError("cron", f"{problem}; give 5 fields: {_FIELDS_HINT} (or {_ALIASES_HINT})")


def _field_error(cron: str, fields: list[str]) -> TimingError:
    """The error of the first field cronsim refuses on its own; or, if it refuses none of them,
    of fields that cannot match together (cronsim refuses "0 0 30 2 *" as it is built)."""
    for index, name in enumerate(CRON_FIELDS):
        alone = ["*"] * len(CRON_FIELDS)
        alone[index] = fields[index]
        try:
            CronSim(" ".join(alone), NEVER_FIRES_PROBE)
        except CronSimError:
            return TimingError(
                "cron", f"{cron!r}: bad {name} ({fields[index]}): {FIELD_VALUES[name]}"
            )
    return _never_fires(cron)


def _never_fires(cron: str) -> TimingError:
    return TimingError(
        "cron",
        f"{cron!r} never fires: no date matches its day-of-month, month and day-of-week together"
        " (such as February 30)",
    )


def _next_fire(expression: str, zone: ZoneInfo, after: datetime) -> datetime | None:
    # Wall times up to after's own have instants up to after (the mapping never goes back), so
    # the first instant past after comes from a later wall time. Only when after is in the
    # second pass of a repeated hour do some of those map before it (their first pass): at most
    # the cron's fire times in that hour are skipped.
    start = after.astimezone(zone).replace(tzinfo=None)
    for wall in CronSim(expression, start):
        fire = _instant(wall, zone)
        if fire > after:
            return fire
    return None


def _last_fire(expression: str, zone: ZoneInfo, now: datetime) -> datetime | None:
    # The last wall time whose first occurrence is not after now: now's own wall time, or in the
    # second pass of a repeated hour, that hour's end (its walls all fired in the first pass).
    # Reading now's UTC time with the first occurrence's offset gives the one or a little past the
    # other: the walls past the end map after now and are skipped (at most an hour's worth).
    local = now.astimezone(zone)
    first_offset = local.replace(fold=0).utcoffset()
    assert first_offset is not None  # a ZoneInfo always has one
    end = (now + first_offset).replace(tzinfo=None, microsecond=0)
    # Backwards, cronsim yields wall times before its start: start a second past the end.
    for wall in CronSim(expression, end + _ONE_SECOND, reverse=True):
        fire = _instant(wall, zone)
        if fire <= now:
            return fire
    return None


def _instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """When the naive wall time ``wall`` of ``zone`` fires, in UTC: its first occurrence
    (fold=0) if it has one, else (it is in a gap) the instant the gap ends."""
    instant = wall.replace(tzinfo=zone).astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == wall:
        return instant
    return _gap_end(wall, zone)


def _gap_end(wall: datetime, zone: ZoneInfo) -> datetime:
    """The instant the clocks went forward over ``wall``, a wall time that does not exist."""
    # For a time in a gap, fold=1 reads it with the offset after the change, which gives an
    # instant before the change; fold=0 with the offset before, which gives one after it. In
    # between, find (to the second: zones change at whole seconds) the first instant whose
    # wall time is past ``wall``.
    before = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    after = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    low, high = 0, int((after - before) / _ONE_SECOND)
    while high - low > 1:
        middle = (low + high) // 2
        moment = before + middle * _ONE_SECOND
        if moment.astimezone(zone).replace(tzinfo=None) > wall:
            high = middle
        else:
            low = middle
    return before + high * _ONE_SECOND
