"""Query filters shared by every backend."""

from __future__ import annotations

from courier.record import record
from courier.schemas.states import ExecutionState

COUNT_CAP = 10_000
"""Lists count their matches exactly up to this many; past it they say the count is capped."""


@record
class ExecutionFilter:
    request_ids: tuple[str, ...] = ()
    device_ids: tuple[str, ...] = ()
    states: tuple[ExecutionState, ...] = ()
    command: str | None = None
    internal: bool | None = None
    since: float | None = None
    until: float | None = None


@record
class RequestFilter:
    command: str | None = None
    command_type: str | None = None
    device_type: str | None = None
    issued_by: str | None = None
    device_ids: tuple[str, ...] = ()
    since: float | None = None
    until: float | None = None


@record
class DeviceFilter:
    online: bool | None = None
    kind: str | None = None
