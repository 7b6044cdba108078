"""MQTT PUBLISH packets built directly: the hot path of the bridge publishes thousands a second,
and a packet is a few bytes of header around the topic and payload."""

from __future__ import annotations

import struct


def varint(value: int) -> bytes:
    """MQTT variable byte integer."""
    out = bytearray()
    while True:
        byte = value % 128
        value //= 128
        out.append(byte | 0x80 if value else byte)
        if not value:
            return bytes(out)


def publish_packet(
    topic: bytes,
    payload: bytes,
    qos: int,
    retain: bool,
    mid: int | None,
    expiry: int | None,
    mqtt5: bool,
) -> bytes:
    """A PUBLISH packet: QoS 0 or 1, optional message expiry (MQTT 5)."""
    properties = b""
    if mqtt5:
        props = b"" if expiry is None else b"\x02" + struct.pack("!L", expiry)
        properties = varint(len(props)) + props
    variable = struct.pack("!H", len(topic)) + topic
    if qos:
        assert mid is not None
        variable += struct.pack("!H", mid)
    variable += properties
    header = 0x30 | (qos << 1) | int(retain)
    return bytes([header]) + varint(len(variable) + len(payload)) + variable + payload
