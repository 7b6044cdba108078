"""Gateways: an agent that also relays commands to the devices attached behind it.

The gateway connects to Courier; its attached devices don't (they hang off a serial bus, a
BLE link, a field bus...). A `DeviceAdapter` is the gateway's bridge to them: which devices
are attached now, and how to run a command on one. The gateway announces each attached
device (retained P/devices/{gateway}/attached/{device}/presence) and runs the commands
Courier addresses to them (the envelope's "device") through the adapter; replies go on the
gateway's own reply topic, one execution per attached device.

    class ModbusLink(DeviceAdapter):
        def devices(self) -> list[str]:
            return ["meter-1", "meter-2"]

        async def execute(self, device_id: str, ctx: CommandContext) -> dict[str, object]:
            ...  # talk to the meter; raise CommandFailed(reason) when it refuses

    gateway = GatewayAgent("gw-1", password, adapter=ModbusLink())
    await gateway.run()
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from courier.gateway.agent import Agent, CommandContext, CommandFailed
from courier.schemas.mqtt import presence_bytes


class DeviceAdapter(Protocol):
    """The gateway's link to its attached devices."""

    def devices(self) -> Sequence[str]:
        """The device ids attached now (announced to Courier on every connect)."""
        ...

    async def execute(self, device_id: str, ctx: CommandContext) -> dict[str, Any] | None:
        """Run `ctx.command` on `device_id`; raise CommandFailed when the device refuses."""
        ...


class GatewayAgent(Agent):
    """An Agent that relays the commands of its attached devices through a DeviceAdapter;
    commands for the gateway itself go to its own handlers, as for any agent."""

    def __init__(
        self, device_id: str, password: str | None = None, *, adapter: DeviceAdapter, **options: Any
    ) -> None:
        super().__init__(device_id, password, **options)
        self.adapter = adapter

    def _announce(self) -> None:
        super()._announce()
        self.announce(self.adapter.devices(), online=True)

    def announce(self, device_ids: Iterable[str], online: bool = True) -> None:
        """Publish (retained) that these attached devices are online, or gone."""
        if not self.transport.connected:
            return
        for device_id in device_ids:
            self.transport.publish(
                self.topics.attached_presence(self.device_id, device_id),
                presence_bytes(online),
                qos=1,
                retain=True,
            )

    def _handler_for(self, ctx: CommandContext) -> Any:
        if ctx.device is None or ctx.device == self.device_id:
            return super()._handler_for(ctx)
        if ctx.device not in self.adapter.devices():

            async def absent(context: CommandContext) -> None:
                raise CommandFailed(f"device {context.device} is not attached to this gateway")

            return absent

        async def relay(context: CommandContext) -> dict[str, Any] | None:
            assert context.device is not None
            return await self.adapter.execute(context.device, context)

        return relay


class SimulatedLink:
    """An example adapter: attached devices simulated in memory, with latency and failures.

    Each device keeps the commands it ran (`ran`), so a demo or a test sees what happened.
    """

    def __init__(
        self,
        device_ids: Sequence[str],
        latency_ms: float = 0.0,
        fail_rate: float = 0.0,
        failing: Iterable[str] = (),
        seed: int | None = None,
    ) -> None:
        self._devices = list(device_ids)
        self.latency_ms = latency_ms
        self.fail_rate = fail_rate
        self.failing = set(failing)
        self.ran: dict[str, list[str]] = {d: [] for d in device_ids}
        # What each device was given, deadline (expires_at) and timeout included.
        self.contexts: dict[str, list[CommandContext]] = {d: [] for d in device_ids}
        self._rng = random.Random(seed)  # noqa: S311 - simulation, not security

    def devices(self) -> Sequence[str]:
        return list(self._devices)

    def attach(self, device_id: str) -> None:
        if device_id not in self._devices:
            self._devices.append(device_id)
            self.ran.setdefault(device_id, [])
            self.contexts.setdefault(device_id, [])

    def detach(self, device_id: str) -> None:
        if device_id in self._devices:
            self._devices.remove(device_id)

    async def execute(self, device_id: str, ctx: CommandContext) -> dict[str, Any] | None:
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000)
        self.ran[device_id].append(ctx.command)
        self.contexts[device_id].append(ctx)
        if device_id in self.failing or self._rng.random() < self.fail_rate:
            raise CommandFailed(f"{device_id} refused {ctx.command}", {"device": device_id})
        return {"device": device_id, "command": ctx.command, "via": "gateway"}
