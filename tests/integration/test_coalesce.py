"""Concurrent calls gathered into groups: one group at a time, results to their callers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from courier.clock import FakeClock
from courier.coalesce import Coalescer
from courier.core.records import CommandRequest
from courier.errors import UnknownDevices
from courier.schemas.api import CommandRequestIn, DeviceIn
from courier.service import Service, ServiceConfig
from courier.store import open_store


class Recorder:
    def __init__(self) -> None:
        self.groups: list[list[int]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.running = 0
        self.most_running = 0

    async def run(self, items: list[int]) -> list[int | Exception]:
        self.groups.append(items)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await self.release.wait()
        finally:
            self.running -= 1
        if 99 in items:
            raise RuntimeError("the whole group failed")
        return [ValueError(f"bad {i}") if i < 0 else i * 10 for i in items]


async def test_calls_of_one_loop_iteration_share_a_group_and_get_their_own_results() -> None:
    recorder = Recorder()
    coalescer = Coalescer(recorder.run)
    results = await asyncio.gather(*(coalescer.submit(i) for i in (1, 2, 3)))
    assert results == [10, 20, 30]
    assert recorder.groups == [[1, 2, 3]]


async def test_an_item_that_fails_fails_alone() -> None:
    coalescer = Coalescer(Recorder().run)
    results = await asyncio.gather(
        coalescer.submit(1), coalescer.submit(-1), coalescer.submit(2), return_exceptions=True
    )
    assert (results[0], results[2]) == (10, 20)
    assert isinstance(results[1], ValueError)
    assert str(results[1]) == "bad -1"


async def test_calls_made_while_a_group_runs_join_the_next_one() -> None:
    recorder = Recorder()
    recorder.release.clear()
    coalescer = Coalescer(recorder.run)
    first = asyncio.gather(coalescer.submit(1), coalescer.submit(2))
    await asyncio.sleep(0.01)  # the first group is running, held
    later = asyncio.gather(*(coalescer.submit(i) for i in (3, 4, 5)))
    await asyncio.sleep(0.01)
    assert recorder.groups == [[1, 2]]
    recorder.release.set()
    assert list(await first) == [10, 20]
    assert list(await later) == [30, 40, 50]
    assert recorder.groups == [[1, 2], [3, 4, 5]]
    assert recorder.most_running == 1


async def test_a_failing_group_fails_its_callers_and_the_next_group_still_runs() -> None:
    recorder = Recorder()
    recorder.release.clear()
    coalescer = Coalescer(recorder.run)
    doomed = asyncio.gather(coalescer.submit(99), coalescer.submit(1), return_exceptions=True)
    await asyncio.sleep(0.01)
    after = coalescer.submit(7)
    recorder.release.set()
    outcomes = await doomed
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    assert await after == 70
    # Idle again: the next call starts a new group by itself.
    assert await coalescer.submit(8) == 80
    assert recorder.groups == [[99, 1], [7], [8]]


async def test_cancelled_while_running_cancels_its_callers() -> None:
    recorder = Recorder()
    recorder.release.clear()
    coalescer = Coalescer(recorder.run)
    waiting = asyncio.ensure_future(coalescer.submit(1))
    await asyncio.sleep(0.01)
    for task in asyncio.all_tasks():
        if task.get_coro().__qualname__ == "Coalescer._drain":  # type: ignore[union-attr]
            task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    recorder.release.set()
    assert await asyncio.wait_for(coalescer.submit(2), 1) == 20  # it starts afresh


async def test_commands_created_at_once_share_one_store_transaction(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/c.db")
    await store.open()
    service = Service(store, ServiceConfig(), FakeClock(start=1_795_000_000.0))
    for device in ("d1", "d2"):
        await service.register_device("acme", DeviceIn(id=device))
    await service.definition("acme", "PING")  # cached, as it is for a busy command
    writes: list[int] = []
    create_requests = store.create_requests

    async def counted(requests: Sequence[CommandRequest], *args: Any) -> Any:
        writes.append(len(requests))
        return await create_requests(requests, *args)

    store.create_requests = counted  # type: ignore[method-assign,assignment]
    bodies = [["d1"], ["d2"], ["ghost"], ["d1", "d2"]]
    outcomes = await asyncio.gather(
        *(
            service.create_command("acme", CommandRequestIn(devices=d, command="PING"), "t")
            for d in bodies
        ),
        return_exceptions=True,
    )
    assert writes == [4]
    assert isinstance(outcomes[2], UnknownDevices)
    created = [o for o in outcomes if not isinstance(o, BaseException)]
    assert [[e.device_id for e in c.executions] for c in created] == [["d1"], ["d2"], ["d1", "d2"]]
    for c in created:
        assert (await store.get_request("acme", c.request.id)).id == c.request.id
    await store.close()
