"""Which MQTT client should the bridge use? Pipelined QoS 1 round trips per second.

    .venv/bin/python -m benchmarks.mqtt_clients [--count 20000] [--window 1000]

Starts a private Mosquitto from mosquitto.conf. For each installed client library, one
"device" connection echoes every command on a reply topic and one "server" connection keeps
`window` commands in flight; the figure is completed round trips per second. gmqtt goes
through Courier's own transport; paho-mqtt and aiomqtt are measured when installed.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from courier.mosquitto import MosquittoProcess, free_port
from courier.transport import ConnectOptions, Message
from courier.transport.gmqtt_transport import GmqttTransport

Runner = Callable[[str, int, int, int], Awaitable[float]]


async def gmqtt_round_trips(host: str, port: int, count: int, window: int) -> float:
    device = GmqttTransport(ConnectOptions(client_id="bench-dev", host=host, port=port))
    server = GmqttTransport(ConnectOptions(client_id="bench-srv", host=host, port=port))
    done = asyncio.Event()
    sent = received = 0
    gate = asyncio.Semaphore(window)

    async def echo(message: Message) -> None:
        device.publish("bench/reply/" + message.topic.rsplit("/", 1)[1], message.payload)

    async def reply(message: Message) -> None:
        nonlocal received
        received += 1
        gate.release()
        if received == count:
            done.set()

    device.on_message = echo
    server.on_message = reply
    await device.connect()
    await server.connect()
    await device.subscribe(["bench/cmd/+"])
    await server.subscribe(["bench/reply/+"])
    start = time.perf_counter()
    while sent < count:
        await gate.acquire()
        server.publish(f"bench/cmd/{sent}", b'{"id": "x", "command": "PING"}')
        sent += 1
    await done.wait()
    elapsed = time.perf_counter() - start
    await device.disconnect()
    await server.disconnect()
    return count / elapsed


async def aiomqtt_round_trips(host: str, port: int, count: int, window: int) -> float:
    import aiomqtt

    received = 0
    done = asyncio.Event()
    gate = asyncio.Semaphore(window)
    async with (
        aiomqtt.Client(host, port, identifier="bench-adev", max_inflight_messages=window) as device,
        aiomqtt.Client(host, port, identifier="bench-asrv", max_inflight_messages=window) as server,
    ):
        await device.subscribe("bench/acmd/+", qos=1)
        await server.subscribe("bench/areply/+", qos=1)

        pending: set[asyncio.Task[None]] = set()

        async def echo() -> None:
            async for message in device.messages:
                topic = "bench/areply/" + str(message.topic).rsplit("/", 1)[1]
                task = asyncio.create_task(device.publish(topic, message.payload, qos=1))
                pending.add(task)
                task.add_done_callback(pending.discard)

        async def collect() -> None:
            nonlocal received
            async for _ in server.messages:
                received += 1
                gate.release()
                if received == count:
                    done.set()
                    return

        tasks = [asyncio.create_task(echo()), asyncio.create_task(collect())]
        start = time.perf_counter()
        for i in range(count):
            await gate.acquire()
            task = asyncio.create_task(server.publish(f"bench/acmd/{i}", b"{}", qos=1))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await done.wait()
        elapsed = time.perf_counter() - start
        tasks[0].cancel()
    return count / elapsed


async def paho_round_trips(host: str, port: int, count: int, window: int) -> float:
    import paho.mqtt.client as mqtt

    device = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-pdev")
    server = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-psrv")
    device.max_inflight_messages_set(window)
    server.max_inflight_messages_set(window)
    gate = threading.Semaphore(window)
    done = threading.Event()
    received = 0

    def echo(client: object, userdata: object, message: object) -> None:
        topic = "bench/preply/" + message.topic.rsplit("/", 1)[1]  # type: ignore[attr-defined]
        device.publish(topic, message.payload, qos=1)  # type: ignore[attr-defined]

    def collect(client: object, userdata: object, message: object) -> None:
        nonlocal received
        received += 1
        gate.release()
        if received == count:
            done.set()

    device.on_message = echo
    server.on_message = collect
    for client in (device, server):
        client.connect(host, port)
        client.loop_start()
    device.subscribe("bench/pcmd/+", qos=1)
    server.subscribe("bench/preply/+", qos=1)
    time.sleep(0.3)

    def drive() -> float:
        start = time.perf_counter()
        for i in range(count):
            gate.acquire()
            server.publish(f"bench/pcmd/{i}", b'{"command": "PING"}', qos=1)
        done.wait()
        return count / (time.perf_counter() - start)

    rate = await asyncio.to_thread(drive)
    for client in (device, server):
        client.loop_stop()
        client.disconnect()
    return rate


CLIENTS: dict[str, tuple[str, Runner]] = {
    "gmqtt (Courier's transport)": ("gmqtt", gmqtt_round_trips),
    "paho-mqtt": ("paho", paho_round_trips),
    "aiomqtt": ("aiomqtt", aiomqtt_round_trips),
}


async def main(count: int, window: int) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        broker = MosquittoProcess(None, free_port(), Path(workdir), anonymous=True)
        broker.start()
        try:
            print(f"{count} pipelined QoS 1 round trips, {window} in flight")
            for name, (module, runner) in CLIENTS.items():
                if importlib.util.find_spec(module) is None:
                    print(f"  {name:<30} not installed")
                    continue
                rate = await runner(broker.host, broker.port, count, window)
                print(f"  {name:<30} {rate:>10,.0f} round trips/s")
        finally:
            broker.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--window", type=int, default=1000)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.install()
    asyncio.run(main(args.count, args.window))
