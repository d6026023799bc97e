"""A schedule's timing: validation, fire times (with daylight saving) and catch-up."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from api.models import MAX_EVERY_SECONDS, ScheduleSpec
from api.scheduler import cron
from api.scheduler.cron import ALIASES, Timing, TimingError

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"
HOUR = timedelta(hours=1)
QUARTER = timedelta(minutes=15)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def every(first: datetime, step: timedelta, until: datetime) -> list[datetime]:
    """first, first + step, ... up to ``until`` (included)."""
    times = []
    while first <= until:
        times.append(first)
        first += step
    return times


def fires(timing: Timing, start: datetime, end: datetime) -> list[datetime]:
    """The fire times in [start, end), by next_after from one to the next."""
    times = []
    after = start - timedelta(microseconds=1)
    while (fire := timing.next_after(after)) is not None and fire < end:
        assert fire > after
        times.append(fire)
        after = fire
    return times


def local_day(zone: str, year: int, month: int, day: int) -> tuple[datetime, datetime]:
    """The UTC instants a local calendar day starts and ends."""
    start = datetime(year, month, day, tzinfo=ZoneInfo(zone))
    return start.astimezone(UTC), (start + timedelta(days=1)).astimezone(UTC)


def cron_timing(expression: str, zone: str = "UTC") -> Timing:
    return Timing(cron=expression, every_seconds=None, timezone=zone)


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "timing",
    [
        Timing("*/15 9-17 * * MON-FRI", None, BERLIN),
        Timing("0 0 29 2 *", None),
        Timing("0 0 L * *", None),
        Timing("@Daily", None, NEW_YORK),
        Timing(" @hourly ", None),
        Timing(None, 1),
        Timing(None, MAX_EVERY_SECONDS, "Asia/Kolkata"),
    ],
)
def test_valid_timings_pass_the_check(timing: Timing) -> None:
    timing.check()


def test_timing_of_a_spec_takes_its_timing() -> None:
    spec = ScheduleSpec(cron="0 3 * * *", every_seconds=None, timezone=BERLIN, task={})
    assert Timing.of(spec) == Timing(cron="0 3 * * *", every_seconds=None, timezone=BERLIN)


@pytest.mark.parametrize(
    ("timing", "field", "fragment"),
    [
        (Timing(None, None), "cron", "exactly one of cron and every_seconds, got neither"),
        (Timing("* * * * *", 60), "cron", "exactly one of cron and every_seconds, got both"),
        (Timing("61 * * * *", None), "cron", "'61 * * * *': bad minute (61): minutes are 0..59"),
        (Timing("0 24 * * *", None), "cron", "bad hour (24): hours are 0..23"),
        (Timing("0 0 32 * *", None), "cron", "bad day-of-month (32)"),
        (Timing("0 0 1 13 *", None), "cron", "bad month (13): months are 1..12"),
        (Timing("0 0 * * 8", None), "cron", "bad day-of-week (8)"),
        (Timing("*/0 * * * *", None), "cron", "bad minute (*/0)"),
        (Timing("0 0 * *", None), "cron", "has 4 fields; give 5 fields: minute hour"),
        (Timing("0 0 0 * * *", None), "cron", "has 6 fields: seconds are not supported"),
        (Timing("0 0 0 * * * 2026", None), "cron", "7 fields: seconds and years are not"),
        (Timing("", None), "cron", "empty; give 5 fields"),
        (Timing("   ", None), "cron", "empty; give 5 fields"),
        (Timing("@reboot", None), "cron", "'@reboot' is not supported"),
        (Timing("@REBOOT", None), "cron", "use @yearly, @annually"),
        (Timing("@fortnightly", None), "cron", "is no known name: use @yearly"),
        (Timing("1," * 150, None), "cron", "too long (300 characters, at most 200)"),
        (Timing("0 0 30 2 *", None), "cron", "'0 0 30 2 *' never fires"),
        (Timing("0 0 31 4,6,9,11 *", None), "cron", "never fires"),
        # Passes cronsim's own check, matches no date: the first of the month as a 5th Tuesday.
        (Timing("0 0 */31 2 2#5", None), "cron", "never fires"),
        (Timing("* * * * *", None, "Mars/Base"), "timezone", "'Mars/Base' is not a known IANA"),
        (Timing("* * * * *", None, ""), "timezone", "no time zone given"),
        (Timing(None, 60, "../../etc/passwd"), "timezone", "is not a known IANA time zone"),
        (Timing(None, 60, "/etc/localtime"), "timezone", "is not a known IANA time zone"),
        (Timing(None, 60, "localtime"), "timezone", "this host's zone, not an IANA one"),
        # Zone files that are no IANA zone: right/ counts leap seconds (a cron drifts by 27 s).
        (Timing(None, 60, "right/UTC"), "timezone", "is not a known IANA time zone"),
        (Timing(None, 60, "posix/Europe/Berlin"), "timezone", "is not a known IANA time zone"),
        (Timing(None, 60, "Factory"), "timezone", "is not a known IANA time zone"),
        (Timing(None, 60, "Europe/Berlin\x00"), "timezone", "is not a known IANA time zone"),
        (Timing(None, 60, "x" * 300), "timezone", "too long (300 characters, at most 64)"),
        (Timing(None, 60, "A/" * 40), "timezone", "too long"),
        (Timing(None, 0), "every_seconds", "from 1 to 31536000 (a year), got 0"),
        (Timing(None, MAX_EVERY_SECONDS + 1), "every_seconds", "got 31536001"),
        (Timing(None, -5), "every_seconds", "got -5"),
        (Timing(None, True), "every_seconds", "got True"),
        (Timing(None, 1.5), "every_seconds", "whole number of seconds"),  # type: ignore[arg-type]
        (Timing(None, "60"), "every_seconds", "got '60'"),  # type: ignore[arg-type]
    ],
)
def test_bad_timings_name_their_field_and_say_how_to_fix_it(
    timing: Timing, field: str, fragment: str
) -> None:
    with pytest.raises(TimingError) as caught:
        timing.check()
    assert caught.value.field == field
    assert fragment in caught.value.message
    assert str(caught.value) == caught.value.message
    assert isinstance(caught.value, ValueError)


def test_hostile_expressions_are_answered() -> None:
    # Long lists, ranges and steps at the length limit parse (or fail) as any other.
    hostile = [
        ",".join(["0-59/1"] * 27) + " * * * *",
        "1-59/59," * 23 + "0 * * * *",
        "9" * 192 + " * * * *",
        "*/" + "9" * 190 + " * * * *",
        "\x00 * * * *",
        "\u00b2 * * * *",  # a superscript two: a digit to str.isdigit, not to cron
    ]
    for expression in hostile:
        assert len(expression) <= cron.MAX_CRON_LENGTH
        try:
            cron_timing(expression).check()
        except TimingError as error:
            assert error.field == "cron"


def test_aliases_fire_as_their_expressions() -> None:
    after = utc(2026, 5, 13, 10, 7)
    for alias, expression in ALIASES.items():
        for spelling in (alias, alias.upper()):
            assert cron_timing(spelling, BERLIN).next_after(after) == cron_timing(
                expression, BERLIN
            ).next_after(after)
    assert cron_timing("@hourly").next_after(after) == utc(2026, 5, 13, 11)
    assert cron_timing("@daily", BERLIN).next_after(after) == utc(2026, 5, 13, 22)
    assert cron_timing("@weekly").next_after(after) == utc(2026, 5, 17)  # a Sunday
    assert cron_timing("@monthly").next_after(after) == utc(2026, 6, 1)
    assert cron_timing("@yearly").next_after(after) == utc(2027, 1, 1)


def test_next_after_and_latest_refuse_a_bad_timing_or_a_naive_time() -> None:
    with pytest.raises(TimingError):
        cron_timing("61 * * * *").next_after(utc(2026, 1, 1))
    with pytest.raises(TimingError):
        Timing(None, 0).latest(utc(2026, 1, 1), utc(2026, 1, 2))
    with pytest.raises(ValueError, match="timezone-aware"):
        cron_timing("* * * * *").next_after(datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        Timing(None, 5).latest(utc(2026, 1, 1), datetime(2026, 1, 2))


# --- next_after ------------------------------------------------------------------------------


def test_every_seconds_is_a_chain_of_real_seconds() -> None:
    timing = Timing(None, 90)
    assert timing.next_after(utc(2026, 1, 1, 12)) == utc(2026, 1, 1, 12, 1) + timedelta(seconds=30)
    # An hour of real time, not of the wall clock, across New York's spring forward.
    after = datetime(2026, 3, 8, 1, 30, tzinfo=ZoneInfo(NEW_YORK))
    fire = Timing(None, 3600).next_after(after)
    assert fire == utc(2026, 3, 8, 7, 30)
    assert fire is not None and fire.tzinfo is UTC


def test_cron_fire_times_are_strictly_after_and_in_utc() -> None:
    timing = cron_timing("*/5 * * * *", BERLIN)
    assert timing.next_after(utc(2026, 6, 1, 10, 0)) == utc(2026, 6, 1, 10, 5)
    just_before = utc(2026, 6, 1, 10, 5) - timedelta(microseconds=1)
    assert timing.next_after(just_before) == utc(2026, 6, 1, 10, 5)
    # The same instant in another zone gives the same fire time, in UTC.
    tokyo = utc(2026, 6, 1, 10, 2).astimezone(ZoneInfo("Asia/Tokyo"))
    fire = timing.next_after(tokyo)
    assert fire == utc(2026, 6, 1, 10, 5)
    assert fire is not None and fire.tzinfo is UTC


def test_cron_in_a_zone_fires_on_its_wall_clock() -> None:
    timing = cron_timing("0 9 * * MON-FRI", NEW_YORK)
    assert fires(timing, utc(2026, 7, 3), utc(2026, 7, 8)) == [
        utc(2026, 7, 3, 13),  # Friday 09:00 EDT
        utc(2026, 7, 6, 13),
        utc(2026, 7, 7, 13),
    ]


def test_none_when_cronsim_finds_no_more_fire_times(monkeypatch: pytest.MonkeyPatch) -> None:
    timing = cron_timing("0 0 29 2 *")
    timing.check()
    monkeypatch.setattr(cron, "CronSim", lambda *args, **kwargs: iter(()))
    assert timing.next_after(utc(2026, 1, 1)) is None


# --- daylight saving -------------------------------------------------------------------------
# Europe/Berlin: 2026-03-29 02:00 -> 03:00 (at 01:00 UTC), 2026-10-25 03:00 -> 02:00 (01:00 UTC).
# America/New_York: 2026-03-08 02:00 -> 03:00 (07:00 UTC), 2026-11-01 02:00 -> 01:00 (06:00 UTC).


@pytest.mark.parametrize(
    ("zone", "expression", "start", "expected"),
    [
        # A time in the gap fires once, right after it (03:00 local).
        (
            BERLIN,
            "30 2 * * *",
            utc(2026, 3, 28),
            [utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1), utc(2026, 3, 30, 0, 30)],
        ),
        (
            NEW_YORK,
            "30 2 * * *",
            utc(2026, 3, 7),
            [utc(2026, 3, 7, 7, 30), utc(2026, 3, 8, 7), utc(2026, 3, 9, 6, 30)],
        ),
        # A repeated time fires once, at its first occurrence.
        (
            BERLIN,
            "30 2 * * *",
            utc(2026, 10, 24),
            [utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)],
        ),
        (
            NEW_YORK,
            "30 1 * * *",
            utc(2026, 10, 31),
            [utc(2026, 10, 31, 5, 30), utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)],
        ),
    ],
)
def test_a_fixed_time_fires_once_a_day_across_daylight_saving(
    zone: str, expression: str, start: datetime, expected: list[datetime]
) -> None:
    assert fires(cron_timing(expression, zone), start, start + timedelta(days=3)) == expected


@pytest.mark.parametrize(
    ("zone", "day", "first_gap_fire"),
    [(BERLIN, (2026, 3, 29), utc(2026, 3, 29, 1)), (NEW_YORK, (2026, 3, 8), utc(2026, 3, 8, 7))],
)
def test_spring_forward_the_gap_fires_once_right_after_it(
    zone: str, day: tuple[int, int, int], first_gap_fire: datetime
) -> None:
    start, end = local_day(zone, *day)
    assert end - start == 23 * HOUR
    # The hour that does not exist (02:00) fires with 03:00, once: no UTC hour is skipped or
    # doubled, and the 23-hour day has 23 hourly fires.
    hourly = fires(cron_timing("0 * * * *", zone), start, end)
    assert hourly == every(start, HOUR, end - HOUR)
    assert len(hourly) == 23
    # 02:00, 02:15, 02:30 and 02:45 do not exist: they fire once, with 03:00, then 03:15.
    quarterly = fires(cron_timing("*/15 * * * *", zone), start, end)
    assert quarterly == every(start, QUARTER, end - QUARTER)
    assert len(quarterly) == 92
    at_gap = quarterly.index(first_gap_fire)
    assert quarterly[at_gap - 1 : at_gap + 2] == [
        first_gap_fire - QUARTER,  # 01:45 standard time
        first_gap_fire,  # 03:00 summer time: for 02:00 .. 03:00
        first_gap_fire + QUARTER,  # 03:15
    ]


@pytest.mark.parametrize(
    ("zone", "day", "second_pass"),
    [
        (BERLIN, (2026, 10, 25), utc(2026, 10, 25, 1)),
        (NEW_YORK, (2026, 11, 1), utc(2026, 11, 1, 6)),
    ],
)
def test_fall_back_the_repeated_hour_fires_once(
    zone: str, day: tuple[int, int, int], second_pass: datetime
) -> None:
    start, end = local_day(zone, *day)
    assert end - start == 25 * HOUR
    # Nothing fires in the second pass through the repeated hour (UTC ``second_pass`` to an hour
    # later): its wall times fired in the first. 24 hourly and 96 quarterly fires, as any day.
    hourly = fires(cron_timing("0 * * * *", zone), start, end)
    assert hourly == [t for t in every(start, HOUR, end - HOUR) if t != second_pass]
    assert len(hourly) == 24
    assert second_pass - HOUR in hourly and second_pass + HOUR in hourly
    quarterly = fires(cron_timing("*/15 * * * *", zone), start, end)
    skipped = every(second_pass, QUARTER, second_pass + 3 * QUARTER)
    assert quarterly == [t for t in every(start, QUARTER, end - QUARTER) if t not in skipped]
    assert len(quarterly) == 96


def test_after_in_the_second_pass_waits_for_a_new_wall_time() -> None:
    # 01:15 UTC on 2026-10-25 is Berlin's second 02:15; its first 02:30 was at 00:30 UTC.
    second_pass = utc(2026, 10, 25, 1, 15)
    assert cron_timing("30 2 * * *", BERLIN).next_after(second_pass) == utc(2026, 10, 26, 1, 30)
    assert cron_timing("*/15 * * * *", BERLIN).next_after(second_pass) == utc(2026, 10, 25, 2)
    assert cron_timing("0 * * * *", BERLIN).next_after(second_pass) == utc(2026, 10, 25, 2)
    # New York's second 01:15 (06:15 UTC) on 2026-11-01.
    assert cron_timing("30 1 * * *", NEW_YORK).next_after(utc(2026, 11, 1, 6, 15)) == utc(
        2026, 11, 2, 6, 30
    )
    assert cron_timing("*/15 * * * *", NEW_YORK).next_after(utc(2026, 11, 1, 6, 15)) == utc(
        2026, 11, 1, 7
    )


def test_after_at_the_first_repeated_time_goes_on_from_there() -> None:
    first = utc(2026, 10, 25, 0, 30)  # Berlin's first 02:30
    assert cron_timing("30 2 * * *", BERLIN).next_after(first) == utc(2026, 10, 26, 1, 30)
    assert cron_timing("*/15 * * * *", BERLIN).next_after(first) == utc(2026, 10, 25, 0, 45)
    assert cron_timing("* * * * *", BERLIN).next_after(first) == utc(2026, 10, 25, 0, 31)


@pytest.mark.parametrize(
    ("zone", "day"),
    [
        (BERLIN, (2026, 3, 29)),
        (BERLIN, (2026, 10, 25)),
        (NEW_YORK, (2026, 3, 8)),
        (NEW_YORK, (2026, 11, 1)),
    ],
)
@pytest.mark.parametrize("expression", ["*/15 * * * *", "30 2 * * *", "7 1,2,3 * * *"])
def test_from_any_instant_the_next_and_latest_fire_agree_with_the_day(
    zone: str, day: tuple[int, int, int], expression: str
) -> None:
    # From every 7 minutes of the day (any second): next_after is the first of the day's fire
    # times past it, never at or before it; latest is the last not past it.
    timing = cron_timing(expression, zone)
    start, end = local_day(zone, *day)
    day_fires = fires(timing, start - timedelta(days=1), end + timedelta(days=1))
    due = day_fires[0]
    moment = start
    while moment < end:
        assert timing.next_after(moment) == min(t for t in day_fires if t > moment)
        assert timing.latest(due, moment) == max(t for t in day_fires if t <= moment)
        moment += timedelta(minutes=7, seconds=11)


# --- latest (catch-up) -----------------------------------------------------------------------


def test_latest_of_an_interval_is_arithmetic() -> None:
    timing = Timing(None, 3600)
    due = utc(2026, 1, 1)
    assert timing.latest(due, utc(2026, 1, 1, 5, 30) + timedelta(seconds=10)) == utc(2026, 1, 1, 5)
    assert timing.latest(due, utc(2026, 1, 1, 5)) == utc(2026, 1, 1, 5)
    assert timing.latest(due, utc(2026, 1, 1, 0, 59)) == due
    assert timing.latest(due, due) == due
    # Years behind, every second; inputs in any zone, output in UTC.
    now = datetime(2031, 7, 4, 12, 0, 7, 250000, tzinfo=ZoneInfo(NEW_YORK))
    latest = Timing(None, 1).latest(due, now)
    assert latest == utc(2031, 7, 4, 16) + timedelta(seconds=7)
    assert latest.tzinfo is UTC


def test_latest_of_a_cron_is_its_last_fire_not_after_now() -> None:
    timing = cron_timing("0 * * * *", BERLIN)
    due = utc(2026, 5, 1, 8)
    assert timing.latest(due, utc(2026, 5, 1, 9) - timedelta(seconds=1)) == due
    assert timing.latest(due, utc(2026, 5, 1, 9)) == utc(2026, 5, 1, 9)
    assert timing.latest(due, utc(2026, 5, 1, 11, 30)) == utc(2026, 5, 1, 11)
    assert timing.latest(due, due) == due
    yearly = cron_timing("@yearly", BERLIN)
    assert yearly.latest(utc(2001, 12, 31, 23), utc(2026, 6, 1)) == utc(2025, 12, 31, 23)


def test_latest_of_a_cron_years_behind_takes_a_few_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    steps = 0

    class CountingCronSim(cron.CronSim):
        def __next__(self) -> datetime:
            nonlocal steps
            steps += 1
            return super().__next__()

    timing = cron_timing("* * * * *", BERLIN)
    timing.check()
    monkeypatch.setattr(cron, "CronSim", CountingCronSim)
    now = utc(2026, 5, 1, 12, 34) + timedelta(seconds=56)
    assert timing.latest(utc(2020, 1, 1), now) == utc(2026, 5, 1, 12, 34)
    assert steps == 1
    # In the second pass of a repeated hour: the first pass's last minute, 02:59 (00:59 UTC);
    # walking back from past the hour's end skips at most that hour's fire times.
    steps = 0
    second_pass = utc(2026, 10, 25, 1, 15) + timedelta(seconds=30)
    assert timing.latest(utc(2020, 1, 1), second_pass) == utc(2026, 10, 25, 0, 59)
    assert steps <= 60 + 1


def _iterate(timing: Timing, after: datetime, count: int) -> Iterator[datetime]:
    for _ in range(count):
        fire = timing.next_after(after)
        assert fire is not None
        yield fire
        after = fire


def test_rare_crons_fire_on_the_right_dates() -> None:
    # February 29th on a Sunday: day-of-month and day-of-week AND-ed as the latter starts "*".
    leap_sundays = list(_iterate(cron_timing("0 0 29 2 */7"), utc(2001, 1, 1), 3))
    assert leap_sundays == [utc(2004, 2, 29), utc(2032, 2, 29), utc(2060, 2, 29)]
    # Debian cron's OR: the 13th, or any Friday.
    assert list(_iterate(cron_timing("0 12 13 * FRI"), utc(2026, 3, 9), 3)) == [
        utc(2026, 3, 13, 12),
        utc(2026, 3, 20, 12),
        utc(2026, 3, 27, 12),
    ]
