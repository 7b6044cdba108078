"""Courier keeping a real Mosquitto's users and ACL in step with its registry: devices reach
only their own topics, a deleted device is cut off, a rotated password ends the old one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from gmqtt.mqtt.handler import MQTTConnectError

from courier.bridge import Bridge, BridgeConfig
from courier.bridge.lwm2m import request_id
from courier.broker_sync import BrokerSync
from courier.clock import SystemClock
from courier.core.documents import ServiceUser
from courier.credentials import mosquitto_hash, new_device_password
from courier.errors import AlreadyExists
from courier.gateway import Agent, CommandContext
from courier.gateway.lwm2m_client import SimulatedLwm2mClient
from courier.metrics import Metrics
from courier.mosquitto import MosquittoProcess, free_port
from courier.schemas.api import CommandRequestIn, DeviceIn
from courier.schemas.states import TERMINAL, ExecutionState
from courier.service import Service, ServiceConfig
from courier.store import open_store
from courier.transport import ConnectOptions
from courier.transport.gmqtt_transport import GmqttTransport
from tests.helpers import eventually
from tests.integration.test_broker_auth import Probe

ROOT = Path(__file__).resolve().parents[2]
S = ExecutionState
HASH = mosquitto_hash("erp-secret")


@dataclass
class Guarded:
    broker: MosquittoProcess
    service: Service
    prefix: str
    agents: list[Agent]

    async def device(self, name: str) -> tuple[str, str]:
        _, password, _ = await self.service.register_device("acme", DeviceIn(id=name))
        assert password is not None
        return name, password

    def agent(self, device_id: str, password: str) -> Agent:
        agent = Agent(device_id, password, broker=self.broker.url, prefix=self.prefix)
        self.agents.append(agent)
        return agent

    async def command(self, device_id: str, command: str = "PING") -> str:
        body = CommandRequestIn.model_validate({"devices": [device_id], "command": command})
        created = await self.service.create_command("acme", body, "test")
        return created.executions[0].id

    async def ended(self, execution_id: str) -> Any:
        async def done() -> bool:
            found = await self.service.store.get_execution("acme", execution_id)
            return found.state in TERMINAL

        await eventually(done, what=f"{execution_id} ended")
        return await self.service.store.get_execution("acme", execution_id)

    async def can_log_in(self, username: str, password: str) -> bool:
        probe = Probe(self.broker, f"{username}-login-check", username, password)
        try:
            await probe.connect()
        except MQTTConnectError:
            return False
        finally:
            await probe.close()
        return True


@pytest.fixture
async def guarded(tmp_path: Path, prefix: str) -> AsyncIterator[Guarded]:
    broker = MosquittoProcess(ROOT / "mosquitto.conf", free_port(), tmp_path / "mosquitto")
    store = open_store(f"sqlite:///{tmp_path}/courier.db")
    await store.open()
    courier_password = new_device_password()
    url = f"mqtt://courier:{courier_password}@127.0.0.1:{broker.port}"
    clock = SystemClock()
    service = Service(store, ServiceConfig(files_dir=str(tmp_path / "files")), clock)
    service.broker = BrokerSync.from_paths(
        store,
        prefix,
        url,
        str(broker.password_file),
        str(broker.acl_file),
        str(broker.pid_file),
        lwm2m_mountpoint=f"{prefix}-lwm2m",
    )
    broker.write_config()  # creates the (empty) files the first sync replaces
    await service.sync_broker()
    broker.start()
    transport = GmqttTransport(
        ConnectOptions.from_url(url, client_id=f"courier-{prefix}", reconnect_delay=0.2)
    )
    config = BridgeConfig(prefix=prefix, sweep_interval=0.2, lwm2m_mountpoint=f"{prefix}-lwm2m")
    bridge = Bridge(store, transport, config, clock, Metrics())
    stop = asyncio.Event()
    task = asyncio.create_task(bridge.run(stop))
    await eventually(lambda: bridge.ready, what="Courier connected with its own user")
    guarded = Guarded(broker, service, prefix, [])
    yield guarded
    for agent in guarded.agents:
        await agent.stop(offline=False)
    stop.set()
    await task
    await store.close()
    broker.stop()


async def test_devices_reach_only_their_own_topics(guarded: Guarded) -> None:
    a, a_password = await guarded.device("dev-a")
    b, b_password = await guarded.device("dev-b")
    assert not await guarded.can_log_in(a, b_password)
    assert not await guarded.can_log_in(a, "")
    release = asyncio.Event()
    agent_b = guarded.agent(b, b_password)

    @agent_b.handler("SLOW")
    async def slow(ctx: CommandContext) -> dict[str, Any]:
        await release.wait()
        return {"by": "b"}

    await agent_b.start()
    spy = Probe(guarded.broker, a, a, a_password)
    await spy.connect()
    await spy.subscribe(f"{guarded.prefix}/devices/{b}/commands/#")
    await spy.subscribe(f"{guarded.prefix}/devices/{a}/commands/#")
    spy.publish(f"{guarded.prefix}/devices/{a}/presence", b'{"online": true}')
    try:
        await eventually(lambda: guarded.service.store.get_device("acme", b), what="b registered")
        slow_id = await guarded.command(b, "SLOW")

        async def running() -> bool:
            found = await guarded.service.store.get_execution("acme", slow_id)
            return found.state in (S.ACKNOWLEDGED, S.IN_PROGRESS)

        await eventually(running, what="b running its command")
        # A forges B's result: the broker drops it, nothing changes.
        forged = b'{"state": "SUCCEEDED", "output": {"by": "a"}}'
        spy.publish(f"{guarded.prefix}/devices/{b}/replies/{slow_id}", forged)
        a_id = await guarded.command(a)
        await spy.received(f"{guarded.prefix}/devices/{a}/commands/{a_id}")
        release.set()
        finished = await guarded.ended(slow_id)
        assert finished.state is S.SUCCEEDED
        assert finished.output == {"by": "b"}
        history = await guarded.service.store.history("acme", slow_id)
        assert [e.to_state for e in history].count(S.SUCCEEDED) == 1
        assert not [t for t in spy.topics if f"/devices/{b}/" in t]
    finally:
        await spy.close()


async def test_a_deleted_device_is_cut_off_and_cannot_come_back(guarded: Guarded) -> None:
    a, password = await guarded.device("dev-gone")
    probe = Probe(guarded.broker, a, a, password, clean=False)
    await probe.connect()
    await guarded.service.delete_device("acme", a, "test")
    await asyncio.wait_for(probe.disconnected.wait(), 5)
    assert not await guarded.can_log_in(a, password)


async def test_a_rotated_password_ends_the_old_one(guarded: Guarded) -> None:
    a, old = await guarded.device("dev-rot")
    probe = Probe(guarded.broker, a, a, old, clean=False)
    await probe.connect()
    new = await guarded.service.rotate_password("acme", a)
    await asyncio.wait_for(probe.disconnected.wait(), 5)
    assert not await guarded.can_log_in(a, old)
    assert await guarded.can_log_in(a, new)


async def test_mqtt_usernames_are_one_namespace(guarded: Guarded) -> None:
    """A device may not take a service user's or Courier's own name: the broker's password
    file holds each once, and every later change must still reach it."""
    store = guarded.service.store
    erp = ServiceUser(id="su-1", tenant="acme", name="erp", created_at=1.0, password_hash=HASH)
    await store.add_service_user(erp)
    for taken in ("erp", "courier"):
        with pytest.raises(AlreadyExists):
            await guarded.service.register_device("acme", DeviceIn(id=taken))
        assert await store.find_device(taken) is None
    with pytest.raises(AlreadyExists):
        guarded.service.check_username_free("courier")
    later, password = await guarded.device("dev-later")
    assert await guarded.can_log_in(later, password)


async def test_an_lwm2m_endpoint_logs_in_as_itself_and_reaches_only_its_topics(
    guarded: Guarded,
) -> None:
    mount = f"{guarded.prefix}-lwm2m"
    _, password, _ = await guarded.service.register_device(
        "acme", DeviceIn(id="meter-1", protocol="lwm2m")
    )
    assert password is not None
    other, other_password = await guarded.device("dev-nosy")
    meter = SimulatedLwm2mClient(
        "meter-1", broker=guarded.broker.url, mountpoint=mount, password=password
    )
    await meter.start()
    nosy = Probe(guarded.broker, other, other, other_password)
    await nosy.connect()
    try:

        async def online() -> bool:
            return (await guarded.service.store.get_device("acme", "meter-1")).online

        await eventually(online, what="the endpoint registered through the ACL")
        await nosy.subscribe(f"{mount}/meter-1/dn/#")  # granted, but nothing is delivered
        args = {"type": "read", "endpoint": "/3/0/0"}
        body = {"devices": ["meter-1"], "command": "lwm2m_request", "args": args}
        created = await guarded.service.create_command(
            "acme", CommandRequestIn.model_validate(body), "test"
        )
        execution_id = created.executions[0].id
        # Another device's forged answer never reaches Courier.
        forged = {"reqID": request_id(execution_id, 1), "msgType": "read"}
        forged["data"] = {"code": "4.04", "reqPath": "/3/0/0"}
        nosy.publish(f"{mount}/meter-1/up/resp", orjson.dumps(forged))
        finished = await guarded.ended(execution_id)
        assert finished.state is S.SUCCEEDED, finished.reason
        assert finished.output["content"] == [{"path": "/3/0/0", "value": "Courier"}]
        assert meter.requests
        assert not nosy.topics
    finally:
        await nosy.close()
        await meter.stop()
