"""The bridge over the in-memory broker and store, with a fake clock: every path, no sleeping."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson
import pytest

from courier.bridge import Bridge, BridgeConfig
from courier.bridge.engine import PUBLISH_LATER_OVER, PUBLISH_SLICE
from courier.clock import FakeClock
from courier.gateway import Agent, CommandContext
from courier.metrics import Metrics
from courier.schemas.mqtt import presence_bytes
from courier.schemas.states import ExecutionState
from courier.store import Store, open_store
from courier.topics import Topics
from courier.transport import ConnectOptions, Will
from courier.transport.memory import MemoryBroker, MemoryTransport
from tests.helpers import device, request

S = ExecutionState
T = Topics("courier")


@dataclass
class Rig:
    broker: MemoryBroker
    store: Store
    bridge: Bridge
    clock: FakeClock
    metrics: Metrics

    async def settle(self) -> None:
        await self.broker.settle()
        while self.bridge.publishing:  # the slices of a big commit, and what they cause
            await asyncio.sleep(0)
            await self.broker.settle()

    def agent(self, device_id: str) -> Agent:
        options = ConnectOptions(
            client_id=device_id, will=Will(T.presence(device_id), presence_bytes(False))
        )
        agent = Agent(device_id, transport=self.broker.transport(options), clock=self.clock)

        @agent.default_handler
        async def ok(ctx: CommandContext) -> dict[str, object]:
            await ctx.progress(50)
            return {"ran": ctx.command}

        return agent

    def silent_device(self, device_id: str) -> MemoryTransport:
        """Online (retained presence) but never answers."""
        return self.broker.transport(ConnectOptions(client_id=f"raw-{device_id}"))

    async def mark_online(self, device_id: str, transport: MemoryTransport) -> None:
        await transport.connect()
        transport.publish(T.presence(device_id), presence_bytes(True), retain=True)
        await self.settle()

    def published(self, topic_filter: str) -> list[dict[str, object]]:
        from courier.transport import topic_matches

        return [
            orjson.loads(m.payload)
            for m in self.broker.published
            if topic_matches(topic_filter, m.topic)
        ]


@pytest.fixture
async def rig(clock: FakeClock) -> AsyncIterator[Rig]:
    broker = MemoryBroker()
    store = open_store("memory://", rand=lambda: 0.5)
    await store.open()
    metrics = Metrics()
    transport = broker.transport(ConnectOptions(client_id="courier"))
    bridge = Bridge(store, transport, BridgeConfig(in_flight=2), clock, metrics)
    await bridge.start()
    yield Rig(broker, store, bridge, clock, metrics)
    await bridge.close()
    await store.close()


async def test_command_reaches_online_device_and_succeeds(rig: Rig) -> None:
    await rig.store.add_device(device("d1", online=False))
    agent = rig.agent("d1")
    await agent.start()
    await rig.settle()
    assert (await rig.store.get_device("acme", "d1")).online
    created = await rig.store.create_request(request(["d1"], rig.clock), 100, rig.clock.now())
    assert await rig.bridge.dispatch_once() == 1
    await rig.settle()
    execution = await rig.store.get_execution("acme", created.executions[0].id)
    assert execution.state is S.SUCCEEDED
    assert execution.output == {"ran": "REBOOT"}
    states = [e.to_state for e in await rig.store.history("acme", execution.id)]
    assert states == [S.QUEUED, S.SENT, S.ACKNOWLEDGED, S.IN_PROGRESS, S.SUCCEEDED]
    events = rig.published("courier/tenants/acme/events")
    assert [e["state"] for e in events] == [
        "QUEUED",
        "SENT",
        "ACKNOWLEDGED",
        "IN_PROGRESS",
        "SUCCEEDED",
    ]
    assert events[-1]["output"] == {"ran": "REBOOT"}
    assert agent.runs[execution.id] == 1


async def test_queued_for_offline_device_then_delivered_when_it_connects(rig: Rig) -> None:
    await rig.store.add_device(device("d1", online=False))
    created = await rig.store.create_request(request(["d1"], rig.clock), 100, rig.clock.now())
    assert await rig.bridge.dispatch_once() == 0
    eid = created.executions[0].id
    assert (await rig.store.get_execution("acme", eid)).state is S.QUEUED
    agent = rig.agent("d1")
    await agent.start()
    await rig.settle()
    await rig.bridge.dispatch_once()
    await rig.settle()
    assert (await rig.store.get_execution("acme", eid)).state is S.SUCCEEDED


async def test_missing_acks_resend_with_new_attempts_then_time_out(rig: Rig) -> None:
    await rig.store.add_device(device("d1", online=False))
    await rig.mark_online("d1", rig.silent_device("d1"))
    req = request(["d1"], rig.clock, timeout=30, ack_timeout=5, max_attempts=3)
    created = await rig.store.create_request(req, 100, rig.clock.now())
    eid = created.executions[0].id
    await rig.bridge.dispatch_once()
    for _ in range(2):
        rig.clock.advance(5)
        await rig.bridge.fire_timers_once()
        await rig.bridge.dispatch_once()
    attempts = [m["attempt"] for m in rig.published(f"courier/devices/d1/commands/{eid}")]
    assert attempts == [1, 2, 3]
    rig.clock.advance(30)
    await rig.bridge.fire_timers_once()
    final = await rig.store.get_execution("acme", eid)
    assert final.state is S.TIMED_OUT
    assert final.attempt == 3


async def test_in_flight_window_is_respected(rig: Rig) -> None:
    await rig.store.add_device(device("d1", online=False))
    await rig.mark_online("d1", rig.silent_device("d1"))
    for _ in range(5):
        await rig.store.create_request(request(["d1"], rig.clock), 100, rig.clock.now())
    await rig.bridge.dispatch_once()
    assert len(rig.published("courier/devices/d1/commands/+")) == 2


async def test_cancel_sends_a_notice_only_to_a_device_that_may_hold_it(rig: Rig) -> None:
    await rig.store.add_device(device("d1", online=False))
    await rig.store.add_device(device("d2", online=False))
    await rig.mark_online("d1", rig.silent_device("d1"))
    sent = await rig.store.create_request(request(["d1"], rig.clock), 100, rig.clock.now())
    queued = await rig.store.create_request(request(["d2"], rig.clock), 100, rig.clock.now())
    await rig.bridge.dispatch_once()
    for created in (sent, queued):
        await rig.store.cancel_execution(
            "acme", created.executions[0].id, "apikey:k", None, rig.clock.now()
        )
    notices = [m for m in rig.published("courier/devices/+/commands/+") if m.get("cancel")]
    assert notices == [{"id": sent.executions[0].id, "cancel": True}]


async def test_a_big_commit_answers_its_writer_first_and_publishes_in_order(rig: Rig) -> None:
    """A fan-out's commands go out after its writer has its answer; a cancel committed in
    the meantime sends its notices only after the commands they cancel."""
    count = PUBLISH_LATER_OVER // 2 + 1  # created and sent: two changes each
    devices = [f"d{i}" for i in range(count)]
    for device_id in devices:
        await rig.store.add_device(device(device_id, online=False))
        await rig.mark_online(device_id, rig.silent_device(device_id))
    commands = "courier/devices/+/commands/+"
    created = await rig.store.create_request(
        request(devices, rig.clock), 100, rig.clock.now(), in_flight_cap=10
    )
    assert all(e.state is S.SENT for e in created.executions)
    assert rig.published(commands) == []  # answered before anything was published
    await rig.store.cancel_request("acme", created.request.id, "apikey:k", None, rig.clock.now())
    await rig.settle()
    published = rig.published(commands)
    envelopes = [str(m["id"]) for m in published if not m.get("cancel")]
    notices = [str(m["id"]) for m in published if m.get("cancel")]
    assert sorted(envelopes) == sorted(notices) == sorted(e.id for e in created.executions)
    assert published.index({"id": notices[0], "cancel": True}) >= len(envelopes)
    states = [e["state"] for e in rig.published("courier/tenants/acme/events")]
    assert states.count("SENT") == states.count("CANCELLED") == count
    assert states.index("CANCELLED") > max(i for i, s in enumerate(states) if s == "SENT")


async def test_a_fan_out_is_published_in_slices_between_which_the_loop_runs(rig: Rig) -> None:
    """At most PUBLISH_SLICE changes go out per loop iteration (what else waits on the loop,
    an HTTP answer or replies, runs between slices); all of them, in commit order."""
    count = 2 * PUBLISH_SLICE  # created and sent: two changes each, four slices
    devices = [f"d{i}" for i in range(count)]
    for device_id in devices:
        await rig.store.add_device(device(device_id, online=False))
        await rig.mark_online(device_id, rig.silent_device(device_id))
    before = len(rig.broker.published)
    created = await rig.store.create_request(
        request(devices, rig.clock), 100, rig.clock.now(), in_flight_cap=10
    )
    steps: list[int] = []
    while len(rig.broker.published) - before < 3 * count:  # an envelope and two events each
        seen = len(rig.broker.published)
        await asyncio.sleep(0)
        steps.append(len(rig.broker.published) - seen)
        assert len(steps) < 100, "the outbox stalled"
    # A change is at most a command and its event; QUEUED changes are an event alone.
    assert max(steps) <= 2 * PUBLISH_SLICE
    assert len([s for s in steps if s]) >= 4
    envelopes = [str(m["id"]) for m in rig.published("courier/devices/+/commands/+")]
    assert envelopes == [e.id for e in created.executions]
    events = [(e["execution"], e["state"]) for e in rig.published("courier/tenants/acme/events")]
    for execution in created.executions:
        assert events.index((execution.id, "QUEUED")) < events.index((execution.id, "SENT"))


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("courier/devices/d1/replies/{eid}", b"{not json", "malformed"),
        ("courier/devices/d1/replies/{eid}", b"\xff\xfe", "not_utf8"),
        (
            "courier/devices/d1/replies/{eid}",
            b'{"state":"SUCCEEDED","output":"' + b"x" * 300_000 + b'"}',
            "oversized",
        ),
        ("courier/devices/d1/replies/{eid}", b'{"state":"DONE"}', "invalid"),
        ("courier/devices/d2/replies/{eid}", b'{"state":"SUCCEEDED"}', "foreign_execution"),
        ("courier/devices/d1/replies/nope", b'{"state":"SUCCEEDED"}', "unknown_execution"),
    ],
)
async def test_bad_replies_are_counted_and_change_nothing(
    rig: Rig, topic: str, payload: bytes, reason: str
) -> None:
    await rig.store.add_device(device("d1", online=False))
    await rig.store.add_device(device("d2", online=False))
    raw = rig.silent_device("d1")
    await rig.mark_online("d1", raw)
    created = await rig.store.create_request(request(["d1"], rig.clock), 100, rig.clock.now())
    eid = created.executions[0].id
    await rig.bridge.dispatch_once()
    raw.publish(topic.format(eid=eid), payload)
    await rig.settle()
    assert rig.metrics.rejected.labels("reply", reason)._value.get() == 1
    assert (await rig.store.get_execution("acme", eid)).state is S.SENT
    raw.publish(T.reply("d1", eid), b'{"state":"SUCCEEDED"}')
    await rig.settle()
    assert (await rig.store.get_execution("acme", eid)).state is S.SUCCEEDED


async def test_presence_of_unknown_devices_and_bad_presence_are_rejected(rig: Rig) -> None:
    raw = rig.silent_device("x")
    await raw.connect()
    raw.publish(T.presence("ghost"), presence_bytes(True))
    raw.publish(T.presence("ghost"), b'{"online": "maybe"}')
    raw.publish("courier/devices/bad+id/presence", presence_bytes(True))
    await rig.settle()
    assert rig.metrics.rejected.labels("presence", "unknown_device")._value.get() == 1
    assert rig.metrics.rejected.labels("presence", "invalid")._value.get() == 1


async def test_device_going_away_is_seen_through_its_will(rig: Rig) -> None:
    await rig.store.add_device(device("d1", online=False))
    agent = rig.agent("d1")
    await agent.start()
    await rig.settle()
    assert (await rig.store.get_device("acme", "d1")).online
    transport = agent.transport
    assert isinstance(transport, MemoryTransport)
    transport.drop()
    await rig.settle()
    assert not (await rig.store.get_device("acme", "d1")).online


async def test_ttl_passing_while_offline_expires_and_never_delivers(rig: Rig) -> None:
    await rig.store.add_device(device("d1", online=False))
    created = await rig.store.create_request(
        request(["d1"], rig.clock, ttl=60), 100, rig.clock.now()
    )
    rig.clock.advance(61)
    await rig.bridge.fire_timers_once()
    agent = rig.agent("d1")
    await agent.start()
    await rig.settle()
    await rig.bridge.dispatch_once()
    await rig.settle()
    assert (await rig.store.get_execution("acme", created.executions[0].id)).state is S.EXPIRED
    assert rig.published("courier/devices/d1/commands/+") == []


async def test_a_command_created_sent_is_published_by_the_commit_listener(rig: Rig) -> None:
    await rig.store.add_device(device("d1", online=False))
    await rig.mark_online("d1", rig.silent_device("d1"))
    created = await rig.store.create_request(
        request(["d1"], rig.clock, args={"x": 1}), 100, rig.clock.now(), in_flight_cap=10
    )
    envelopes = rig.published("courier/devices/d1/commands/+")
    assert [(e["id"], e["args"], e["attempt"]) for e in envelopes] == [
        (created.executions[0].id, {"x": 1}, 1)
    ]
    assert await rig.bridge.dispatch_once() == 0  # nothing left waiting


async def test_a_device_online_before_it_was_registered_is_seen_online(rig: Rig) -> None:
    raw = rig.silent_device("early")
    await rig.mark_online("early", raw)  # presence while unknown: rejected, but retained
    assert rig.metrics.rejected.labels("presence", "unknown_device")._value.get() == 1
    await rig.store.add_device(device("early", online=False))
    await rig.bridge.refresh_presence(["early"], hold=0.01)
    await rig.settle()
    assert (await rig.store.get_device("acme", "early")).online
    await asyncio.sleep(0.05)
    session = rig.broker.sessions["courier"]
    assert "courier/devices/early/presence" not in session.subscriptions
