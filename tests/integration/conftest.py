"""A running Courier in-process: SQLite store, bridge on the real Mosquitto, service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from courier.bridge import Bridge, BridgeConfig
from courier.clock import SystemClock
from courier.gateway import Agent
from courier.metrics import Metrics
from courier.mosquitto import MosquittoProcess
from courier.service import Service, ServiceConfig
from courier.store import Store, open_store
from courier.transport import ConnectOptions
from courier.transport.gmqtt_transport import GmqttTransport


@dataclass
class Courier:
    store: Store
    bridge: Bridge
    service: Service
    metrics: Metrics
    broker: MosquittoProcess
    prefix: str
    agents: list[Agent]

    def device_id(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def agent(self, device_id: str, **kwargs: object) -> Agent:
        agent = Agent(device_id, broker=self.broker.url, prefix=self.prefix, **kwargs)  # type: ignore[arg-type]
        self.agents.append(agent)
        return agent


@pytest.fixture
async def courier(broker: MosquittoProcess, prefix: str, tmp_path: Path) -> AsyncIterator[Courier]:
    store = open_store(f"sqlite:///{tmp_path}/courier.db")
    await store.open()
    metrics = Metrics()
    transport = GmqttTransport(
        ConnectOptions.from_url(broker.url, client_id=f"courier-{prefix}", reconnect_delay=0.2)
    )
    clock = SystemClock()
    bridge = Bridge(
        store, transport, BridgeConfig(prefix=prefix, sweep_interval=0.2), clock, metrics
    )
    service = Service(store, ServiceConfig(), clock)
    stop = asyncio.Event()
    task = asyncio.create_task(bridge.run(stop))
    running = Courier(store, bridge, service, metrics, broker, prefix, [])
    for _ in range(200):
        if bridge.ready:
            break
        await asyncio.sleep(0.01)
    yield running
    for agent in running.agents:
        await agent.stop()
    stop.set()
    await task
    await store.close()
