"""The fleet part of the Store contract, against every backend."""

from __future__ import annotations

from dataclasses import replace
from datetime import time

import pytest

from courier.clock import FakeClock
from courier.core.catalogue import BUILTINS, Definition
from courier.core.records import (
    CommandRequest,
    DeviceKind,
    DeviceType,
    RetryOn,
    Rollout,
    TargetFilter,
)
from courier.core.schedule import Schedule, ScheduleKind, TimeType
from courier.errors import AlreadyExists, NotFound, UnknownDevices, UnknownGroups
from courier.schemas.states import ExecutionState
from courier.store import ExecutionFilter, Store
from courier.store.verbs import IncomingReply
from tests.helpers import device, request

S = ExecutionState
T0 = 1_795_392_000.0  # 2026-11-23T00:00:00Z, a Monday


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


async def fleet(store: Store, clock: FakeClock) -> None:
    for name, labels, online, kind in (
        ("a", {"site": "north"}, True, DeviceKind.DEVICE),
        ("b", {"site": "north", "tier": "gold"}, False, DeviceKind.DEVICE),
        ("c", {"site": "south"}, True, DeviceKind.GATEWAY),
        ("d", {}, True, DeviceKind.DEVICE),
    ):
        await store.add_device(device(name, online=online, labels=labels, kind=kind))
    await store.create_group("acme", "north", ["a", "b"], clock.now(), "g1")
    await store.create_group("acme", "gateways", ["c"], clock.now(), "g2")
    await store.create_group("acme", "mixed", ["b", "c", "d"], clock.now(), "g3")


def targets(command_type: str, **kw: object) -> dict[str, object]:
    return {"command_type": command_type, **kw}


async def test_groups_crud_and_members(store: Store, clock: FakeClock) -> None:
    await fleet(store, clock)
    group = await store.get_group("acme", "g1")
    assert (group.name, group.size) == ("north", 2)
    with pytest.raises(AlreadyExists):
        await store.create_group("acme", "north", [], clock.now(), None)
    with pytest.raises(UnknownDevices):
        await store.create_group("acme", "ghosts", ["nope"], clock.now(), None)
    assert await store.add_member("acme", "g1", "d", clock.now()) is True
    assert await store.add_member("acme", "g1", "d", clock.now()) is False
    members = await store.group_members("acme", "g1", 10, 0)
    assert [d.id for d in members.results] == ["a", "b", "d"]
    await store.remove_member("acme", "g1", "a")
    with pytest.raises(NotFound):
        await store.remove_member("acme", "g1", "a")
    renamed = await store.rename_group("acme", "g1", "up north", clock.now())
    assert renamed.name == "up north"
    with pytest.raises(AlreadyExists):
        await store.rename_group("acme", "g2", "up north", clock.now())
    listed = await store.list_groups("acme", 10, 0)
    assert [g.name for g in listed.results] == ["gateways", "mixed", "up north"]
    with pytest.raises(NotFound):
        await store.get_group("other", "g1")
    await store.delete_device("acme", "d", "k", clock.now())
    assert (await store.get_group("acme", "g3")).size == 2
    await store.delete_group("acme", "g3")
    with pytest.raises(NotFound):
        await store.get_group("acme", "g3")
    assert await store.find_device("b") is not None


async def test_group_requests_reach_each_member_once(store: Store, clock: FakeClock) -> None:
    await fleet(store, clock)
    req = replace(request([], clock), command_type="GROUP", groups=["g1", "g2", "g3"])
    created = await store.create_request(req, 100, clock.now())
    assert [e.device_id for e in created.executions] == ["a", "b", "c", "d"]
    with pytest.raises(UnknownGroups) as info:
        await store.create_request(replace(req, groups=["g1", "nope"]), 100, clock.now())
    assert info.value.extra["groups"] == ["nope"]


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (TargetFilter(labels=(("site", "north"),)), ["a", "b"]),
        (TargetFilter(labels=(("site", "north"), ("tier", "gold"))), ["b"]),
        (TargetFilter(kind=DeviceKind.GATEWAY), ["c"]),
        (TargetFilter(online=True), ["a", "c", "d"]),
        (TargetFilter(groups=("g3",), online=True), ["c", "d"]),
        (TargetFilter(devices=("a",), groups=("g2",)), ["a", "c"]),
        (TargetFilter(devices=("a", "d"), labels=(("site", "north"),)), ["a"]),
    ],
)
async def test_dynamic_targets(
    store: Store, clock: FakeClock, flt: TargetFilter, expected: list[str]
) -> None:
    await fleet(store, clock)
    req = replace(request([], clock), command_type="DYNAMIC", filter=flt)
    created = await store.create_request(req, 100, clock.now())
    assert sorted(e.device_id for e in created.executions) == expected


async def test_dynamic_targets_refuse_unknown_ids(store: Store, clock: FakeClock) -> None:
    await fleet(store, clock)
    bad = replace(
        request([], clock),
        command_type="DYNAMIC",
        filter=TargetFilter(devices=("a", "zz"), groups=("g1",)),
    )
    with pytest.raises(UnknownDevices):
        await store.create_request(bad, 100, clock.now())
    bad = replace(bad, filter=TargetFilter(groups=("g1", "gx")))
    with pytest.raises(UnknownGroups):
        await store.create_request(bad, 100, clock.now())


async def test_device_type_on_groups(store: Store, clock: FakeClock) -> None:
    await fleet(store, clock)

    def group_request(device_type: DeviceType) -> CommandRequest:
        return replace(
            request([], clock), command_type="GROUP", groups=["g3"], device_type=device_type
        )

    active = await store.create_request(group_request(DeviceType.ACTIVE), 100, clock.now())
    assert [e.device_id for e in active.executions] == ["c", "d"]
    inactive = await store.create_request(group_request(DeviceType.INACTIVE), 100, clock.now())
    assert [e.device_id for e in inactive.executions] == ["b"]


async def test_definitions(store: Store, clock: FakeClock) -> None:
    assert await store.definition_of("acme", "REBOOT") == BUILTINS["REBOOT"]
    assert await store.definition_of("acme", "CUSTOM") is None
    mine = Definition("CUSTOM", {"type": "object", "required": ["x"]}, timeout=5)
    stored = await store.put_definition("acme", mine, clock.now())
    assert stored.source == "tenant"
    assert await store.definition_of("acme", "CUSTOM") == stored
    assert await store.definition_of("other", "CUSTOM") is None
    assert [d.name for d in await store.list_definitions("acme")] == ["CUSTOM"]
    with pytest.raises(AlreadyExists):
        await store.put_definition("acme", Definition("REBOOT"), clock.now())
    with pytest.raises(AlreadyExists):
        await store.delete_definition("acme", "WIPE")
    await store.delete_definition("acme", "CUSTOM")
    with pytest.raises(NotFound):
        await store.delete_definition("acme", "CUSTOM")


async def test_tenant_time_zone(store: Store, clock: FakeClock) -> None:
    await store.add_device(device("a"))
    assert (await store.get_tenant("acme")).timezone is None
    assert (await store.set_tenant_timezone("acme", "Asia/Tokyo")).timezone == "Asia/Tokyo"
    assert (await store.get_tenant("acme")).timezone == "Asia/Tokyo"
    with pytest.raises(NotFound):
        await store.get_tenant("nobody")


def nine_to_ten(kind: ScheduleKind, time_type: TimeType) -> Schedule:
    return Schedule(kind, daily_start=time(9), daily_end=time(10), time_type=time_type)


async def test_scheduled_executions_follow_each_devices_time_zone(
    store: Store, clock: FakeClock
) -> None:
    await store.add_device(device("paris", timezone="Europe/Paris"))
    await store.add_device(device("tokyo", timezone="Asia/Tokyo"))
    clock.set(T0 - 3600)  # Sunday 23:00 UTC: 08:00 in Tokyo, midnight in Paris
    req = replace(
        request(["paris", "tokyo"], clock),
        schedule=nine_to_ten(ScheduleKind.WINDOW, TimeType.DEVICE),
    )
    created = await store.create_request(req, 100, clock.now(), in_flight_cap=10)
    wakes = {e.device_id: (e.state, e.wake_at) for e in created.executions}
    assert wakes == {
        "tokyo": (S.SCHEDULED, T0),  # 09:00 JST = 00:00 UTC
        "paris": (S.SCHEDULED, T0 + 8 * 3600),  # 09:00 CET = 08:00 UTC
    }
    assert await store.claim_due(None, clock.now(), 10, 10) == []
    clock.set(T0)
    fired = await store.fire_timers(clock.now(), 100)
    assert [c.after.device_id for c in fired] == ["tokyo"]
    (dispatch,) = await store.claim_due(None, clock.now(), 10, 10)
    assert dispatch.execution.device_id == "tokyo"
    clock.set(T0 + 8 * 3600)
    await store.fire_timers(clock.now(), 100)
    (dispatch,) = await store.claim_due(None, clock.now(), 10, 10)
    assert dispatch.execution.device_id == "paris"


async def test_a_window_closing_unsent_waits_for_the_next(store: Store, clock: FakeClock) -> None:
    await store.add_device(device("off", online=False))
    req = replace(
        request(["off"], clock, ttl=5 * 86400),
        schedule=nine_to_ten(ScheduleKind.WINDOW, TimeType.CONSOLE),
    )
    await store.set_tenant_timezone("acme", "UTC")
    (e,) = (await store.create_request(req, 100, clock.now())).executions
    clock.set(T0 + 9 * 3600)
    await store.fire_timers(clock.now(), 100)
    assert (await store.get_execution("acme", e.id)).state is S.QUEUED
    clock.set(T0 + 10 * 3600)
    await store.fire_timers(clock.now(), 100)
    back = await store.get_execution("acme", e.id)
    assert (back.state, back.wake_at) == (S.SCHEDULED, T0 + 33 * 3600)
    await store.set_presence("off", True, clock.now())
    assert await store.claim_due(None, clock.now(), 10, 10) == []  # outside the window


async def test_a_rollout_aborts_past_its_failure_threshold(store: Store, clock: FakeClock) -> None:
    names = [f"r{i:02d}" for i in range(30)]
    for name in names:
        await store.add_device(device(name))
    req = replace(
        request(names, clock, retry_on=RetryOn.TIMEOUT),
        rollout=Rollout(max_per_minute=600, abort_failure_percent=20, abort_min_finished=5),
    )
    created = await store.create_request(req, 100, clock.now(), in_flight_cap=10)
    assert sum(e.state is S.SENT for e in created.executions) == 1  # staggered 0.1 s apart
    clock.advance(1)
    sent = await store.claim_due(None, clock.now(), 100, 10)
    assert len(sent) == 10
    outcomes = [
        IncomingReply(
            d.execution.route_id,
            d.execution.id,
            S.FAILED if i < 3 else S.SUCCEEDED,
            None,
            None,
            None,
            1,
        )
        for i, d in enumerate(sent[:6])
    ]
    await store.record_replies(outcomes, clock.now())
    fetched = await store.get_request("acme", created.request.id)
    assert fetched.rollout_state is not None
    assert "3 of 6 finished" in fetched.rollout_state
    page = await store.list_executions(
        "acme", ExecutionFilter(request_ids=(created.request.id,)), 100, 0
    )
    states = [e.state for e in page.results]
    assert states.count(S.CANCELLED) == 19  # never sent: stopped
    assert states.count(S.SENT) == 5  # on their devices: left to finish
    assert isinstance(CommandRequest, type)
