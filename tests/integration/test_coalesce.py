"""Concurrent calls gathered into groups, closed when their transaction starts; results to
their callers."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from courier.bridge import Bridge, BridgeConfig
from courier.clock import FakeClock
from courier.coalesce import Coalescer
from courier.errors import UnknownDevices
from courier.metrics import Metrics
from courier.schemas.api import CommandRequestIn, DeviceIn
from courier.schemas.states import ExecutionState
from courier.service import Service, ServiceConfig
from courier.store import ExecutionFilter, Store, open_store
from courier.store.base import Gathered, taken
from courier.store.tx import Tx
from courier.topics import Topics
from courier.transport import ConnectOptions, Message
from courier.transport.memory import MemoryBroker
from tests.helpers import device, request


class Recorder:
    """A store in miniature: one transaction at a time, each taking its group as it starts."""

    def __init__(self) -> None:
        self.groups: list[list[int]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.writer = asyncio.Lock()
        self.running = 0
        self.most_running = 0

    async def run(self, take: Callable[[], list[int]]) -> list[int | Exception]:
        async with self.writer:
            items = take()
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


def count_taken(store: Store, method: str, counts: list[int]) -> None:
    """Wrap a gathering write of `store`: each transaction adds how many items it took."""
    original = getattr(store, method)

    async def counted(items: Gathered[Any], *args: Any) -> Any:
        def take() -> Sequence[Any]:
            found = taken(items)
            counts.append(len(found))
            return found

        return await original(take, *args)

    setattr(store, method, counted)


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
        if task.get_coro().__qualname__ == "Coalescer._group":  # type: ignore[union-attr]
            task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    recorder.release.set()
    assert await asyncio.wait_for(coalescer.submit(2), 1) == 20  # it starts afresh


async def test_commands_created_at_once_share_one_store_transaction(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/c.db")
    await store.open()
    service = Service(store, ServiceConfig(), FakeClock(start=1_795_000_000.0))
    for device_id in ("d1", "d2"):
        await service.register_device("acme", DeviceIn(id=device_id))
    await service.definition("acme", "PING")  # cached, as it is for a busy command
    writes: list[int] = []
    count_taken(store, "create_requests", writes)
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


async def test_commands_created_while_the_writer_is_busy_join_one_transaction(
    tmp_path: Path,
) -> None:
    """A group closes when its transaction starts, not when it is handed to the store: calls
    made over several loop iterations while the writer is held all share the next commit."""
    store = open_store(f"sqlite:///{tmp_path}/c.db")
    await store.open()
    clock = FakeClock(start=1_795_000_000.0)
    service = Service(store, ServiceConfig(), clock)
    await service.register_device("acme", DeviceIn(id="d1"))
    await service.definition("acme", "PING")
    writes: list[int] = []
    count_taken(store, "create_requests", writes)
    hold = threading.Event()

    def busy(tx: Tx) -> None:
        hold.wait(10)

    holding = asyncio.ensure_future(store.backend.write(busy))
    await asyncio.sleep(0.05)  # the writer runs `busy`
    creates = []
    for _ in range(3):  # three loop iterations apart
        body = CommandRequestIn(devices=["d1"], command="PING")
        creates.append(asyncio.ensure_future(service.create_command("acme", body, "t")))
        await asyncio.sleep(0.01)
        clock.advance(1)
    assert writes == []
    hold.set()
    await holding
    created = await asyncio.gather(*creates)
    assert writes == [3]
    page = await store.list_executions("acme", ExecutionFilter(), 10, 0)
    assert sorted(e.id for e in page.results) == sorted(c.executions[0].id for c in created)
    # Each execution is no older than its request: the time is read as the group is taken.
    assert all(c.executions[0].created_at >= c.request.created_at for c in created)
    await store.close()


async def test_replies_received_while_the_writer_is_busy_join_one_transaction(
    tmp_path: Path,
) -> None:
    """The bridge's batch of replies is taken when its transaction starts: replies received
    over several loop iterations while the writer is held are recorded by one commit, and
    each message's future (its PUBACK) is done only then."""
    clock = FakeClock(start=1_795_000_000.0)
    store = open_store(f"sqlite:///{tmp_path}/c.db")
    await store.open()
    await store.add_device(device("d1"))
    sent = []
    for _ in range(2):
        created = await store.create_request(request(["d1"], clock), 100, clock.now(), 10)
        sent += created.executions
    assert all(e.state is ExecutionState.SENT for e in sent)
    transport = MemoryBroker().transport(ConnectOptions(client_id="courier"))
    bridge = Bridge(store, transport, BridgeConfig(), clock, Metrics())
    recorded: list[int] = []
    count_taken(store, "record_replies", recorded)
    hold = threading.Event()
    holding = asyncio.ensure_future(store.backend.write(lambda tx: hold.wait(10)))
    await asyncio.sleep(0.05)
    topics = Topics("courier")
    acks = []
    for execution in sent:  # two loop iterations apart
        message = Message(topics.reply("d1", execution.id), b'{"state": "SUCCEEDED"}', 1)
        acks.append(bridge.inbound.handle_nowait(message))
        await asyncio.sleep(0.01)
    assert recorded == []
    assert not any(a.done() for a in acks if a is not None)
    hold.set()
    await holding
    await asyncio.gather(*(a for a in acks if a is not None))
    assert recorded == [2]
    for execution in sent:
        assert (await store.get_execution("acme", execution.id)).state is ExecutionState.SUCCEEDED
    await store.close()
