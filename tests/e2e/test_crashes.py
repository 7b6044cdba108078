"""Nothing is lost and nothing runs twice when Courier or the broker dies mid-flight."""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
from collections import Counter
from collections.abc import Callable, Sequence

import httpx
import pytest

from courier.gateway import Agent, CommandContext
from courier.transport import MessageHandler, NowaitHandler, Transport
from courier.transport.base import ConnectHandler
from tests.e2e.conftest import CourierProcess
from tests.helpers import eventually

TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "CANCELLED", "EXPIRED"}
DEVICES = 20
COMMANDS = 500


class LossyTransport:
    """A device connection that loses some of the replies it publishes (a flaky link)."""

    def __init__(self, inner: Transport, drop_rate: float, rng: random.Random) -> None:
        self.inner = inner
        self.drop_rate = drop_rate
        self.rng = rng
        self.on_message_nowait: NowaitHandler | None = None  # the agent uses on_message

    @property
    def on_message(self) -> MessageHandler | None:
        return self.inner.on_message

    @on_message.setter
    def on_message(self, handler: MessageHandler | None) -> None:
        self.inner.on_message = handler

    @property
    def on_connect(self) -> ConnectHandler | None:
        return self.inner.on_connect

    @on_connect.setter
    def on_connect(self, handler: ConnectHandler | None) -> None:
        self.inner.on_connect = handler

    @property
    def on_disconnect(self) -> Callable[[], None] | None:
        return self.inner.on_disconnect

    @on_disconnect.setter
    def on_disconnect(self, handler: Callable[[], None] | None) -> None:
        self.inner.on_disconnect = handler

    @property
    def connected(self) -> bool:
        return self.inner.connected

    async def connect(self) -> None:
        await self.inner.connect()

    async def disconnect(self) -> None:
        await self.inner.disconnect()

    async def subscribe(self, topics: Sequence[str], qos: int = 1) -> None:
        await self.inner.subscribe(topics, qos)

    async def unsubscribe(self, topics: Sequence[str]) -> None:
        await self.inner.unsubscribe(topics)

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        expiry: int | None = None,
        response_topic: str | None = None,
        correlation_data: bytes | None = None,
        user_properties: Sequence[tuple[str, str]] = (),
    ) -> None:
        if "/replies/" in topic and self.rng.random() < self.drop_rate:
            return
        self.inner.publish(
            topic, payload, qos, retain, expiry, response_topic, correlation_data, user_properties
        )


async def start_fleet(c: CourierProcess, api: httpx.Client, drop_rate: float) -> list[Agent]:
    agents = []
    rng = random.Random(7)
    for i in range(DEVICES):
        device_id = f"{c.prefix}-dev{i}"
        # Half the fleet takes commands one at a time, so a backlog stays QUEUED while the
        # other half runs its commands together: a crash finds work in every state.
        policy = "sequential_on_result" if i % 2 else "burst"
        body = {"id": device_id, "delivery_policy": policy}
        response = api.post("/devices", json=body)  # noqa: ASYNC212 - set-up
        assert response.status_code == 201, response.text
        password = response.json()["credentials"]["password"]
        inner = Agent.default_transport(device_id, password, c.broker.url, c.prefix)
        transport = LossyTransport(inner, drop_rate, rng)
        agent = Agent(device_id, password, prefix=c.prefix, transport=transport)

        @agent.default_handler
        async def work(ctx: CommandContext) -> dict[str, str]:
            await asyncio.sleep(rng.uniform(0.02, 0.15))
            return {"done": ctx.execution_id}

        agents.append(agent)
    await asyncio.gather(*(a.start() for a in agents))
    return agents


def create_commands(c: CourierProcess, api: httpx.Client, **options: object) -> list[str]:
    ids: list[str] = []
    devices = [f"{c.prefix}-dev{i}" for i in range(DEVICES)]
    for _ in range(COMMANDS // DEVICES):
        response = api.post("/commands", json={"devices": devices, "command": "WORK", **options})
        assert response.status_code == 201, response.text
        ids.extend(e["id"] for e in response.json()["executions"])
    return ids


def states(api: httpx.Client) -> Counter[str]:
    counts: Counter[str] = Counter()
    offset = 0
    while True:
        page = api.get("/executions", params={"limit": 1000, "offset": offset}).json()
        counts.update(e["state"] for e in page["results"])
        offset += 1000
        if offset >= page["count"]:
            return counts


async def finish(
    c: CourierProcess, api: httpx.Client, agents: list[Agent], ids: list[str], lossy: bool
) -> None:
    async def all_terminal() -> bool:
        counts = await asyncio.to_thread(states, api)
        return sum(counts.values()) == COMMANDS and set(counts) <= TERMINAL

    await eventually(all_terminal, timeout=90, interval=0.5, what="every execution to end")
    counts = states(api)
    assert counts == {"SUCCEEDED": COMMANDS}, counts
    runs: Counter[str] = Counter()
    for agent in agents:
        runs.update(agent.runs)
    assert set(runs) == set(ids), "every accepted command ran"
    assert max(runs.values()) == 1, f"ran twice: {[e for e, n in runs.items() if n > 1]}"
    deliveries = sum(a.received for a in agents)
    duplicates = sum(a.duplicates for a in agents)
    assert deliveries == COMMANDS + duplicates
    if lossy:
        # Lost replies force resends: the device got those commands again and answered them
        # from its reply log. Without that log they would have run twice.
        assert duplicates > 0
    print(f"\ndeliveries={deliveries} runs={sum(runs.values())} duplicates answered={duplicates}")


async def crash_mid_flight(
    c: CourierProcess,
    crash: Callable[[], None],
    recover: Callable[[], None],
    drop_rate: float,
    inspect: Callable[[], None] = lambda: None,
    **options: object,
) -> None:
    """Start Courier and a fleet, create 500 commands, crash while they run, check the end."""
    c.start()
    with c.api(c.new_key()) as api:
        agents = await start_fleet(c, api, drop_rate)
        try:
            ids = await asyncio.to_thread(create_commands, c, api, **options)

            async def some_done() -> bool:
                return sum(sum(a.runs.values()) for a in agents) >= 50

            await eventually(some_done, what="work under way")
            await asyncio.to_thread(crash)
            assert sum(sum(a.runs.values()) for a in agents) < COMMANDS, "crashed too late"
            inspect()
            await asyncio.sleep(0.5)
            await asyncio.to_thread(recover)
            await finish(c, api, agents, ids, lossy=drop_rate > 0)
        finally:
            await asyncio.gather(*(a.stop() for a in agents))


@pytest.mark.slow
async def test_sigkill_of_courier_mid_flight_loses_nothing_and_runs_nothing_twice(
    courier_process: CourierProcess,
) -> None:
    c = courier_process

    def states_left_behind() -> None:
        path = c.store.removeprefix("sqlite:///")
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            rows = conn.execute("SELECT state, count(*) FROM executions GROUP BY state")
            left = dict(rows.fetchall())
        print(f"\nat the kill: {left}")
        assert left.get("QUEUED", 0) > 0
        assert sum(left.get(s, 0) for s in ("SENT", "ACKNOWLEDGED", "IN_PROGRESS")) > 0

    # A 10 % lossy device link forces resends, so duplicates reach the devices. Five attempts:
    # the chance that such a link loses one result five times in a row is 1e-5.
    await crash_mid_flight(
        c,
        c.kill,
        c.start,
        drop_rate=0.1,
        inspect=states_left_behind,
        ack_timeout=1,
        timeout=2,
        retry={"max_attempts": 5},
    )


@pytest.mark.slow
async def test_broker_killed_and_restarted_mid_flight_loses_nothing(
    courier_own_broker: CourierProcess,
) -> None:
    c = courier_own_broker
    await crash_mid_flight(
        c, c.broker.kill, c.broker.start, drop_rate=0.0, ack_timeout=1, timeout=2
    )
