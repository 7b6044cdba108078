"""MQTT payloads: every way a reply can be wrong is refused with its reason."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from courier.core.records import Dispatch
from courier.errors import InvalidInput
from courier.schemas.common import strict_json
from courier.schemas.mqtt import (
    CommandEnvelope,
    Reply,
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


_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=105),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(["ACKNOWLEDGED", "IN_PROGRESS", "SUCCEEDED", "FAILED", "QUEUED", ""]),
    st.text(max_size=3),
    st.just("r" * 1025),
    st.lists(st.integers(-9, 9), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(-9, 9), max_size=2),
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from([*Reply.model_fields, "extra"]), _values, max_size=6))
def test_a_reply_is_decoded_as_the_model_decodes_it(body: dict[str, object]) -> None:
    payload = orjson.dumps(body)
    try:
        model = Reply.model_validate(orjson.loads(payload))
    except ValidationError:
        with pytest.raises(InvalidInput) as info:
            decode_reply(payload, 1 << 16)
        assert info.value.extra["why"] == "invalid"
        return
    decoded = decode_reply(payload, 1 << 16)
    assert (decoded.state, decoded.reason, decoded.progress, decoded.output, decoded.attempt) == (
        model.state,
        model.reason,
        model.progress,
        model.output,
        model.attempt,
    )


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        (b"[" * 64 + b"]" * 64, True),  # as deep as may be kept, in the fewest bytes
        (b"[" * 65 + b"]" * 65, False),
        (b'{"a": ' * 65 + b"1" + b"}" * 65, False),
        (b"[%d]" % (2**64 - 1), True),
        (b"[%d]" % 2**64, False),
        (b"[-%d]" % (2**63 + 1), False),
        (b'{"n": 1.5, "m": %d}' % 2**70, False),
        (b'["1234567890123456789012", 1, 2]', True),  # many digits, in a string
        (b'{"id": "0190b4c2-1234-7567-8890-123456789012", "n": 123456789012345678}', True),
    ],
)
def test_json_courier_cannot_keep_is_refused(text: bytes, kept: bool) -> None:
    if kept:
        assert strict_json(text) == orjson.loads(text)
    else:
        with pytest.raises(json.JSONDecodeError):
            strict_json(text)
