"""MQTT PUBLISH packets built directly: the hot path of the bridge publishes thousands a second,
and a packet is a few bytes of header around the topic and payload."""

from __future__ import annotations

_BYTE = tuple(bytes((i,)) for i in range(256))  # bytes((i,)) costs a tuple and a call


def varint(value: int) -> bytes:
    """MQTT variable byte integer."""
    if value < 0x80:
        return _BYTE[value]
    if value < 0x4000:
        return _BYTE[value & 0x7F | 0x80] + _BYTE[value >> 7]
    out = bytearray()
    while True:
        byte = value % 128
        value //= 128
        out.append(byte | 0x80 if value else byte)
        if not value:
            return bytes(out)


_NO_PROPERTIES = b"\x00"


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
        properties = _NO_PROPERTIES if expiry is None else b"\x05\x02" + expiry.to_bytes(4, "big")
    size = len(topic)
    packet_id = b""
    if qos:
        assert mid is not None
        packet_id = _BYTE[mid >> 8] + _BYTE[mid & 0xFF]
    remaining = 2 + size + len(packet_id) + len(properties) + len(payload)
    header = _BYTE[0x30 | (qos << 1) | int(retain)]
    return b"".join(
        (
            header,
            varint(remaining),
            _BYTE[size >> 8],
            _BYTE[size & 0xFF],
            topic,
            packet_id,
            properties,
            payload,
        )
    )
