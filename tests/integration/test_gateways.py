"""Gateways and their attached devices on a real Mosquitto and SQLite."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from courier.broker_auth import disconnect_client
from courier.gateway import GatewayAgent, SimulatedLink
from courier.schemas.api import CommandRequestIn, DeviceIn
from courier.schemas.states import ExecutionState
from tests.helpers import eventually
from tests.integration.conftest import Courier

S = ExecutionState


async def gateway_with(
    courier: Courier, names: list[str], failing: tuple[str, ...] = ()
) -> tuple[GatewayAgent, SimulatedLink, list[str]]:
    gateway_id = courier.device_id("gw")
    await courier.service.register_device("acme", DeviceIn(id=gateway_id, kind="gateway"))
    attached = [courier.device_id(n) for n in names]
    for device_id in attached:
        _, password, _ = await courier.service.register_device(
            "acme", DeviceIn(id=device_id, gateway_id=gateway_id)
        )
        assert password is None  # attached devices have no MQTT connection
    link = SimulatedLink(attached, failing=[courier.device_id(n) for n in failing])
    gateway = GatewayAgent(
        gateway_id, adapter=link, broker=courier.broker.url, prefix=courier.prefix
    )
    return gateway, link, attached


async def send(courier: Courier, devices: list[str], **body: object) -> list[str]:
    created = await courier.service.create_command(
        "acme",
        CommandRequestIn.model_validate({"devices": devices, "command": "PING", **body}),
        "t",
    )
    return [e.id for e in created.executions]


async def states(courier: Courier, ids: list[str]) -> list[ExecutionState]:
    return [(await courier.store.get_execution("acme", e)).state for e in ids]


async def test_a_fan_out_through_a_gateway_ends_per_attached_device(courier: Courier) -> None:
    gateway, link, attached = await gateway_with(courier, ["a", "b", "c"], failing=("b",))
    await gateway.start()

    async def reachable() -> bool:
        found = [await courier.store.get_device("acme", d) for d in attached]
        return all(d.online for d in found)

    await eventually(reachable, what="gateway and attached devices online")
    executions = await send(courier, attached)
    route = {(await courier.store.get_execution("acme", e)).route_id for e in executions}
    assert route == {courier.device_id("gw")}

    async def ended() -> bool:
        return all(s.terminal for s in await states(courier, executions))

    await eventually(ended, what="three ends")
    assert await states(courier, executions) == [S.SUCCEEDED, S.FAILED, S.SUCCEEDED]
    failed = await courier.store.get_execution("acme", executions[1])
    assert failed.reason is not None
    assert "refused PING" in failed.reason
    ok = await courier.store.get_execution("acme", executions[0])
    assert ok.output == {"device": attached[0], "command": "PING", "via": "gateway"}
    assert link.ran == {attached[0]: ["PING"], attached[1]: ["PING"], attached[2]: ["PING"]}
    await gateway.stop()


async def online(courier: Courier, device_id: str) -> bool:
    return (await courier.store.get_device("acme", device_id)).online


async def test_queued_commands_flow_when_the_gateway_comes_back(courier: Courier) -> None:
    gateway, link, attached = await gateway_with(courier, ["x", "y"])
    gateway_id = courier.device_id("gw")
    await gateway.start()

    async def all_online() -> bool:
        return all([await online(courier, d) for d in [gateway_id, *attached]])

    await eventually(all_online, what="gateway and attached devices online")
    # The gateway goes away: its attached devices are unreachable with it, and their
    # commands wait.
    await gateway.stop()

    async def away() -> bool:
        return not any([await online(courier, d) for d in [gateway_id, *attached]])

    await eventually(away, what="gateway and attached devices offline")
    executions = await send(courier, attached)
    await asyncio.sleep(0.3)
    assert await states(courier, executions) == [S.QUEUED, S.QUEUED]
    # While away, x was lost on the local link as far as Courier knows (its retained
    # presence says offline); only the gateway's announcement on reconnecting brings it back.
    gateway_link = courier.agent(f"{gateway_id}-announcer")  # any client may clear it in tests
    await gateway_link.start()
    gateway_link.transport.publish(
        courier.bridge.topics.attached_presence(gateway_id, attached[0]),
        b'{"online": false}',
        qos=1,
        retain=True,
    )

    async def x_lost() -> bool:
        stored = await courier.store.find_device(attached[0])
        return stored is not None and not stored.online

    await eventually(x_lost, what="x offline")
    await gateway.start()  # the same agent reconnects and re-announces what is attached

    async def done() -> bool:
        return await states(courier, executions) == [S.SUCCEEDED, S.SUCCEEDED]

    await eventually(done, what="queued commands completed")
    assert await online(courier, attached[0])
    # A dropped connection (here: another client taking over its id) is no different.
    gateway.announce([attached[1]], online=False)
    await eventually(lambda: _not(online(courier, attached[1])), what="y offline")
    await disconnect_client(courier.broker.host, courier.broker.port, "", "", gateway_id, timeout=5)
    await eventually(lambda: online(courier, attached[1]), timeout=15, what="y re-announced")
    again = await send(courier, attached[1:])

    async def finished() -> bool:
        return await states(courier, again) == [S.SUCCEEDED]

    await eventually(finished, what="a command after the reconnect")
    contexts = link.contexts[attached[1]]
    assert contexts[-1].timeout == 30
    assert contexts[-1].expires_at.timestamp() > courier.bridge.clock.now() + 86000
    await gateway.stop()


async def _not(check: Awaitable[bool]) -> bool:
    return not await check


async def test_an_attached_devices_command_expires_while_its_gateway_is_away(
    courier: Courier,
) -> None:
    gateway, _, attached = await gateway_with(courier, ["z"])
    executions = await send(courier, attached, ttl=1)

    async def expired() -> bool:
        return await states(courier, executions) == [S.EXPIRED]

    await eventually(expired, timeout=5, what="expiry")
    await gateway.start()
    await asyncio.sleep(0.5)
    assert await states(courier, executions) == [S.EXPIRED]
    await gateway.stop()


async def test_a_gateway_announces_devices_courier_did_not_know(courier: Courier) -> None:
    gateway_id = courier.device_id("gw")
    await courier.service.register_device("acme", DeviceIn(id=gateway_id, kind="gateway"))
    newcomer = courier.device_id("new")
    link = SimulatedLink([newcomer])
    gateway = GatewayAgent(
        gateway_id, adapter=link, broker=courier.broker.url, prefix=courier.prefix
    )
    await gateway.start()

    async def registered() -> bool:
        found = await courier.store.find_device(newcomer)
        return found is not None and found.online

    await eventually(registered, what="the announced device registered")
    found = await courier.store.get_device("acme", newcomer)
    assert found.gateway_id == gateway_id
    executions = await send(courier, [newcomer])

    async def done() -> bool:
        return await states(courier, executions) == [S.SUCCEEDED]

    await eventually(done, what="a command to the newcomer")
    link.detach(newcomer)
    gateway.announce([newcomer], online=False)

    async def gone() -> bool:
        return not (await courier.store.get_device("acme", newcomer)).online

    await eventually(gone, what="the device detached")
    later = await send(courier, [newcomer])
    await asyncio.sleep(0.3)
    assert await states(courier, later) == [S.QUEUED]  # waits: the device is not reachable
    await gateway.stop()
