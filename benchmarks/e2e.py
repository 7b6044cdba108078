"""Courier end to end in this process: service layer, SQLite (FULL), MQTT, devices, SUCCEEDED."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness import rate_and_latency
from courier.bridge import Bridge, BridgeConfig
from courier.bridge.engine import tune_gc
from courier.clock import SystemClock
from courier.core.records import Change
from courier.metrics import Metrics
from courier.mosquitto import MosquittoProcess
from courier.schemas.api import CommandRequestIn, DeviceIn
from courier.service import Service, ServiceConfig
from courier.store import Store, open_store
from courier.transport import ConnectOptions
from courier.transport.gmqtt_transport import GmqttTransport

TENANT = "bench"


@dataclass
class Courier:
    store: Store
    service: Service
    bridge: Bridge


@asynccontextmanager
async def courier_in_process(
    broker: MosquittoProcess, prefix: str, path: Path
) -> AsyncIterator[Courier]:
    store = open_store(f"sqlite:///{path}")
    await store.open()
    clock = SystemClock()
    # A clean session: the replies of a raw run measured while this Courier was away are no
    # business of the next one.
    transport = GmqttTransport(
        ConnectOptions(client_id=f"courier-{prefix}", port=broker.port, clean_start=True)
    )
    bridge = Bridge(store, transport, BridgeConfig(prefix=prefix, in_flight=1000), clock, Metrics())
    service = Service(
        store, ServiceConfig(queue_bound=1_000_000, in_flight=1000, claim_on_create=True), clock
    )
    stop = asyncio.Event()
    tune_gc()  # as `courier serve` does
    task = asyncio.create_task(bridge.run(stop))
    while not bridge.ready:
        await asyncio.sleep(0.01)
    try:
        yield Courier(store, service, bridge)
    finally:
        stop.set()
        await task
        await store.close()


async def register(courier: Courier, device_ids: Sequence[str]) -> None:
    for device_id in device_ids:
        if await courier.store.find_device(device_id) is None:
            await courier.service.register_device(TENANT, DeviceIn(id=device_id))


async def wait_online(courier: Courier, device_ids: Sequence[str]) -> None:
    wanted = set(device_ids)
    while True:
        devices = {d for d in wanted if (await courier.store.find_device(d)) is not None}
        online = [d for d in devices if (await courier.store.find_device(d)).online]  # type: ignore[union-attr]
        if len(online) == len(wanted):
            return
        await asyncio.sleep(0.1)


class Completion:
    """Follows executions to their end through the store's change listener."""

    def __init__(self, courier: Courier) -> None:
        self.courier = courier
        self.started: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.latencies: list[float] = []
        self.waiters: list[tuple[int, asyncio.Event]] = []
        courier.store.add_listener(self.on_changes)

    def on_changes(self, changes: Sequence[Change]) -> None:
        now = time.perf_counter()
        for change in changes:
            after = change.after
            if after.state.terminal and change.state_changed:
                self.ended[after.id] = now
        for target, event in self.waiters:
            if len(self.ended) >= target:
                event.set()

    async def wait_total(self, target: int) -> None:
        event = asyncio.Event()
        self.waiters.append((target, event))
        if len(self.ended) >= target:
            return
        await event.wait()

    def close(self) -> None:
        self.courier.store.remove_listener(self.on_changes)


async def run_window(
    courier: Courier, devices: Sequence[str], count: int, window: int
) -> dict[str, float]:
    """`count` one-device commands, at most `window` unfinished, created in batches.

    Creators each take up to `batch` free slots and create that many requests in one call
    of the service layer (one transaction); each command's latency runs from the call that
    created it to its SUCCEEDED.
    """
    completion = Completion(courier)
    gate = asyncio.Semaphore(window)
    targets = itertools.cycle(devices)
    created: dict[str, float] = {}
    batch = max(1, min(100, window // 4))

    def release(changes: Sequence[Change]) -> None:
        for change in changes:
            if change.after.state.terminal and change.state_changed:
                gate.release()

    courier.store.add_listener(release)
    remaining = count

    async def creator() -> None:
        nonlocal remaining
        while remaining > 0:
            size = min(batch, remaining)
            remaining -= size
            for _ in range(size):
                await gate.acquire()
            bodies = [
                CommandRequestIn(devices=[next(targets)], command="PING") for _ in range(size)
            ]
            begun = time.perf_counter()
            for result in await courier.service.create_commands(TENANT, bodies, "bench"):
                assert not isinstance(result, Exception), result
                created[result.executions[0].id] = begun

    begin = time.perf_counter()
    await asyncio.gather(*(creator() for _ in range(max(1, window // batch))))
    await completion.wait_total(count)
    elapsed = time.perf_counter() - begin
    courier.store.remove_listener(release)
    completion.close()
    latencies = [completion.ended[e] - t for e, t in created.items() if e in completion.ended]
    return rate_and_latency(count, elapsed, latencies)
