"""MQTT payloads (SPEC section 6): command envelope, cancel notice, reply, presence."""

from __future__ import annotations

import json
from typing import Any, Literal, get_args

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from courier.clock import isoformat
from courier.core.records import Dispatch
from courier.errors import InvalidInput
from courier.record import record
from courier.schemas.common import strict_json

ENVELOPE_VERSION = 1
MAX_REASON = 1024


class CommandEnvelope(BaseModel):
    """What a device receives on P/devices/{device}/commands/{execution}."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    request: str
    command: str
    args: dict[str, Any] = Field(default_factory=dict)
    kind: str = "device"
    device: str | None = None
    attempt: int = Field(1, ge=1)
    issued_at: str
    expires_at: str
    timeout: float
    v: int = ENVELOPE_VERSION


class CancelNotice(BaseModel):
    """Sent on the command topic of an execution the device may hold when it is cancelled."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    cancel: Literal[True]


class Reply(BaseModel):
    """What a device publishes on P/devices/{device}/replies/{execution}.

    `attempt` is optional: Courier's SDK sends the highest attempt it has seen, so a late
    reply to an attempt Courier has given up on is recognised as stale.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    state: Literal["ACKNOWLEDGED", "IN_PROGRESS", "SUCCEEDED", "FAILED"]
    reason: str | None = Field(None, max_length=MAX_REASON)
    progress: int | None = Field(None, ge=0, le=100)
    output: dict[str, Any] | None = None
    attempt: int | None = Field(None, ge=1)


class Presence(BaseModel):
    """Retained on P/devices/{device}/presence; the device's Last Will says offline."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    online: bool


def envelope_bytes(dispatch: Dispatch, kind: str = "device", device: str | None = None) -> bytes:
    """The command envelope of a just-claimed execution, encoded (hot path: no model)."""
    e = dispatch.execution
    body: dict[str, Any] = {
        "id": e.id,
        "request": e.request_id,
        "command": e.command,
        "args": dispatch.args,
        "kind": kind,
        "attempt": e.attempt,
        "issued_at": isoformat(dispatch.request_created_at),
        "expires_at": isoformat(e.expires_at),
        "timeout": e.timeout,
        "v": ENVELOPE_VERSION,
    }
    if device is not None:
        body["device"] = device
    return orjson.dumps(body)


def cancel_bytes(execution_id: str) -> bytes:
    return orjson.dumps({"id": execution_id, "cancel": True})


def presence_bytes(online: bool) -> bytes:
    return orjson.dumps({"online": online})


def describe(error: ValidationError) -> str:
    """A validation error in one line: where and why, for logs and 4xx answers."""
    parts = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item["loc"]) or "body"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def parse_json_object(payload: bytes, max_bytes: int) -> Any:
    """Bytes to JSON, with the checks every MQTT payload gets (size, UTF-8, JSON)."""
    if len(payload) > max_bytes:
        raise InvalidInput(f"payload of {len(payload)} bytes exceeds {max_bytes}", why="oversized")
    try:
        # orjson checks the UTF-8 itself: decoding to a str first cost as much as the parse.
        return strict_json(payload)
    except json.JSONDecodeError as exc:
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError as not_utf8:
            raise InvalidInput(f"payload is not UTF-8: {not_utf8}", why="not_utf8") from exc
        raise InvalidInput(f"payload is not JSON Courier can keep: {exc}", why="malformed") from exc


@record
class ReplyFields:
    """A valid reply's fields (the `Reply` model's, without the model)."""

    state: str
    reason: str | None = None
    progress: int | None = None
    output: dict[str, Any] | None = None
    attempt: int | None = None


_REPLY_STATES = frozenset(get_args(Reply.model_fields["state"].annotation))


def _usual_reply(value: Any) -> ReplyFields | None:
    """A reply of the usual shape, checked here exactly as the model checks it (strict: a
    bool is not an int); None for anything else, which the model then decides on and words
    the refusal of. Two replies per command: the model took 3 µs each."""
    if type(value) is not dict:
        return None
    state = value.get("state")
    reason = value.get("reason")
    progress = value.get("progress")
    output = value.get("output")
    attempt = value.get("attempt")
    if (
        type(state) is str
        and state in _REPLY_STATES
        and (reason is None or (type(reason) is str and len(reason) <= MAX_REASON))
        and (progress is None or (type(progress) is int and 0 <= progress <= 100))
        and (output is None or type(output) is dict)
        and (attempt is None or (type(attempt) is int and attempt >= 1))
    ):
        return ReplyFields(state, reason, progress, output, attempt)
    return None


def decode_reply(payload: bytes, max_bytes: int) -> ReplyFields:
    value = parse_json_object(payload, max_bytes)
    usual = _usual_reply(value)
    if usual is not None:
        return usual
    try:
        reply = Reply.model_validate(value)
    except ValidationError as exc:
        raise InvalidInput(f"invalid reply: {describe(exc)}", why="invalid") from exc
    return ReplyFields(reply.state, reply.reason, reply.progress, reply.output, reply.attempt)


def decode_presence(payload: bytes, max_bytes: int) -> Presence:
    value = parse_json_object(payload, max_bytes)
    try:
        return Presence.model_validate(value)
    except ValidationError as exc:
        raise InvalidInput(f"invalid presence: {describe(exc)}", why="invalid") from exc
