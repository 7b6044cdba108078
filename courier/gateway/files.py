"""Device-side file transfers for `software_update` and `lwm2m_file` commands.

    @agent.handler("lwm2m_file")
    async def transfer(ctx: CommandContext) -> dict[str, Any]:
        if ctx.args["type"] == "fileupload":
            Path(ctx.args["filepath"]).write_bytes(await fetch(ctx.args))
            return {"written": ctx.args["filepath"]}
        return await send(ctx.args, Path(ctx.args["filepath"]).read_bytes())

The links in the args are signed and expire (`url_expires_at`); a retry brings fresh ones.
"""

from __future__ import annotations

import hashlib
from typing import Any

import httpx

from courier.gateway.agent import CommandFailed

HTTP_TIMEOUT = 60.0


async def fetch(args: dict[str, Any]) -> bytes:
    """The bytes behind a command's download link, checked against its sha256."""
    url = args.get("url")
    if not isinstance(url, str):
        raise CommandFailed("the command carries no download link")
    try:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
            response = await client.get(url)
    except httpx.HTTPError as exc:
        raise CommandFailed(f"download failed: {exc}") from exc
    if response.status_code != 200:
        raise CommandFailed(f"download refused: HTTP {response.status_code}")
    data = response.content
    expected = args.get("sha256")
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise CommandFailed("the downloaded file does not match its sha256")
    return data


async def send(args: dict[str, Any], data: bytes) -> dict[str, Any]:
    """Upload `data` through a `filedownload` command's upload link; answers the stored
    file's id, size and sha256 (report them as the command's output)."""
    url = args.get("upload_url")
    if not isinstance(url, str):
        raise CommandFailed("the command carries no upload link")
    try:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
            response = await client.put(url, content=data)
    except httpx.HTTPError as exc:
        raise CommandFailed(f"upload failed: {exc}") from exc
    if response.status_code != 201:
        raise CommandFailed(f"upload refused: HTTP {response.status_code}")
    stored: dict[str, Any] = response.json()
    if stored.get("sha256") != hashlib.sha256(data).hexdigest():
        raise CommandFailed("the stored file does not match what was sent")
    return stored
