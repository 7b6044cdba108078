"""End-to-end throughput of Courier's command path on this machine.

    .venv/bin/python -m benchmarks.command_path [--commands 5000] [--devices 50] [--in-flight 1000]

One process runs Courier's service and bridge (SQLite store, synchronous=FULL, history kept)
and simulated devices (the SDK's Agent) on a private Mosquitto. Commands are created through
the service layer with at most `--in-flight` unfinished at once; the figure is commands per
second from creation to SUCCEEDED, with p50/p99 latency.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from courier.bridge import Bridge, BridgeConfig
from courier.bridge.engine import tune_gc
from courier.clock import SystemClock
from courier.core.records import Change
from courier.gateway.simulator import SimulatorConfig, start_agents
from courier.metrics import Metrics
from courier.mosquitto import MosquittoProcess, free_port
from courier.schemas.api import CommandRequestIn, DeviceIn
from courier.service import Service, ServiceConfig
from courier.store import open_store
from courier.transport import ConnectOptions
from courier.transport.gmqtt_transport import GmqttTransport


async def run(commands: int, devices: int, in_flight: int, workdir: Path) -> dict[str, float]:
    broker = MosquittoProcess(None, free_port(), workdir, anonymous=True)
    broker.start()
    store = open_store(f"sqlite:///{workdir}/bench.db")
    await store.open()
    clock = SystemClock()
    transport = GmqttTransport(ConnectOptions(client_id="courier-bench", port=broker.port))
    bridge = Bridge(store, transport, BridgeConfig(in_flight=1000), clock, Metrics())
    service = Service(store, ServiceConfig(queue_bound=1_000_000), clock)
    ids = [f"bench-{i}" for i in range(devices)]
    for device_id in ids:
        await service.register_device("bench", DeviceIn(id=device_id))
    agents = await start_agents(
        [(d, None) for d in ids],
        SimulatorConfig(broker=broker.url),
    )
    stop = asyncio.Event()
    tune_gc()  # as `courier serve` does
    bridge_task = asyncio.create_task(bridge.run(stop))
    while not bridge.ready:
        await asyncio.sleep(0.01)
    created_at: dict[str, float] = {}
    latencies: list[float] = []
    gate = asyncio.Semaphore(in_flight)
    finished = asyncio.Event()

    def on_changes(changes: list[Change]) -> None:
        now = time.perf_counter()
        for change in changes:
            if change.after.state.terminal and change.state_changed:
                start = created_at.pop(change.after.id, None)
                if start is not None:
                    latencies.append(now - start)
                    gate.release()
        if len(latencies) == commands:
            finished.set()

    store.add_listener(on_changes)  # type: ignore[arg-type]
    body = CommandRequestIn(devices=[ids[0]], command="PING")
    numbers = iter(range(commands))

    async def creator() -> None:
        # Many creators at once, as many API calls would be: their commits are shared.
        for n in numbers:
            await gate.acquire()
            request = body.model_copy(update={"devices": [ids[n % devices]]})
            begun = time.perf_counter()
            created = await service.create_command("bench", request, "bench")
            created_at[created.executions[0].id] = begun

    started = time.perf_counter()
    creators = [asyncio.create_task(creator()) for _ in range(min(in_flight, 200))]
    await asyncio.gather(*creators)
    await finished.wait()
    elapsed = time.perf_counter() - started
    stop.set()
    await bridge_task
    await asyncio.gather(*(a.stop(offline=False) for a in agents))
    await store.close()
    broker.stop()
    latencies.sort()
    return {
        "commands_per_s": commands / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=5000)
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--in-flight", type=int, default=1000)
    args = parser.parse_args()
    import uvloop

    with tempfile.TemporaryDirectory() as workdir:
        result = uvloop.run(run(args.commands, args.devices, args.in_flight, Path(workdir)))
    print(
        f"{args.commands} commands, {args.devices} devices, {args.in_flight} in flight: "
        f"{result['commands_per_s']:,.0f} commands/s, p50 {result['p50_ms']:.1f} ms, "
        f"p99 {result['p99_ms']:.1f} ms"
    )


if __name__ == "__main__":
    main()
