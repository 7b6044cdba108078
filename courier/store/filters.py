"""Query filters shared by every backend."""

from __future__ import annotations

from dataclasses import dataclass

from courier.schemas.states import ExecutionState

COUNT_CAP = 10_000
"""Lists count their matches exactly up to this many; past it they say the count is capped."""


@dataclass(frozen=True, slots=True)
class ExecutionFilter:
    request_ids: tuple[str, ...] = ()
    device_ids: tuple[str, ...] = ()
    states: tuple[ExecutionState, ...] = ()
    command: str | None = None
    internal: bool | None = None
    since: float | None = None
    until: float | None = None


@dataclass(frozen=True, slots=True)
class RequestFilter:
    command: str | None = None
    command_type: str | None = None
    device_type: str | None = None
    issued_by: str | None = None
    device_ids: tuple[str, ...] = ()
    since: float | None = None
    until: float | None = None


@dataclass(frozen=True, slots=True)
class DeviceFilter:
    online: bool | None = None
    kind: str | None = None
