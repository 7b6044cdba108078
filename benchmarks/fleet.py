"""Fleet-sized runs through `courier serve`: a 1000-device fan-out and an offline drain."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from benchmarks.harness import EventWatch, PresenceWatch, Simulator
from benchmarks.http import HttpConnection
from courier.mosquitto import MosquittoProcess


async def fan_out(
    port: int, key: str, tenant: str, devices: Sequence[str], events: EventWatch
) -> dict[str, float]:
    """One request to every device: time to the 201, and until every execution succeeded."""
    loop = asyncio.get_running_loop()
    connection = HttpConnection("127.0.0.1", port, key)
    await connection.open()
    events.reset()
    begin = loop.time()
    status, body = await connection.request(
        "POST", f"/v1/tenants/{tenant}/commands", {"devices": list(devices), "command": "PING"}
    )
    answered = loop.time() - begin
    await connection.close()
    assert status == 201, body
    await events.wait_count(len(devices))
    done = max(events.ended.values()) - begin
    succeeded = sum(1 for s in events.states.values() if s == "SUCCEEDED")
    return {"created_ms": answered * 1000, "all_succeeded_s": done, "succeeded": succeeded}


async def queue_for_offline(
    port: int, key: str, tenant: str, devices: Sequence[str], per_device: int
) -> None:
    """`per_device` commands for each (offline) device, 1000 devices per request."""
    connection = HttpConnection("127.0.0.1", port, key)
    await connection.open()
    for _ in range(per_device):
        for start in range(0, len(devices), 1000):
            chunk = list(devices[start : start + 1000])
            status, body = await connection.request(
                "POST", f"/v1/tenants/{tenant}/commands", {"devices": chunk, "command": "PING"}
            )
            assert status == 201, body
    await connection.close()


async def offline_drain(
    broker: MosquittoProcess, prefix: str, base: str, count: int, total: int, events: EventWatch
) -> dict[str, float]:
    """Start `count` simulated devices at once; from the first one online, the time until
    `total` executions have ended (connecting them all is part of it)."""
    loop = asyncio.get_running_loop()
    events.reset()
    presence = PresenceWatch(broker, prefix, f"drain-{base}")
    first_online: list[float] = []
    await presence.start()
    simulator = Simulator(broker, prefix, base, count)
    simulator.start()
    try:
        while not presence.online:
            await asyncio.sleep(0.001)
        first_online.append(loop.time())
        await events.wait_count(total, timeout=900)
        all_online = len(presence.online)
    finally:
        simulator.stop()
        await presence.stop()
    succeeded = sum(1 for s in events.states.values() if s == "SUCCEEDED")
    return {
        "drain_s": max(events.ended.values()) - first_online[0],
        "succeeded": succeeded,
        "online": all_online,
    }
