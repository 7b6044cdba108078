"""What only the SQLite backend promises: durability, migrations, group commit."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from courier.clock import FakeClock
from courier.core import lifecycle
from courier.core.records import Change
from courier.errors import StoreError, UnknownDevices
from courier.schemas.states import ExecutionState
from courier.store import ExecutionFilter, open_store, verbs
from courier.store.sqlite import WRITER_CHECKPOINT, SqliteBackend
from courier.store.sqlite_tx import Q
from courier.store.tx import Tx
from tests.helpers import device, request


async def test_everything_survives_a_reopen(tmp_path: Path, clock: FakeClock) -> None:
    url = f"sqlite:///{tmp_path}/c.db"
    store = open_store(url)
    await store.open()
    await store.add_device(device("d1"))
    created = await store.create_request(request(["d1"], clock), 100, clock.now())
    await store.claim_due(None, clock.now(), 10, 10)
    await store.close()
    reopened = open_store(url)
    await reopened.open()
    execution = await reopened.get_execution("acme", created.executions[0].id)
    assert execution.state is ExecutionState.SENT
    assert len(await reopened.history("acme", execution.id)) == 2
    await reopened.close()


async def test_migrations_are_recorded_and_applied_once(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    for _ in range(2):
        store = open_store(f"sqlite:///{path}")
        await store.open()
        await store.close()
    conn = sqlite3.connect(path)
    versions = conn.execute("SELECT version, name FROM schema_migrations").fetchall()
    mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    conn.close()
    assert versions == [
        (1, "0001_initial.sql"),
        (2, "0002_fleet.sql"),
        (3, "0003_documents.sql"),
        (4, "0004_device_security.sql"),
        (5, "0005_online_devices.sql"),
    ]
    assert mode == "wal"


async def test_concurrent_writes_share_commits_and_a_failing_one_spoils_nothing(
    tmp_path: Path, clock: FakeClock
) -> None:
    backend = SqliteBackend(str(tmp_path / "c.db"))
    store = open_store(f"sqlite:///{tmp_path}/c.db")
    store.backend = backend
    backend.on_commit = store._notify
    await store.open()
    await store.add_device(device("d1"))
    good = [store.create_request(request(["d1"], clock), 10_000, clock.now()) for _ in range(300)]
    bad = [store.create_request(request(["ghost"], clock), 10_000, clock.now()) for _ in range(5)]
    results = await asyncio.gather(*good, *bad, return_exceptions=True)
    assert sum(1 for r in results if isinstance(r, UnknownDevices)) == 5
    assert sum(1 for r in results if not isinstance(r, BaseException)) == 300
    page = await store.list_executions("acme", ExecutionFilter(), 1, 0)
    assert page.count == 300
    await store.close()


async def test_commits_reach_the_database_file_without_the_writer_checkpointing(
    tmp_path: Path, clock: FakeClock
) -> None:
    """The checkpointer copies committed pages out of the WAL soon after a commit, far below
    the WAL size at which the writer would checkpoint itself."""
    path = tmp_path / "c.db"
    store = open_store(f"sqlite:///{path}")
    await store.open()
    await store.add_device(device("d1"))
    await asyncio.sleep(0.3)
    before = path.stat().st_size
    for _ in range(20):
        await store.create_request(request(["d1"], clock), 10_000, clock.now())
    wal_pages = (tmp_path / "c.db-wal").stat().st_size // 4096
    assert wal_pages < WRITER_CHECKPOINT
    deadline = asyncio.get_running_loop().time() + 5
    while path.stat().st_size == before:
        assert asyncio.get_running_loop().time() < deadline, "no checkpoint within 5 s"
        await asyncio.sleep(0.05)
    await store.close()


async def test_a_job_alone_that_fails_after_writing_leaves_nothing(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/c.db")
    await store.open()

    def failing(tx: Tx) -> None:
        tx.insert_device(device("d1"))
        raise UnknownDevices(["ghost"])

    with pytest.raises(UnknownDevices):
        await store.backend.write(failing)  # alone in its transaction: no savepoint
    assert await store.find_device("d1") is None
    await store.add_device(device("d2"))  # the writer goes on
    assert await store.find_device("d2") is not None
    await store.close()


async def test_closed_store_refuses_work(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/c.db")
    with pytest.raises(StoreError, match="not open"):
        await store.add_device(device("d1"))
    await store.open()
    await store.close()
    with pytest.raises(StoreError, match="not open"):
        await store.find_device("d1")


async def test_unwritable_location_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = open_store(f"sqlite:///{blocker}/c.db")
    with pytest.raises(StoreError, match="cannot open SQLite store"):
        await store.open()


async def test_rows_written_behind_are_seen_by_the_same_transaction(
    tmp_path: Path, clock: FakeClock
) -> None:
    """New rows wait in memory until the transaction reads or ends: a read sees them, and
    several updates of one execution land in order."""
    store = open_store(f"sqlite:///{tmp_path}/c.db")
    await store.open()
    await store.add_device(device("d1"))

    def job(tx: Tx) -> tuple[int, ExecutionState | None]:
        created = verbs.create_request(tx, request(["d1"], clock), 100, clock.now(), 10)
        sent = created.executions[0]
        assert sent.state is ExecutionState.SENT
        acked = lifecycle.reply(
            sent, ExecutionState.ACKNOWLEDGED, clock.now(), 0.5, "device:d1", None, None, None, 1
        )
        assert isinstance(acked, Change)
        done = lifecycle.reply(
            acked.after, ExecutionState.SUCCEEDED, clock.now(), 0.5, "device:d1", None, None, None
        )
        assert isinstance(done, Change)
        tx.update_executions([(sent, acked.after), (acked.after, done.after)])
        seen = tx.get_executions([sent.id])[sent.id]
        return len(tx.pending_counts(["d1"])), seen.state

    pending, state = await store.backend.write(job)
    assert (pending, state) == (0, ExecutionState.SUCCEEDED)
    page = await store.list_executions("acme", ExecutionFilter(), 10, 0)
    assert [e.state for e in page.results] == [ExecutionState.SUCCEEDED]
    await store.close()


@pytest.mark.parametrize("idle_online", [0, 30])
async def test_the_sweep_finds_the_due_routes_from_either_side(
    tmp_path: Path, clock: FakeClock, idle_online: int
) -> None:
    """Few online devices: walked from them; many (idle ones): from the queued executions.
    Either way only online devices with due work are found."""
    store = open_store(f"sqlite:///{tmp_path}/c.db")
    await store.open()
    for device_id, online in (
        ("busy-a", True),
        ("busy-b", True),
        ("idle", True),
        ("stale", True),
        ("away", False),
    ):
        await store.add_device(device(device_id, online=online))
    for i in range(idle_online):
        await store.add_device(device(f"extra-{i}", online=True))
    for device_id in ("busy-a", "busy-b", "away", "away", "away"):
        await store.create_request(request([device_id], clock), 100, clock.now())
    await store.create_request(request(["stale"], clock, ttl=60), 100, clock.now())
    clock.advance(120)  # stale's command expired: not due, though its device is online

    def sizes_and_routes(tx: Tx) -> tuple[tuple[int, int], list[str]]:
        conn = tx.conn  # type: ignore[attr-defined]
        sizes = conn.execute(Q["sweep_sizes"]).fetchone()
        return sizes, tx.routes_with_due(clock.now(), 100)

    (online_count, queued_count), routes = await store.backend.write(sizes_and_routes)
    assert (online_count < queued_count) == (idle_online == 0)  # each case: its own side
    assert routes == ["busy-a", "busy-b"]
    await store.close()
