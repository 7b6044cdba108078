"""The file store: bytes on disk, metadata in the store, signed links for devices."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from courier.clock import Clock, isoformat
from courier.core.documents import StoredFile
from courier.errors import InvalidInput
from courier.files.links import Links
from courier.files.storage import FileStorage
from courier.ids import new_id
from courier.store import Store

# Commands whose envelope carries a link the bridge signs at publish time.
LINKED_COMMANDS = ("software_update", "lwm2m_file")


class Files:
    """Uploads, deletions and links. The links' secret is the deployment's, kept in the
    store, so every Courier instance signs and checks the same links."""

    def __init__(
        self, store: Store, root: Path, max_size: int, public_url: str, url_ttl: float
    ) -> None:
        self.store = store
        self.storage = FileStorage(root, max_size)
        self.public_url = public_url
        self.url_ttl = url_ttl
        self._links: Links | None = None
        self._lock = asyncio.Lock()

    async def links(self, clock: Clock) -> Links:
        if self._links is None:
            async with self._lock:
                if self._links is None:
                    secret = await self.store.server_secret("links", clock.now())
                    self._links = Links(secret, self.public_url, self.url_ttl)
        return self._links

    @property
    def ready_links(self) -> Links | None:
        """The links once `links()` has been awaited (the bridge does it at start)."""
        return self._links

    async def add(
        self,
        tenant: str,
        name: str,
        content_type: str,
        chunks: AsyncIterator[bytes],
        now: float,
        execution_id: str | None = None,
    ) -> StoredFile:
        """Stream a file in; its record is committed after its bytes are on disk."""
        if not name or len(name) > 255 or "\0" in name or "/" in name:
            raise InvalidInput("a file name is 1-255 characters without '/' or NUL")
        received = await self.storage.receive(chunks)
        stored = StoredFile(
            id=new_id(),
            tenant=tenant,
            name=name,
            created_at=now,
            size=received.size,
            sha256=received.sha256,
            content_type=content_type or "application/octet-stream",
            execution_id=execution_id,
        )
        try:
            await asyncio.to_thread(self.storage.keep, received, tenant, stored.id)
            await self.store.put_document(stored)
        except BaseException:
            await asyncio.to_thread(self.storage.discard, received)
            await asyncio.to_thread(self.storage.delete, tenant, stored.id)
            raise
        return stored

    async def delete(self, tenant: str, file_id: str) -> StoredFile:
        stored = await self.store.delete_file(tenant, file_id)
        await asyncio.to_thread(self.storage.delete, tenant, file_id)
        return stored

    def path(self, stored: StoredFile) -> Path:
        return self.storage.path(stored.tenant, stored.id)


def with_links(
    links: Links | None,
    tenant: str,
    execution_id: str,
    command: str,
    args: dict[str, Any],
    now: float,
) -> dict[str, Any]:
    """The args a device receives: a download link for a package or a file to install, an
    upload link for a file to fetch from it. Signed when sent, so each resend has a fresh one."""
    if links is None or command not in LINKED_COMMANDS:
        return args
    if command == "lwm2m_file" and args.get("type") == "filedownload":
        url, expires = links.upload(tenant, execution_id, str(args.get("filepath", "")), now)
        return {**args, "upload_url": url, "url_expires_at": isoformat(expires)}
    file_id = args.get("file_id")
    if not isinstance(file_id, str):
        return args
    url, expires = links.download(tenant, file_id, now)
    return {**args, "url": url, "url_expires_at": isoformat(expires)}
