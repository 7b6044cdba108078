"""MQTT payloads: every way a reply can be wrong is refused with its reason."""

from __future__ import annotations

import orjson
import pytest

from courier.core.records import Dispatch
from courier.errors import InvalidInput
from courier.schemas.mqtt import (
    CommandEnvelope,
    cancel_bytes,
    decode_presence,
    decode_reply,
    envelope_bytes,
)
from tests.unit.test_lifecycle import sent

MAX = 1024


def test_valid_reply() -> None:
    reply = decode_reply(b'{"state":"SUCCEEDED","output":{"a":1},"attempt":2}', MAX)
    assert reply.state == "SUCCEEDED"
    assert reply.output == {"a": 1}
    assert reply.attempt == 2


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b"x" * (MAX + 1), "oversized"),
        (b"\xff\xfe{}", "not_utf8"),
        (b'{"state": "SUCC', "malformed"),
        (b"[1, 2]", "invalid"),
        (b'{"state": "DONE"}', "invalid"),
        (b'{"state": "QUEUED"}', "invalid"),
        (b'{"state": "SUCCEEDED", "progress": "50"}', "invalid"),
        (b'{"state": "SUCCEEDED", "progress": 101}', "invalid"),
        (b'{"state": "SUCCEEDED", "output": [1]}', "invalid"),
        (b'{"state": "FAILED", "reason": 7}', "invalid"),
        (b'{"state": "FAILED", "attempt": 0}', "invalid"),
        (b"{}", "invalid"),
        (b'{"state": "SUCCEEDED", "output": ' + b"[" * 2000 + b"]" * 2000 + b"}", "oversized"),
    ],
)
def test_bad_replies_are_refused(payload: bytes, why: str) -> None:
    with pytest.raises(InvalidInput) as info:
        decode_reply(payload, MAX)
    assert info.value.extra["why"] == why


def test_deeply_nested_json_is_malformed_not_a_crash() -> None:
    payload = b'{"state": "SUCCEEDED", "output": {"a": ' + b"[" * 5000 + b"]" * 5000 + b"}}"
    with pytest.raises(InvalidInput) as info:
        decode_reply(payload, len(payload))
    assert info.value.extra["why"] == "malformed"


def test_presence() -> None:
    assert decode_presence(b'{"online": true}', MAX).online is True
    with pytest.raises(InvalidInput):
        decode_presence(b'{"online": "yes"}', MAX)


def test_envelope_matches_the_spec() -> None:
    dispatch = Dispatch(sent(), {"delay": 3}, 1000.0)
    body = orjson.loads(envelope_bytes(dispatch))
    assert set(body) == {
        "id",
        "request",
        "command",
        "args",
        "kind",
        "attempt",
        "issued_at",
        "expires_at",
        "timeout",
        "v",
    }
    assert body["kind"] == "device"
    assert body["attempt"] == 1
    assert body["args"] == {"delay": 3}
    assert body["issued_at"].endswith("Z")
    assert CommandEnvelope.model_validate(body).id == dispatch.execution.id
    attached = orjson.loads(envelope_bytes(dispatch, device="sensor-1"))
    assert attached["device"] == "sensor-1"


def test_cancel_notice() -> None:
    assert orjson.loads(cancel_bytes("e1")) == {"id": "e1", "cancel": True}
