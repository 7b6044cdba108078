"""LwM2M operations through the EMQX-format topics, with the simulated LwM2M client, on a real
Mosquitto and SQLite."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import httpx
import pytest

from courier.bridge.lwm2m import LEASE_GRACE, Lwm2mProfile
from courier.core.records import Execution
from courier.gateway import CommandContext
from courier.gateway.lwm2m_client import SimulatedLwm2mClient
from courier.schemas.api import CommandRequestIn, DeviceIn
from courier.schemas.states import TERMINAL, ExecutionState
from tests.helpers import eventually
from tests.integration.conftest import Courier

S = ExecutionState


@pytest.fixture
async def meter(courier: Courier) -> AsyncIterator[SimulatedLwm2mClient]:
    endpoint = courier.device_id("meter")
    await courier.service.register_device("acme", DeviceIn(id=endpoint, protocol="lwm2m"))
    client = SimulatedLwm2mClient(
        endpoint, broker=courier.broker.url, mountpoint=courier.bridge.config.lwm2m_mountpoint
    )
    await client.start()

    async def online() -> bool:
        return (await courier.store.get_device("acme", endpoint)).online

    await eventually(online, what="the LwM2M client registered")
    yield client
    await client.stop()


async def lwm2m_client(courier: Courier, name: str, **options: Any) -> SimulatedLwm2mClient:
    """A registered LwM2M device and its simulated client (not started)."""
    endpoint = courier.device_id(name)
    await courier.service.register_device("acme", DeviceIn(id=endpoint, protocol="lwm2m"))
    mount = courier.bridge.config.lwm2m_mountpoint
    return SimulatedLwm2mClient(endpoint, broker=courier.broker.url, mountpoint=mount, **options)


async def run(courier: Courier, endpoint: str, command: str, **body: Any) -> Execution:
    created = await courier.service.create_command(
        "acme",
        CommandRequestIn.model_validate({"devices": [endpoint], "command": command, **body}),
        "test",
    )
    execution_id = created.executions[0].id

    async def ended() -> bool:
        return (await courier.store.get_execution("acme", execution_id)).state in TERMINAL

    await eventually(ended, what=f"{command} {body.get('args')} ended")
    return await courier.store.get_execution("acme", execution_id)


async def request(courier: Courier, ep: str, **args: Any) -> Execution:
    return await run(courier, ep, "lwm2m_request", args=args)


async def test_read_write_exec_round_trip(courier: Courier, meter: SimulatedLwm2mClient) -> None:
    ep = meter.endpoint
    read = await request(courier, ep, type="read", endpoint="/3/0/0")
    assert read.state is S.SUCCEEDED, read.reason
    assert read.output["code"] == "2.05"
    assert read.output["content"] == [{"path": "/3/0/0", "value": "Courier"}]
    assert meter.requests[0]["msgType"] == "read"
    assert meter.requests[0]["data"] == {"path": "/3/0/0"}

    write = await request(
        courier, ep, type="write", endpoint="/3/0/13", data={"type": "Time", "value": 1700}
    )
    assert write.state is S.SUCCEEDED, write.reason
    assert meter.values["/3/0/13"] == 1700
    assert meter.requests[-1]["data"] == {"path": "/3/0/13", "type": "Time", "value": 1700}

    executed = await request(courier, ep, type="exec", endpoint="/3/0/4")
    assert executed.state is S.SUCCEEDED
    assert executed.output["code"] == "2.04"
    assert meter.requests[-1]["msgType"] == "execute"

    discovered = await request(courier, ep, type="discover", endpoint="/5/0")
    assert discovered.state is S.SUCCEEDED
    assert "</5/0/1>" in discovered.output["content"]


async def test_a_4_04_fails_and_a_coap_timeout_is_retried(
    courier: Courier, meter: SimulatedLwm2mClient
) -> None:
    ep = meter.endpoint
    missing = await request(courier, ep, type="read", endpoint="/3/0/99")
    assert missing.state is S.FAILED
    assert missing.reason is not None
    assert "4.04" in missing.reason
    assert missing.attempt == 1  # a device's answer is final under the default policy

    meter.fail_next(coap_timeout=1)
    retried = await run(
        courier,
        ep,
        "lwm2m_request",
        args={"type": "read", "endpoint": "/3/0/9"},
        retry={"max_attempts": 2, "backoff": {"initial": 0.1}},
    )
    assert retried.state is S.SUCCEEDED, retried.reason
    assert retried.attempt == 2
    history = await courier.store.history("acme", retried.id)
    assert any("CoAP timeout" in (e.reason or "") for e in history)

    meter.fail_next(coap_timeout=1)
    gave_up = await run(
        courier,
        ep,
        "lwm2m_request",
        args={"type": "read", "endpoint": "/3/0/9"},
        retry={"max_attempts": 1},
    )
    assert gave_up.state is S.TIMED_OUT

    meter.fail_next(coap_reset=1)
    reset = await request(courier, ep, type="read", endpoint="/3/0/9")
    assert reset.state is S.FAILED
    assert reset.reason is not None
    assert "reset" in reset.reason


async def test_observe_keeps_notifications_until_observe_stop(
    courier: Courier, meter: SimulatedLwm2mClient
) -> None:
    ep = meter.endpoint
    observe = await request(courier, ep, type="observe", endpoint="/3/0/9")
    assert observe.state is S.SUCCEEDED
    assert observe.output["content"] == [{"path": "/3/0/9", "value": 100}]
    meter.set("/3/0/9", 80)
    meter.set("/3/0/9", 60)

    async def notifications() -> list[Any]:
        events = await courier.store.history("acme", observe.id)
        return [e.data for e in events if e.kind == "notification"]

    async def two() -> bool:
        return len(await notifications()) == 2

    await eventually(two, what="two notifications kept")
    kept = sorted(await notifications(), key=lambda n: n["seqNum"])  # in the device's order
    assert [n["content"][0]["value"] for n in kept] == [80, 60]
    assert all(n["reqPath"] == "/3/0/9" and n["code"] == "2.05" for n in kept)

    stop = await request(courier, ep, type="observe_stop", endpoint="/3/0/9")
    assert stop.state is S.SUCCEEDED
    assert meter.requests[-1]["msgType"] == "cancel-observe"
    meter.observed["/3/0/9"] = 0  # as if the device kept notifying after the cancel
    meter.set("/3/0/9", 40)

    async def refused() -> bool:
        count: float = courier.metrics.rejected.labels("lwm2m", "not_observed")._value.get()
        return count >= 1

    await eventually(refused, what="a notification after observe_stop refused")
    assert len(await notifications()) == 2


async def test_one_request_at_a_time_per_endpoint(
    courier: Courier, meter: SimulatedLwm2mClient
) -> None:
    outstanding: list[int] = []  # requests the client holds when each one arrives
    holding = 0
    original = meter._perform

    async def slow(*args: Any) -> Any:
        nonlocal holding
        holding += 1
        outstanding.append(holding)
        try:
            await asyncio.sleep(0.05)
            return await original(*args)
        finally:
            holding -= 1

    meter._perform = slow  # type: ignore[method-assign,assignment]
    created = await courier.service.create_commands(
        "acme",
        [
            CommandRequestIn.model_validate(
                {
                    "devices": [meter.endpoint],
                    "command": "lwm2m_request",
                    "args": {"type": "read", "endpoint": f"/3/0/{r}"},
                }
            )
            for r in (0, 1, 2)
        ],
        "test",
    )
    ids = [c.executions[0].id for c in created]  # type: ignore[union-attr]

    async def all_done() -> bool:
        found = [await courier.store.get_execution("acme", i) for i in ids]
        return all(e.state is S.SUCCEEDED for e in found)

    await eventually(all_done, what="three reads")
    assert [r["data"]["path"] for r in meter.requests] == ["/3/0/0", "/3/0/1", "/3/0/2"]
    assert outstanding == [1, 1, 1]  # each arrived after the previous was answered


async def test_package_uri_write_downloads_the_file(
    served: tuple[Courier, str], meter: SimulatedLwm2mClient
) -> None:
    courier, key = served
    data = os.urandom(50_000)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{courier.http_port}") as http:
        uploaded = await http.post(
            "/v1/tenants/acme/files",
            params={"name": "fw.bin"},
            content=data,
            headers={"Authorization": f"Bearer {key}"},
        )
    assert uploaded.status_code == 201, uploaded.text
    file_id = uploaded.json()["id"]
    pushed = await run(
        courier,
        meter.endpoint,
        "lwm2m_file",
        args={"type": "fileupload", "file_id": file_id, "filepath": "/5/0/1"},
    )
    assert pushed.state is S.SUCCEEDED, pushed.reason
    written = meter.requests[-1]["data"]
    assert written["path"] == "/5/0/1"
    assert written["value"].startswith(f"http://127.0.0.1:{courier.http_port}/v1/files/")
    (package,) = meter.packages.values()
    assert hashlib.sha256(package).hexdigest() == hashlib.sha256(data).hexdigest()


async def test_commands_lwm2m_cannot_carry_fail_with_a_reason(
    courier: Courier, meter: SimulatedLwm2mClient
) -> None:
    fetched = await run(
        courier, meter.endpoint, "lwm2m_file", args={"type": "filedownload", "filepath": "/log"}
    )
    assert fetched.state is S.FAILED
    assert fetched.reason is not None
    assert "filedownload" in fetched.reason
    reboot = await run(courier, meter.endpoint, "PING")
    assert reboot.state is S.FAILED
    assert not meter.requests  # nothing was sent to the device


async def test_a_registration_outlives_a_restart_and_expires_with_its_lifetime(
    courier: Courier,
) -> None:
    client = await lwm2m_client(courier, "sleepy", lifetime=3)
    endpoint = client.endpoint
    await client.start()
    try:

        async def online() -> bool:
            return (await courier.store.get_device("acme", endpoint)).online

        await eventually(online, what="registered")
        # What a restarted Courier knows: the lease is in the store, not only in memory.
        restarted = Lwm2mProfile(courier.bridge, courier.bridge.config.lwm2m_mountpoint)
        await restarted.load()
        assert endpoint in restarted.endpoints
        assert 0 < restarted._leases[endpoint] - courier.bridge.clock.now() <= 3 * LEASE_GRACE

        async def offline() -> bool:
            return not await online()

        await eventually(offline, what="the lease lapsed")
        after = Lwm2mProfile(courier.bridge, courier.bridge.config.lwm2m_mountpoint)
        await after.load()
        assert endpoint not in after._leases
    finally:
        await client.stop()


async def test_a_native_device_observes_and_notifies_until_observe_stop(courier: Courier) -> None:
    """The same operations in the native envelope: the device answers the observe, then
    reports each change on P/devices/{id}/notify/{execution}."""
    device_id = courier.device_id("native-meter")
    await courier.service.register_device("acme", DeviceIn(id=device_id))
    agent = courier.agent(device_id)
    battery = {"/3/0/9": 100}

    @agent.handler("lwm2m_request")
    async def lwm2m(ctx: CommandContext) -> dict[str, Any]:
        if ctx.args["type"] == "observe":
            return {"path": ctx.args["endpoint"], "value": battery[ctx.args["endpoint"]]}
        return {}

    await agent.start()

    async def online() -> bool:
        return (await courier.store.get_device("acme", device_id)).online

    await eventually(online, what="native device online")
    observe = await request(courier, device_id, type="observe", endpoint="/3/0/9")
    assert observe.state is S.SUCCEEDED, observe.reason
    assert observe.output == {"path": "/3/0/9", "value": 100}
    for value in (80, 60):
        agent.notify(observe.id, {"path": "/3/0/9", "value": value})

    async def notifications() -> list[Any]:
        events = await courier.store.history("acme", observe.id)
        return [(e.data or {}).get("value") for e in events if e.kind == "notification"]

    await eventually(lambda: _equal(notifications(), [80, 60]), what="two notifications")
    stop = await request(courier, device_id, type="observe_stop", endpoint="/3/0/9")
    assert stop.state is S.SUCCEEDED
    agent.notify(observe.id, {"path": "/3/0/9", "value": 40})
    agent.notify("not-an-execution", {"value": 1})

    async def refused() -> bool:
        metric = courier.metrics.rejected
        late: float = metric.labels("notify", "not_observed")._value.get()
        unknown: float = metric.labels("notify", "unknown_execution")._value.get()
        return late >= 1 and unknown >= 1

    await eventually(refused, what="notifications after observe_stop refused")
    assert await notifications() == [80, 60]


async def _equal(values: Awaitable[list[Any]], expected: list[Any]) -> bool:
    return await values == expected


async def test_create_write_attr_delete_with_an_ack_first(courier: Courier) -> None:
    client = await lwm2m_client(courier, "acking", ack_first=True)
    endpoint = client.endpoint
    await client.start()
    try:
        await eventually(
            lambda: _online(courier, endpoint), what="the acknowledging client registered"
        )
        temperature = [{"path": "/5700", "type": "Float", "value": 21.5}]
        created = await request(
            courier, endpoint, type="create", endpoint="/3303", data=temperature
        )
        assert created.state is S.SUCCEEDED, created.reason
        assert created.output["code"] == "2.01"
        history = await courier.store.history("acme", created.id)
        assert [e.to_state for e in history].index(S.ACKNOWLEDGED) < len(history) - 1
        attrs = await request(
            courier, endpoint, type="write-attr", endpoint="/3/0/9", data={"pmin": 5, "pmax": 60}
        )
        assert attrs.state is S.SUCCEEDED, attrs.reason
        assert client.requests[-1]["msgType"] == "write-attr"
        deleted = await request(courier, endpoint, type="delete", endpoint="/3303/0")
        assert deleted.state is S.SUCCEEDED
        assert deleted.output["code"] == "2.02"
        again = await request(courier, endpoint, type="delete", endpoint="/3303/0")
        assert again.state is S.FAILED
        assert again.reason is not None
        assert "4.04" in again.reason
    finally:
        await client.stop()


async def test_a_sleeping_endpoint_gets_its_queued_request_when_it_updates(
    courier: Courier, meter: SimulatedLwm2mClient
) -> None:
    ep = meter.endpoint
    await courier.store.set_presence(ep, False, courier.bridge.clock.now())  # asleep
    created = await courier.service.create_command(
        "acme",
        CommandRequestIn.model_validate(
            {
                "devices": [ep],
                "command": "lwm2m_request",
                "args": {"type": "read", "endpoint": "/3/0/9"},
            }
        ),
        "test",
    )
    execution_id = created.executions[0].id
    await asyncio.sleep(0.5)
    assert (await courier.store.get_execution("acme", execution_id)).state is S.QUEUED
    sent_before = len(meter.requests)
    meter.register("update")  # the queue-mode device wakes up

    async def done() -> bool:
        return (await courier.store.get_execution("acme", execution_id)).state is S.SUCCEEDED

    await eventually(done, what="the queued read answered after the update")
    assert len(meter.requests) == sent_before + 1


async def _online(courier: Courier, device_id: str) -> bool:
    return (await courier.store.get_device("acme", device_id)).online
