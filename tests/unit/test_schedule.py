"""Schedule windows: daily windows, midnight, days of the week, date bounds, DST, zones."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from courier.core.schedule import (
    Schedule,
    ScheduleKind,
    TimeType,
    window_from,
    zone_of,
)
from courier.errors import InvalidInput

UTC_ZONE = ZoneInfo("UTC")
PARIS = ZoneInfo("Europe/Paris")
W = ScheduleKind.WINDOW


def ts(text: str, zone: ZoneInfo = UTC_ZONE) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=zone).timestamp()


def window(schedule: Schedule, now: str, zone: ZoneInfo = UTC_ZONE) -> tuple[str, str] | None:
    found = window_from(schedule, ts(now, zone), zone)
    if found is None:
        return None
    return tuple(  # type: ignore[return-value]
        datetime.fromtimestamp(t, zone).replace(tzinfo=None).isoformat(timespec="minutes")
        if t != float("inf")
        else "end"
        for t in found
    )


def daily(opens: str, closes: str, **kw: Any) -> Schedule:
    return Schedule(
        W, daily_start=time.fromisoformat(opens), daily_end=time.fromisoformat(closes), **kw
    )


def test_a_date_range_is_one_window() -> None:
    s = Schedule(W, start=datetime(2026, 12, 1, 8), end=datetime(2026, 12, 3, 8))
    assert window(s, "2026-11-30T00:00") == ("2026-12-01T08:00", "2026-12-03T08:00")
    assert window(s, "2026-12-02T00:00") == ("2026-12-01T08:00", "2026-12-03T08:00")
    assert window(s, "2026-12-03T08:00") is None


def test_open_ended_range() -> None:
    s = Schedule(W, start=datetime(2026, 12, 1, 8))
    assert window(s, "2026-11-30T00:00") == ("2026-12-01T08:00", "end")


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2026-11-23T08:00", ("2026-11-23T09:00", "2026-11-23T17:00")),
        ("2026-11-23T10:00", ("2026-11-23T09:00", "2026-11-23T17:00")),
        ("2026-11-23T17:00", ("2026-11-24T09:00", "2026-11-24T17:00")),
        ("2026-11-23T23:59", ("2026-11-24T09:00", "2026-11-24T17:00")),
    ],
)
def test_daily_window(now: str, expected: tuple[str, str]) -> None:
    assert window(daily("09:00", "17:00"), now) == expected


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2026-11-23T21:00", ("2026-11-23T22:00", "2026-11-24T06:00")),
        ("2026-11-23T23:30", ("2026-11-23T22:00", "2026-11-24T06:00")),
        ("2026-11-24T03:00", ("2026-11-23T22:00", "2026-11-24T06:00")),
        ("2026-11-24T06:00", ("2026-11-24T22:00", "2026-11-25T06:00")),
    ],
)
def test_a_window_crossing_midnight(now: str, expected: tuple[str, str]) -> None:
    assert window(daily("22:00", "06:00"), now) == expected


def test_days_of_the_week_count_the_day_a_window_opens() -> None:
    weekdays = daily("09:00", "17:00", days=frozenset(range(5)))
    assert window(weekdays, "2026-11-27T18:00") == (
        "2026-11-30T09:00",
        "2026-11-30T17:00",
    )  # Fri -> Mon
    nights = daily("22:00", "06:00", days=frozenset({4}))  # Friday night only
    assert window(nights, "2026-11-28T05:00") == ("2026-11-27T22:00", "2026-11-28T06:00")
    assert window(nights, "2026-11-28T06:00") == ("2026-12-04T22:00", "2026-12-05T06:00")


def test_whole_days_back_to_back_are_one_window() -> None:
    weekend = Schedule(W, days=frozenset({5, 6}))
    assert window(weekend, "2026-11-26T12:00") == ("2026-11-28T00:00", "2026-11-30T00:00")


def test_the_date_range_bounds_daily_windows() -> None:
    s = daily("09:00", "17:00", start=datetime(2026, 11, 23, 12), end=datetime(2026, 11, 24, 10))
    assert window(s, "2026-11-23T00:00") == ("2026-11-23T12:00", "2026-11-23T17:00")
    assert window(s, "2026-11-23T18:00") == ("2026-11-24T09:00", "2026-11-24T10:00")
    assert window(s, "2026-11-24T10:00") is None


def test_aware_bounds_are_absolute_and_naive_ones_local() -> None:
    aware = Schedule(W, start=datetime(2026, 12, 1, 8, tzinfo=UTC))
    naive = Schedule(W, start=datetime(2026, 12, 1, 8))
    assert window_from(aware, 0, PARIS) == (ts("2026-12-01T08:00"), float("inf"))
    assert window_from(naive, 0, PARIS) == (ts("2026-12-01T08:00", PARIS), float("inf"))


def test_daily_windows_follow_local_time_across_dst() -> None:
    s = daily("09:00", "17:00")
    before = window_from(s, ts("2026-03-28T00:00", PARIS), PARIS)
    after = window_from(s, ts("2026-03-30T00:00", PARIS), PARIS)
    assert before is not None
    assert after is not None
    assert before[0] == ts("2026-03-28T08:00")  # 09:00 CET
    assert after[0] == ts("2026-03-30T07:00")  # 09:00 CEST


def test_a_window_opening_in_the_skipped_hour_opens_when_time_resumes() -> None:
    s = daily("02:30", "03:30")
    found = window_from(s, ts("2026-03-29T00:00", PARIS), PARIS)
    assert found == (ts("2026-03-29T01:00"), ts("2026-03-29T01:30"))  # 03:00-03:30 CEST


def test_a_window_in_the_repeated_hour_opens_at_its_first_reading() -> None:
    s = daily("02:30", "03:30")
    found = window_from(s, ts("2026-10-25T00:00", PARIS), PARIS)
    assert found == (ts("2026-10-25T00:30"), ts("2026-10-25T02:30"))  # 02:30 CEST-03:30 CET


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start": datetime(2026, 12, 2), "end": datetime(2026, 12, 1)}, "after start"),
        ({"start": datetime(2026, 12, 2), "end": datetime(2026, 12, 2)}, "after start"),
        ({"daily_start": time(9)}, "both window_start_time"),
        ({"daily_start": time(9), "daily_end": time(9)}, "empty"),
        ({"start": datetime(2026, 12, 1, tzinfo=UTC), "end": datetime(2026, 12, 2)}, "neither"),
    ],
)
def test_impossible_schedules_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        Schedule(W, **kwargs)  # type: ignore[arg-type]


def test_zones() -> None:
    assert zone_of(TimeType.DEVICE, "Asia/Tokyo", "Europe/Paris") == ZoneInfo("Asia/Tokyo")
    assert zone_of(TimeType.DEVICE, None, "Europe/Paris") == PARIS
    assert zone_of(TimeType.CONSOLE, "Asia/Tokyo", "Europe/Paris") == PARIS
    assert zone_of(TimeType.CONSOLE, "Asia/Tokyo", None) == UTC_ZONE


def test_json_round_trip() -> None:
    s = daily(
        "22:00",
        "06:00",
        days=frozenset({0, 4}),
        start=datetime(2026, 12, 1),
        time_type=TimeType.DEVICE,
    )
    assert Schedule.from_json(s.to_json()) == s


@given(
    start=st.times(),
    end=st.times(),
    days=st.frozensets(st.integers(0, 6)),
    now=st.floats(min_value=1.7e9, max_value=1.9e9),
    zone=st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe"]),
)
def test_windows_are_never_in_the_past_and_contain_or_follow_now(
    start: time, end: time, days: frozenset[int], now: float, zone: str
) -> None:
    if start.replace(microsecond=0) == end.replace(microsecond=0):
        return
    s = Schedule(
        W, daily_start=start.replace(microsecond=0), daily_end=end.replace(microsecond=0), days=days
    )
    found = window_from(s, now, ZoneInfo(zone))
    assert found is not None
    opens, closes = found
    assert opens < closes
    assert closes > now
    if opens > now:  # the next window: nothing was open in between
        assert window_from(s, (now + opens) / 2, ZoneInfo(zone)) == found
