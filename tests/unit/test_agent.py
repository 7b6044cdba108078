"""The device agent: exactly-once execution, retries, expiry, cancel, timeouts, restarts."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from courier.clock import FakeClock, isoformat
from courier.gateway import (
    Agent,
    CommandContext,
    CommandFailed,
    GatewayAgent,
    ReplyLog,
    SimulatedLink,
)
from courier.topics import Topics
from courier.transport import ConnectOptions, Message
from courier.transport.memory import MemoryBroker, MemoryTransport
from tests.helpers import noop

T = Topics("courier")


class Upstream:
    """Plays Courier's side: publishes envelopes and collects replies."""

    def __init__(self, broker: MemoryBroker, clock: FakeClock) -> None:
        self.broker = broker
        self.clock = clock
        self.transport = broker.transport(ConnectOptions(client_id="upstream"))
        self.replies: list[tuple[str, dict[str, Any]]] = []

    async def start(self) -> None:
        async def collect(message: Message) -> None:
            self.replies.append((message.topic.rsplit("/", 1)[1], orjson.loads(message.payload)))

        self.transport.on_message = collect
        await self.transport.connect()
        await self.transport.subscribe([T.all_replies])

    def send(
        self, eid: str, command: str = "X", attempt: int = 1, ttl: float = 60, timeout: float = 30
    ) -> None:
        body = {
            "id": eid,
            "request": "r",
            "command": command,
            "args": {"n": 1},
            "kind": "device",
            "attempt": attempt,
            "issued_at": isoformat(self.clock.now()),
            "expires_at": isoformat(self.clock.now() + ttl),
            "timeout": timeout,
        }
        self.transport.publish(T.command("d1", eid), orjson.dumps(body))

    def cancel(self, eid: str) -> None:
        self.transport.publish(T.command("d1", eid), orjson.dumps({"id": eid, "cancel": True}))

    def states(self, eid: str) -> list[str]:
        return [str(body["state"]) for e, body in self.replies if e == eid]


@pytest.fixture
def broker() -> MemoryBroker:
    return MemoryBroker()


@pytest.fixture
async def upstream(broker: MemoryBroker, clock: FakeClock) -> Upstream:
    up = Upstream(broker, clock)
    await up.start()
    return up


def make_agent(broker: MemoryBroker, clock: FakeClock, replies: ReplyLog | None = None) -> Agent:
    transport = broker.transport(ConnectOptions(client_id="d1"))
    return Agent("d1", transport=transport, replies=replies, clock=clock)


async def test_duplicates_run_once_and_are_answered_with_the_last_reply(
    broker: MemoryBroker, upstream: Upstream, clock: FakeClock
) -> None:
    agent = make_agent(broker, clock)

    @agent.handler("X")
    async def handle(ctx: CommandContext) -> dict[str, Any]:
        return {"args": ctx.args}

    await agent.start()
    upstream.send("e1")
    await broker.settle()
    upstream.send("e1", attempt=2)
    await broker.settle()
    assert agent.runs["e1"] == 1
    assert upstream.states("e1") == ["ACKNOWLEDGED", "SUCCEEDED", "SUCCEEDED"]
    last = upstream.replies[-1][1]
    assert last["attempt"] == 2
    assert last["output"] == {"args": {"n": 1}}


async def test_a_failed_command_runs_again_for_a_higher_attempt(
    broker: MemoryBroker, upstream: Upstream, clock: FakeClock
) -> None:
    agent = make_agent(broker, clock)
    outcomes = iter([CommandFailed("jammed", {"code": 7}), None])

    @agent.handler("X")
    async def handle(ctx: CommandContext) -> dict[str, Any] | None:
        outcome = next(outcomes)
        if outcome is not None:
            raise outcome
        return {"ok": True}

    await agent.start()
    upstream.send("e1")
    await broker.settle()
    upstream.send("e1", attempt=1)  # a duplicate of the failed attempt: answered, not re-run
    await broker.settle()
    assert agent.runs["e1"] == 1
    upstream.send("e1", attempt=2)
    await broker.settle()
    assert agent.runs["e1"] == 2
    failed = [b for e, b in upstream.replies if b["state"] == "FAILED"]
    assert failed[0]["reason"] == "jammed"
    assert failed[0]["output"] == {"code": 7}
    assert upstream.states("e1")[-1] == "SUCCEEDED"


async def test_an_expired_command_is_not_run(
    broker: MemoryBroker, upstream: Upstream, clock: FakeClock
) -> None:
    agent = make_agent(broker, clock)
    agent.default_handler(noop)
    await agent.start()
    upstream.send("e1", ttl=-1)
    await broker.settle()
    assert agent.runs["e1"] == 0
    assert upstream.replies[-1][1]["reason"] == "expired before it could run on the device"


async def test_cancel_notice_stops_a_running_handler(
    broker: MemoryBroker, upstream: Upstream, clock: FakeClock
) -> None:
    agent = make_agent(broker, clock)
    started = asyncio.Event()

    @agent.handler("X")
    async def slow(ctx: CommandContext) -> None:
        started.set()
        await asyncio.sleep(60)

    await agent.start()
    upstream.send("e1")
    await broker.settle()
    await started.wait()
    upstream.cancel("e1")
    await broker.settle()
    await asyncio.sleep(0.01)
    assert upstream.replies[-1][1] == {"state": "FAILED", "attempt": 1, "reason": "cancelled"}
    upstream.send("e1")
    await broker.settle()
    assert agent.runs["e1"] == 1


async def test_cancel_before_delivery_prevents_the_run(
    broker: MemoryBroker, upstream: Upstream, clock: FakeClock
) -> None:
    agent = make_agent(broker, clock)
    agent.default_handler(noop)
    await agent.start()
    upstream.cancel("e1")
    await broker.settle()
    upstream.send("e1")
    await broker.settle()
    assert agent.runs["e1"] == 0


async def test_unknown_commands_and_handler_errors_and_timeouts_fail(
    broker: MemoryBroker, upstream: Upstream, clock: FakeClock
) -> None:
    agent = make_agent(broker, clock)

    @agent.handler("BOOM")
    async def boom(ctx: CommandContext) -> None:
        raise ValueError("bad value")

    @agent.handler("SLOW")
    async def slow(ctx: CommandContext) -> None:
        await asyncio.sleep(5)

    await agent.start()
    upstream.send("e1", command="NOPE")
    upstream.send("e2", command="BOOM")
    upstream.send("e3", command="SLOW", timeout=0.05)
    await broker.settle()
    await asyncio.sleep(0.2)
    reasons = {e: b.get("reason") for e, b in upstream.replies if b["state"] == "FAILED"}
    assert reasons == {
        "e1": "unknown command NOPE",
        "e2": "ValueError: bad value",
        "e3": "timed out on the device after 0.05 s",
    }


async def test_malformed_commands_are_ignored(
    broker: MemoryBroker, upstream: Upstream, clock: FakeClock
) -> None:
    agent = make_agent(broker, clock)
    await agent.start()
    upstream.transport.publish(T.command("d1", "e1"), b"{nope")
    upstream.transport.publish(T.command("d1", "e2"), b'{"id": "e2"}')
    await broker.settle()
    assert agent.received == 0
    assert upstream.replies == []


async def test_progress_is_reported(
    broker: MemoryBroker, upstream: Upstream, clock: FakeClock
) -> None:
    agent = make_agent(broker, clock)

    @agent.handler("X")
    async def handle(ctx: CommandContext) -> None:
        await ctx.progress(30)
        await ctx.progress(90, "almost")

    await agent.start()
    upstream.send("e1")
    await broker.settle()
    progress = [b.get("progress") for _, b in upstream.replies if b["state"] == "IN_PROGRESS"]
    assert progress == [30, 90]


@pytest.mark.parametrize(
    ("report_started", "sleep", "expected"),
    [
        (0.0, 0.0, ["ACKNOWLEDGED", "IN_PROGRESS", "SUCCEEDED"]),
        (0.05, 0.2, ["ACKNOWLEDGED", "IN_PROGRESS", "SUCCEEDED"]),
        (0.5, 0.0, ["ACKNOWLEDGED", "SUCCEEDED"]),
        (None, 0.2, ["ACKNOWLEDGED", "SUCCEEDED"]),
    ],
)
async def test_in_progress_is_reported_for_handlers_still_running(
    broker: MemoryBroker,
    upstream: Upstream,
    clock: FakeClock,
    report_started: float | None,
    sleep: float,
    expected: list[str],
) -> None:
    agent = Agent(
        "d1",
        transport=broker.transport(ConnectOptions(client_id="d1")),
        clock=clock,
        report_started=report_started,
    )

    @agent.handler("X")
    async def handle(ctx: CommandContext) -> None:
        await asyncio.sleep(sleep)

    await agent.start()
    upstream.send("e1")
    await broker.settle()
    await asyncio.sleep(sleep + 0.05)
    await broker.settle()
    assert upstream.states("e1") == expected


async def test_a_persistent_log_remembers_across_restarts(
    broker: MemoryBroker, upstream: Upstream, clock: FakeClock, tmp_path: Path
) -> None:
    path = str(tmp_path / "replies.db")
    first = make_agent(broker, clock, ReplyLog(path))
    gate = asyncio.Event()

    @first.handler("X")
    async def hang(ctx: CommandContext) -> None:
        await gate.wait()

    await first.start()
    upstream.send("done", command="Y")
    upstream.send("running")
    await broker.settle()
    transport = first.transport
    assert isinstance(transport, MemoryTransport)
    transport.drop()  # a crash: no clean stop
    first.replies.close()
    upstream.replies.clear()

    second = make_agent(broker, clock, ReplyLog(path))
    second.default_handler(noop)
    await second.start()
    await broker.settle()
    replayed = dict(upstream.replies)
    assert replayed["running"]["state"] == "FAILED"
    assert replayed["running"]["reason"].startswith("interrupted")
    assert replayed["done"]["reason"] == "unknown command Y"
    upstream.send("done", command="Y", attempt=1)
    await broker.settle()
    assert second.runs["done"] == 0
    second.replies.close()


def test_reply_log_is_bounded(tmp_path: Path) -> None:
    from courier.gateway.replylog import Record

    log = ReplyLog(str(tmp_path / "r.db"), capacity=3)
    for i in range(5):
        log.put(Record(f"e{i}", 1, "SUCCEEDED", {"state": "SUCCEEDED"}))
    assert len(log) == 3
    assert log.get("e0") is None
    log.close()
    reopened = ReplyLog(str(tmp_path / "r.db"), capacity=3)
    assert reopened.get("e4") is not None
    reopened.close()


class PresenceOrder(MemoryBroker):
    """Notes, for each presence published, whether its device could already take commands."""

    def __init__(self) -> None:
        super().__init__()
        self.presence_while_subscribed: list[tuple[str, bool]] = []

    def _route(self, message: Message) -> None:
        parsed = T.parse(message.topic)
        if parsed is not None and parsed.execution is None and message.payload:
            agent = self.sessions.get("gw")
            subscribed = agent is not None and T.commands_of("gw") in agent.subscriptions
            self.presence_while_subscribed.append((message.topic, subscribed))
        super()._route(message)


async def test_an_agent_says_online_only_once_it_can_take_commands(clock: FakeClock) -> None:
    """A command sent the moment a device looks online must find its subscription: a broker
    drops what arrives for a session not yet subscribed (it came back only by its resend)."""
    broker = PresenceOrder()
    gateway = GatewayAgent(
        "gw",
        transport=broker.transport(ConnectOptions(client_id="gw")),
        adapter=SimulatedLink(["a1"]),
        clock=clock,
    )
    await gateway.start()
    assert broker.presence_while_subscribed == [
        (T.presence("gw"), True),
        (T.attached_presence("gw", "a1"), True),
    ]
    await gateway.stop()
