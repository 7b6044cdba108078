"""Decisions on executions: given a record, a happening and the time, what changes.

Each function returns a `Change` (the execution after the decision and the event that
explains it), an `Ignored` (nothing changes), or raises `IllegalTransition`. Stores persist
what these decide; they never decide themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from courier.clock import isoformat
from courier.core.policy import attempts_left, backoff_delay, earliest, expiry, retries_on
from courier.core.records import (
    Change,
    CommandRequest,
    Event,
    Execution,
    Ignored,
    RetryOn,
)
from courier.errors import IllegalTransition
from courier.schemas.states import (
    DEVICE_REPLY_STATES,
    TERMINAL,
    ExecutionState,
    can_transition,
)

S = ExecutionState
BRIDGE = "bridge"


@dataclass(frozen=True, slots=True)
class Windows:
    """The schedule of an execution, read in its time zone: `find(now)` answers the window
    open at `now` or the next one (opens, closes), or None when there is none left."""

    find: Callable[[float], tuple[float, float] | None]
    recurring: bool


def _event(
    before: Execution | None,
    after: Execution,
    at: float,
    actor: str,
    reason: str | None,
    kind: str = "transition",
    data: dict[str, Any] | None = None,
) -> Event:
    return Event(
        execution_id=after.id,
        tenant=after.tenant,
        at=at,
        kind=kind,
        from_state=None if before is None else before.state,
        to_state=after.state,
        actor=actor,
        attempt=after.attempt,
        reason=reason,
        data=data,
    )


def note(
    execution: Execution, now: float, actor: str, reason: str, kind: str, data: dict[str, Any]
) -> Event:
    """An event of an execution that changes nothing of it (a notification, an upload)."""
    return _event(execution, execution, now, actor, reason, kind, data)


_FIELD = {name: index for index, name in enumerate(Execution._fields)}


def _replaced(execution: Execution, now: float, fields: dict[str, Any]) -> Execution:
    """`execution._replace(updated_at=now, **fields)`, half the cost: `_replace` looks every
    one of the 29 fields up in the keywords; this sets only those given (every transition
    of every command comes here)."""
    values = list(execution)
    values[_FIELD["updated_at"]] = now
    for name, value in fields.items():
        values[_FIELD[name]] = value
    return Execution._make(values)


def _change(
    before: Execution,
    now: float,
    actor: str,
    note: str | None,
    kind: str = "transition",
    data: dict[str, Any] | None = None,
    **fields: Any,
) -> Change:
    target = fields.get("state", before.state)
    if target != before.state and not can_transition(before.state, target):
        raise IllegalTransition(before.state, target)
    after = _replaced(before, now, fields)
    return Change(before, after, _event(before, after, now, actor, note, kind, data))


def new_execution(
    request: CommandRequest,
    execution_id: str,
    device_id: str,
    route_id: str,
    online: bool,
    now: float,
    retry_of: str | None = None,
    windows: Windows | None = None,
    not_before: float | None = None,
) -> Change:
    """A fresh execution: QUEUED (or SCHEDULED until its window opens), or EXPIRED at once
    when it is instant and the device is away, or its schedule has no window left.

    `not_before` staggers a rollout; for a scheduled request the TTL counts from the opening
    of the first window.
    """
    start = now if not_before is None else max(now, not_before)
    window = windows.find(now) if windows is not None else None
    opens = window[0] if window is not None else now
    expires_at = expiry(max(now, opens), request.ttl)
    execution = Execution(
        id=execution_id,
        tenant=request.tenant,
        request_id=request.id,
        device_id=device_id,
        route_id=route_id,
        command=request.command,
        state=S.QUEUED,
        attempt=0,
        retry=request.retry,
        priority=request.priority,
        timeout=request.timeout,
        ack_timeout=request.ack_timeout,
        created_at=now,
        updated_at=now,
        expires_at=expires_at,
        not_before=start,
        wake_at=expires_at,
        retry_of=retry_of,
        internal=request.internal,
    )
    reason = "created" if retry_of is None else f"re-issue of {retry_of}"
    if windows is not None and window is None:
        execution = execution._replace(
            state=S.EXPIRED, wake_at=None, reason="the schedule has no window left"
        )
        reason = "the schedule has no window left"
    elif window is not None and window[0] > now:
        execution = execution._replace(
            state=S.SCHEDULED, not_before=max(start, window[0]), wake_at=window[0]
        )
        reason = "waits for its schedule window"
    elif window is not None:
        execution = _in_window(execution, window)
    elif request.ttl == 0 and not online:
        execution = execution._replace(
            state=S.EXPIRED, wake_at=None, reason="device offline and ttl is 0"
        )
        reason = "device offline and ttl is 0 (instant command)"
    event = _event(None, execution, now, request.issued_by, reason, kind="created")
    return Change(None, execution, event)


def _in_window(execution: Execution, window: tuple[float, float]) -> Execution:
    """QUEUED inside a window: sendable until it closes (or the TTL ends first)."""
    closes = window[1] if window[1] != float("inf") else None
    wake = execution.expires_at if closes is None else min(closes, execution.expires_at)
    return execution._replace(state=S.QUEUED, window_end=closes, wake_at=wake)


def send(execution: Execution, now: float, actor: str = BRIDGE) -> Change:
    """Mark a QUEUED execution SENT as attempt n+1, with its ack and result deadlines."""
    attempt = execution.attempt + 1
    ack_deadline = (
        now + execution.ack_timeout if execution.ack_timeout < execution.timeout else None
    )
    deadline = now + execution.timeout
    return _change(
        execution,
        now,
        actor,
        f"attempt {attempt} of {execution.retry.max_attempts}",
        state=S.SENT,
        attempt=attempt,
        sent_at=now,
        ack_deadline=ack_deadline,
        deadline=deadline,
        wake_at=earliest(ack_deadline, deadline),
        not_before=now,
    )


def _retry_or(
    execution: Execution,
    now: float,
    rand: float,
    cause: RetryOn,
    final_state: ExecutionState,
    why: str,
    actor: str,
    data: dict[str, Any] | None = None,
    output: Any = None,
    windows: Windows | None = None,
) -> Change:
    """Re-queue for another attempt when the policy allows it; for a RECURRING schedule,
    wait for the next window; else end in `final_state`."""
    policy = execution.retry
    if retries_on(policy, cause) and attempts_left(
        policy, execution.attempt - execution.attempt_base
    ):
        delay = backoff_delay(policy, execution.attempt, rand)
        if now + delay < execution.expires_at:
            floor = execution.attempt + 1 if cause is RetryOn.FAILURE else execution.reply_floor
            return _change(
                execution,
                now,
                actor,
                f"{why}; retrying in {delay:.1f} s "
                f"(attempt {execution.attempt + 1} of {policy.max_attempts})",
                data=data,
                state=S.QUEUED,
                not_before=now + delay,
                ack_deadline=None,
                deadline=None,
                wake_at=execution.expires_at,
                reply_floor=floor,
                reason=why,
            )
    if windows is not None and windows.recurring:
        following = windows.find(max(now, execution.window_end or now))
        if following is not None and following[0] < execution.expires_at:
            opens = max(following[0], now)
            return _change(
                execution,
                now,
                actor,
                f"{why}; the next window opens {isoformat(opens)}",
                data=data,
                state=S.SCHEDULED,
                not_before=opens,
                ack_deadline=None,
                deadline=None,
                wake_at=opens,
                window_end=None,
                attempt_base=execution.attempt,
                reply_floor=execution.attempt + 1,
                reason=why,
                output=output if output is not None else execution.output,
            )
    return _change(
        execution,
        now,
        actor,
        why,
        data=data,
        state=final_state,
        ack_deadline=None,
        deadline=None,
        wake_at=None,
        reason=why,
        output=output if output is not None else execution.output,
    )


def reply(
    execution: Execution,
    state: ExecutionState,
    now: float,
    rand: float,
    actor: str,
    reason: str | None = None,
    progress: int | None = None,
    output: Any = None,
    attempt: int | None = None,
    windows: Windows | None = None,
    timed_out: bool = False,
) -> Change | Ignored:
    """A device (or an agent on its behalf) reports ACKNOWLEDGED, IN_PROGRESS or a result.
    `timed_out`: a FAILED that says the device never answered (an LwM2M CoAP timeout), retried
    and ended as a timeout."""
    data: dict[str, Any] = {"state": state.value}
    if reason is not None:
        data["reason"] = reason
    if progress is not None:
        data["progress"] = progress
    if output is not None:
        data["output"] = output
    if attempt is not None:
        data["attempt"] = attempt
    if state not in DEVICE_REPLY_STATES:
        return Ignored(f"{state} is not a state a device reports")
    if execution.state in TERMINAL:
        if state == execution.state:
            return Ignored("duplicate")
        note = f"reply {state} after the execution ended {execution.state}; state unchanged"
        return Ignored("terminal", _event(execution, execution, now, actor, note, "reply", data))
    if attempt is not None and attempt < execution.reply_floor:
        note = f"stale reply {state} for attempt {attempt}; attempt {execution.reply_floor} pending"
        return Ignored("stale", _event(execution, execution, now, actor, note, "reply", data))
    if execution.attempt == 0:
        return Ignored("not sent")
    if state == execution.state and (state is not S.IN_PROGRESS or progress == execution.progress):
        return Ignored("duplicate")
    if not can_transition(execution.state, state):
        return Ignored(f"illegal transition {execution.state} -> {state}")

    if state in (S.ACKNOWLEDGED, S.IN_PROGRESS):
        deadline = execution.deadline
        if execution.state is S.QUEUED or deadline is None:
            deadline = now + execution.timeout
        return _change(
            execution,
            now,
            actor,
            reason or ("acknowledged" if state is S.ACKNOWLEDGED else "in progress"),
            kind="reply",
            data=data,
            state=state,
            ack_deadline=None,
            deadline=deadline,
            wake_at=deadline,
            progress=progress if progress is not None else execution.progress,
            not_before=min(execution.not_before, now),
        )
    if state is S.SUCCEEDED:
        return _change(
            execution,
            now,
            actor,
            reason or "succeeded",
            kind="reply",
            data=data,
            state=S.SUCCEEDED,
            ack_deadline=None,
            deadline=None,
            wake_at=None,
            reason=reason,
            output=output,
            progress=100 if progress is None else progress,
        )
    why = f"attempt {execution.attempt} failed" + (f": {reason}" if reason else "")
    return _retry_or(
        execution,
        now,
        rand,
        RetryOn.TIMEOUT if timed_out else RetryOn.FAILURE,
        S.TIMED_OUT if timed_out else S.FAILED,
        why,
        actor,
        data=data,
        output=output,
        windows=windows,
    )


def on_timer(
    execution: Execution, now: float, rand: float, windows: Windows | None = None
) -> Change | None:
    """What a passed deadline does: open or close a schedule window, expire, resend after a
    missing ack, retry or time out."""
    if execution.wake_at is None or execution.wake_at > now or execution.state in TERMINAL:
        return None
    state = execution.state
    if state in (S.QUEUED, S.SCHEDULED):
        if now >= execution.expires_at:
            ttl = execution.expires_at - execution.created_at
            return _change(
                execution,
                now,
                BRIDGE,
                f"ttl of {ttl:.0f} s passed before the device could take it",
                state=S.EXPIRED,
                wake_at=None,
                reason="expired",
            )
        if state is S.SCHEDULED:
            return _window_opens(execution, now, windows)
        if execution.window_end is not None and now >= execution.window_end:
            return _window_closed(execution, now, windows)
        return _change(
            execution,
            now,
            BRIDGE,
            "timer re-armed",
            kind="timer",
            wake_at=earliest(execution.window_end, execution.expires_at),
        )
    if execution.deadline is not None and now >= execution.deadline:
        why = f"no result within {execution.timeout:g} s"
        return _retry_or(
            execution, now, rand, RetryOn.TIMEOUT, S.TIMED_OUT, why, BRIDGE, windows=windows
        )
    if state is S.SENT and execution.ack_deadline is not None and now >= execution.ack_deadline:
        why = f"no acknowledgement within {execution.ack_timeout:g} s"
        used = execution.attempt - execution.attempt_base
        if attempts_left(execution.retry, used) and now < execution.expires_at:
            return _change(
                execution,
                now,
                BRIDGE,
                f"{why}; resending (attempt {used + 1} of {execution.retry.max_attempts})",
                state=S.QUEUED,
                not_before=now,
                ack_deadline=None,
                deadline=None,
                wake_at=earliest(execution.window_end, execution.expires_at),
            )
        return _change(
            execution,
            now,
            BRIDGE,
            f"{why}; no resend left, waiting for a result until the deadline",
            kind="timer",
            ack_deadline=None,
            wake_at=execution.deadline,
        )
    return _change(
        execution,
        now,
        BRIDGE,
        "timer re-armed",
        kind="timer",
        wake_at=earliest(execution.ack_deadline, execution.deadline),
    )


def _window_opens(execution: Execution, now: float, windows: Windows | None) -> Change:
    window = windows.find(now) if windows is not None else (now, float("inf"))
    if window is None:
        return _change(
            execution,
            now,
            BRIDGE,
            "the schedule has no window left",
            state=S.EXPIRED,
            wake_at=None,
            reason="the schedule has no window left",
        )
    if window[0] > now:
        return _change(execution, now, BRIDGE, "timer re-armed", kind="timer", wake_at=window[0])
    opened = _in_window(execution, window)
    closes = "" if opened.window_end is None else f" until {isoformat(opened.window_end)}"
    return _change(
        execution,
        now,
        BRIDGE,
        f"its window is open{closes}",
        state=S.QUEUED,
        window_end=opened.window_end,
        wake_at=opened.wake_at,
    )


def _window_closed(execution: Execution, now: float, windows: Windows | None) -> Change:
    following = windows.find(now) if windows is not None else None
    if following is None or following[0] >= execution.expires_at:
        return _change(
            execution,
            now,
            BRIDGE,
            "the schedule ended before the device could take it",
            state=S.EXPIRED,
            wake_at=None,
            window_end=None,
            reason="expired",
        )
    return _change(
        execution,
        now,
        BRIDGE,
        f"its window closed before the device took it; the next opens {isoformat(following[0])}",
        state=S.SCHEDULED,
        wake_at=following[0],
        window_end=None,
        not_before=max(execution.not_before, following[0]),
    )


def cancel(execution: Execution, now: float, actor: str, reason: str | None = None) -> Change:
    """Cancel a non-terminal execution; raises IllegalTransition for a terminal one."""
    if execution.state in TERMINAL:
        raise IllegalTransition(execution.state, S.CANCELLED, "the execution has already ended")
    return _change(
        execution,
        now,
        actor,
        reason or "cancelled",
        state=S.CANCELLED,
        ack_deadline=None,
        deadline=None,
        wake_at=None,
        reason=reason or "cancelled",
    )


def was_sent(execution: Execution) -> bool:
    """Whether the device may hold this execution (so a cancel notice is owed to it)."""
    return execution.attempt > 0


def update_state(
    execution: Execution,
    state: ExecutionState,
    now: float,
    rand: float,
    actor: str,
    reason: str | None = None,
    output: Any = None,
    progress: int | None = None,
    windows: Windows | None = None,
) -> Change | None:
    """A state update over REST (Esper's PUT): None when it repeats the current state.

    Device states behave exactly like an MQTT reply; TIMED_OUT and CANCELLED end the
    execution. Anything the table refuses raises IllegalTransition (HTTP 409).
    """
    if state is S.CANCELLED:
        return cancel(execution, now, actor, reason)
    if state is S.TIMED_OUT:
        if not can_transition(execution.state, S.TIMED_OUT):
            raise IllegalTransition(execution.state, state)
        return _change(
            execution,
            now,
            actor,
            reason or "timed out (reported)",
            state=S.TIMED_OUT,
            ack_deadline=None,
            deadline=None,
            wake_at=None,
            reason=reason or "timed out",
        )
    if state not in DEVICE_REPLY_STATES:
        raise IllegalTransition(execution.state, state, "only Courier sets this state")
    outcome = reply(execution, state, now, rand, actor, reason, progress, output, windows=windows)
    if isinstance(outcome, Change):
        return outcome
    if outcome.why == "duplicate":
        return None
    if outcome.why == "not sent":
        raise IllegalTransition(execution.state, state, "the execution has not been sent yet")
    raise IllegalTransition(execution.state, state, outcome.why)
