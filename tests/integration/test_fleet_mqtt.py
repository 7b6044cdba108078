"""Fleet commands on a real Mosquitto and SQLite, Courier's clock faked so schedules, rollouts
and timeouts are stepped, not waited for; the devices are real SDK agents."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from courier.bridge import Bridge, BridgeConfig
from courier.bridge.ingress import Ingress
from courier.clock import FakeClock
from courier.gateway import Agent, CommandContext, CommandFailed
from courier.metrics import Metrics
from courier.mosquitto import MosquittoProcess
from courier.schemas.api import CommandRequestIn, DeviceIn
from courier.schemas.states import ExecutionState
from courier.service import Service, ServiceConfig
from courier.store import ExecutionFilter, Store, open_store
from courier.topics import Topics
from courier.transport import ConnectOptions, Message
from courier.transport.gmqtt_transport import GmqttTransport
from tests.helpers import eventually

S = ExecutionState
T0 = 1_795_392_000.0  # 2026-11-23T00:00:00Z, a Monday


@dataclass
class Fleet:
    store: Store
    bridge: Bridge
    service: Service
    clock: FakeClock
    broker: MosquittoProcess
    prefix: str
    agents: list[Agent]
    ran: list[tuple[str, str, float]]
    clients: list[GmqttTransport]

    def client(self, name: str) -> GmqttTransport:
        """A plain MQTT client, closed when the test ends."""
        transport = GmqttTransport(
            ConnectOptions.from_url(
                self.broker.url, client_id=f"{self.prefix}-{name}", clean_start=True
            )
        )
        self.clients.append(transport)
        return transport

    def id(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    async def register(self, *names: str, **fields: Any) -> list[str]:
        ids = [self.id(n) for n in names]
        for device_id in ids:
            await self.service.register_device("acme", DeviceIn(id=device_id, **fields))
        return ids

    async def start_agents(
        self, ids: list[str], fail: frozenset[str] = frozenset(), hold: float = 0.0
    ) -> None:
        agents = []
        for device_id in ids:
            # The agents share Courier's fake clock: the expiry they check is in its time.
            agent = Agent(device_id, broker=self.broker.url, prefix=self.prefix, clock=self.clock)

            @agent.default_handler
            async def run(ctx: CommandContext, device_id: str = device_id) -> dict[str, str]:
                self.ran.append((device_id, ctx.command, self.clock.now()))
                if hold:
                    await asyncio.sleep(hold)
                if device_id in fail:
                    raise CommandFailed("refused")
                return {"ok": device_id}

            agents.append(agent)
        gate = asyncio.Semaphore(50)

        async def start(agent: Agent) -> None:
            async with gate:
                await agent.start()

        await asyncio.gather(*(start(a) for a in agents))
        self.agents.extend(agents)

        async def all_online() -> bool:
            found = [await self.store.find_device(d) for d in ids]
            return all(d is not None and d.online for d in found)

        await eventually(all_online, what="agents online")

    async def send(self, **body: Any) -> list[str]:
        created = await self.service.create_command(
            "acme", CommandRequestIn.model_validate({"command": "DO", **body}), "test"
        )
        return [e.id for e in created.executions]

    async def step(self, settle: float = 0.3) -> None:
        await self.bridge.fire_timers_once()
        await self.bridge.dispatch_once()
        await asyncio.sleep(settle)
        await self.bridge.dispatch_once()

    async def states(self, ids: list[str]) -> list[ExecutionState]:
        return [(await self.store.get_execution("acme", e)).state for e in ids]


@pytest.fixture
async def fleet(broker: MosquittoProcess, prefix: str, tmp_path: Path) -> AsyncIterator[Fleet]:
    store = open_store(f"sqlite:///{tmp_path}/fleet.db")
    await store.open()
    clock = FakeClock(T0)
    metrics = Metrics()
    transport = GmqttTransport(
        ConnectOptions.from_url(broker.url, client_id=f"courier-{prefix}", reconnect_delay=0.2)
    )
    bridge = Bridge(store, transport, BridgeConfig(prefix=prefix), clock, metrics)
    service = Service(store, ServiceConfig(claim_on_create=True), clock)
    bridge.ingress = Ingress(service, metrics, 256 * 1024)
    await bridge.start()
    running = Fleet(store, bridge, service, clock, broker, prefix, [], [], [])
    yield running
    await asyncio.gather(*(a.stop() for a in running.agents), return_exceptions=True)
    await asyncio.gather(*(c.disconnect() for c in running.clients), return_exceptions=True)
    await bridge.close()
    await store.close()


async def test_overlapping_groups_run_once_per_device(fleet: Fleet) -> None:
    ids = await fleet.register("a", "b", "c")
    await fleet.store.create_group("acme", "g1", ids[:2], T0, "g1")
    await fleet.store.create_group("acme", "g2", ids[1:], T0, "g2")
    await fleet.store.create_group("acme", "g3", [ids[0], ids[2]], T0, "g3")
    await fleet.start_agents(ids)
    executions = await fleet.send(command_type="GROUP", groups=["g1", "g2", "g3"])
    assert len(executions) == 3

    async def done() -> bool:
        return await fleet.states(executions) == [S.SUCCEEDED] * 3

    await eventually(done, what="all succeeded")
    assert sorted(d for d, _, _ in fleet.ran) == sorted(ids)


async def test_active_and_inactive_follow_presence(fleet: Fleet) -> None:
    on = await fleet.register("on1", "on2")
    off = await fleet.register("off1")
    await fleet.start_agents(on)
    active = await fleet.send(
        command_type="DYNAMIC", filter={"devices": on + off}, device_type="active"
    )
    inactive = await fleet.send(
        command_type="DYNAMIC", filter={"devices": on + off}, device_type="inactive"
    )
    assert [(await fleet.store.get_execution("acme", e)).device_id for e in active] == on
    assert [(await fleet.store.get_execution("acme", e)).device_id for e in inactive] == off


async def test_a_window_in_device_time_opens_at_each_devices_local_hour(fleet: Fleet) -> None:
    (paris,) = await fleet.register("paris", timezone="Europe/Paris")
    (tokyo,) = await fleet.register("tokyo", timezone="Asia/Tokyo")
    await fleet.start_agents([paris, tokyo])
    fleet.clock.set(T0 - 3600)  # Sunday 23:00 UTC
    executions = await fleet.send(
        devices=[paris, tokyo],
        schedule="WINDOW",
        schedule_args={
            "window_start_time": "09:00",
            "window_end_time": "10:00",
            "time_type": "device",
        },
    )
    assert await fleet.states(executions) == [S.SCHEDULED, S.SCHEDULED]
    fleet.clock.set(T0 + 60)  # 09:01 in Tokyo, 01:01 in Paris
    await fleet.step()
    await eventually(lambda: len(fleet.ran) == 1, what="tokyo ran")
    assert fleet.ran[0][0] == tokyo
    fleet.clock.set(T0 + 8 * 3600 + 60)  # 09:01 in Paris
    await fleet.step()
    await eventually(lambda: len(fleet.ran) == 2, what="paris ran")
    assert fleet.ran[1][0] == paris
    assert [t - T0 for _, _, t in fleet.ran] == [60, 8 * 3600 + 60]


async def test_recurring_retries_in_the_next_window_and_stops_after_success(fleet: Fleet) -> None:
    (device,) = await fleet.register("rec")
    await fleet.store.set_tenant_timezone("acme", "UTC")
    outcomes = iter([CommandFailed("busy"), None])
    agent = Agent(device, broker=fleet.broker.url, prefix=fleet.prefix, clock=fleet.clock)

    @agent.default_handler
    async def flaky(ctx: CommandContext) -> dict[str, int]:
        fleet.ran.append((device, ctx.command, fleet.clock.now()))
        outcome = next(outcomes)
        if outcome:
            raise outcome
        return {"attempt": ctx.attempt}

    await agent.start()
    fleet.agents.append(agent)
    await eventually(lambda: fleet.store.find_device(device), what="registered")
    (execution,) = await fleet.send(
        devices=[device],
        schedule="RECURRING",
        ttl=7 * 86400,
        retry={"max_attempts": 1, "on": "failure"},
        schedule_args={"window_start_time": "09:00", "window_end_time": "10:00"},
    )
    fleet.clock.set(T0 + 9 * 3600)
    await fleet.step()

    async def state(expected: ExecutionState) -> bool:
        return (await fleet.store.get_execution("acme", execution)).state is expected

    await eventually(lambda: state(S.SCHEDULED) if fleet.ran else False, what="first run failed")
    waiting = await fleet.store.get_execution("acme", execution)
    assert waiting.wake_at == T0 + 33 * 3600  # tomorrow 09:00
    fleet.clock.set(T0 + 33 * 3600)
    await fleet.step()
    await eventually(lambda: state(S.SUCCEEDED), what="second window succeeded")
    fleet.clock.set(T0 + 57 * 3600)
    await fleet.step()
    assert len(fleet.ran) == 2


async def test_a_rollout_of_300_devices_at_100_a_minute_aborts_at_20_percent(fleet: Fleet) -> None:
    names = [f"r{i:03d}" for i in range(300)]
    ids = await fleet.register(*names)
    await fleet.store.create_group("acme", "all", ids, T0, "fleet-all")
    failing = frozenset(d for i, d in enumerate(ids) if i % 4 == 0)  # a quarter fail
    await fleet.start_agents(ids, fail=failing)
    executions = await fleet.send(
        command_type="GROUP",
        groups=["fleet-all"],
        retry={"max_attempts": 1},
        rollout={"max_per_minute": 100, "abort_failure_percent": 20, "abort_min_finished": 20},
    )
    await asyncio.sleep(0.3)
    assert len(fleet.ran) == 1  # the first of the wave goes at once, the rest are spaced
    fleet.clock.advance(59.9)
    await fleet.step(settle=1.0)

    async def aborted() -> bool:
        request = (await fleet.store.get_execution("acme", executions[0])).request_id
        return (await fleet.store.get_request("acme", request)).rollout_state is not None

    await eventually(aborted, timeout=20, what="the rollout to abort")
    sent_in_first_minute = len(fleet.ran)
    assert sent_in_first_minute <= 100
    fleet.clock.advance(600)
    await fleet.step(settle=1.0)
    assert len(fleet.ran) == sent_in_first_minute  # nothing more after the abort
    page = await fleet.store.list_executions(
        "acme",
        ExecutionFilter(
            request_ids=((await fleet.store.get_execution("acme", executions[0])).request_id,)
        ),
        1000,
        0,
    )
    states = [e.state for e in page.results]
    assert states.count(S.CANCELLED) >= 200
    assert all(
        e.reason and "rollout aborted" in e.reason for e in page.results if e.state is S.CANCELLED
    )


async def test_sequential_delivery_and_a_head_of_line_timeout(fleet: Fleet) -> None:
    (device,) = await fleet.register("seq", delivery_policy="sequential_on_result")
    await fleet.start_agents([device], hold=0.2)
    first = await fleet.send(
        devices=[device], command="FIRST", timeout=5, retry={"max_attempts": 1}
    )
    second = await fleet.send(devices=[device], command="SECOND")
    await asyncio.sleep(0.1)
    assert await fleet.states(first + second) == [S.IN_PROGRESS, S.QUEUED] or await fleet.states(
        first + second
    ) == [S.ACKNOWLEDGED, S.QUEUED]
    await eventually(lambda: fleet.store.get_execution("acme", first[0]), what="first")

    async def second_done() -> bool:
        await fleet.bridge.dispatch_once()
        return await fleet.states(second) == [S.SUCCEEDED]

    await eventually(second_done, what="the second after the first")
    assert [c for _, c, _ in fleet.ran] == ["FIRST", "SECOND"]
    # a stuck head of the queue times out and frees it
    (stuck,) = await fleet.register("stuck", delivery_policy="sequential_on_result")
    silent = fleet.client("silent")
    await silent.connect()
    silent.publish(Topics(fleet.prefix).presence(stuck), b'{"online": true}', retain=True)
    await eventually(lambda: fleet.store.find_device(stuck), what="x")

    async def online() -> bool:
        return bool((await fleet.store.get_device("acme", stuck)).online)

    await eventually(online, what="stuck online")
    head = await fleet.send(devices=[stuck], timeout=5, ack_timeout=5, retry={"max_attempts": 1})
    behind = await fleet.send(devices=[stuck])
    assert await fleet.states(head + behind) == [S.SENT, S.QUEUED]
    fleet.clock.advance(6)
    await fleet.step()
    assert await fleet.states(head + behind) == [S.TIMED_OUT, S.SENT]


async def test_requests_over_mqtt_are_answered_on_the_response_topic(fleet: Fleet) -> None:
    (device,) = await fleet.register("viamqtt")
    topics = Topics(fleet.prefix)
    answers: list[tuple[bytes | None, dict[str, Any]]] = []
    upstream = fleet.client("up")

    async def collect(message: Message) -> None:
        answers.append((message.correlation_data, orjson.loads(message.payload)))

    upstream.on_message = collect
    await upstream.connect()
    await upstream.subscribe([f"{fleet.prefix}/answers"])
    body = {"devices": [device], "command": "REBOOT", "client_token": "tok-1"}
    for token in (b"c1", b"c2"):
        upstream.publish(
            topics.requests("acme"),
            orjson.dumps(body),
            response_topic=f"{fleet.prefix}/answers",
            correlation_data=token,
        )
    upstream.publish(
        topics.requests("acme"),
        b'{"devices": ["nope"], "command": "REBOOT"}',
        response_topic=f"{fleet.prefix}/answers",
        correlation_data=b"c3",
    )
    upstream.publish(
        topics.requests("acme"),
        b"{broken",
        response_topic=f"{fleet.prefix}/answers",
        correlation_data=b"c4",
    )
    upstream.publish(
        topics.requests("nobody"),
        orjson.dumps(body),
        response_topic=f"{fleet.prefix}/answers",
        correlation_data=b"c5",
    )
    await eventually(lambda: len(answers) == 5, what="five answers")
    by_token = dict(answers)
    first, second = by_token[b"c1"], by_token[b"c2"]
    assert first["status"] == second["status"] == 201
    assert first["request"]["issued_by"] == "mqtt:acme"
    assert sorted([first["replayed"], second["replayed"]]) == [False, True]  # same client_token
    assert second["request"]["id"] == first["request"]["id"]
    assert (by_token[b"c3"]["status"], by_token[b"c3"]["devices"]) == (422, ["nope"])
    assert by_token[b"c4"]["status"] == 422
    assert by_token[b"c5"]["status"] == 404
    page = await fleet.store.list_executions("acme", ExecutionFilter(device_ids=(device,)), 10, 0)
    assert page.count == 1


async def test_every_state_change_is_an_event_upstream(fleet: Fleet) -> None:
    (device,) = await fleet.register("evented")
    events: list[dict[str, Any]] = []
    watcher = fleet.client("ev")

    async def collect(message: Message) -> None:
        events.append(orjson.loads(message.payload))

    watcher.on_message = collect
    await watcher.connect()
    await watcher.subscribe([Topics(fleet.prefix).events("acme")])
    await fleet.start_agents([device])
    (execution,) = await fleet.send(devices=[device])
    await eventually(lambda: events and events[-1]["state"] == "SUCCEEDED", what="events")
    mine = [e for e in events if e["execution"] == execution]
    assert [e["state"] for e in mine] == ["QUEUED", "SENT", "ACKNOWLEDGED", "SUCCEEDED"]
    assert mine[-1]["output"] == {"ok": device}
