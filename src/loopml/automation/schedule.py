"""Cron schedules in a time zone: when a model's loop is due, as epoch milliseconds (UTC).

A `Schedule` is a 5-field cron expression (minute hour day-of-month month day-of-week, or one of the macros
`@hourly`, `@daily`, `@midnight`, `@weekly`, `@monthly`, `@yearly`, `@annually`) read as wall-clock time in an
IANA time zone. croniter matches the fields; the wall-clock times it yields are mapped to instants here, with
`zoneinfo`, so daylight-saving changes follow the rules below whatever croniter itself does with time zones.

Daylight-saving time (examples for America/New_York, 2026):

- A local time that does not exist (clocks jump from 02:00 to 03:00 on 2026-03-08, so `30 2 * * *` names no
  instant that day) fires once, shifted forward by the gap: at 03:30 EDT (07:30 UTC). This is how Python reads
  such a time (PEP 495, `fold=0`): with the offset in force before the jump.
- A local time that occurs twice (clocks turn back from 02:00 to 01:00 on 2026-11-01, so 01:30 happens at
  05:30 and at 06:30 UTC) fires once, at its first occurrence (05:30 UTC). A daily job runs once a day.
- Except for schedules that fire in every hour of the day (hour field `*` or `0-23`, e.g. `*/15 * * * *`,
  `0 * * * *`): they keep a steady beat in elapsed time, as cronie treats its "wildcard" jobs. They fire in both
  occurrences of a repeated hour, and the times the clocks jumped over are skipped (no extra run at 03:xx).

A schedule whose hour field names hours (`*/15 2 * * *`, `0 */2 * * *`) is tied to those local hours and follows
the first two rules even where its minute field is a wildcard (cronie would count it as a wildcard job): it fires
as many times as on any other day. Two local times that map to one instant (`30 2,3 * * *` on the
spring-forward day) fire once.

For comparison, croniter 7.0.0 given a time zone fires a nonexistent time at the jump (03:00 EDT, as
cronie does for fixed-time jobs) and a repeated one twice (05:30 and 06:30 UTC); neither is relied on here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property, lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import CroniterBadDateError, CroniterBadTypeRangeError, CroniterError, croniter

from loopml.core.errors import InvalidInput

__all__ = ["Schedule"]

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
FIELDS = 5
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
# Offset changes are found by sampling the zone's UTC offset every half hour over a day and a bit either side of
# an instant: every offset change in the tz database is at most a day (Samoa skipped 2011-12-30), and no two
# changes are less than half an hour apart.
_REACH = timedelta(hours=26)
_STEP = timedelta(minutes=30)


@dataclass(frozen=True)
class Schedule:
    """A 5-field cron expression (`cron`) read in the IANA time zone `timezone`; see the module for DST rules."""

    cron: str
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        _check_cron(self.cron, "schedule")
        _check_zone(self.timezone, "schedule")

    @classmethod
    def parse(cls, cron: object, timezone: object = "UTC", *, where: str = "schedule") -> Schedule:
        """A schedule from user input; `InvalidInput` naming `where` for a non-string, a cron expression that is
        not 5 valid fields (or never fires) and an unknown time zone."""
        if not isinstance(cron, str):
            raise InvalidInput(
                f'{where}: the cron expression must be a string such as "0 2 * * *", got {type(cron).__name__}'
            )
        if not isinstance(timezone, str):
            raise InvalidInput(
                f'{where}: the time zone must be a string such as "Europe/Berlin", got {type(timezone).__name__}'
            )
        text = " ".join(cron.split())
        _check_cron(text, where)
        _check_zone(timezone, where)
        return cls(text, timezone)

    def next_after(self, after_ms: int) -> int:
        """Epoch milliseconds of the first fire time strictly after `after_ms`."""
        after = _EPOCH + after_ms * _MS
        low, _ = _offsets(self._zone, after)
        # A wall-clock time W fires at W - offset, for an offset the zone uses near W, so no wall before
        # `after + low` fires after `after`. Walls are UTC datetimes read as local ones: croniter steps through
        # them with no time zone arithmetic of its own.
        walls = croniter(self._expression, after + low)
        best: datetime | None = None
        stop: datetime | None = None
        while True:
            wall = walls.get_next(datetime)
            if stop is not None and wall > stop:
                break
            for instant in self._fires(wall):
                if instant > after and (best is None or instant < best):
                    best = instant
                    # A later wall W fires no earlier than W - high: past best + high, none can come first.
                    stop = best + _offsets(self._zone, best)[1]
        assert best is not None
        return _ms(best)

    def latest_between(self, after_ms: int, until_ms: int) -> int | None:
        """The latest fire time `t` with `after_ms < t <= until_ms`, or None.

        A controller that was down for three days asks once for the latest time it missed, and runs once.
        """
        if until_ms <= after_ms:
            return None
        until = _EPOCH + until_ms * _MS
        _, high = _offsets(self._zone, until)
        # The mirror of `next_after`: no wall after `until + high` fires at or before `until`.
        walls = croniter(self._expression, until + high + timedelta(seconds=1))
        best: datetime | None = None
        stop: datetime | None = None
        while True:
            try:
                wall = walls.get_prev(datetime)
            except CroniterBadDateError:  # croniter found no earlier date at all
                break
            if stop is not None and wall < stop:
                break
            for instant in self._fires(wall):
                if instant <= until and (best is None or instant > best):
                    best = instant
                    # An earlier wall W fires no later than W - low: before best + low, none can come later.
                    stop = best + _offsets(self._zone, best)[0]
        if best is None or _ms(best) <= after_ms:
            return None
        return _ms(best)

    # -- internals ---------------------------------------------------------------------------------------------

    @cached_property
    def _expression(self) -> str:
        return MACROS.get(self.cron, self.cron)

    @cached_property
    def _zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @cached_property
    def _hourly(self) -> bool:
        """True when the schedule fires in every hour of the day (the hour field names no hour)."""
        hours = croniter(self._expression, _EPOCH).expanded[1]  # ints or "*" (the stubs say str)
        return {str(h) for h in hours} in ({"*"}, {str(h) for h in range(24)})

    def _fires(self, wall: datetime) -> tuple[datetime, ...]:
        """The instants (UTC) at which the wall-clock time `wall` (a UTC datetime read as local) fires."""
        local = wall.replace(tzinfo=self._zone)
        first = local.replace(fold=0).astimezone(UTC)
        second = local.replace(fold=1).astimezone(UTC)
        if first == second:
            return (first,)
        if first < second:  # the wall time occurs twice (clocks turned back): PEP 495 gives the two instants
            return (first, second) if self._hourly else (first,)
        # The wall time does not exist (clocks jumped over it); fold=0 reads it with the offset before the jump,
        # which is the wall time shifted forward by the gap.
        return () if self._hourly else (first,)


def _check_cron(cron: str, where: str) -> str:
    """The 5-field form of `cron` (macros expanded); `InvalidInput` unless it is valid and ever fires."""
    expression = MACROS.get(cron, cron)
    fields = expression.split()
    if len(fields) != FIELDS:
        raise InvalidInput(
            f"{where}: {cron!r} has {len(fields)} fields; a schedule takes 5 (minute hour day-of-month month "
            f'day-of-week), e.g. "0 2 * * *"'
        )
    try:
        croniter(expression, _EPOCH).get_next(datetime)
    except CroniterBadDateError:
        raise InvalidInput(f"{where}: {cron!r} names no date that exists (e.g. 30 February)") from None
    except (CroniterError, CroniterBadTypeRangeError, ValueError, TypeError, KeyError, IndexError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InvalidInput(f"{where}: {cron!r} is not a valid cron expression ({reason})") from None
    return expression


def _check_zone(name: str, where: str) -> ZoneInfo:
    if name not in _zone_names() or name == "localtime":
        raise InvalidInput(
            f'{where}: unknown time zone {name!r}; use an IANA name such as "Europe/Berlin" or "UTC"'
        )
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidInput(f"{where}: time zone {name!r} cannot be loaded") from None


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def _offsets(zone: ZoneInfo, instant: datetime) -> tuple[timedelta, timedelta]:
    """The lowest and highest UTC offset `zone` uses within `_REACH` of `instant`."""
    seen = set()
    moment = instant - _REACH
    while moment <= instant + _REACH:
        offset = moment.astimezone(zone).utcoffset()
        assert offset is not None
        seen.add(offset)
        moment += _STEP
    return min(seen), max(seen)


def _ms(instant: datetime) -> int:
    return (instant - _EPOCH) // _MS
