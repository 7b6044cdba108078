"""Courier end to end through its REST API: `courier serve` in its own process, one command per
POST over keep-alive connections, completion followed on the events topic."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence

from benchmarks.harness import EventWatch, rate_and_latency
from benchmarks.http import HttpConnection

# Clients posting at once, at most: with 64, 1000 commands in flight were mostly commands
# waiting for a free client, and Courier's commits held fewer creates (measured: 64 -> 256
# clients, 2,580 -> 2,840 commands/s; 512 and 1000 no better, the load itself costing more).
CONNECTIONS = 256


async def rest_window(
    port: int,
    key: str,
    tenant: str,
    devices: Sequence[str],
    events: EventWatch,
    count: int,
    window: int,
) -> dict[str, float]:
    """`count` POST /commands (one device each), at most `window` unfinished, from up to
    CONNECTIONS clients at once (each on its own keep-alive connection, one request at a
    time, as upstream services would be)."""
    loop = asyncio.get_running_loop()
    events.reset()
    gate = asyncio.Semaphore(window)
    events.on_end = lambda _execution: gate.release()
    targets = itertools.cycle(devices)
    created: dict[str, float] = {}
    remaining = count

    async def poster() -> None:
        nonlocal remaining
        connection = HttpConnection("127.0.0.1", port, key)
        await connection.open()
        try:
            while remaining > 0:
                remaining -= 1
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
    await asyncio.gather(*(poster() for _ in range(min(window, CONNECTIONS))))
    await events.wait_count(count)
    elapsed = loop.time() - begin
    latencies = [events.ended[e] - t for e, t in created.items() if e in events.ended]
    return rate_and_latency(count, elapsed, latencies)
