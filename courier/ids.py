"""Identifiers: time-ordered UUIDs for what Courier creates, validation for what users name."""

from __future__ import annotations

import os
import re
import time
from collections import deque

DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_DEVICE_ID = re.compile(DEVICE_ID_PATTERN)
TENANT_ID_PATTERN = DEVICE_ID_PATTERN
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"


_CHUNK = 10  # random bytes per id
_chunks: deque[bytes] = deque()


def _random_chunk() -> bytes:
    """Ten bytes of os.urandom, fetched four kilobytes at a time: one system call per 400
    ids, not one each. A deque's popleft is atomic, so two threads never get the same
    bytes; a forked child starts with none of its parent's."""
    try:
        return _chunks.popleft()
    except IndexError:
        block = os.urandom(4000)
        _chunks.extend(block[i : i + _CHUNK] for i in range(_CHUNK, len(block), _CHUNK))
        return block[:_CHUNK]


os.register_at_fork(after_in_child=_chunks.clear)


def new_id() -> str:
    """A UUIDv7 string: sortable by creation time, so B-tree inserts stay local.

    48 bits of milliseconds, the version (7), 12 random bits, the variant (0b10) and 62
    random bits.
    """
    ms = time.time_ns() // 1_000_000
    r = _random_chunk()
    h = (
        (ms & 0xFFFF_FFFF_FFFF).to_bytes(6, "big")
        + bytes((0x70 | (r[0] & 0x0F), r[1], 0x80 | (r[2] & 0x3F)))
        + r[3:]
    ).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_known_ids: set[str] = set()
_KNOWN_IDS_KEPT = 65_536


def is_device_id(value: str) -> bool:
    """Whether a string is usable as a device id (an MQTT username and topic level).

    Every message a device sends is checked by its topic; the ids found valid lately are
    kept, so the same device's next message costs a set look-up instead of the pattern.
    """
    if value in _known_ids:
        return True
    if _DEVICE_ID.fullmatch(value) is None:
        return False
    if len(_known_ids) >= _KNOWN_IDS_KEPT:
        _known_ids.clear()
    _known_ids.add(value)
    return True


def describe_bad_device_id(value: str) -> str:
    """Why a device id is refused, in words an API user can act on."""
    if not value:
        return "device id is empty"
    if len(value) > 64:
        return "device id is longer than 64 characters"
    for bad in ("/", "+", "#", "$", ":", "\0"):
        if bad in value:
            shown = "NUL" if bad == "\0" else repr(bad)
            return f"device id contains {shown}, which MQTT topics and credentials cannot carry"
    return f"device id must match {DEVICE_ID_PATTERN}"
