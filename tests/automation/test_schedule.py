"""Cron schedules in a time zone: parsing, next/latest fire times, and daylight-saving changes."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from loopml.automation.schedule import Schedule
from loopml.core.errors import InvalidInput

NEW_YORK = "America/New_York"
BERLIN = "Europe/Berlin"
MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR


def ms(*parts: int) -> int:
    """Epoch milliseconds of a UTC date and time."""
    return int(datetime(*parts, tzinfo=UTC).timestamp() * 1000)


def utc(value: int) -> str:
    return datetime.fromtimestamp(value / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def fires(schedule: Schedule, start_ms: int, end_ms: int) -> list[int]:
    """Every fire time in (start_ms, end_ms], by stepping `next_after`."""
    found = []
    moment = schedule.next_after(start_ms)
    while moment <= end_ms:
        found.append(moment)
        moment = schedule.next_after(moment)
    return found


def local_day(zone: str, year: int, month: int, day: int) -> tuple[int, int]:
    """The local day as an interval of epoch ms: (last instant of the day before, last instant of the day)."""
    tz = ZoneInfo(zone)
    start = datetime(year, month, day, tzinfo=tz).astimezone(UTC)
    end = (datetime(year, month, day, tzinfo=tz) + timedelta(days=1)).astimezone(UTC)
    return int(start.timestamp() * 1000) - 1, int(end.timestamp() * 1000) - 1


# -- parsing --------------------------------------------------------------------------------------------------


def test_parse_keeps_the_expression_and_the_zone() -> None:
    schedule = Schedule.parse("  0   2 * *  * ", BERLIN)
    assert schedule == Schedule("0 2 * * *", BERLIN)
    assert (schedule.cron, schedule.timezone) == ("0 2 * * *", BERLIN)
    assert Schedule.parse("*/15 * * * *").timezone == "UTC"
    assert Schedule.parse("@daily").next_after(ms(2026, 5, 1, 12)) == ms(2026, 5, 2)
    assert Schedule.parse("@hourly").next_after(ms(2026, 5, 1, 12, 1)) == ms(2026, 5, 1, 13)


@pytest.mark.parametrize(
    ("cron", "timezone", "problem"),
    [
        (None, "UTC", "must be a string"),
        (5, "UTC", "must be a string"),
        (["0", "2", "*", "*", "*"], "UTC", "must be a string"),
        ("0 2 * * *", 1, "time zone must be a string"),
        ("0 2 * * *", None, "time zone must be a string"),
        ("", "UTC", "has 0 fields"),
        ("0 2 * *", "UTC", "has 4 fields"),
        ("0 0 2 * * *", "UTC", "has 6 fields"),  # croniter would read a 6th field as seconds
        ("*/30 * * * * *", "UTC", "has 6 fields"),
        ("0 0 2 * * * 2026", "UTC", "has 7 fields"),
        ("@reboot", "UTC", "has 1 fields"),
        ("0 25 * * *", "UTC", "not a valid cron expression"),
        ("61 * * * *", "UTC", "not a valid cron expression"),
        ("*/0 * * * *", "UTC", "not a valid cron expression"),
        ("H 2 * * *", "UTC", "not a valid cron expression"),
        ("0 2 * * funday", "UTC", "not a valid cron expression"),
        ("0 2 30 2 *", "UTC", "names no date that exists"),
        ("0 2 * * *", "Mars/Olympus_Mons", "unknown time zone"),
        ("0 2 * * *", "europe/berlin", "unknown time zone"),
        ("0 2 * * *", "", "unknown time zone"),
        ("0 2 * * *", "../../etc/passwd", "unknown time zone"),
        ("0 2 * * *", "localtime", "unknown time zone"),
    ],
)
def test_invalid_input_is_refused_in_one_line_naming_where(
    cron: object, timezone: object, problem: str
) -> None:
    with pytest.raises(InvalidInput, match=problem) as caught:
        Schedule.parse(cron, timezone, where="models.fraud.automation.triggers")
    message = str(caught.value)
    assert message.startswith("models.fraud.automation.triggers: ")
    assert "\n" not in message


def test_a_schedule_cannot_be_built_invalid() -> None:
    with pytest.raises(InvalidInput, match="6 fields"):
        Schedule("0 0 2 * * *")
    with pytest.raises(InvalidInput, match="unknown time zone"):
        Schedule("0 2 * * *", "Nowhere/Town")


def test_schedules_compare_and_hash_by_expression_and_zone() -> None:
    first = Schedule.parse("0 2 * * *", BERLIN)
    first.next_after(0)  # fills the cached internals, which must not change equality
    assert first == Schedule("0 2 * * *", BERLIN)
    assert hash(first) == hash(Schedule("0 2 * * *", BERLIN))
    assert first != Schedule("0 2 * * *", NEW_YORK)


# -- plain fire times -----------------------------------------------------------------------------------------


def test_utc_daily_and_strictly_after() -> None:
    schedule = Schedule.parse("0 2 * * *")
    assert schedule.next_after(ms(2026, 5, 1)) == ms(2026, 5, 1, 2)
    assert schedule.next_after(ms(2026, 5, 1, 2) - 1) == ms(2026, 5, 1, 2)
    assert schedule.next_after(ms(2026, 5, 1, 2)) == ms(2026, 5, 2, 2)  # strictly after
    assert schedule.next_after(ms(2026, 5, 1, 2) + 1) == ms(2026, 5, 2, 2)
    assert schedule.next_after(ms(2026, 12, 31, 23, 59)) == ms(2027, 1, 1, 2)


def test_every_fifteen_minutes() -> None:
    schedule = Schedule.parse("*/15 * * * *")
    assert fires(schedule, ms(2026, 5, 1, 9, 7), ms(2026, 5, 1, 10, 15)) == [
        ms(2026, 5, 1, 9, 15),
        ms(2026, 5, 1, 9, 30),
        ms(2026, 5, 1, 9, 45),
        ms(2026, 5, 1, 10),
        ms(2026, 5, 1, 10, 15),
    ]


def test_europe_berlin_summer_and_winter() -> None:
    schedule = Schedule.parse("0 2 * * *", BERLIN)
    assert schedule.next_after(ms(2026, 1, 15)) == ms(2026, 1, 15, 1)  # CET, UTC+1
    assert schedule.next_after(ms(2026, 7, 14, 12)) == ms(2026, 7, 15, 0)  # CEST, UTC+2


def test_day_of_week_expressions() -> None:
    # 2026-05-01 is a Friday.
    weekdays = Schedule.parse("0 9 * * 1-5", BERLIN)
    assert weekdays.next_after(ms(2026, 5, 1, 7)) == ms(2026, 5, 4, 7)  # Friday 09:00 CEST passed: Monday
    assert weekdays.next_after(ms(2026, 5, 1, 6)) == ms(2026, 5, 1, 7)
    mondays = Schedule.parse("30 6 * * mon", NEW_YORK)
    assert mondays.next_after(ms(2026, 5, 1)) == ms(2026, 5, 4, 10, 30)  # EDT, UTC-4
    assert fires(Schedule.parse("0 0 * * 0"), ms(2026, 5, 1), ms(2026, 5, 31)) == fires(
        Schedule.parse("0 0 * * 7"), ms(2026, 5, 1), ms(2026, 5, 31)
    )  # 0 and 7 are both Sunday
    assert [utc(t) for t in fires(Schedule.parse("0 0 * * sun"), ms(2026, 5, 1), ms(2026, 5, 31))] == [
        "2026-05-03 00:00",
        "2026-05-10 00:00",
        "2026-05-17 00:00",
        "2026-05-24 00:00",
        "2026-05-31 00:00",
    ]
    # Day of month and day of week both restricted: either matches, as in every cron since Vixie's.
    first_or_friday = Schedule.parse("0 12 1 * fri")
    assert [utc(t) for t in fires(first_or_friday, ms(2026, 5, 28), ms(2026, 6, 12, 12))] == [
        "2026-05-29 12:00",
        "2026-06-01 12:00",
        "2026-06-05 12:00",
        "2026-06-12 12:00",
    ]


# -- daylight-saving time -------------------------------------------------------------------------------------


def test_new_york_daily_run_moves_in_utc_with_the_clocks() -> None:
    schedule = Schedule.parse("0 2 * * *", NEW_YORK)
    runs = fires(schedule, ms(2026, 3, 5), ms(2026, 3, 11))
    assert [utc(t) for t in runs] == [
        "2026-03-05 07:00",
        "2026-03-06 07:00",
        "2026-03-07 07:00",
        # 2026-03-08: 02:00 does not exist (02:00 EST -> 03:00 EDT); it fires at 03:00 EDT, shifted by the gap.
        "2026-03-08 07:00",
        "2026-03-09 06:00",
        "2026-03-10 06:00",
    ]
    autumn = fires(schedule, ms(2026, 10, 30), ms(2026, 11, 3))
    assert [utc(t) for t in autumn] == [
        "2026-10-30 06:00",
        "2026-10-31 06:00",
        "2026-11-01 07:00",  # 02:00 EST: once
        "2026-11-02 07:00",
    ]


@pytest.mark.parametrize("cron", ["0 2 * * *", "0 1 * * *", "30 1 * * *", "59 1 * * *", "0 0 * * *"])
def test_daily_runs_fire_exactly_once_on_the_fall_back_day(cron: str) -> None:
    schedule = Schedule.parse(cron, NEW_YORK)
    assert len(fires(schedule, *local_day(NEW_YORK, 2026, 11, 1))) == 1
    assert len(fires(schedule, *local_day(NEW_YORK, 2026, 3, 8))) == 1
    assert len(fires(schedule, *local_day(NEW_YORK, 2026, 10, 31))) == 1


def test_a_time_that_occurs_twice_fires_at_its_first_occurrence() -> None:
    # 2026-11-01: 01:30 EDT is 05:30 UTC, then clocks turn back and 01:30 EST is 06:30 UTC.
    schedule = Schedule.parse("30 1 * * *", NEW_YORK)
    assert schedule.next_after(ms(2026, 11, 1)) == ms(2026, 11, 1, 5, 30)
    assert schedule.next_after(ms(2026, 11, 1, 5, 30)) == ms(2026, 11, 2, 6, 30)  # not 06:30 the same day
    assert schedule.latest_between(ms(2026, 11, 1, 5, 30), ms(2026, 11, 1, 23)) is None
    assert schedule.latest_between(ms(2026, 11, 1), ms(2026, 11, 1, 23)) == ms(2026, 11, 1, 5, 30)


def test_a_time_that_does_not_exist_fires_once_shifted_forward_by_the_gap() -> None:
    # 2026-03-08: clocks jump from 02:00 EST to 03:00 EDT, so 02:30 is never shown; it fires at 03:30 EDT.
    schedule = Schedule.parse("30 2 * * *", NEW_YORK)
    assert schedule.next_after(ms(2026, 3, 8)) == ms(2026, 3, 8, 7, 30)
    assert schedule.next_after(ms(2026, 3, 8, 7, 30)) == ms(2026, 3, 9, 6, 30)
    assert schedule.latest_between(ms(2026, 3, 8), ms(2026, 3, 8, 12)) == ms(2026, 3, 8, 7, 30)
    assert len(fires(schedule, *local_day(NEW_YORK, 2026, 3, 8))) == 1


def test_a_time_that_does_not_exist_in_berlin() -> None:
    # 2026-03-29: 02:00 CET -> 03:00 CEST; 02:30 fires at 03:30 CEST (01:30 UTC), once.
    schedule = Schedule.parse("30 2 * * *", BERLIN)
    assert fires(schedule, ms(2026, 3, 28), ms(2026, 3, 30, 12)) == [
        ms(2026, 3, 28, 1, 30),
        ms(2026, 3, 29, 1, 30),
        ms(2026, 3, 30, 0, 30),
    ]
    # 2026-10-25: 03:00 CEST -> 02:00 CET; 02:30 happens at 00:30 and 01:30 UTC and fires at the first.
    assert fires(schedule, ms(2026, 10, 24), ms(2026, 10, 26, 12)) == [
        ms(2026, 10, 24, 0, 30),
        ms(2026, 10, 25, 0, 30),
        ms(2026, 10, 26, 1, 30),
    ]


@pytest.mark.parametrize("cron", ["*/15 * * * *", "0 * * * *", "*/5 0-23 * * *"])
@pytest.mark.parametrize("zone", [NEW_YORK, BERLIN])
def test_hourly_schedules_keep_a_steady_beat_through_both_changes(cron: str, zone: str) -> None:
    schedule = Schedule.parse(cron, zone)
    step = schedule.next_after(ms(2026, 1, 1, 0, 1)) - ms(2026, 1, 1)
    for start in (ms(2026, 3, 7), ms(2026, 3, 28), ms(2026, 10, 24), ms(2026, 10, 31)):
        runs = fires(schedule, start, start + 3 * DAY)
        assert {b - a for a, b in itertools.pairwise(runs)} == {step}
        assert len(runs) == 3 * DAY // step


def test_schedules_that_name_hours_follow_the_local_hour() -> None:
    # "every 15 minutes in the 1 o'clock hour": four runs on the fall-back day, not eight.
    repeated = Schedule.parse("*/15 1 * * *", NEW_YORK)
    assert [utc(t) for t in fires(repeated, *local_day(NEW_YORK, 2026, 11, 1))] == [
        "2026-11-01 05:00",
        "2026-11-01 05:15",
        "2026-11-01 05:30",
        "2026-11-01 05:45",
    ]
    # "every 15 minutes in the 2 o'clock hour": the hour is skipped on 2026-03-08, so they run at 03:xx EDT.
    skipped = Schedule.parse("*/15 2 * * *", NEW_YORK)
    assert [utc(t) for t in fires(skipped, *local_day(NEW_YORK, 2026, 3, 8))] == [
        "2026-03-08 07:00",
        "2026-03-08 07:15",
        "2026-03-08 07:30",
        "2026-03-08 07:45",
    ]


def test_two_local_times_that_become_one_instant_fire_once() -> None:
    schedule = Schedule.parse("30 2,3 * * *", NEW_YORK)
    assert [utc(t) for t in fires(schedule, *local_day(NEW_YORK, 2026, 3, 8))] == ["2026-03-08 07:30"]
    assert len(fires(schedule, *local_day(NEW_YORK, 2026, 3, 9))) == 2


def test_a_half_hour_change_lord_howe() -> None:
    # Lord Howe Island turns its clocks by 30 minutes: back from 02:00 to 01:30 on 2026-04-05 (UTC+11 -> +10:30),
    # forward from 02:00 to 02:30 on 2026-10-04.
    zone = "Australia/Lord_Howe"
    back = Schedule.parse("45 1 * * *", zone)
    assert [utc(t) for t in fires(back, *local_day(zone, 2026, 4, 5))] == ["2026-04-04 14:45"]
    forward = Schedule.parse("15 2 * * *", zone)
    assert [utc(t) for t in fires(forward, *local_day(zone, 2026, 10, 4))] == ["2026-10-03 15:45"]


def test_samoa_skipping_a_whole_day() -> None:
    # Samoa moved across the date line: 2011-12-29 23:59 (UTC-10) was followed by 2011-12-31 00:00 (UTC+14).
    schedule = Schedule.parse("30 2 * * *", "Pacific/Apia")
    assert [utc(t) for t in fires(schedule, ms(2011, 12, 28), ms(2012, 1, 1))] == [
        "2011-12-28 12:30",
        "2011-12-29 12:30",
        "2011-12-30 12:30",  # 02:30 on the 31st (and the 30th, which never was, shifted by the gap)
        "2011-12-31 12:30",
    ]


# -- latest_between ---------------------------------------------------------------------------------------------


def test_latest_between_is_none_when_nothing_fell_in_the_interval() -> None:
    schedule = Schedule.parse("0 2 * * *", BERLIN)
    assert schedule.latest_between(ms(2026, 5, 1, 0, 1), ms(2026, 5, 1, 23)) is None
    assert schedule.latest_between(ms(2026, 5, 1, 1), ms(2026, 5, 1, 1)) is None  # empty interval
    assert schedule.latest_between(ms(2026, 5, 2), ms(2026, 5, 1)) is None  # reversed interval


def test_latest_between_returns_the_latest_of_several() -> None:
    schedule = Schedule.parse("0 2 * * *", BERLIN)
    # Down for three days: three runs were missed, the loop runs once, for the latest.
    assert schedule.latest_between(ms(2026, 5, 1, 12), ms(2026, 5, 4, 12)) == ms(2026, 5, 4, 0)
    quarter = Schedule.parse("*/15 * * * *")
    assert quarter.latest_between(ms(2026, 5, 1), ms(2026, 5, 8, 9, 44)) == ms(2026, 5, 8, 9, 30)
    yearly = Schedule.parse("0 0 29 2 *")  # leap days only
    assert yearly.latest_between(ms(2020, 1, 1), ms(2027, 1, 1)) == ms(2024, 2, 29)
    assert yearly.latest_between(ms(2024, 2, 29), ms(2027, 1, 1)) is None


def test_latest_between_bounds_are_exclusive_then_inclusive() -> None:
    schedule = Schedule.parse("0 2 * * *")
    fire = ms(2026, 5, 1, 2)
    assert schedule.latest_between(fire - 1, fire) == fire
    assert schedule.latest_between(fire, fire + 1) is None
    assert schedule.latest_between(fire - 1, fire - 1 + DAY) == fire
    assert schedule.latest_between(fire - 1, fire + DAY) == fire + DAY


def test_latest_between_across_the_changes_in_new_york() -> None:
    schedule = Schedule.parse("30 1 * * *", NEW_YORK)
    # Between the two 01:30s of 2026-11-01 nothing fires: the second occurrence is not a run.
    assert schedule.latest_between(ms(2026, 11, 1, 5, 30), ms(2026, 11, 1, 6, 30)) is None
    hourly = Schedule.parse("30 * * * *", NEW_YORK)
    assert hourly.latest_between(ms(2026, 11, 1, 5, 30), ms(2026, 11, 1, 6, 30)) == ms(2026, 11, 1, 6, 30)


# -- against a minute-by-minute reference ---------------------------------------------------------------------


def reference(cron: str, zone: str, start: datetime, end: datetime, *, hourly: bool) -> list[int]:
    """The fire times in (start, end], decided minute by minute from the rules in the module docstring."""
    tz = ZoneInfo(zone)
    found = []
    moment = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while moment <= end:
        local = moment.astimezone(tz)
        wall = local.replace(tzinfo=None)
        twice = wall.replace(tzinfo=tz, fold=0).astimezone(UTC) != wall.replace(tzinfo=tz, fold=1).astimezone(
            UTC
        )
        fire = croniter.match(cron, wall) and (not twice or local.fold == 0 or hourly)
        if not hourly and not fire:
            # A local time the clocks jumped over fires at this minute if reading it with the offset from
            # before the jump gives this instant.
            for hours in (-3, 3):
                before = (moment + timedelta(hours=hours)).astimezone(tz).utcoffset()
                assert before is not None
                skipped = (moment + before).replace(tzinfo=None)
                exists = (
                    skipped.replace(tzinfo=tz).astimezone(UTC).astimezone(tz).replace(tzinfo=None) == skipped
                )
                if not exists and croniter.match(cron, skipped):
                    fire = fire or skipped.replace(tzinfo=tz, fold=0).astimezone(UTC) == moment
        if fire:
            found.append(int(moment.timestamp() * 1000))
        moment += timedelta(minutes=1)
    return found


@pytest.mark.parametrize(
    ("cron", "zone", "around", "hourly"),
    [
        ("*/20 1-3 * * *", NEW_YORK, datetime(2026, 3, 8, 7, tzinfo=UTC), False),
        ("*/20 1-3 * * *", NEW_YORK, datetime(2026, 11, 1, 6, tzinfo=UTC), False),
        ("10,40 * * * *", NEW_YORK, datetime(2026, 11, 1, 6, tzinfo=UTC), True),
        ("10,40 * * * *", NEW_YORK, datetime(2026, 3, 8, 7, tzinfo=UTC), True),
        ("0 2 * * *", BERLIN, datetime(2026, 3, 29, 1, tzinfo=UTC), False),
        ("0 2,3 * * *", BERLIN, datetime(2026, 10, 25, 1, tzinfo=UTC), False),
        ("*/10 2 * * *", "Australia/Lord_Howe", datetime(2026, 10, 3, 15, 30, tzinfo=UTC), False),
        ("*/10 1 * * *", "Australia/Lord_Howe", datetime(2026, 4, 4, 15, tzinfo=UTC), False),
        ("5 * * * *", "Australia/Lord_Howe", datetime(2026, 4, 4, 15, tzinfo=UTC), True),
        ("*/7 * * * 0", "Australia/Sydney", datetime(2026, 4, 4, 16, tzinfo=UTC), True),
    ],
)
def test_matches_a_minute_by_minute_reference(cron: str, zone: str, around: datetime, hourly: bool) -> None:
    start, end = around - timedelta(hours=20), around + timedelta(hours=20)
    schedule = Schedule.parse(cron, zone)
    start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    expected = reference(cron, zone, start, end, hourly=hourly)
    assert expected  # the window holds runs, so the comparison says something
    assert fires(schedule, start_ms, end_ms) == expected
    # Backwards, from every run, latest_between finds the run itself and nothing between runs.
    for previous, current in zip([start_ms, *expected], expected, strict=False):
        assert schedule.latest_between(previous, current) == current
        assert schedule.latest_between(previous, current - 1) is None


# -- properties -----------------------------------------------------------------------------------------------

ZONES = ["UTC", NEW_YORK, BERLIN, "Australia/Lord_Howe", "Australia/Sydney", "Asia/Kolkata", "Pacific/Apia"]
CRONS = [
    "0 2 * * *",
    "30 1 * * *",
    "30 2 * * *",
    "*/15 * * * *",
    "*/15 1-2 * * *",
    "0 */2 * * *",
    "45 23 * * 1-5",
    "0 9 1 * *",
    "17 * * * sun",
]


@cache
def transitions(zone: str, year: int) -> list[int]:
    """Instants (epoch ms, to the hour) at which `zone` changes its UTC offset in `year`."""
    tz = ZoneInfo(zone)
    moment = datetime(year, 1, 1, tzinfo=UTC)
    found = []
    while moment.year == year:
        if (moment + timedelta(hours=1)).astimezone(tz).utcoffset() != moment.astimezone(tz).utcoffset():
            found.append(int(moment.timestamp() * 1000))
        moment += timedelta(hours=1)
    return found


@st.composite
def schedules_and_instants(draw: st.DrawFn) -> tuple[Schedule, int]:
    zone = draw(st.sampled_from(ZONES))
    schedule = Schedule.parse(draw(st.sampled_from(CRONS)), zone)
    near = transitions(zone, 2026) or [ms(2026, 6, 1)]
    base = draw(st.sampled_from(near))
    return schedule, base + draw(st.integers(-2 * DAY, 2 * DAY))


@settings(max_examples=300)
@given(schedules_and_instants())
def test_next_after_is_strictly_increasing_and_latest_between_agrees(case: tuple[Schedule, int]) -> None:
    schedule, moment = case
    first = schedule.next_after(moment)
    second = schedule.next_after(first)
    assert moment < first < second
    assert first % MINUTE == 0
    assert schedule.latest_between(moment, first) == first
    assert schedule.latest_between(moment, first - 1) is None  # nothing in between
    assert schedule.latest_between(first, second) == second
    assert schedule.latest_between(moment, second) == second


@settings(max_examples=100)
@given(st.sampled_from(CRONS), st.sampled_from(ZONES), st.integers(ms(2000, 1, 1), ms(2060, 1, 1)))
def test_any_year_and_zone(cron: str, zone: str, moment: int) -> None:
    schedule = Schedule.parse(cron, zone)
    following = schedule.next_after(moment)
    assert following > moment
    assert schedule.latest_between(moment, following) == following
