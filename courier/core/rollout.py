"""Rollout rules: pure functions."""

from __future__ import annotations

from courier.core.records import Rollout


def should_abort(failed: int, finished: int, rollout: Rollout) -> bool:
    """Stop sending when more than the threshold of at least `abort_min_finished` finished
    executions failed."""
    if rollout.abort_failure_percent is None or finished < rollout.abort_min_finished:
        return False
    return failed * 100 > rollout.abort_failure_percent * finished


def rollout_status(rollout_state: str | None, counts: dict[str, int], total: int) -> str:
    """running, aborted or completed."""
    if rollout_state:
        return "aborted"
    pending = sum(
        n
        for s, n in counts.items()
        if s in ("SCHEDULED", "QUEUED", "SENT", "ACKNOWLEDGED", "IN_PROGRESS")
    )
    return "running" if pending or total == 0 else "completed"
