"""Execution states and the one table of transitions allowed between them."""

from __future__ import annotations

from enum import StrEnum


class ExecutionState(StrEnum):
    """Where one delivery of a command to one device stands."""

    SCHEDULED = "SCHEDULED"
    QUEUED = "QUEUED"
    SENT = "SENT"
    ACKNOWLEDGED = "ACKNOWLEDGED"
    IN_PROGRESS = "IN_PROGRESS"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def in_flight(self) -> bool:
        """Published to the device and not finished: counts against the in-flight window."""
        return self in IN_FLIGHT


S = ExecutionState

TERMINAL: frozenset[ExecutionState] = frozenset(
    {S.SUCCEEDED, S.FAILED, S.TIMED_OUT, S.CANCELLED, S.EXPIRED}
)
IN_FLIGHT: frozenset[ExecutionState] = frozenset({S.SENT, S.ACKNOWLEDGED, S.IN_PROGRESS})
PENDING: frozenset[ExecutionState] = frozenset(set(S) - TERMINAL)
DEVICE_REPLY_STATES: frozenset[ExecutionState] = frozenset(
    {S.ACKNOWLEDGED, S.IN_PROGRESS, S.SUCCEEDED, S.FAILED}
)

# The only place that says which state may follow which. QUEUED accepts device replies
# because an execution re-queued for a resend may already be on the device; the reply
# decision additionally requires that it was sent at least once. SCHEDULED follows QUEUED
# when a window closes before the device took the command, and follows an attempt of a
# RECURRING schedule that did not succeed (it waits for the next window).
TRANSITIONS: dict[ExecutionState, frozenset[ExecutionState]] = {
    S.SCHEDULED: frozenset({S.QUEUED, S.CANCELLED, S.EXPIRED}),
    S.QUEUED: frozenset(
        {
            S.SENT,
            S.CANCELLED,
            S.EXPIRED,
            S.ACKNOWLEDGED,
            S.IN_PROGRESS,
            S.SUCCEEDED,
            S.FAILED,
            S.SCHEDULED,
        }
    ),
    S.SENT: frozenset(
        {
            S.ACKNOWLEDGED,
            S.IN_PROGRESS,
            S.SUCCEEDED,
            S.FAILED,
            S.TIMED_OUT,
            S.CANCELLED,
            S.QUEUED,
            S.SCHEDULED,
        }
    ),
    S.ACKNOWLEDGED: frozenset(
        {S.IN_PROGRESS, S.SUCCEEDED, S.FAILED, S.TIMED_OUT, S.CANCELLED, S.QUEUED, S.SCHEDULED}
    ),
    S.IN_PROGRESS: frozenset(
        {S.IN_PROGRESS, S.SUCCEEDED, S.FAILED, S.TIMED_OUT, S.CANCELLED, S.QUEUED, S.SCHEDULED}
    ),
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset(),
    S.TIMED_OUT: frozenset(),
    S.CANCELLED: frozenset(),
    S.EXPIRED: frozenset(),
}


def can_transition(current: ExecutionState, target: ExecutionState) -> bool:
    """Whether the table allows going from `current` to `target`."""
    return target in TRANSITIONS[current]


ESPER_STATES: dict[ExecutionState, str] = {
    S.QUEUED: "Command Queued",
    S.SCHEDULED: "Command Scheduled",
    S.SENT: "Command Initiated",
    S.ACKNOWLEDGED: "Command Acknowledged",
    S.IN_PROGRESS: "Command In Progress",
    S.SUCCEEDED: "Command Success",
    S.FAILED: "Command Failure",
    S.TIMED_OUT: "Command TimeOut",
    S.CANCELLED: "Command Cancelled",
    S.EXPIRED: "Command TimeOut",
}

ENOS_STATES: dict[ExecutionState, int] = {
    S.QUEUED: 1,
    S.SCHEDULED: 1,
    S.CANCELLED: 2,
    S.EXPIRED: 3,
    S.SENT: 4,
    S.ACKNOWLEDGED: 4,
    S.IN_PROGRESS: 4,
    S.SUCCEEDED: 5,
    S.FAILED: 6,
    S.TIMED_OUT: 7,
}
