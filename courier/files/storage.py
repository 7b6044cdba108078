"""Bytes of stored files, on disk under <root>/<tenant>/<file id>; metadata is in the store."""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from courier.errors import CourierError


class TooLarge(CourierError):
    """The file is larger than the store accepts."""

    status = 413
    slug = "too-large"


@dataclass(frozen=True, slots=True)
class Received:
    path: Path
    size: int
    sha256: str


class _Sink:
    """A temporary file being written and hashed; blocking, so driven from a thread."""

    def __init__(self, root: Path, max_size: int) -> None:
        root.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=root, prefix=".upload-")
        self.path = Path(name)
        self._out = os.fdopen(handle, "wb")
        self._digest = hashlib.sha256()
        self._max_size = max_size
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self._max_size:
            raise TooLarge(f"the file exceeds the limit of {self._max_size} bytes")
        self._digest.update(chunk)
        self._out.write(chunk)

    def finish(self) -> Received:
        self._out.flush()
        os.fsync(self._out.fileno())
        self._out.close()
        return Received(self.path, self.size, self._digest.hexdigest())

    def abort(self) -> None:
        self._out.close()
        self.path.unlink(missing_ok=True)


class FileStorage:
    def __init__(self, root: Path, max_size: int) -> None:
        self.root = root
        self.max_size = max_size

    def path(self, tenant: str, file_id: str) -> Path:
        return self.root / tenant / file_id

    async def receive(self, chunks: AsyncIterator[bytes]) -> Received:
        """Stream the bytes into a temporary file, hashing them; TooLarge past the limit."""
        sink = await asyncio.to_thread(_Sink, self.root, self.max_size)
        try:
            async for chunk in chunks:
                if chunk:
                    await asyncio.to_thread(sink.write, chunk)
            return await asyncio.to_thread(sink.finish)
        except BaseException:
            await asyncio.to_thread(sink.abort)
            raise

    def keep(self, received: Received, tenant: str, file_id: str) -> Path:
        """Move a received file to its place (before its record is committed)."""
        target = self.path(tenant, file_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(received.path, target)
        return target

    def discard(self, received: Received) -> None:
        received.path.unlink(missing_ok=True)

    def delete(self, tenant: str, file_id: str) -> None:
        self.path(tenant, file_id).unlink(missing_ok=True)
