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


_seconds: dict[int, str] = {}
_texts: dict[float, str] = {}
_TEXTS_KEPT = 4096


def isoformat(ts: float) -> str:
    """An epoch timestamp as ISO 8601 UTC with milliseconds and a Z.

    Most calls repeat a time: every event of one commit carries that commit's time, and an
    envelope's issue and expiry times are shared by the commands sent together (measured: 5
    in 6 calls). The text of the last few thousand times is kept, and formatting the date,
    the slow part, is kept per second.
    """
    text = _texts.get(ts)
    if text is not None:
        return text
    second = int(ts // 1)
    micros = round((ts - second) * 1e6)  # as datetime rounds, so both agree to the digit
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    date = _seconds.get(second)
    if date is None:
        if len(_seconds) >= 64:
            _seconds.clear()
        date = _seconds[second] = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    text = f"{date}.{micros // 1000:03d}Z"
    if len(_texts) >= _TEXTS_KEPT:
        _texts.clear()
    _texts[ts] = text
    return text
