"""The raw limit: a bare MQTT client drives the simulated devices, no store, no state machine."""

from __future__ import annotations

import asyncio
import itertools
import time

import orjson

from benchmarks.harness import Simulator, rate_and_latency
from courier.clock import isoformat
from courier.ids import new_id
from courier.mosquitto import MosquittoProcess
from courier.topics import Topics
from courier.transport import ConnectOptions, Message
from courier.transport.gmqtt_transport import GmqttTransport

FINAL = (b'"state":"SUCCEEDED"', b'"state":"FAILED"')


def bare_client(broker: MosquittoProcess, name: str) -> GmqttTransport:
    return GmqttTransport(
        ConnectOptions(client_id=f"{name}-{new_id()[:8]}", port=broker.port, clean_start=True)
    )


def command_envelope() -> dict[str, object]:
    now = time.time()
    return {
        "request": "raw",
        "command": "PING",
        "args": {},
        "kind": "device",
        "attempt": 1,
        "issued_at": isoformat(now),
        "expires_at": isoformat(now + 3600),
        "timeout": 30,
    }


async def raw_drain(
    broker: MosquittoProcess, prefix: str, base: str, count: int, per_device: int
) -> dict[str, float]:
    """The offline drain without Courier: `count` simulated devices start at once and a bare
    MQTT client sends each its `per_device` commands when its presence says online. From the
    first device online to the last result, so their connecting is part of it, as it is of
    Courier's drain."""
    topics = Topics(prefix)
    client = bare_client(broker, "raw-drain")
    total = count * per_device
    served: set[str] = set()
    ended = 0
    first_online: list[float] = []
    last_result = [0.0]
    done = asyncio.Event()
    envelope = command_envelope()

    async def on_message(message: Message) -> None:
        nonlocal ended
        parsed = topics.parse(message.topic)
        if parsed is None or parsed.device is None:
            return
        if parsed.execution is not None:  # a reply
            if any(marker in message.payload for marker in FINAL):
                ended += 1
                last_result[0] = time.perf_counter()
                if ended == total:
                    done.set()
            return
        if not message.payload or parsed.device in served:
            return
        if not orjson.loads(message.payload).get("online"):
            return
        if not first_online:
            first_online.append(time.perf_counter())
        served.add(parsed.device)
        for _ in range(per_device):
            execution_id = new_id()
            client.publish(
                topics.command(parsed.device, execution_id),
                orjson.dumps({"id": execution_id, **envelope}),
            )

    client.on_message = on_message
    await client.connect()
    await client.subscribe([topics.all_replies, topics.all_presence])
    simulator = Simulator(broker, prefix, base, count)
    simulator.start()
    try:
        await asyncio.wait_for(done.wait(), 900)
    finally:
        simulator.stop()
        await client.disconnect()
    return {"drain_s": last_result[0] - first_online[0], "succeeded": float(ended)}


async def raw_round_trips(
    broker: MosquittoProcess, prefix: str, devices: list[str], count: int, window: int
) -> dict[str, float]:
    """Publish `count` command envelopes, `window` unfinished at once; wait for each result."""
    topics = Topics(prefix)
    client = bare_client(broker, "raw")
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
    envelope = command_envelope()
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
    return {**rate_and_latency(count, elapsed, latencies), "seconds": elapsed}
