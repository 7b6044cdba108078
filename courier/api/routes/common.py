"""Query and path helpers shared by the route modules."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Query

from courier.errors import InvalidInput
from courier.ids import describe_bad_device_id, is_device_id
from courier.schemas.states import ExecutionState

Limit = Annotated[int, Query(ge=1, le=1000, description="page size")]
Offset = Annotated[int, Query(ge=0, le=1_000_000_000, description="items to skip")]
CsvQuery = Annotated[str | None, Query(description="comma-separated values")]


def device_path(device_id: str) -> str:
    """A device id from a path: 422 with the reason when it cannot be a device id."""
    if not is_device_id(device_id):
        raise InvalidInput(describe_bad_device_id(device_id))
    return device_id


def csv(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(v.strip() for v in value.split(",") if v.strip())


def csv_devices(value: str | None) -> tuple[str, ...]:
    return tuple(device_path(v) for v in csv(value))


def csv_states(value: str | None) -> tuple[ExecutionState, ...]:
    states = []
    for item in csv(value):
        try:
            states.append(ExecutionState(item.upper()))
        except ValueError:
            names = ", ".join(s.value for s in ExecutionState)
            raise InvalidInput(f"unknown state {item!r}; use one of {names}") from None
    return tuple(states)


def timestamp(value: datetime | None) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise InvalidInput(f"time {value.isoformat()} needs a time zone (e.g. Z or +02:00)")
    return value.timestamp()
