"""Courier end to end through its REST API: `courier serve` in its own process, one command per
POST over keep-alive connections, completion followed on the events topic."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence

from benchmarks.harness import EventWatch, percentile
from benchmarks.http import HttpConnection


async def rest_window(
    port: int,
    key: str,
    tenant: str,
    devices: Sequence[str],
    events: EventWatch,
    count: int,
    window: int,
) -> dict[str, float]:
    """`count` POST /commands (one device each), at most `window` unfinished."""
    loop = asyncio.get_running_loop()
    events.reset()
    gate = asyncio.Semaphore(window)
    targets = itertools.cycle(devices)
    created: dict[str, float] = {}
    remaining = count
    done_before = 0

    def release_done() -> None:
        nonlocal done_before
        now_done = len(events.ended)
        for _ in range(now_done - done_before):
            gate.release()
        done_before = now_done

    async def poster() -> None:
        nonlocal remaining
        connection = HttpConnection("127.0.0.1", port, key)
        await connection.open()
        try:
            while remaining > 0:
                remaining -= 1
                release_done()
                while gate.locked():
                    await asyncio.sleep(0.0005)
                    release_done()
                await gate.acquire()
                begun = loop.time()
                status, body = await connection.request(
                    "POST",
                    f"/v1/tenants/{tenant}/commands",
                    {"devices": [next(targets)], "command": "PING"},
                )
                assert status == 201, body
                assert isinstance(body, dict)
                created[body["executions"][0]["id"]] = begun
        finally:
            await connection.close()

    begin = loop.time()
    await asyncio.gather(*(poster() for _ in range(min(window, 64))))
    await events.wait_count(count)
    elapsed = loop.time() - begin
    latencies = [events.ended[e] - t for e, t in created.items() if e in events.ended]
    return {
        "per_s": count / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }
