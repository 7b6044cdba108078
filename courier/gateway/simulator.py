"""Simulated devices for demos and load: agents whose handlers sleep and sometimes fail."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from courier.gateway.agent import Agent, CommandContext, CommandFailed
from courier.gateway.lwm2m_client import SimulatedLwm2mClient
from courier.gateway.relay import GatewayAgent, SimulatedLink

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    broker: str = "mqtt://127.0.0.1:1883"
    prefix: str = "courier"
    latency_ms: float = 0.0
    fail_rate: float = 0.0
    seed: int | None = None
    report_started: float | None = 1.0


def simulated_agent(
    device_id: str, password: str | None, config: SimulatorConfig, rng: random.Random
) -> Agent:
    """An agent that answers every command after `latency_ms`, failing at `fail_rate`."""
    agent = Agent(
        device_id,
        password,
        broker=config.broker,
        prefix=config.prefix,
        report_started=config.report_started,
    )

    @agent.default_handler
    async def simulate(ctx: CommandContext) -> dict[str, Any]:
        if config.latency_ms > 0:
            await asyncio.sleep(config.latency_ms / 1000)
        if rng.random() < config.fail_rate:
            raise CommandFailed("simulated failure", {"device": device_id})
        return {"device": device_id, "command": ctx.command, "attempt": ctx.attempt}

    return agent


def device_names(base: str, count: int) -> list[str]:
    """`base` alone for one device, else base-0 ... base-(count-1)."""
    return [base] if count == 1 else [f"{base}-{i}" for i in range(count)]


async def start_agents(
    credentials: Sequence[tuple[str, str | None]], config: SimulatorConfig, concurrency: int = 50
) -> list[Agent]:
    """Start one simulated agent per (device id, password), `concurrency` connects at a time."""
    rng = random.Random(config.seed)  # noqa: S311 - simulation, not security
    agents = [simulated_agent(d, p, config, rng) for d, p in credentials]
    gate = asyncio.Semaphore(concurrency)

    async def start(agent: Agent) -> None:
        async with gate:
            await agent.start()

    await asyncio.gather(*(start(a) for a in agents))
    return agents


async def run_simulator(
    credentials: Sequence[tuple[str, str | None]], config: SimulatorConfig
) -> None:
    """Run the simulated devices until cancelled; log a line of totals every 10 s."""
    agents = await start_agents(credentials, config)
    log.info("simulating %d device(s)", len(agents))
    try:
        while True:
            await asyncio.sleep(10)
            runs = sum(sum(a.runs.values()) for a in agents)
            log.info("simulated devices ran %d command(s)", runs)
    finally:
        await asyncio.gather(*(a.stop() for a in agents), return_exceptions=True)


async def run_gateway(
    gateway_id: str, password: str | None, attached: Sequence[str], config: SimulatorConfig
) -> None:
    """A simulated gateway relaying to simulated attached devices, until cancelled."""
    link = SimulatedLink(attached, config.latency_ms, config.fail_rate, seed=config.seed)
    gateway = GatewayAgent(
        gateway_id,
        password,
        adapter=link,
        broker=config.broker,
        prefix=config.prefix,
        report_started=config.report_started,
    )
    await gateway.start()
    log.info("simulating gateway %s with %d attached device(s)", gateway_id, len(attached))
    try:
        await asyncio.Event().wait()
    finally:
        await gateway.stop()


async def run_lwm2m(
    endpoint: str, broker: str, mountpoint: str, password: str | None = None
) -> None:
    """A simulated LwM2M client, until cancelled; it re-registers every half lifetime."""
    client = SimulatedLwm2mClient(endpoint, broker=broker, mountpoint=mountpoint, password=password)
    await client.start()
    log.info("simulating LwM2M client %s on %s/%s/...", endpoint, mountpoint, endpoint)
    try:
        while True:
            await asyncio.sleep(client.lifetime / 2)
            client.register("update")
    finally:
        await client.stop()
