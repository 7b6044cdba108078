"""A running Courier in-process: SQLite store, bridge on the real Mosquitto, service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from courier.api import create_app
from courier.bridge import Bridge, BridgeConfig
from courier.clock import SystemClock
from courier.gateway import Agent
from courier.metrics import Metrics
from courier.mosquitto import MosquittoProcess, free_port
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
    http_port: int

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
    config = BridgeConfig(prefix=prefix, sweep_interval=0.2, lwm2m_mountpoint=f"{prefix}-lwm2m")
    bridge = Bridge(store, transport, config, clock, metrics)
    http_port = free_port()
    service = Service(
        store,
        ServiceConfig(
            files_dir=str(tmp_path / "files"),
            public_url=f"http://127.0.0.1:{http_port}",
            url_ttl=60.0,
        ),
        clock,
    )
    bridge.files = service.files
    stop = asyncio.Event()
    task = asyncio.create_task(bridge.run(stop))
    running = Courier(store, bridge, service, metrics, broker, prefix, [], http_port)
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


@pytest.fixture
async def served(courier: Courier) -> AsyncIterator[tuple[Courier, str]]:
    """The courier with its REST API on a real port (devices fetch files from it), and an
    admin key of tenant acme."""
    app = create_app(courier.service, courier.metrics, courier.bridge, rate_limit=0)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=courier.http_port, log_config=None, lifespan="off"
        )
    )
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    _, key = await courier.service.create_api_key("acme", ["admin"])
    yield courier, key
    server.should_exit = True
    await task
