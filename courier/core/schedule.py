"""Schedule windows: when a scheduled command may be sent, in a device's or the tenant's time.

A schedule is an optional date range (start, end), an optional daily window (start and end
time of day; an end before the start crosses midnight) and optional days of the week (the
day a daily window opens on). Naive date-times are local to the schedule's time zone, aware
ones are absolute. Everything here is a plain function of values.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from courier.errors import InvalidInput

DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
SEARCH_DAYS = 800  # how far ahead to look for a window before saying there is none


class ScheduleKind(StrEnum):
    IMMEDIATE = "IMMEDIATE"
    WINDOW = "WINDOW"  # sent once, inside a window
    RECURRING = "RECURRING"  # tried in each window until it succeeds or the schedule ends


class TimeType(StrEnum):
    CONSOLE = "console"  # the tenant's time zone
    DEVICE = "device"  # each device's own time zone


@dataclass(frozen=True, slots=True)
class Schedule:
    kind: ScheduleKind
    start: datetime | None = None
    end: datetime | None = None
    daily_start: time | None = None
    daily_end: time | None = None
    days: frozenset[int] = frozenset()  # 0 = Monday; empty = every day
    time_type: TimeType = TimeType.CONSOLE

    def __post_init__(self) -> None:
        check(self)

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind.value,
            "start_datetime": None if self.start is None else self.start.isoformat(),
            "end_datetime": None if self.end is None else self.end.isoformat(),
            "window_start_time": None if self.daily_start is None else self.daily_start.isoformat(),
            "window_end_time": None if self.daily_end is None else self.daily_end.isoformat(),
            "days": [DAYS[d] for d in sorted(self.days)],
            "time_type": self.time_type.value,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Schedule:
        def dt(key: str) -> datetime | None:
            value = data.get(key)
            return None if value is None else datetime.fromisoformat(str(value))

        def tm(key: str) -> time | None:
            value = data.get(key)
            return None if value is None else time.fromisoformat(str(value))

        days = data.get("days") or []
        assert isinstance(days, list)
        return cls(
            kind=ScheduleKind(str(data["kind"])),
            start=dt("start_datetime"),
            end=dt("end_datetime"),
            daily_start=tm("window_start_time"),
            daily_end=tm("window_end_time"),
            days=frozenset(DAYS.index(str(d)) for d in days),
            time_type=TimeType(str(data.get("time_type", "console"))),
        )


def check(schedule: Schedule) -> None:
    """Refuse a schedule that can never open, with the reason."""
    if schedule.kind is ScheduleKind.IMMEDIATE:
        return
    if (schedule.daily_start is None) != (schedule.daily_end is None):
        raise InvalidInput("schedule_args: give both window_start_time and window_end_time")
    if schedule.daily_start is not None and schedule.daily_start == schedule.daily_end:
        raise InvalidInput("schedule_args: the daily window is empty (start equals end)")
    start, end = schedule.start, schedule.end
    if start is not None and end is not None:
        if (start.tzinfo is None) != (end.tzinfo is None):
            raise InvalidInput("schedule_args: give both date-times with a time zone, or neither")
        if end <= start:
            raise InvalidInput("schedule_args: end_datetime must be after start_datetime")
    if any(not 0 <= d <= 6 for d in schedule.days):
        raise InvalidInput("schedule_args: days must be monday to sunday")


def _instant(value: datetime, zone: ZoneInfo) -> float:
    """A date-time as a timestamp: naive ones are local to `zone` (the earlier of two
    readings in the hour repeated by DST, and past the hour skipped by it)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.timestamp()


def _local(day: date, at: time, zone: ZoneInfo) -> float:
    """A local wall-clock time as a timestamp. A time skipped by a DST change opens at the
    first minute after it that exists; a time that happens twice counts its first reading."""
    naive = datetime.combine(day, at)
    for minutes in range(24 * 60):
        candidate = naive + timedelta(minutes=minutes)
        stamp = candidate.replace(tzinfo=zone).timestamp()
        if datetime.fromtimestamp(stamp, zone).replace(tzinfo=None) == candidate:
            return stamp
    return naive.replace(tzinfo=zone).timestamp()  # pragma: no cover - no zone skips a day


def window_from(schedule: Schedule, now: float, zone: ZoneInfo) -> tuple[float, float] | None:
    """The window open at `now`, or the next one: (opens, closes) as timestamps; None if the
    schedule has no window left. A window's close is bounded by the schedule's end, and
    windows that follow each other without a gap count as one."""
    found = _single_window(schedule, now, zone)
    if found is None:
        return None
    opens, closes = found
    for _ in range(SEARCH_DAYS):
        following = _single_window(schedule, closes, zone)
        if following is None or following[0] > closes:
            break
        closes = following[1]
    return (opens, closes)


def _single_window(schedule: Schedule, now: float, zone: ZoneInfo) -> tuple[float, float] | None:
    if schedule.kind is ScheduleKind.IMMEDIATE:
        return (now, float("inf"))
    lower = -float("inf") if schedule.start is None else _instant(schedule.start, zone)
    upper = float("inf") if schedule.end is None else _instant(schedule.end, zone)
    if now >= upper:
        return None
    if schedule.daily_start is None and not schedule.days:
        return (lower, upper)
    begin = datetime.fromtimestamp(max(now, lower), zone).date() - timedelta(days=1)
    for offset in range(SEARCH_DAYS):
        day = begin + timedelta(days=offset)
        if schedule.days and day.weekday() not in schedule.days:
            continue
        if schedule.daily_start is None or schedule.daily_end is None:
            opens, closes = (
                _local(day, time(0), zone),
                _local(day + timedelta(days=1), time(0), zone),
            )
        else:
            opens = _local(day, schedule.daily_start, zone)
            close_day = (
                day if schedule.daily_end > schedule.daily_start else day + timedelta(days=1)
            )
            closes = _local(close_day, schedule.daily_end, zone)
        opens, closes = max(opens, lower), min(closes, upper)
        if opens >= upper:
            return None
        if closes > opens and closes > now:
            return (opens, closes)
    return None


def zone_of(time_type: TimeType, device_zone: str | None, tenant_zone: str | None) -> ZoneInfo:
    """The time zone a schedule is read in: the device's (falling back to the tenant's) or the
    tenant's; UTC when none is set."""
    name = (device_zone or tenant_zone) if time_type is TimeType.DEVICE else tenant_zone
    return ZoneInfo(name or "UTC")
