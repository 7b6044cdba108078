"""Pure fleet decisions: scheduled executions, recurring retries, rollouts, `send` bodies."""

from __future__ import annotations

from dataclasses import replace
from datetime import time
from zoneinfo import ZoneInfo

import pytest

from courier.core import lifecycle
from courier.core.records import Change, RetryOn, Rollout
from courier.core.rollout import rollout_status, should_abort
from courier.core.schedule import Schedule, ScheduleKind, window_from
from courier.errors import InvalidInput
from courier.schemas.states import ExecutionState
from courier.sending import day_names, progress_line, request_body
from tests.helpers import request

S = ExecutionState
HOUR = 3600.0
DAY = 24 * HOUR
T0 = 1_795_392_000.0  # 2026-11-23T00:00:00Z, a Monday


def windows(kind: ScheduleKind = ScheduleKind.WINDOW) -> lifecycle.Windows:
    schedule = Schedule(kind, daily_start=time(9), daily_end=time(10))
    return lifecycle.Windows(
        lambda now: window_from(schedule, now, ZoneInfo("UTC")), kind is ScheduleKind.RECURRING
    )


def scheduled(now: float, kind: ScheduleKind = ScheduleKind.WINDOW, **kw: object) -> Change:
    req = replace(request(["d1"], ttl=3 * 86400, retry_on=RetryOn.FAILURE, max_attempts=1), **kw)  # type: ignore[arg-type]
    return lifecycle.new_execution(req, "e1", "d1", "d1", True, now, windows=windows(kind))


def test_before_its_window_an_execution_waits_scheduled() -> None:
    change = scheduled(T0)
    assert change.after.state is S.SCHEDULED
    assert change.after.wake_at == T0 + 9 * HOUR
    assert change.after.expires_at == T0 + 9 * HOUR + 3 * DAY  # ttl counts from the window


def test_inside_its_window_it_is_queued_until_the_window_closes() -> None:
    change = scheduled(T0 + 9.5 * HOUR)
    assert change.after.state is S.QUEUED
    assert change.after.window_end == T0 + 10 * HOUR
    assert change.after.wake_at == T0 + 10 * HOUR


def test_window_opens_then_closes_back_to_scheduled() -> None:
    e = scheduled(T0).after
    opened = lifecycle.on_timer(e, T0 + 9 * HOUR, 0.5, windows())
    assert opened is not None
    assert opened.after.state is S.QUEUED
    assert opened.after.window_end == T0 + 10 * HOUR
    closed = lifecycle.on_timer(opened.after, T0 + 10 * HOUR, 0.5, windows())
    assert closed is not None
    assert closed.after.state is S.SCHEDULED
    assert closed.after.wake_at == T0 + DAY + 9 * HOUR
    assert "window closed" in (closed.event.reason or "")


def test_no_window_left_expires() -> None:
    none = lifecycle.Windows(lambda now: None, False)
    req = request(["d1"])
    change = lifecycle.new_execution(req, "e1", "d1", "d1", True, T0, windows=none)
    assert change.after.state is S.EXPIRED
    assert change.after.reason == "the schedule has no window left"


def test_a_recurring_failure_waits_for_the_next_window_then_success_ends_it() -> None:
    e = scheduled(T0 + 9.1 * HOUR, ScheduleKind.RECURRING).after
    sent = lifecycle.send(e, T0 + 9.1 * HOUR).after
    failed = lifecycle.reply(
        sent, S.FAILED, T0 + 9.2 * HOUR, 0.5, "d", windows=windows(ScheduleKind.RECURRING)
    )
    assert isinstance(failed, Change)
    assert failed.after.state is S.SCHEDULED
    assert failed.after.wake_at == T0 + DAY + 9 * HOUR
    assert failed.after.attempt_base == 1
    reopened = lifecycle.on_timer(
        failed.after, T0 + DAY + 9 * HOUR, 0.5, windows(ScheduleKind.RECURRING)
    )
    assert reopened is not None
    again = lifecycle.send(reopened.after, T0 + DAY + 9 * HOUR).after
    assert again.attempt == 2
    done = lifecycle.reply(
        again,
        S.SUCCEEDED,
        T0 + DAY + 9.1 * HOUR,
        0.5,
        "d",
        attempt=2,
        windows=windows(ScheduleKind.RECURRING),
    )
    assert isinstance(done, Change)
    assert done.after.state is S.SUCCEEDED


def test_a_window_schedule_fails_for_good() -> None:
    e = scheduled(T0 + 9.1 * HOUR).after
    sent = lifecycle.send(e, T0 + 9.1 * HOUR).after
    failed = lifecycle.reply(sent, S.FAILED, T0 + 9.2 * HOUR, 0.5, "d", windows=windows())
    assert isinstance(failed, Change)
    assert failed.after.state is S.FAILED


def test_rollout_stagger_delays_the_first_send() -> None:
    req = request(["d1"])
    change = lifecycle.new_execution(req, "e1", "d1", "d1", True, T0, not_before=T0 + 30)
    assert change.after.state is S.QUEUED
    assert change.after.not_before == T0 + 30


@pytest.mark.parametrize(
    ("failed", "finished", "expected"),
    [(5, 9, False), (3, 10, True), (2, 10, False), (21, 100, True), (20, 100, False)],
)
def test_abort_rule(failed: int, finished: int, expected: bool) -> None:
    rollout = Rollout(abort_failure_percent=20, abort_min_finished=10)
    assert should_abort(failed, finished, rollout) is expected
    assert not should_abort(failed, finished, Rollout(max_per_minute=5))


def test_rollout_status() -> None:
    assert rollout_status("aborted: ...", {"FAILED": 3}, 10) == "aborted"
    assert rollout_status(None, {"QUEUED": 1, "SUCCEEDED": 2}, 3) == "running"
    assert rollout_status(None, {"SUCCEEDED": 3}, 3) == "completed"


def test_send_bodies() -> None:
    assert request_body("REBOOT", {}, devices=("a", "b")) == {
        "command": "REBOOT",
        "args": {},
        "command_type": "DEVICE",
        "devices": ["a", "b"],
    }
    body = request_body(
        "LOCK",
        {"x": 1},
        labels=("site=north",),
        online=True,
        schedule="window",
        window_start="22:00",
        window_end="06:00",
        days="mon,fri",
        time_type="device",
        rollout_rate=100,
        abort_percent=20,
        abort_min=10,
        max_attempts=2,
        retry_on="both",
    )
    assert body["command_type"] == "DYNAMIC"
    assert body["filter"] == {
        "devices": [],
        "groups": [],
        "labels": {"site": "north"},
        "online": True,
    }
    assert body["schedule"] == "WINDOW"
    assert body["schedule_args"] == {
        "window_start_time": "22:00",
        "window_end_time": "06:00",
        "days": ["monday", "friday"],
        "time_type": "device",
    }
    assert body["rollout"] == {
        "max_per_minute": 100,
        "abort_failure_percent": 20,
        "abort_min_finished": 10,
    }
    assert body["retry"] == {"max_attempts": 2, "on": "both"}
    with pytest.raises(InvalidInput, match="give devices"):
        request_body("X", {}, devices=("a",), groups=("g",))
    with pytest.raises(InvalidInput, match="give devices"):
        request_body("X", {})
    with pytest.raises(InvalidInput, match="key=value"):
        request_body("X", {}, labels=("nope",))


def test_day_names_and_progress() -> None:
    assert day_names("Mon, tues,SUNDAY") == ["monday", "tuesday", "sunday"]
    with pytest.raises(InvalidInput):
        day_names("mo")
    assert progress_line({"SUCCEEDED": 6, "QUEUED": 2, "SENT": 2}, width=10) == (
        "[######----]  60%  6/10  QUEUED=2 SENT=2 SUCCEEDED=6"
    )
