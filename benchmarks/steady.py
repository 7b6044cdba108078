"""Latency at a steady rate: commands started on a fixed schedule, not kept N in flight.

With N commands kept in flight, the mean latency is N divided by the rate (Little's law), so
those figures measure the queue in front of a saturated machine. Here commands start on a
clock, `rate` a second, whatever happens to the earlier ones, and each one's latency counts
from the moment the schedule gave it, so a stall that delays later starts is counted against
them too (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Sequence

import orjson

from benchmarks import e2e, raw
from benchmarks.harness import rate_and_latency
from courier.ids import new_id
from courier.mosquitto import MosquittoProcess
from courier.schemas.api import CommandRequestIn
from courier.topics import Topics
from courier.transport import Message


def due(elapsed: float, rate: float, count: int) -> int:
    """How many of `count` commands the schedule has started `elapsed` seconds in (the
    first at 0)."""
    if elapsed < 0:
        return 0
    return min(count, int(elapsed * rate) + 1)


def scheduled_at(begin: float, index: int, rate: float) -> float:
    """When the schedule starts command `index` (from 0)."""
    return begin + index / rate


async def paced(count: int, rate: float, start: Callable[[int, int, float], None]) -> float:
    """Calls `start(first, stop, begin)` for each stretch of commands [first, stop) the
    schedule has reached, until all `count` are started; answers the schedule's begin.
    Between stretches it sleeps until the next command is due, so what makes a start late
    is the event loop (the timer's millisecond, Courier's own work), not a polling period."""
    begin = time.perf_counter()
    started = 0
    while started < count:
        reached = due(time.perf_counter() - begin, rate, count)
        if reached > started:
            start(started, reached, begin)
            started = reached
        if started < count:
            await asyncio.sleep(max(0.0, scheduled_at(begin, started, rate) - time.perf_counter()))
    return begin


async def service_at_rate(
    courier: e2e.Courier, devices: Sequence[str], count: int, rate: float
) -> dict[str, float]:
    """`count` one-device commands through the service layer, `rate` a second; latency from
    each one's scheduled start to its SUCCEEDED."""
    completion = e2e.Completion(courier)
    targets = itertools.cycle(devices)
    scheduled: dict[str, float] = {}
    creating: set[asyncio.Task[None]] = set()

    async def create(first: int, stop: int, begin: float) -> None:
        bodies = [
            CommandRequestIn(devices=[next(targets)], command="PING") for _ in range(first, stop)
        ]
        results = await courier.service.create_commands(e2e.TENANT, bodies, "bench")
        for index, result in zip(range(first, stop), results, strict=True):
            assert not isinstance(result, Exception), result
            scheduled[result.executions[0].id] = scheduled_at(begin, index, rate)

    def start(first: int, stop: int, begin: float) -> None:
        # Not awaited here: the schedule goes on while a creation waits for its commit.
        task = asyncio.create_task(create(first, stop, begin))
        creating.add(task)
        task.add_done_callback(creating.discard)

    begin = await paced(count, rate, start)
    await asyncio.gather(*creating)
    await completion.wait_total(count)
    completion.close()
    latencies = [completion.ended[e] - t for e, t in scheduled.items()]
    return rate_and_latency(count, max(completion.ended.values()) - begin, latencies)


async def raw_at_rate(
    broker: MosquittoProcess, prefix: str, devices: Sequence[str], count: int, rate: float
) -> dict[str, float]:
    """The same schedule from a bare MQTT client: latency from each command's scheduled
    start to its result."""
    topics = Topics(prefix)
    client = raw.bare_client(broker, "raw-steady")
    scheduled: dict[str, float] = {}
    ended: list[float] = []
    latencies: list[float] = []
    done = asyncio.Event()

    async def on_reply(message: Message) -> None:
        if any(marker in message.payload for marker in raw.FINAL):
            begun = scheduled.pop(message.topic.rsplit("/", 1)[1], None)
            if begun is not None:
                now = time.perf_counter()
                latencies.append(now - begun)
                ended.append(now)
                if len(latencies) == count:
                    done.set()

    client.on_message = on_reply
    await client.connect()
    await client.subscribe([topics.all_replies])
    envelope = raw.command_envelope()
    targets = itertools.cycle(devices)

    def start(first: int, stop: int, begin: float) -> None:
        for index in range(first, stop):
            execution_id = new_id()
            scheduled[execution_id] = scheduled_at(begin, index, rate)
            payload = orjson.dumps({"id": execution_id, **envelope})
            client.publish(topics.command(next(targets), execution_id), payload)

    begin = await paced(count, rate, start)
    await done.wait()
    await client.disconnect()
    return rate_and_latency(count, max(ended) - begin, latencies)
