"""The raw limit: a bare MQTT client drives the simulated devices, no store, no state machine."""

from __future__ import annotations

import asyncio
import itertools
import time

import orjson

from benchmarks.harness import percentile
from courier.clock import isoformat
from courier.ids import new_id
from courier.mosquitto import MosquittoProcess
from courier.topics import Topics
from courier.transport import ConnectOptions, Message
from courier.transport.gmqtt_transport import GmqttTransport

FINAL = (b'"state":"SUCCEEDED"', b'"state":"FAILED"')


async def raw_round_trips(
    broker: MosquittoProcess, prefix: str, devices: list[str], count: int, window: int
) -> dict[str, float]:
    """Publish `count` command envelopes, `window` unfinished at once; wait for each result."""
    topics = Topics(prefix)
    client = GmqttTransport(
        ConnectOptions(client_id=f"raw-{new_id()[:8]}", port=broker.port, clean_start=True)
    )
    started: dict[str, float] = {}
    latencies: list[float] = []
    gate = asyncio.Semaphore(window)
    done = asyncio.Event()

    async def on_reply(message: Message) -> None:
        if any(marker in message.payload for marker in FINAL):
            begun = started.pop(message.topic.rsplit("/", 1)[1], None)
            if begun is not None:
                latencies.append(time.perf_counter() - begun)
                gate.release()
                if len(latencies) == count:
                    done.set()

    client.on_message = on_reply
    await client.connect()
    await client.subscribe([topics.all_replies])
    now = time.time()
    envelope = {
        "request": "raw",
        "command": "PING",
        "args": {},
        "kind": "device",
        "attempt": 1,
        "issued_at": isoformat(now),
        "expires_at": isoformat(now + 3600),
        "timeout": 30,
    }
    targets = itertools.cycle(devices)
    begin = time.perf_counter()
    for _ in range(count):
        await gate.acquire()
        execution_id = new_id()
        device = next(targets)
        started[execution_id] = time.perf_counter()
        client.publish(
            topics.command(device, execution_id), orjson.dumps({"id": execution_id, **envelope})
        )
    await done.wait()
    elapsed = time.perf_counter() - begin
    await client.disconnect()
    return {
        "per_s": count / elapsed,
        "seconds": elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }
