"""SQLite backend: one writer thread with group commit, a small pool of reader threads.

Every write job runs in the writer thread inside a shared BEGIN IMMEDIATE ... COMMIT with the
jobs queued behind it (each in its own SAVEPOINT, so one failing job leaves the others
intact), then all of them are answered at once on the event loop. With WAL and
synchronous=FULL a commit is durable; batching makes its fsync cost per batch, not per row.

A checkpointer thread copies committed pages from the WAL into the database file shortly
after each commit, so the writer rarely has to (it still checkpoints once the WAL holds
WRITER_CHECKPOINT pages, which lets the next transaction start the WAL over). Done by the
writer alone, a checkpoint's writes and fsync held up the commits behind it: 1.5 s once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from courier.core.records import Change
from courier.errors import CourierError, StoreError
from courier.store.queries import migrations
from courier.store.sqlite_many import STATEMENT_CACHE
from courier.store.sqlite_tx import SqliteTx
from courier.store.tx import ReadTx, Tx

T = TypeVar("T")
log = logging.getLogger(__name__)
MAX_BATCH = 1000
WRITER_CHECKPOINT = 4000  # pages (16 MiB): the WAL's size before the writer checkpoints
CHECKPOINT_PAUSE = 0.1  # seconds between the checkpointer's runs
_STOP = object()


class _Job:
    __slots__ = ("fn", "future")

    def __init__(self, fn: Callable[[Tx], Any], future: asyncio.Future[Any]) -> None:
        self.fn = fn
        self.future = future


def _null(value: None) -> None:
    return None


# sqlite3 binds exact int, float, str and bytes directly; any other value (None, bool) is
# first offered to the adapters, and with none registered two attribute look-ups fail, each
# raising and clearing an AttributeError: 0.2 us per parameter, some 20 parameters per
# command. A registered adapter is found in one dict look-up; what is bound is unchanged
# (NULL, 0 or 1).
sqlite3.register_adapter(type(None), _null)
sqlite3.register_adapter(bool, int)


def connect(path: str, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path,
        isolation_level=None,
        check_same_thread=False,
        timeout=30.0,
        cached_statements=STATEMENT_CACHE,
    )
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute("PRAGMA cache_size = -65536")
    return conn


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Apply the migrations this database lacks; answers the names applied."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
    )
    done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    applied: list[str] = []
    for version, name, sql in migrations("sqlite"):
        if version in done:
            continue
        record = (
            "INSERT INTO schema_migrations (version, name, applied_at) "
            f"VALUES ({version}, '{name}', {time.time()});"
        )
        conn.executescript(f"BEGIN IMMEDIATE;\n{sql}\n{record}\nCOMMIT;")
        applied.append(name)
    return applied


class SqliteBackend:
    """Runs transactions on an SQLite file: writes in one thread, reads in a pool."""

    def __init__(self, path: str, synchronous: str = "FULL", readers: int = 4) -> None:
        self.path = path
        self.synchronous = synchronous
        self.on_commit: Callable[[Sequence[Change]], None] | None = None
        self._readers = readers
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._read_conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._failure: BaseException | None = None
        self._committed = threading.Event()
        self._closing = threading.Event()
        self._checkpointer: threading.Thread | None = None

    async def open(self) -> None:
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        try:
            conn, applied = await asyncio.to_thread(self._open_writer)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open SQLite store {self.path}: {exc}") from exc
        if applied:
            log.info("store migrated", extra={"path": self.path, "migrations": applied})
        self._pool = ThreadPoolExecutor(self._readers, thread_name_prefix="courier-sqlite-read")
        self._thread = threading.Thread(
            target=self._write_loop, args=(conn,), name="courier-sqlite-write", daemon=True
        )
        self._thread.start()
        self._closing.clear()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, name="courier-sqlite-checkpoint", daemon=True
        )
        self._checkpointer.start()

    def _open_writer(self) -> tuple[sqlite3.Connection, list[str]]:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        conn = connect(self.path, self.synchronous)
        applied = migrate(conn)
        conn.execute(f"PRAGMA wal_autocheckpoint = {WRITER_CHECKPOINT}")
        return conn, applied

    def _checkpoint_loop(self) -> None:
        """After commits, copy what they wrote into the database file (PASSIVE: it never
        holds up the writer or a reader; what it cannot copy yet waits for its next run)."""
        conn = connect(self.path, self.synchronous)
        try:
            while True:
                self._committed.wait()
                self._committed.clear()
                if self._closing.is_set():
                    break
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # the writer's own checkpoint still runs
                    log.warning("WAL checkpoint failed: %s", exc)
                if self._closing.wait(CHECKPOINT_PAUSE):
                    break
        finally:
            conn.close()

    async def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._queue.put(_STOP)
        await asyncio.to_thread(thread.join)
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            self._closing.set()
            self._committed.set()
            await asyncio.to_thread(checkpointer.join)
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        with self._conns_lock:
            for conn in self._read_conns:
                conn.close()
            self._read_conns.clear()

    # --- writes ------------------------------------------------------------------------

    async def write(self, fn: Callable[[Tx], T]) -> T:
        if self._thread is None or self._loop is None:
            raise StoreError("the store is not open")
        if self._failure is not None:
            raise StoreError(f"the store writer stopped: {self._failure}")
        future: asyncio.Future[T] = self._loop.create_future()
        self._queue.put(_Job(fn, future))
        return await future

    def _write_loop(self, conn: sqlite3.Connection) -> None:
        try:
            while True:
                first = self._queue.get()
                if first is _STOP:
                    break
                batch: list[_Job] = [first]
                stop = False
                while len(batch) < MAX_BATCH:
                    try:
                        job = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if job is _STOP:
                        stop = True
                        break
                    batch.append(job)
                self._run_batch(conn, batch)
                if stop:
                    break
        except BaseException as exc:  # the writer must never die silently
            self._failure = exc
            log.exception("SQLite writer stopped")
            self._fail_pending(exc)
        finally:
            conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        results: list[tuple[_Job, bool, Any, list[Change]]] = []
        # A job alone needs no savepoint: if it fails, the whole transaction is rolled back.
        # Each statement gives the GIL up and waits for it again, two fewer per commit count.
        alone = len(batch) == 1
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                tx = SqliteTx(conn)
                if not alone:
                    conn.execute("SAVEPOINT job")
                try:
                    value = job.fn(tx)
                    tx.flush()
                except Exception as exc:  # noqa: BLE001 - answered to the job's caller
                    if alone:
                        conn.execute("ROLLBACK")
                    else:
                        conn.execute("ROLLBACK TO job")
                        conn.execute("RELEASE job")
                    results.append((job, False, _translate(exc), []))
                else:
                    if not alone:
                        conn.execute("RELEASE job")
                    results.append((job, True, value, tx.changes))
            if conn.in_transaction:
                conn.execute("COMMIT")
                self._committed.set()
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            error = StoreError(f"commit failed: {exc}")
            error.__cause__ = exc
            results = [(job, False, error, []) for job in batch]
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._resolve, results)

    def _resolve(self, results: list[tuple[_Job, bool, Any, list[Change]]]) -> None:
        changes = [c for _, ok, _, job_changes in results if ok for c in job_changes]
        if changes and self.on_commit is not None:
            self.on_commit(changes)
        for job, ok, value, _ in results:
            if job.future.done():
                continue
            if ok:
                job.future.set_result(value)
            else:
                job.future.set_exception(value)

    def _fail_pending(self, exc: BaseException) -> None:
        error = StoreError(f"the store writer stopped: {exc}")
        pending: list[tuple[_Job, bool, Any, list[Change]]] = []
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not _STOP:
                pending.append((job, False, error, []))
        if pending and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._resolve, pending)

    # --- reads -------------------------------------------------------------------------

    def _read_conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, self.synchronous)
            self._local.conn = conn
            with self._conns_lock:
                self._read_conns.append(conn)
        return conn

    def _run_read(self, fn: Callable[[ReadTx], T]) -> T:
        conn = self._read_conn()
        conn.execute("BEGIN")
        try:
            return fn(SqliteTx(conn))
        except sqlite3.Error as exc:
            raise StoreError(f"query failed: {exc}") from exc
        finally:
            conn.execute("COMMIT")

    async def read(self, fn: Callable[[ReadTx], T]) -> T:
        if self._pool is None or self._loop is None:
            raise StoreError("the store is not open")
        return await self._loop.run_in_executor(self._pool, self._run_read, fn)


def _translate(exc: Exception) -> Exception:
    """Domain errors pass through; driver errors become StoreError."""
    if isinstance(exc, CourierError):
        return exc
    if isinstance(exc, sqlite3.Error):
        error = StoreError(f"statement failed: {exc}")
        error.__cause__ = exc
        return error
    return exc
