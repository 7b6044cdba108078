"""The device side of secure deferred payloads: decrypt, check the window, refuse replays.

    verifier = PayloadVerifier(decode_key(shared_key), Path("/var/lib/pump/replay.json"))
    payload = verifier.open(text, secure=True)   # a PayloadRejected subclass when refused

Payload ids that were accepted are kept in a bounded cache file (rewritten atomically), so a
restarted device still refuses a replay. An id is kept until its payload expires; when the
cache holds `capacity` ids that are all still valid, a new payload is refused
(ReplayCacheFull) rather than an old one forgotten.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from courier.core.deferred import (
    KEY_BYTES,
    DeferredPayload,
    PayloadExpired,
    PayloadMalformed,
    PayloadNotYetValid,
    PayloadRejected,
    PayloadReplayed,
    PayloadTampered,
    ReplayCacheFull,
    decrypt_payload,
    parse_payload,
)
from courier.errors import InvalidInput

__all__ = [
    "DeferredPayload",
    "PayloadExpired",
    "PayloadMalformed",
    "PayloadNotYetValid",
    "PayloadRejected",
    "PayloadReplayed",
    "PayloadTampered",
    "PayloadVerifier",
    "ReplayCacheCorrupt",
    "ReplayCacheFull",
]


class ReplayCacheCorrupt(Exception):
    """The replay cache file cannot be read; refusing to start rather than forget used ids."""


class PayloadVerifier:
    """Opens deferred payloads for one device and remembers the ids it accepted."""

    def __init__(
        self,
        key: bytes | None,
        replay_cache: Path,
        capacity: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if key is not None and len(key) != KEY_BYTES:
            raise InvalidInput(f"the device key must be {KEY_BYTES} bytes, not {len(key)}")
        if capacity < 1:
            raise InvalidInput("the replay cache capacity must be at least 1")
        self.key = key
        self.replay_cache = replay_cache
        self.capacity = capacity
        self.clock = clock
        self._lock = threading.Lock()
        # pid -> stp, oldest first (dicts keep insertion order).
        self._used: dict[str, int] = self._load()

    def open(self, payload: str, secure: bool) -> DeferredPayload:
        """The checked payload; it cannot be opened again afterwards."""
        if secure:
            if self.key is None:
                raise InvalidInput("secure payloads need the device key")
            raw = decrypt_payload(payload, self.key)
        else:
            try:
                raw = payload.encode()
            except UnicodeEncodeError as exc:  # a lone surrogate: no JSON text holds one
                raise PayloadMalformed("the payload is not valid UTF-8 text") from exc
        parsed = parse_payload(raw)
        with self._lock:
            now = self.clock()
            if now < parsed.sta:
                raise PayloadNotYetValid(f"valid from {parsed.sta}, device clock {now:.0f}")
            if now >= parsed.stp:
                raise PayloadExpired(f"valid until {parsed.stp}, device clock {now:.0f}")
            if parsed.pid in self._used:
                raise PayloadReplayed(f"payload {parsed.pid} was already used")
            used = self._with(parsed.pid, parsed.stp, now)
            # Persist before accepting: if the write fails the payload is refused, not lost.
            self._save(used)
            self._used = used
        return parsed

    def __len__(self) -> int:
        return len(self._used)

    def __contains__(self, pid: object) -> bool:
        return pid in self._used

    def _with(self, pid: str, stp: int, now: float) -> dict[str, int]:
        used = dict(self._used)
        if len(used) >= self.capacity:
            # An expired id cannot be replayed anyway: its window check fails first.
            used = {p: s for p, s in used.items() if s > now}
        if len(used) >= self.capacity:
            soonest = min(used.values())
            raise ReplayCacheFull(
                f"{len(used)} payload ids are remembered and still valid (capacity "
                f"{self.capacity}); the next one expires at {soonest}"
            )
        used[pid] = stp
        return used

    def _load(self) -> dict[str, int]:
        try:
            entries = orjson.loads(self.replay_cache.read_bytes())
        except FileNotFoundError:
            return {}
        except orjson.JSONDecodeError as exc:
            raise ReplayCacheCorrupt(f"{self.replay_cache} is not JSON") from exc
        if not isinstance(entries, list) or not all(_is_entry(e) for e in entries):
            raise ReplayCacheCorrupt(f"{self.replay_cache} is not a list of [pid, stp]")
        used: dict[str, int] = dict(entries)
        if len(used) > self.capacity:
            # Expired ids go; valid ones stay even past a lowered capacity (until they expire,
            # new payloads are refused rather than old ones reopened to replay).
            now = self.clock()
            used = {p: s for p, s in used.items() if s > now}
        return used

    def _save(self, used: dict[str, int]) -> None:
        directory = self.replay_cache.parent
        data = orjson.dumps([[pid, stp] for pid, stp in used.items()])
        fd, temp = tempfile.mkstemp(prefix=f".{self.replay_cache.name}.", dir=directory)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, self.replay_cache)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        if os.name == "posix":
            # The rename itself is durable only once the directory entry is synced.
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


def _is_entry(entry: object) -> bool:
    return (
        isinstance(entry, list)
        and len(entry) == 2
        and isinstance(entry[0], str)
        and isinstance(entry[1], int)
        and not isinstance(entry[1], bool)
    )
