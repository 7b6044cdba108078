"""The command path end to end on a real broker and SQLite (issue: foundation, 1-3 and 6)."""

from __future__ import annotations

import asyncio

import orjson

from courier.gateway import CommandContext, CommandFailed
from courier.schemas.api import CommandRequestIn, DeviceIn
from courier.schemas.mqtt import presence_bytes
from courier.schemas.states import ExecutionState
from courier.topics import Topics
from courier.transport import ConnectOptions, Message
from courier.transport.gmqtt_transport import GmqttTransport
from tests.helpers import eventually, noop
from tests.integration.conftest import Courier

S = ExecutionState


async def register(courier: Courier, name: str) -> str:
    device_id = courier.device_id(name)
    await courier.service.register_device("acme", DeviceIn(id=device_id))
    return device_id


async def send(courier: Courier, device_id: str, **body: object) -> str:
    created = await courier.service.create_command(
        "acme",
        CommandRequestIn.model_validate({"devices": [device_id], "command": "REBOOT", **body}),
        "test",
    )
    return created.executions[0].id


async def state_of(courier: Courier, execution_id: str) -> ExecutionState:
    return (await courier.store.get_execution("acme", execution_id)).state


async def wait_state(
    courier: Courier,
    execution_id: str,
    state: ExecutionState,
    timeout: float = 10,  # noqa: ASYNC109 - a polling deadline
) -> None:
    async def reached() -> bool:
        return await state_of(courier, execution_id) is state

    await eventually(reached, timeout=timeout, what=f"{execution_id} to reach {state}")


async def test_rest_to_device_to_succeeded_with_output_and_full_history(courier: Courier) -> None:
    device_id = await register(courier, "pump")
    agent = courier.agent(device_id)

    @agent.handler("REBOOT")
    async def reboot(ctx: CommandContext) -> dict[str, object]:
        await ctx.progress(50)
        return {"rebooted": True, "delay": ctx.args["delay"]}

    await agent.start()
    eid = await send(courier, device_id, args={"delay": 3})
    await wait_state(courier, eid, S.SUCCEEDED)
    execution = await courier.store.get_execution("acme", eid)
    assert execution.output == {"rebooted": True, "delay": 3}
    history = await courier.store.history("acme", eid)
    assert [e.to_state for e in history] == [
        S.QUEUED,
        S.SENT,
        S.ACKNOWLEDGED,
        S.IN_PROGRESS,
        S.SUCCEEDED,
    ]
    assert [e.actor for e in history][2:] == [f"device:{device_id}"] * 3
    assert agent.runs[eid] == 1


async def test_transitions_replies_and_latencies_are_counted_for_every_command(
    courier: Courier,
) -> None:
    device_id = await register(courier, "counted")
    agent = courier.agent(device_id)

    @agent.handler("REBOOT")
    async def reboot(ctx: CommandContext) -> None:
        return None

    await agent.start()
    ids = [await send(courier, device_id) for _ in range(5)]
    for eid in ids:
        await wait_state(courier, eid, S.SUCCEEDED)
    metrics = courier.metrics

    def counted() -> bool:
        return bool(metrics.replies.labels("applied")._value.get() == 10)

    await eventually(counted, what="ten applied replies (an ACK and a result each)")
    transitions = {
        key: metrics.transitions.labels(*key)._value.get()
        for key in [
            ("NEW", "QUEUED"),
            ("QUEUED", "SENT"),
            ("SENT", "ACKNOWLEDGED"),
            ("ACKNOWLEDGED", "SUCCEEDED"),
        ]
    }
    assert transitions == dict.fromkeys(transitions, 5.0)
    (family,) = metrics.latency.collect()
    samples = {s.name: s.value for s in family.samples if "le" not in s.labels}
    assert samples["courier_execution_seconds_count"] == 5.0
    await agent.stop()


async def test_offline_device_gets_its_queued_command_when_it_connects(courier: Courier) -> None:
    device_id = await register(courier, "late")
    eid = await send(courier, device_id)
    await asyncio.sleep(0.3)
    assert await state_of(courier, eid) is S.QUEUED
    agent = courier.agent(device_id)
    agent.default_handler(noop)
    await agent.start()
    await wait_state(courier, eid, S.SUCCEEDED)


async def test_instant_command_for_an_offline_device_expires_at_once(courier: Courier) -> None:
    device_id = await register(courier, "away")
    eid = await send(courier, device_id, ttl=0)
    assert await state_of(courier, eid) is S.EXPIRED


async def test_ttl_passing_while_offline_expires_and_is_never_delivered(courier: Courier) -> None:
    device_id = await register(courier, "gone")
    eid = await send(courier, device_id, ttl=1)
    await wait_state(courier, eid, S.EXPIRED, timeout=5)
    agent = courier.agent(device_id)
    agent.default_handler(noop)
    await agent.start()
    await asyncio.sleep(0.5)
    assert agent.received == 0
    assert await state_of(courier, eid) is S.EXPIRED


async def silent_device(
    courier: Courier, device_id: str
) -> tuple[GmqttTransport, list[dict[str, object]]]:
    """Online, subscribed, never answers: records what it receives."""
    topics = Topics(courier.prefix)
    received: list[dict[str, object]] = []
    transport = GmqttTransport(
        ConnectOptions.from_url(courier.broker.url, client_id=device_id, clean_start=True)
    )

    async def record(message: Message) -> None:
        received.append(orjson.loads(message.payload))

    transport.on_message = record
    await transport.connect()
    await transport.subscribe([topics.commands_of(device_id)])
    transport.publish(topics.presence(device_id), presence_bytes(True), retain=True)
    return transport, received


async def test_a_device_that_never_replies_gets_resends_then_times_out(courier: Courier) -> None:
    device_id = await register(courier, "mute")
    transport, received = await silent_device(courier, device_id)

    async def online() -> bool:
        return (await courier.store.get_device("acme", device_id)).online

    await eventually(online, what="presence")
    eid = await send(courier, device_id, ack_timeout=0.3, timeout=1.5, retry={"max_attempts": 3})
    await wait_state(courier, eid, S.TIMED_OUT, timeout=10)
    assert [m["attempt"] for m in received] == [1, 2, 3]
    history = await courier.store.history("acme", eid)
    reasons = [e.reason or "" for e in history]
    assert sum("no acknowledgement within 0.3 s; resending" in r for r in reasons) == 2
    assert reasons[-1] == "no result within 1.5 s"
    await transport.disconnect()


async def test_a_reported_failure_is_retried_when_asked_and_attempts_are_visible(
    courier: Courier,
) -> None:
    device_id = await register(courier, "flaky")
    agent = courier.agent(device_id)
    calls = 0

    @agent.handler("REBOOT")
    async def flaky(ctx: CommandContext) -> dict[str, int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise CommandFailed("motor jammed")
        return {"attempt": ctx.attempt}

    await agent.start()
    eid = await send(courier, device_id, retry={"on": "failure", "backoff": {"initial": 0.1}})
    await wait_state(courier, eid, S.SUCCEEDED)
    execution = await courier.store.get_execution("acme", eid)
    assert execution.attempt == 2
    assert execution.output == {"attempt": 2}
    history = await courier.store.history("acme", eid)
    assert any("attempt 1 failed: motor jammed; retrying" in (e.reason or "") for e in history)
    assert [e.reason for e in history if e.to_state is S.SENT] == [
        "attempt 1 of 3",
        "attempt 2 of 3",
    ]


async def test_bad_replies_change_nothing_and_the_bridge_keeps_working(courier: Courier) -> None:
    device_id = await register(courier, "victim")
    other_id = await register(courier, "intruder")
    transport, _ = await silent_device(courier, device_id)
    eid = await send(courier, device_id)
    await wait_state(courier, eid, S.SENT)
    topics = Topics(courier.prefix)
    bad = [
        (topics.reply(device_id, eid), b"{not json"),
        (topics.reply(device_id, eid), b"\xc3\x28"),
        (topics.reply(device_id, eid), b'{"state": "SUCCEEDED", "o": "' + b"x" * 300_000 + b'"}'),
        (topics.reply(device_id, eid), b'{"state": 5}'),
        (topics.reply(other_id, eid), b'{"state": "SUCCEEDED"}'),
        (topics.reply(device_id, "no-such-execution"), b'{"state": "SUCCEEDED"}'),
        (f"{courier.prefix}/devices/{device_id}/replies", b'{"state": "SUCCEEDED"}'),
    ]
    for topic, payload in bad:
        transport.publish(topic, payload)
    rejected = courier.metrics.rejected

    def counted() -> bool:
        total = sum(
            rejected.labels("reply", r)._value.get()
            for r in (
                "malformed",
                "not_utf8",
                "oversized",
                "invalid",
                "foreign_execution",
                "unknown_execution",
            )
        )
        return bool(total == 6)

    await eventually(counted, what="six rejections")
    assert await state_of(courier, eid) is S.SENT
    transport.publish(topics.reply(device_id, eid), b'{"state": "SUCCEEDED", "output": {"ok": 1}}')
    await wait_state(courier, eid, S.SUCCEEDED)
    await transport.disconnect()


async def test_cancel_reaches_a_device_that_holds_the_command(courier: Courier) -> None:
    device_id = await register(courier, "busy")
    agent = courier.agent(device_id)
    started = asyncio.Event()

    @agent.handler("REBOOT")
    async def slow(ctx: CommandContext) -> None:
        started.set()
        await asyncio.sleep(30)

    await agent.start()
    eid = await send(courier, device_id)
    await asyncio.wait_for(started.wait(), 10)
    await courier.store.cancel_execution(
        "acme", eid, "apikey:k", "stop", courier.service.clock.now()
    )

    async def cancelled_on_device() -> bool:
        history = await courier.store.history("acme", eid)
        return any(
            e.kind == "reply" and e.data and e.data.get("reason") == "cancelled" for e in history
        )

    await eventually(cancelled_on_device, what="the device to confirm the cancel")
    assert await state_of(courier, eid) is S.CANCELLED
