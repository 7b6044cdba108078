"""The event Courier publishes on P/tenants/{tenant}/events for each state change."""

from __future__ import annotations

from typing import Any

import orjson

from courier.clock import isoformat
from courier.core.records import Change


def event_body(change: Change) -> dict[str, Any]:
    """The event as JSON values (states are StrEnum members: orjson writes their values)."""
    after, event = change.after, change.event
    body: dict[str, Any] = {
        "execution": after.id,
        "request": after.request_id,
        "device": after.device_id,
        "command": after.command,
        "from": None if change.before is None else change.before.state,
        "state": after.state,
        "attempt": after.attempt,
        "at": isoformat(event.at),
        "actor": event.actor,
        "reason": event.reason,
    }
    if after.state.terminal and after.output is not None:
        body["output"] = after.output
    return body


def event_bytes(change: Change) -> bytes:
    return orjson.dumps(event_body(change))
