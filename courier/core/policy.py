"""Retry, backoff and timing rules: plain functions of values."""

from __future__ import annotations

from collections.abc import Iterable

from courier.core.records import DeviceType, RetryOn, RetryPolicy

INSTANT_GRACE = 5.0
"""How long a ttl-0 ("instant") command may wait for dispatch to an online device."""


def retries_on(policy: RetryPolicy, cause: RetryOn) -> bool:
    """Whether an attempt that ended by `cause` (timeout or failure) may be retried."""
    return policy.on is RetryOn.BOTH or policy.on is cause


def attempts_left(policy: RetryPolicy, attempt: int) -> bool:
    return attempt < policy.max_attempts


def backoff_delay(policy: RetryPolicy, attempt: int, rand: float) -> float:
    """Delay before attempt `attempt + 1`: exponential, capped, with equal jitter.

    `rand` is a number in [0, 1); half the delay is fixed and half is jittered, so retries of
    a fleet spread out without any of them coming back sooner than half the nominal delay.
    """
    nominal = policy.initial * policy.multiplier ** max(attempt - 1, 0)
    capped = min(nominal, policy.max_delay)
    return capped / 2 + capped / 2 * rand


def expiry(created_at: float, ttl: int) -> float:
    """When an execution that has not reached its device expires (ttl 0 = instant)."""
    return created_at + (INSTANT_GRACE if ttl == 0 else ttl)


def earliest(*times: float | None) -> float | None:
    """The earliest of the given times, ignoring None."""
    present = [t for t in times if t is not None]
    return min(present) if present else None


def select_by_presence(
    devices: Iterable[tuple[str, bool]], device_type: DeviceType
) -> tuple[list[str], list[dict[str, str]]]:
    """Split target devices by `device_type`: those to reach and those skipped (with why)."""
    selected: list[str] = []
    skipped: list[dict[str, str]] = []
    for device_id, online in devices:
        if device_type is DeviceType.ACTIVE and not online:
            skipped.append({"device": device_id, "reason": "offline (device_type=active)"})
        elif device_type is DeviceType.INACTIVE and online:
            skipped.append({"device": device_id, "reason": "online (device_type=inactive)"})
        else:
            selected.append(device_id)
    return selected, skipped


def over_queue_bound(pending: dict[str, int], bound: int) -> list[str]:
    """Devices whose pending executions, counting the new one, would pass the bound."""
    return sorted(device for device, count in pending.items() if count + 1 > bound)
