"""Open a store from its URL: sqlite:///path.db (default) or memory://."""

from __future__ import annotations

import random
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from courier.errors import ConfigError
from courier.store.base import Store
from courier.store.memory import MemoryBackend
from courier.store.sqlite import SqliteBackend


def open_store(url: str, rand: Callable[[], float] = random.random) -> Store:
    """A (not yet opened) store for `url`."""
    parts = urlsplit(url)
    if parts.scheme == "memory":
        return Store(MemoryBackend(), rand)
    if parts.scheme == "sqlite":
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if parts.netloc:
            raise ConfigError(f"sqlite URL takes no host: {url!r} (use sqlite:///relative.db)")
        if not path:
            raise ConfigError(f"sqlite URL needs a file path: {url!r}")
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        synchronous = options.get("synchronous", "FULL").upper()
        if synchronous not in {"FULL", "NORMAL", "EXTRA"}:
            raise ConfigError(
                f"sqlite synchronous must be FULL, NORMAL or EXTRA, not {synchronous}"
            )
        return Store(SqliteBackend(path, synchronous=synchronous), rand)
    raise ConfigError(f"unsupported store URL {url!r}: use sqlite:///path.db or memory://")
