"""The Store contract, run against every backend (memory and SQLite)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest

from courier.clock import FakeClock
from courier.core.records import (
    ApiKey,
    Change,
    DeliveryPolicy,
    DeviceKind,
    DeviceType,
    Ignored,
    RetryOn,
)
from courier.errors import (
    AlreadyExists,
    IdempotencyConflict,
    IllegalTransition,
    InvalidInput,
    NotFound,
    QueueFull,
    StoreError,
    UnknownDevices,
)
from courier.schemas.states import ExecutionState
from courier.store import ExecutionFilter, RequestFilter, Store
from courier.store.filters import DeviceFilter
from courier.store.verbs import IncomingReply
from tests.helpers import device, request

S = ExecutionState


async def setup_devices(store: Store, *ids: str, online: bool = True, tenant: str = "acme") -> None:
    for device_id in ids:
        await store.add_device(device(device_id, tenant=tenant, online=online))


async def test_create_request_stores_one_execution_per_device(
    store: Store, clock: FakeClock
) -> None:
    await setup_devices(store, "d1", "d2")
    created = await store.create_request(request(["d1", "d2", "d1"], clock), 100, clock.now())
    assert not created.replayed
    assert [e.device_id for e in created.executions] == ["d1", "d2"]
    assert all(e.state is S.QUEUED for e in created.executions)
    assert created.request.devices == ["d1", "d2"]
    fetched = await store.get_request("acme", created.request.id)
    assert fetched.command == "REBOOT"
    counts = await store.request_state_counts("acme", created.request.id)
    assert counts == {"QUEUED": 2}


async def test_unknown_and_foreign_devices_are_refused_and_nothing_is_created(
    store: Store, clock: FakeClock
) -> None:
    await setup_devices(store, "d1")
    await setup_devices(store, "theirs", tenant="other")
    with pytest.raises(UnknownDevices) as info:
        await store.create_request(request(["d1", "ghost", "theirs"], clock), 100, clock.now())
    assert info.value.extra["devices"] == ["ghost", "theirs"]
    page = await store.list_executions("acme", ExecutionFilter(), 10, 0)
    assert page.count == 0
    assert (await store.list_requests("acme", RequestFilter(), 10, 0)).count == 0


async def test_device_type_selects_by_presence(store: Store, clock: FakeClock) -> None:
    await setup_devices(store, "on1", "on2")
    await setup_devices(store, "off1", online=False)
    targets = ["on1", "off1", "on2"]
    active = await store.create_request(
        request(targets, clock, device_type=DeviceType.ACTIVE), 100, clock.now()
    )
    assert [e.device_id for e in active.executions] == ["on1", "on2"]
    assert active.request.skipped == [{"device": "off1", "reason": "offline (device_type=active)"}]
    inactive = await store.create_request(
        request(targets, clock, device_type=DeviceType.INACTIVE), 100, clock.now()
    )
    assert [e.device_id for e in inactive.executions] == ["off1"]


async def test_instant_command_to_offline_device_expires_at_once(
    store: Store, clock: FakeClock
) -> None:
    await setup_devices(store, "off", online=False)
    created = await store.create_request(request(["off"], clock, ttl=0), 100, clock.now())
    assert created.executions[0].state is S.EXPIRED


async def test_idempotency_key_returns_the_first_request_for_24h(
    store: Store, clock: FakeClock
) -> None:
    await setup_devices(store, "d1")
    first = await store.create_request(
        request(["d1"], clock, idempotency_key="k1", body_hash="h"), 100, clock.now()
    )
    again = await store.create_request(
        request(["d1"], clock, idempotency_key="k1", body_hash="h"), 100, clock.now()
    )
    assert again.replayed
    assert again.request.id == first.request.id
    assert [e.id for e in again.executions] == [e.id for e in first.executions]
    with pytest.raises(IdempotencyConflict):
        await store.create_request(
            request(["d1"], clock, idempotency_key="k1", body_hash="other"), 100, clock.now()
        )
    clock.advance(24 * 3600 + 1)
    later = await store.create_request(
        request(["d1"], clock, idempotency_key="k1", body_hash="h"), 100, clock.now()
    )
    assert not later.replayed
    assert later.request.id != first.request.id


async def test_queue_bound_refuses_with_the_devices_named(store: Store, clock: FakeClock) -> None:
    await setup_devices(store, "d1", "d2")
    for _ in range(2):
        await store.create_request(request(["d1"], clock), 2, clock.now())
    with pytest.raises(QueueFull) as info:
        await store.create_request(request(["d2", "d1"], clock), 2, clock.now())
    assert info.value.extra["devices"] == ["d1"]
    assert (
        await store.list_executions("acme", ExecutionFilter(device_ids=("d2",)), 10, 0)
    ).count == 0


async def test_claim_respects_presence_order_priority_and_in_flight_cap(
    store: Store, clock: FakeClock
) -> None:
    await setup_devices(store, "d1")
    await setup_devices(store, "off", online=False)
    low = await store.create_request(request(["d1"], clock), 100, clock.now())
    high = await store.create_request(request(["d1"], clock, priority=5), 100, clock.now())
    later = await store.create_request(request(["d1"], clock), 100, clock.now())
    await store.create_request(request(["off"], clock), 100, clock.now())
    claimed = await store.claim_due(None, clock.now(), 100, in_flight_cap=2)
    assert [d.execution.request_id for d in claimed] == [high.request.id, low.request.id]
    assert all(d.execution.state is S.SENT and d.execution.attempt == 1 for d in claimed)
    assert await store.claim_due(["d1"], clock.now(), 100, in_flight_cap=2) == []
    first = claimed[0].execution
    await store.record_reply("d1", first.id, S.SUCCEEDED, None, None, None, 1, clock.now())
    third = await store.claim_due(["d1"], clock.now(), 100, in_flight_cap=2)
    assert [d.execution.request_id for d in third] == [later.request.id]
    assert await store.claim_due(["off"], clock.now(), 100, in_flight_cap=2) == []


@pytest.mark.parametrize(
    ("policy", "after_ack"),
    [(DeliveryPolicy.SEQUENTIAL_ON_ACK, 1), (DeliveryPolicy.SEQUENTIAL_ON_RESULT, 0)],
)
async def test_sequential_policies(
    store: Store, clock: FakeClock, policy: DeliveryPolicy, after_ack: int
) -> None:
    await store.add_device(device("d1", delivery_policy=policy))
    for _ in range(3):
        await store.create_request(request(["d1"], clock), 100, clock.now())
    first = await store.claim_due(["d1"], clock.now(), 100, 100)
    assert len(first) == 1
    assert await store.claim_due(["d1"], clock.now(), 100, 100) == []
    ex = first[0].execution
    await store.record_reply("d1", ex.id, S.ACKNOWLEDGED, None, None, None, 1, clock.now())
    assert len(await store.claim_due(["d1"], clock.now(), 100, 100)) == after_ack


async def test_replies_from_other_devices_or_for_unknown_executions_change_nothing(
    store: Store, clock: FakeClock
) -> None:
    await setup_devices(store, "d1", "d2")
    await store.create_request(request(["d1"], clock), 100, clock.now())
    (dispatch,) = await store.claim_due(["d1"], clock.now(), 10, 10)
    foreign = await store.record_reply(
        "d2", dispatch.execution.id, S.SUCCEEDED, None, None, None, None, clock.now()
    )
    assert foreign == Ignored("foreign execution")
    unknown = await store.record_reply(
        "d1", "nope", S.SUCCEEDED, None, None, None, None, clock.now()
    )
    assert unknown == Ignored("unknown execution")
    current = await store.get_execution("acme", dispatch.execution.id)
    assert current.state is S.SENT


async def test_full_history_of_a_successful_execution(store: Store, clock: FakeClock) -> None:
    await setup_devices(store, "d1")
    await store.create_request(request(["d1"], clock, args={"a": 1}), 100, clock.now())
    (dispatch,) = await store.claim_due(None, clock.now(), 10, 10)
    assert dispatch.args == {"a": 1}
    eid = dispatch.execution.id
    for state, progress in ((S.ACKNOWLEDGED, None), (S.IN_PROGRESS, 50), (S.SUCCEEDED, None)):
        clock.advance(1)
        out = await store.record_reply(
            "d1", eid, state, None, progress, {"ok": True}, 1, clock.now()
        )
        assert isinstance(out, Change)
    late = await store.record_reply("d1", eid, S.FAILED, "late", None, None, 1, clock.now())
    assert isinstance(late, Ignored)
    history = await store.history("acme", eid)
    assert [(e.from_state, e.to_state) for e in history] == [
        (None, S.QUEUED),
        (S.QUEUED, S.SENT),
        (S.SENT, S.ACKNOWLEDGED),
        (S.ACKNOWLEDGED, S.IN_PROGRESS),
        (S.IN_PROGRESS, S.SUCCEEDED),
        (S.SUCCEEDED, S.SUCCEEDED),
    ]
    assert history[-1].kind == "reply"
    assert history[2].actor == "device:d1"
    final = await store.get_execution("acme", eid)
    assert final.state is S.SUCCEEDED
    assert final.output == {"ok": True}


async def test_timers_resend_retry_and_time_out(store: Store, clock: FakeClock) -> None:
    await setup_devices(store, "d1")
    req = request(["d1"], clock, timeout=30, ack_timeout=5, max_attempts=2)
    await store.create_request(req, 100, clock.now())
    await store.claim_due(None, clock.now(), 10, 10)
    assert await store.next_wake_at() == clock.now() + 5
    clock.advance(5)
    (resend,) = await store.fire_timers(clock.now(), 100)
    assert resend.after.state is S.QUEUED
    (d2,) = await store.claim_due(None, clock.now(), 10, 10)
    assert d2.execution.attempt == 2
    clock.advance(5)
    (waiting,) = await store.fire_timers(clock.now(), 100)
    assert waiting.after.state is S.SENT  # no attempt left: wait for the deadline
    clock.advance(25)
    (final,) = await store.fire_timers(clock.now(), 100)
    assert final.after.state is S.TIMED_OUT
    assert await store.next_wake_at() is None


async def test_ttl_expires_queued_executions_of_offline_devices(
    store: Store, clock: FakeClock
) -> None:
    await setup_devices(store, "off", online=False)
    created = await store.create_request(request(["off"], clock, ttl=60), 100, clock.now())
    clock.advance(59)
    assert await store.fire_timers(clock.now(), 100) == []
    clock.advance(1)
    (expired,) = await store.fire_timers(clock.now(), 100)
    assert expired.after.id == created.executions[0].id
    assert expired.after.state is S.EXPIRED
    await store.set_presence("off", True, clock.now())
    assert await store.claim_due(None, clock.now(), 10, 10) == []


async def test_failure_retry_then_success(store: Store, clock: FakeClock) -> None:
    await setup_devices(store, "d1")
    await store.create_request(request(["d1"], clock, retry_on=RetryOn.FAILURE), 100, clock.now())
    (d,) = await store.claim_due(None, clock.now(), 10, 10)
    out = await store.record_reply("d1", d.execution.id, S.FAILED, "x", None, None, 1, clock.now())
    assert isinstance(out, Change)
    assert out.after.state is S.QUEUED
    assert await store.claim_due(None, clock.now(), 10, 10) == []  # backing off
    clock.advance(1)
    (retry,) = await store.claim_due(None, clock.now(), 10, 10)
    assert retry.execution.attempt == 2
    stale = await store.record_reply(
        "d1", d.execution.id, S.FAILED, "x", None, None, 1, clock.now()
    )
    assert isinstance(stale, Ignored)
    assert stale.why == "stale"
    ok = await store.record_reply(
        "d1", d.execution.id, S.SUCCEEDED, None, None, None, 2, clock.now()
    )
    assert isinstance(ok, Change)
    assert ok.after.state is S.SUCCEEDED


async def test_cancel_execution_and_request(store: Store, clock: FakeClock) -> None:
    await setup_devices(store, "d1", "d2")
    created = await store.create_request(request(["d1", "d2"], clock), 100, clock.now())
    one = created.executions[0]
    change = await store.cancel_execution(
        "acme", one.id, "apikey:k", "no longer needed", clock.now()
    )
    assert change.after.state is S.CANCELLED
    with pytest.raises(IllegalTransition):
        await store.cancel_execution("acme", one.id, "apikey:k", None, clock.now())
    changes = await store.cancel_request("acme", created.request.id, "apikey:k", None, clock.now())
    assert [c.after.device_id for c in changes] == ["d2"]
    with pytest.raises(NotFound):
        await store.cancel_request("other", created.request.id, "apikey:k", None, clock.now())


async def test_update_state_over_rest(store: Store, clock: FakeClock) -> None:
    await setup_devices(store, "d1")
    created = await store.create_request(request(["d1"], clock), 100, clock.now())
    eid = created.executions[0].id
    with pytest.raises(IllegalTransition):
        await store.update_state("acme", eid, S.SUCCEEDED, None, None, None, "k", clock.now())
    await store.inbox("acme", "d1", clock.now(), 10, 10)
    done = await store.update_state(
        "acme", eid, S.SUCCEEDED, "ok", {"v": 2}, None, "k", clock.now()
    )
    assert done.state is S.SUCCEEDED
    assert done.output == {"v": 2}
    with pytest.raises(IllegalTransition) as info:
        await store.update_state("acme", eid, S.FAILED, None, None, None, "k", clock.now())
    assert info.value.extra["current_state"] == "SUCCEEDED"


async def test_reissue_links_a_new_execution(store: Store, clock: FakeClock) -> None:
    await setup_devices(store, "d1")
    created = await store.create_request(request(["d1"], clock), 100, clock.now())
    old = created.executions[0]
    with pytest.raises(IllegalTransition):
        await store.reissue("acme", old.id, "k", 100, clock.now())
    await store.cancel_execution("acme", old.id, "k", None, clock.now())
    new = await store.reissue("acme", old.id, "apikey:k", 100, clock.now())
    assert new.retry_of == old.id
    assert new.state is S.QUEUED
    assert new.request_id == old.request_id
    history = await store.history("acme", new.id)
    assert history[0].actor == "apikey:k"


async def test_inbox_marks_due_commands_sent_for_offline_polling_devices(
    store: Store, clock: FakeClock
) -> None:
    await setup_devices(store, "poller", online=False)
    await store.create_request(request(["poller"], clock, args={"x": 1}), 100, clock.now())
    (d,) = await store.inbox("acme", "poller", clock.now(), 10, 10)
    assert d.execution.state is S.SENT
    assert d.args == {"x": 1}
    assert await store.inbox("acme", "poller", clock.now(), 10, 10) == []
    with pytest.raises(NotFound):
        await store.inbox("other", "poller", clock.now(), 10, 10)
    polled = await store.get_device("acme", "poller")
    assert polled.last_seen == clock.now()


async def test_tenants_do_not_see_each_other(store: Store, clock: FakeClock) -> None:
    await setup_devices(store, "d1")
    created = await store.create_request(request(["d1"], clock), 100, clock.now())
    eid = created.executions[0].id
    for call in (
        store.get_execution("other", eid),
        store.history("other", eid),
        store.get_request("other", created.request.id),
        store.get_device("other", "d1"),
        store.cancel_execution("other", eid, "k", None, clock.now()),
    ):
        with pytest.raises(NotFound):
            await call
    assert (await store.list_executions("other", ExecutionFilter(), 10, 0)).count == 0
    assert (await store.list_devices("other", DeviceFilter(), 10, 0)).count == 0


async def test_listing_filters_and_pages(store: Store, clock: FakeClock) -> None:
    await setup_devices(store, "d1", "d2", "d3")
    reqs = []
    for command in ("REBOOT", "LOCK", "REBOOT"):
        clock.advance(1)
        reqs.append(
            await store.create_request(
                request(["d1", "d2"], clock, command=command), 100, clock.now()
            )
        )
    all_page = await store.list_executions("acme", ExecutionFilter(), 4, 0)
    assert all_page.count == 6
    assert len(all_page.results) == 4
    assert all_page.results[0].seq > all_page.results[-1].seq  # newest first
    second = await store.list_executions("acme", ExecutionFilter(), 4, 4)
    assert len(second.results) == 2
    by_request = ExecutionFilter(request_ids=(reqs[1].request.id,))
    assert {
        e.command for e in (await store.list_executions("acme", by_request, 10, 0)).results
    } == {"LOCK"}
    by_device = ExecutionFilter(device_ids=("d2",), command="REBOOT")
    assert (await store.list_executions("acme", by_device, 10, 0)).count == 2
    await store.claim_due(["d1"], clock.now(), 1, 10)
    sent_only = ExecutionFilter(states=(S.SENT,))
    assert (await store.list_executions("acme", sent_only, 10, 0)).count == 1
    since = ExecutionFilter(since=reqs[2].request.created_at)
    assert (await store.list_executions("acme", since, 10, 0)).count == 2
    requests = await store.list_requests("acme", RequestFilter(command="REBOOT"), 10, 0)
    assert [r.id for r in requests.results] == [reqs[2].request.id, reqs[0].request.id]
    assert (await store.list_requests("acme", RequestFilter(device_ids=("d3",)), 10, 0)).count == 0
    assert (await store.list_requests("acme", RequestFilter(device_ids=("d1",)), 10, 0)).count == 3
    assert (await store.list_requests("acme", RequestFilter(issued_by="nobody"), 10, 0)).count == 0


async def test_devices_registry(store: Store, clock: FakeClock) -> None:
    await setup_devices(store, "b", "a")
    with pytest.raises(AlreadyExists):
        await store.add_device(device("a", tenant="other"))
    page = await store.list_devices("acme", DeviceFilter(), 10, 0)
    assert [d.id for d in page.results] == ["a", "b"]
    updated = await store.update_device("acme", "a", {"labels": {"site": "x"}}, clock.now())
    assert updated.labels == {"site": "x"}
    assert (await store.get_device("acme", "a")).labels == {"site": "x"}
    result = await store.set_presence("a", False, clock.now())
    assert result is not None
    assert result[1] is True
    assert (await store.list_devices("acme", DeviceFilter(online=False), 10, 0)).count == 1
    assert await store.set_presence("ghost", True, clock.now()) is None


async def test_deleting_a_device_cancels_its_pending_work(store: Store, clock: FakeClock) -> None:
    await setup_devices(store, "d1")
    created = await store.create_request(request(["d1"], clock), 100, clock.now())
    changes = await store.delete_device("acme", "d1", "apikey:k", clock.now())
    assert [c.after.state for c in changes] == [S.CANCELLED]
    assert await store.find_device("d1") is None
    kept = await store.get_execution("acme", created.executions[0].id)
    assert kept.state is S.CANCELLED
    assert kept.reason == "device deleted"
    with pytest.raises(InvalidInput):
        await store.reissue("acme", kept.id, "k", 100, clock.now())


async def test_api_keys(store: Store, clock: FakeClock) -> None:
    key = ApiKey("0123456789abcdef", "acme", "hash", frozenset({"read"}), "ci", clock.now())
    await store.add_api_key(key)
    assert await store.get_api_key(key.id) == key
    assert [k.id for k in await store.list_api_keys("acme")] == [key.id]
    revoked = await store.revoke_api_key("acme", key.id, clock.now())
    assert revoked.revoked_at == clock.now()
    with pytest.raises(NotFound):
        await store.revoke_api_key("other", key.id, clock.now())


async def test_listeners_hear_committed_changes_only(store: Store, clock: FakeClock) -> None:
    heard: list[Sequence[Change]] = []
    store.add_listener(heard.append)
    await setup_devices(store, "d1")
    await store.create_request(request(["d1"], clock), 100, clock.now())
    assert [c.after.state for batch in heard for c in batch] == [S.QUEUED]
    with pytest.raises(UnknownDevices):
        await store.create_request(request(["ghost"], clock), 100, clock.now())
    assert len(heard) == 1


async def test_state_counts(store: Store, clock: FakeClock) -> None:
    await setup_devices(store, "d1")
    await store.create_request(request(["d1", "d1"], clock), 100, clock.now())
    await store.create_request(request(["d1"], clock), 100, clock.now())
    await store.claim_due(None, clock.now(), 1, 10)
    assert await store.state_counts() == {"QUEUED": 1, "SENT": 1}


async def test_a_failing_verb_leaves_no_trace(store: Store, clock: FakeClock) -> None:
    await setup_devices(store, "d1")
    req = request(["d1"], clock)
    await store.create_request(req, 100, clock.now())
    duplicate = replace(request(["d1"], clock), id=req.id)
    with pytest.raises(StoreError, match=r"(?i)duplicate|unique"):
        await store.create_request(duplicate, 100, clock.now())
    assert (await store.list_executions("acme", ExecutionFilter(), 10, 0)).count == 1


async def test_an_execution_that_can_go_now_is_created_sent_with_its_dispatch(
    store: Store, clock: FakeClock
) -> None:
    await setup_devices(store, "on")
    await setup_devices(store, "off", online=False)
    heard: list[Change] = []
    store.add_listener(heard.extend)
    created = await store.create_request(
        request(["on", "off"], clock, args={"a": 1}), 100, clock.now(), in_flight_cap=10
    )
    states = {e.device_id: e.state for e in created.executions}
    assert states == {"on": S.SENT, "off": S.QUEUED}
    dispatches = [c.dispatch for c in heard if c.dispatch is not None]
    assert [(d.execution.device_id, d.args) for d in dispatches] == [("on", {"a": 1})]
    sent = await store.get_execution("acme", dispatches[0].execution.id)
    assert sent.state is S.SENT
    assert sent.attempt == 1
    history = await store.history("acme", sent.id)
    assert [(e.from_state, e.to_state) for e in history] == [(None, S.QUEUED), (S.QUEUED, S.SENT)]


async def test_created_sent_only_when_nothing_waits_ahead_and_there_is_room(
    store: Store, clock: FakeClock
) -> None:
    await store.add_device(device("seq", delivery_policy=DeliveryPolicy.SEQUENTIAL_ON_RESULT))
    first = await store.create_request(request(["seq"], clock), 100, clock.now(), in_flight_cap=10)
    second = await store.create_request(request(["seq"], clock), 100, clock.now(), in_flight_cap=10)
    assert first.executions[0].state is S.SENT
    assert second.executions[0].state is S.QUEUED  # one at a time on this device
    await setup_devices(store, "burst")
    await store.create_request(request(["burst"], clock), 100, clock.now(), in_flight_cap=1)
    waiting = await store.create_request(
        request(["burst"], clock), 100, clock.now(), in_flight_cap=1
    )
    assert waiting.executions[0].state is S.QUEUED  # window full
    later = await store.create_request(request(["burst"], clock), 100, clock.now(), in_flight_cap=5)
    assert later.executions[0].state is S.QUEUED  # an older one is due first


async def test_many_requests_in_one_call_each_succeed_or_fail_alone(
    store: Store, clock: FakeClock
) -> None:
    await setup_devices(store, "d1")
    results = await store.create_requests(
        [request(["d1"], clock), request(["ghost"], clock), request(["d1"], clock)],
        100,
        clock.now(),
        10,
    )
    assert isinstance(results[1], UnknownDevices)
    assert [type(r).__name__ for r in results] == ["Created", "UnknownDevices", "Created"]
    assert (await store.list_executions("acme", ExecutionFilter(), 10, 0)).count == 2


async def test_requests_of_one_call_see_each_others_executions(
    store: Store, clock: FakeClock
) -> None:
    """A batch reads its devices once; the window and the queue bound still count the
    executions that earlier requests of the same batch created."""
    await setup_devices(store, "d1", "d2")
    results = await store.create_requests(
        [request(["d1"], clock) for _ in range(5)] + [request(["d2"], clock)],
        4,
        clock.now(),
        2,
    )
    assert [type(r).__name__ for r in results] == ["Created"] * 4 + ["QueueFull", "Created"]
    states = [r.executions[0].state for r in results if not isinstance(r, Exception)]
    assert states == [S.SENT, S.SENT, S.QUEUED, S.QUEUED, S.SENT]
    stored = await store.list_executions("acme", ExecutionFilter(device_ids=("d1",)), 10, 0)
    assert sorted(e.state for e in stored.results) == [S.QUEUED, S.QUEUED, S.SENT, S.SENT]
    for created in results[:4]:
        assert not isinstance(created, Exception)
        history = await store.history("acme", created.executions[0].id)
        assert [e.to_state for e in history][-1] is created.executions[0].state


async def test_replies_in_one_batch_are_applied_in_order_and_written_once(
    store: Store, clock: FakeClock
) -> None:
    await setup_devices(store, "d1", "d2")
    created = await store.create_request(request(["d1"], clock), 100, clock.now(), in_flight_cap=10)
    eid = created.executions[0].id
    heard: list[Change] = []
    store.add_listener(heard.extend)
    outcomes = await store.record_replies(
        [
            IncomingReply("d1", eid, S.ACKNOWLEDGED, None, None, None, 1),
            IncomingReply("d2", eid, S.FAILED, None, None, None, 1),
            IncomingReply("d1", "nope", S.SUCCEEDED, None, None, None, 1),
            IncomingReply("d1", eid, S.SUCCEEDED, "done", None, {"ok": 1}, 1),
            IncomingReply("d1", eid, S.SUCCEEDED, "done", None, {"ok": 1}, 1),
        ],
        clock.now(),
    )
    assert [o.after.state if isinstance(o, Change) else o.why for o in outcomes] == [
        S.ACKNOWLEDGED,
        "foreign execution",
        "unknown execution",
        S.SUCCEEDED,
        "duplicate",
    ]
    assert [(c.before.state, c.after.state) for c in heard if c.before] == [
        (S.SENT, S.ACKNOWLEDGED),
        (S.ACKNOWLEDGED, S.SUCCEEDED),
    ]
    final = await store.get_execution("acme", eid)
    assert final.state is S.SUCCEEDED
    assert final.output == {"ok": 1}
    assert [e.to_state for e in await store.history("acme", eid)][-2:] == [
        S.ACKNOWLEDGED,
        S.SUCCEEDED,
    ]


async def test_counts_stop_at_the_cap_and_say_so(
    store: Store, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    import courier.store.memory
    import courier.store.sqlite_tx

    monkeypatch.setattr(courier.store.sqlite_tx, "COUNT_CAP", 3)
    monkeypatch.setattr(courier.store.memory, "COUNT_CAP", 3)
    await setup_devices(store, "d1")
    for _ in range(5):
        await store.create_request(request(["d1"], clock), 100, clock.now())
    page = await store.list_executions("acme", ExecutionFilter(), 2, 0)
    assert (page.count, page.capped, len(page.results)) == (3, True, 2)
    exact = await store.list_executions("acme", ExecutionFilter(), 2, 0)
    assert exact.capped
    few = await store.list_requests("acme", RequestFilter(command="NONE"), 2, 0)
    assert (few.count, few.capped) == (0, False)


async def test_queued_routes(store: Store, clock: FakeClock) -> None:
    await setup_devices(store, "on")
    await setup_devices(store, "off", online=False)
    await store.create_request(request(["on", "off"], clock), 100, clock.now(), in_flight_cap=10)
    assert await store.queued_routes() == ["off"]


async def test_an_attached_device_is_online_only_while_its_gateway_is(store: Store) -> None:
    await store.add_device(device("gw", kind=DeviceKind.GATEWAY))
    await store.set_attached_presence("gw", "a1", True, 2.0)
    await store.add_device(device("plain"))
    online = DeviceFilter(online=True)
    assert [d.id for d in (await store.list_devices("acme", online, 10, 0)).results] == [
        "a1",
        "gw",
        "plain",
    ]
    await store.set_presence("gw", False, 3.0)
    assert [d.id for d in (await store.list_devices("acme", online, 10, 0)).results] == ["plain"]
    offline = await store.list_devices("acme", DeviceFilter(online=False), 10, 0)
    assert [(d.id, d.online) for d in offline.results] == [("a1", False), ("gw", False)]
    assert not (await store.get_device("acme", "a1")).online
    stored = await store.find_device("a1")
    assert stored is not None
    assert stored.online
    await store.set_presence("gw", True, 4.0)
    assert (await store.get_device("acme", "a1")).online
