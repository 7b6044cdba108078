"""Identifiers: time-ordered UUIDs for what Courier creates, validation for what users name."""

from __future__ import annotations

import os
import re
import threading
import time

DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_DEVICE_ID = re.compile(DEVICE_ID_PATTERN)
TENANT_ID_PATTERN = DEVICE_ID_PATTERN
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"


class _RandomPool(threading.local):
    """Bytes of os.urandom, fetched a few kilobytes at a time: one system call per 400 ids,
    not one each. One pool per thread, emptied in a forked child, so no two ids share."""

    block = b""
    used = 0

    def take(self, count: int) -> bytes:
        if self.used + count > len(self.block):
            self.block, self.used = os.urandom(4096), 0
        start = self.used
        self.used = start + count
        return self.block[start : start + count]


_pool = _RandomPool()
os.register_at_fork(after_in_child=lambda: setattr(_pool, "block", b""))


def new_id() -> str:
    """A UUIDv7 string: sortable by creation time, so B-tree inserts stay local."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(_pool.take(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


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
