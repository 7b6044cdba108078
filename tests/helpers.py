"""Helpers shared by the tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from courier.clock import FakeClock
from courier.core.records import (
    CommandRequest,
    Device,
    DeviceType,
    RetryOn,
    RetryPolicy,
)
from courier.ids import new_id


async def eventually(
    check: Callable[[], Awaitable[Any]] | Callable[[], Any],
    timeout: float = 10.0,  # noqa: ASYNC109 - a polling deadline, not a cancellation scope
    interval: float = 0.02,
    what: str = "condition",
) -> None:
    """Poll `check` until it is true; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)


def device(device_id: str, tenant: str = "acme", online: bool = True, **fields: Any) -> Device:
    return Device(
        id=device_id, tenant=tenant, online=online, created_at=1.0, updated_at=1.0, **fields
    )


def request(
    devices: list[str],
    clock: FakeClock | None = None,
    tenant: str = "acme",
    command: str = "REBOOT",
    ttl: int = 3600,
    timeout: float = 30.0,
    ack_timeout: float = 10.0,
    max_attempts: int = 3,
    retry_on: RetryOn = RetryOn.TIMEOUT,
    priority: int = 0,
    device_type: DeviceType = DeviceType.ALL,
    idempotency_key: str | None = None,
    body_hash: str | None = None,
    args: dict[str, object] | None = None,
) -> CommandRequest:
    return CommandRequest(
        id=new_id(),
        tenant=tenant,
        command=command,
        args=args or {},
        devices=devices,
        device_type=device_type,
        ttl=ttl,
        timeout=timeout,
        ack_timeout=ack_timeout,
        retry=RetryPolicy(
            max_attempts=max_attempts, on=retry_on, initial=1.0, multiplier=2.0, max_delay=60.0
        ),
        priority=priority,
        issued_by="tester",
        created_at=clock.now() if clock else 1.0,
        idempotency_key=idempotency_key,
        body_hash=body_hash,
    )


async def noop(ctx: object) -> None:
    """A handler that does nothing and succeeds."""
