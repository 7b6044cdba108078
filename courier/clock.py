"""Time as an injected dependency, so timeout and retry logic is tested without sleeping."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """Wall-clock time in seconds since the epoch."""

    def now(self) -> float: ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.time()


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        self._now += seconds
        return self._now

    def set(self, value: float) -> None:
        self._now = value


def to_datetime(ts: float | None) -> datetime | None:
    """An epoch timestamp as an aware UTC datetime (None stays None)."""
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


_last_second: list[object] = [None, ""]


def isoformat(ts: float) -> str:
    """An epoch timestamp as ISO 8601 UTC with milliseconds and a Z.

    Formatting the date is the slow part and consecutive calls mostly fall in the same
    second, so the text of the last second is kept.
    """
    second = int(ts // 1)
    micros = round((ts - second) * 1e6)  # as datetime rounds, so both agree to the digit
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    millis = micros // 1000
    if _last_second[0] != second:
        _last_second[1] = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _last_second[0] = second
    return f"{_last_second[1]}.{millis:03d}Z"
