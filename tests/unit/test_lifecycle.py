"""Decisions on executions, with values in and values out."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from courier.core import lifecycle
from courier.core.records import Change, Execution, Ignored, RetryOn
from courier.errors import IllegalTransition
from courier.schemas.states import ExecutionState
from tests.helpers import request

S = ExecutionState
NOW = 1000.0


def fresh(online: bool = True, **overrides: Any) -> Execution:
    req = request(["d1"], ttl=overrides.pop("ttl", 3600))
    change = lifecycle.new_execution(req, "e1", "d1", "d1", online, NOW)
    return change.after._replace(**overrides)


def sent(**overrides: Any) -> Execution:
    return lifecycle.send(fresh(**overrides), NOW).after


def test_new_execution_is_queued_until_its_ttl() -> None:
    change = lifecycle.new_execution(request(["d1"], ttl=60), "e1", "d1", "d1", False, NOW)
    assert change.before is None
    assert change.after.state is S.QUEUED
    assert change.after.expires_at == NOW + 60
    assert change.after.wake_at == NOW + 60
    assert change.event.kind == "created"
    assert change.event.to_state is S.QUEUED


def test_instant_command_for_offline_device_expires_at_once() -> None:
    change = lifecycle.new_execution(request(["d1"], ttl=0), "e1", "d1", "d1", False, NOW)
    assert change.after.state is S.EXPIRED
    assert change.after.wake_at is None
    assert "ttl is 0" in (change.event.reason or "")


def test_instant_command_for_online_device_is_queued_briefly() -> None:
    change = lifecycle.new_execution(request(["d1"], ttl=0), "e1", "d1", "d1", True, NOW)
    assert change.after.state is S.QUEUED
    assert change.after.expires_at == NOW + 5.0


def test_send_sets_attempt_and_deadlines() -> None:
    change = lifecycle.send(fresh(), NOW)
    after = change.after
    assert after.state is S.SENT
    assert after.attempt == 1
    assert after.ack_deadline == NOW + 10
    assert after.deadline == NOW + 30
    assert after.wake_at == NOW + 10
    assert change.event.reason == "attempt 1 of 3"


def test_no_ack_deadline_when_ack_timeout_is_not_shorter_than_timeout() -> None:
    after = lifecycle.send(fresh(ack_timeout=30.0), NOW).after
    assert after.ack_deadline is None
    assert after.wake_at == NOW + 30


def test_acknowledged_then_in_progress_then_succeeded() -> None:
    e = sent()
    ack = lifecycle.reply(e, S.ACKNOWLEDGED, NOW + 1, 0.5, "device:d1")
    assert isinstance(ack, Change)
    assert ack.after.state is S.ACKNOWLEDGED
    assert ack.after.ack_deadline is None
    assert ack.after.wake_at == NOW + 30
    prog = lifecycle.reply(ack.after, S.IN_PROGRESS, NOW + 2, 0.5, "device:d1", progress=40)
    assert isinstance(prog, Change)
    assert prog.after.progress == 40
    more = lifecycle.reply(prog.after, S.IN_PROGRESS, NOW + 3, 0.5, "device:d1", progress=80)
    assert isinstance(more, Change)
    assert more.after.progress == 80
    done = lifecycle.reply(more.after, S.SUCCEEDED, NOW + 4, 0.5, "device:d1", output={"x": 1})
    assert isinstance(done, Change)
    assert done.after.state is S.SUCCEEDED
    assert done.after.output == {"x": 1}
    assert done.after.wake_at is None
    assert done.event.data == {"state": "SUCCEEDED", "output": {"x": 1}}


def test_duplicate_replies_change_nothing() -> None:
    ack = lifecycle.reply(sent(), S.ACKNOWLEDGED, NOW, 0.5, "d")
    assert isinstance(ack, Change)
    again = lifecycle.reply(ack.after, S.ACKNOWLEDGED, NOW, 0.5, "d")
    assert again == Ignored("duplicate")


def test_reply_to_terminal_execution_is_recorded_but_changes_nothing() -> None:
    done = lifecycle.reply(sent(), S.SUCCEEDED, NOW, 0.5, "d")
    assert isinstance(done, Change)
    late = lifecycle.reply(done.after, S.FAILED, NOW + 1, 0.5, "d", reason="oops")
    assert isinstance(late, Ignored)
    assert late.why == "terminal"
    assert late.event is not None
    assert late.event.to_state is S.SUCCEEDED
    assert lifecycle.reply(done.after, S.SUCCEEDED, NOW, 0.5, "d") == Ignored("duplicate")


def test_reply_to_an_execution_never_sent_is_refused() -> None:
    assert lifecycle.reply(fresh(), S.ACKNOWLEDGED, NOW, 0.5, "d") == Ignored("not sent")


def test_out_of_order_ack_after_progress_is_illegal() -> None:
    prog = lifecycle.reply(sent(), S.IN_PROGRESS, NOW, 0.5, "d")
    assert isinstance(prog, Change)
    out = lifecycle.reply(prog.after, S.ACKNOWLEDGED, NOW, 0.5, "d")
    assert isinstance(out, Ignored)
    assert out.why.startswith("illegal transition")


def test_failure_is_retried_with_backoff_when_policy_says_so() -> None:
    e = sent(retry=replace(fresh().retry, on=RetryOn.FAILURE))
    out = lifecycle.reply(e, S.FAILED, NOW, 0.0, "d", reason="disk full")
    assert isinstance(out, Change)
    assert out.after.state is S.QUEUED
    assert out.after.not_before == pytest.approx(NOW + 0.5)  # half of 1 s with rand 0
    assert out.after.reply_floor == 2
    assert "attempt 1 failed: disk full" in (out.event.reason or "")


def test_failure_is_final_without_failure_retries() -> None:
    out = lifecycle.reply(sent(), S.FAILED, NOW, 0.5, "d", reason="no", output={"e": 1})
    assert isinstance(out, Change)
    assert out.after.state is S.FAILED
    assert out.after.output == {"e": 1}


def test_failure_is_final_when_attempts_are_used_up() -> None:
    e = sent(retry=replace(fresh().retry, on=RetryOn.BOTH, max_attempts=1))
    out = lifecycle.reply(e, S.FAILED, NOW, 0.5, "d")
    assert isinstance(out, Change)
    assert out.after.state is S.FAILED


def test_stale_reply_from_a_failed_attempt_is_ignored_and_recorded() -> None:
    e = sent(retry=replace(fresh().retry, on=RetryOn.FAILURE))
    requeued = lifecycle.reply(e, S.FAILED, NOW, 0.0, "d")
    assert isinstance(requeued, Change)
    stale = lifecycle.reply(requeued.after, S.FAILED, NOW + 0.1, 0.0, "d", attempt=1)
    assert isinstance(stale, Ignored)
    assert stale.why == "stale"
    assert stale.event is not None


def test_late_ack_of_a_requeued_execution_is_accepted() -> None:
    timer = lifecycle.on_timer(sent(), NOW + 10, 0.5)
    assert timer is not None
    assert timer.after.state is S.QUEUED
    ack = lifecycle.reply(timer.after, S.ACKNOWLEDGED, NOW + 11, 0.5, "d", attempt=1)
    assert isinstance(ack, Change)
    assert ack.after.state is S.ACKNOWLEDGED
    assert ack.after.deadline == NOW + 11 + 30


def test_timer_expires_a_queued_execution_after_its_ttl() -> None:
    e = fresh(online=False, ttl=60)
    assert lifecycle.on_timer(e, NOW + 59, 0.5) is None
    out = lifecycle.on_timer(e, NOW + 60, 0.5)
    assert out is not None
    assert out.after.state is S.EXPIRED
    assert "ttl of 60 s" in (out.event.reason or "")


def test_missing_ack_requeues_for_a_resend_while_attempts_remain() -> None:
    e = sent()
    out = lifecycle.on_timer(e, NOW + 10, 0.5)
    assert out is not None
    assert out.after.state is S.QUEUED
    assert out.after.not_before == NOW + 10
    assert "resending (attempt 2 of 3)" in (out.event.reason or "")


def test_missing_ack_with_no_attempt_left_waits_for_the_deadline() -> None:
    e = sent(retry=replace(fresh().retry, max_attempts=1))
    out = lifecycle.on_timer(e, NOW + 10, 0.5)
    assert out is not None
    assert out.after.state is S.SENT
    assert out.after.ack_deadline is None
    assert out.after.wake_at == NOW + 30
    final = lifecycle.on_timer(out.after, NOW + 30, 0.5)
    assert final is not None
    assert final.after.state is S.TIMED_OUT


def test_deadline_retries_on_timeout_then_times_out() -> None:
    ack = lifecycle.reply(sent(), S.ACKNOWLEDGED, NOW + 1, 0.5, "d")
    assert isinstance(ack, Change)
    out = lifecycle.on_timer(ack.after, NOW + 30, 0.0)
    assert out is not None
    assert out.after.state is S.QUEUED
    assert out.after.reply_floor == 0  # a late success of attempt 1 still counts
    last = ack.after._replace(attempt=3)
    final = lifecycle.on_timer(last, NOW + 30, 0.0)
    assert final is not None
    assert final.after.state is S.TIMED_OUT
    assert final.after.reason == "no result within 30 s"


def test_no_retry_past_the_ttl() -> None:
    ack = lifecycle.reply(sent(ttl=31), S.ACKNOWLEDGED, NOW + 1, 0.5, "d")
    assert isinstance(ack, Change)
    late = ack.after._replace(deadline=NOW + 30.5, wake_at=NOW + 30.5)
    out = lifecycle.on_timer(late, NOW + 30.5, 0.999)  # a ~1 s backoff would end past the ttl
    assert out is not None
    assert out.after.state is S.TIMED_OUT


def test_cancel() -> None:
    out = lifecycle.cancel(sent(), NOW, "apikey:k", "operator said so")
    assert out.after.state is S.CANCELLED
    assert out.after.reason == "operator said so"
    assert lifecycle.was_sent(out.after)
    with pytest.raises(IllegalTransition):
        lifecycle.cancel(out.after, NOW, "apikey:k")


def test_rest_state_updates() -> None:
    e = sent()
    ack = lifecycle.update_state(e, S.ACKNOWLEDGED, NOW, 0.5, "apikey:k")
    assert ack is not None
    assert ack.after.state is S.ACKNOWLEDGED
    assert lifecycle.update_state(ack.after, S.ACKNOWLEDGED, NOW, 0.5, "k") is None
    timed = lifecycle.update_state(ack.after, S.TIMED_OUT, NOW, 0.5, "k", reason="gave up")
    assert timed is not None
    assert timed.after.state is S.TIMED_OUT
    with pytest.raises(IllegalTransition, match="cannot go from TIMED_OUT to SUCCEEDED"):
        lifecycle.update_state(timed.after, S.SUCCEEDED, NOW, 0.5, "k")
    with pytest.raises(IllegalTransition, match="has not been sent"):
        lifecycle.update_state(fresh(), S.SUCCEEDED, NOW, 0.5, "k")
    with pytest.raises(IllegalTransition, match="only Courier sets"):
        lifecycle.update_state(e, S.QUEUED, NOW, 0.5, "k")
    with pytest.raises(IllegalTransition):
        lifecycle.update_state(fresh(), S.TIMED_OUT, NOW, 0.5, "k")


def test_a_change_replaces_exactly_the_fields_it_names_and_the_update_time() -> None:
    before = sent()
    fields: dict[str, Any] = {
        "state": S.ACKNOWLEDGED,
        "reason": "ok",
        "ack_deadline": None,
        "attempt": 3,
    }
    after = lifecycle._replaced(before, NOW + 5, fields)
    assert after == before._replace(updated_at=NOW + 5, **fields)
    assert type(after) is Execution
    with pytest.raises(KeyError):
        lifecycle._replaced(before, NOW, {"no_such_field": 1})
