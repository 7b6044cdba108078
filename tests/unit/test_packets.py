"""Hand-built PUBLISH packets are byte for byte what gmqtt builds."""

from __future__ import annotations

import pytest
from gmqtt import Message
from gmqtt.mqtt.constants import MQTTv50, MQTTv311
from gmqtt.mqtt.package import PublishPacket

from courier.transport.packets import publish_packet, varint


class _Ids:
    def __init__(self, mid: int) -> None:
        self.mid = mid

    def next_id(self) -> int:
        return self.mid


class _Protocol:
    def __init__(self, version: int, mid: int) -> None:
        self.proto_ver = version
        self.id_generator = _Ids(mid)


@pytest.mark.parametrize("version", [MQTTv311, MQTTv50])
@pytest.mark.parametrize(
    ("qos", "retain", "expiry"), [(0, False, None), (1, False, 30), (1, True, None)]
)
@pytest.mark.parametrize("size", [0, 10, 200, 20_000, 3_000_000])
@pytest.mark.parametrize("mid", [7, 513, 65_535])
def test_same_bytes_as_gmqtt(
    version: int, qos: int, retain: bool, expiry: int | None, size: int, mid: int
) -> None:
    topic, payload = "courier/devices/d1/commands/e1", b"x" * size
    properties = {} if expiry is None else {"message_expiry_interval": expiry}
    expected = PublishPacket.build_package(
        Message(topic, payload, qos=qos, retain=retain, **properties), _Protocol(version, mid)
    )[1]
    mqtt5 = version == MQTTv50
    built = publish_packet(
        topic.encode(), payload, qos, retain, mid if qos else None, expiry if mqtt5 else None, mqtt5
    )
    assert built == bytes(expected)


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16_383, b"\xff\x7f"),
        (16_384, b"\x80\x80\x01"),
    ],
)
def test_varint(value: int, encoded: bytes) -> None:
    assert varint(value) == encoded
