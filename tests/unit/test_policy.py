"""Retry, backoff and selection rules."""

from __future__ import annotations

import pytest

from courier.core.policy import (
    INSTANT_GRACE,
    attempts_left,
    backoff_delay,
    earliest,
    expiry,
    over_queue_bound,
    retries_on,
    select_by_presence,
)
from courier.core.records import DeviceType, RetryOn, RetryPolicy


@pytest.mark.parametrize(
    ("on", "cause", "expected"),
    [
        (RetryOn.TIMEOUT, RetryOn.TIMEOUT, True),
        (RetryOn.TIMEOUT, RetryOn.FAILURE, False),
        (RetryOn.FAILURE, RetryOn.FAILURE, True),
        (RetryOn.FAILURE, RetryOn.TIMEOUT, False),
        (RetryOn.BOTH, RetryOn.TIMEOUT, True),
        (RetryOn.BOTH, RetryOn.FAILURE, True),
    ],
)
def test_retries_on(on: RetryOn, cause: RetryOn, expected: bool) -> None:
    assert retries_on(RetryPolicy(on=on), cause) is expected


def test_attempts_left() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert [attempts_left(policy, a) for a in (0, 1, 2, 3, 4)] == [True, True, True, False, False]


def test_backoff_grows_exponentially_and_is_capped() -> None:
    policy = RetryPolicy(initial=1.0, multiplier=2.0, max_delay=5.0)
    top = [backoff_delay(policy, attempt, 0.999999) for attempt in (1, 2, 3, 4, 5)]
    assert top == pytest.approx([1.0, 2.0, 4.0, 5.0, 5.0], rel=1e-5)


@pytest.mark.parametrize("rand", [0.0, 0.25, 0.5, 0.99])
def test_backoff_jitter_stays_between_half_and_full(rand: float) -> None:
    policy = RetryPolicy(initial=8.0, multiplier=2.0, max_delay=60.0)
    delay = backoff_delay(policy, 2, rand)
    assert 8.0 <= delay <= 16.0
    assert delay == pytest.approx(8.0 + 8.0 * rand)


def test_expiry_and_instant_commands() -> None:
    assert expiry(100.0, 60) == 160.0
    assert expiry(100.0, 0) == 100.0 + INSTANT_GRACE


def test_earliest_ignores_none() -> None:
    assert earliest(None, 3.0, 2.0) == 2.0
    assert earliest(None, None) is None


def test_select_by_presence() -> None:
    devices = [("a", True), ("b", False), ("c", True)]
    assert select_by_presence(devices, DeviceType.ALL) == (["a", "b", "c"], [])
    active, skipped = select_by_presence(devices, DeviceType.ACTIVE)
    assert active == ["a", "c"]
    assert skipped == [{"device": "b", "reason": "offline (device_type=active)"}]
    inactive, skipped = select_by_presence(devices, DeviceType.INACTIVE)
    assert inactive == ["b"]
    assert [s["device"] for s in skipped] == ["a", "c"]


def test_queue_bound() -> None:
    assert over_queue_bound({"a": 9, "b": 10, "c": 0}, 10) == ["b"]
    assert over_queue_bound({"a": 0}, 1) == []
