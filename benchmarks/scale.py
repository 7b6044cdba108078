"""A store with 1,000,000 executions: how long each list and filter query takes through REST."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.harness import percentile
from benchmarks.http import HttpConnection
from courier.core.records import CommandRequest, DeviceType, Event, Execution, RetryPolicy
from courier.ids import new_id
from courier.schemas.states import ExecutionState
from courier.store import sqlite_rows as rows
from courier.store.queries import load_queries
from courier.store.sqlite import connect, migrate

S = ExecutionState
COMMANDS = [
    "REBOOT",
    "LOCK",
    "WIPE",
    "INSTALL",
    "SET_BRIGHTNESS_SCALE",
    "UPDATE_HEARTBEAT",
    "CAPTURE_SCREENSHOT",
    "SET_WIFI_STATE",
    "BEEP_DEVICE",
    "CONVERGE",
]
ENDS = [
    (S.SUCCEEDED, 0.90),
    (S.FAILED, 0.04),
    (S.TIMED_OUT, 0.02),
    (S.EXPIRED, 0.01),
    (S.CANCELLED, 0.01),
    (S.QUEUED, 0.02),
]


def generate(path: Path, executions: int, devices: int, per_request: int, tenant: str) -> None:
    """Fill a new store: `executions` spread over `devices`, each with a realistic history."""
    rng = random.Random(1)
    conn = connect(str(path), "OFF")
    migrate(conn)
    # Written once, in one transaction: straight into the file, not through the WAL (which
    # would hold the whole store and copy it again); WAL again for Courier at the end.
    conn.execute("PRAGMA journal_mode = OFF")
    # Indexes built once the rows are in (sorted in one pass) rather than row by row.
    indexes = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
        "AND tbl_name IN ('executions', 'requests')"
    ).fetchall()
    for name, _ in indexes:
        conn.execute(f"DROP INDEX {name}")
    q = load_queries("sqlite", **rows.FRAGMENTS)
    device_ids = [f"fleet-{i:05d}" for i in range(devices)]
    now = time.time() - 30 * 86400
    conn.execute("BEGIN")
    conn.execute("INSERT INTO tenants (id, created_at) VALUES (?, ?)", (tenant, now))
    conn.executemany(
        "INSERT INTO devices VALUES (?, ?, 'device', NULL, 'native', '{}', NULL, 'burst', NULL, 0,"
        " NULL, ?, ?, '[]', NULL)",
        [(d, tenant, now, now) for d in device_ids],
    )
    retry = RetryPolicy()
    states, weights = zip(*ENDS, strict=True)
    # Each row is a template made by the store's own row functions, for its command and
    # state, with the values that vary put in: a million executions and four million events
    # are built in seconds, not a minute, and are laid out exactly as Courier writes them.
    executions_of = _execution_rows(tenant, retry)
    events_of = _event_rows(tenant)
    seq = 0
    batch_requests: list[tuple[object, ...]] = []
    batch_exec: list[tuple[object, ...]] = []
    batch_events: list[tuple[object, ...]] = []
    for r in range(executions // per_request):
        now += 2.5
        command = rng.choice(COMMANDS)
        targets = rng.sample(device_ids, per_request)
        request = CommandRequest(
            id=new_id(),
            tenant=tenant,
            command=command,
            args={"n": r},
            devices=targets,
            device_type=DeviceType.ALL,
            ttl=86400,
            timeout=30,
            ack_timeout=10,
            retry=retry,
            priority=0,
            issued_by=f"apikey:user{r % 20}",
            created_at=now,
        )
        batch_requests.append(rows.request_params(request))
        times = (now, now + 1, now + 86400, now)
        for device_id, state in zip(
            targets, rng.choices(states, weights, k=per_request), strict=True
        ):
            execution_id = new_id()
            fill_execution = executions_of(command, state)
            batch_exec.append(
                fill_execution(execution_id, request.id, device_id, device_id, *times)
            )
            for fill in events_of(state):
                seq += 1
                batch_events.append((*fill(execution_id, now), seq))
        if len(batch_exec) >= 20_000:
            conn.executemany(q["insert_request"], batch_requests)
            conn.executemany(q["insert_execution"], batch_exec)
            conn.executemany(q["insert_event"], batch_events)
            batch_requests.clear()
            batch_exec.clear()
            batch_events.clear()
    conn.executemany(q["insert_request"], batch_requests)
    conn.executemany(q["insert_execution"], batch_exec)
    conn.executemany(q["insert_event"], batch_events)
    conn.execute("COMMIT")
    for _, sql in indexes:
        conn.execute(sql)
    conn.execute("ANALYZE")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()


Fill = Callable[..., tuple[Any, ...]]


def _filler(params: tuple[Any, ...], *sentinels: object) -> Fill:
    """`params` with each sentinel (found by identity) replaced by the value given for it."""
    slots = [next(i for i, v in enumerate(params) if v is s) for s in sentinels]
    base = list(params)

    def fill(*values: Any) -> tuple[Any, ...]:
        row = base.copy()
        for slot, value in zip(slots, values, strict=True):
            row[slot] = value
        return tuple(row)

    return fill


_SLOTS: tuple[Any, ...] = tuple(
    object() for _ in range(8)
)  # id, request, device, route, 4 times; at


def _execution_rows(tenant: str, retry: RetryPolicy) -> Callable[[str, S], Fill]:
    """The row filler of each (command, state): (id, request, device, route, created,
    updated, expires, not before) -> an executions row."""
    cache: dict[tuple[str, S], Fill] = {}
    ident, request, device, route, created, updated, expires, not_before = _SLOTS

    def of(command: str, state: S) -> Fill:
        fill = cache.get((command, state))
        if fill is None:
            template = Execution(
                *(ident, tenant, request, device, route, command, state, 1, retry, 0, 30.0),
                *(10.0, created, updated, expires, not_before),
                internal=command == "UPDATE_HEARTBEAT",
            )
            fill = cache[(command, state)] = _filler(rows.execution_params(template), *_SLOTS)
        return fill

    return of


def _event_rows(tenant: str) -> Callable[[S], list[Fill]]:
    """The history of an execution that ended in a state: one filler (execution id, at) ->
    events row (without its seq) per transition."""
    cache: dict[S, list[Fill]] = {}
    ident, at = _SLOTS[0], _SLOTS[-1]

    def of(state: S) -> list[Fill]:
        fills = cache.get(state)
        if fills is None:
            path = [S.QUEUED] if state is S.QUEUED else [S.QUEUED, S.SENT, S.ACKNOWLEDGED, state]
            fills = cache[state] = [
                _filler(
                    rows.event_params(
                        Event(ident, tenant, at, "transition", previous, step, "bench", 1)
                    ),
                    ident,
                    at,
                )
                for previous, step in zip([None, *path], path, strict=False)
            ]
        return fills

    return of


def sample_ids(path: Path) -> dict[str, str]:
    """Ids (and a time) from the middle of the store, for the queries to look up."""
    conn = sqlite3.connect(path)
    try:
        middle = conn.execute("SELECT max(seq) / 2 FROM executions").fetchone()[0]
        row = conn.execute(
            "SELECT id, request_id, device_id, created_at FROM executions WHERE seq >= ? LIMIT 1",
            (middle,),
        ).fetchone()
    finally:
        conn.close()
    since = datetime.fromtimestamp(row[3] - 1800, UTC).isoformat().replace("+00:00", "Z")
    until = datetime.fromtimestamp(row[3] + 1800, UTC).isoformat().replace("+00:00", "Z")
    return {
        "execution": row[0],
        "request": row[1],
        "device": row[2],
        "since": since,
        "until": until,
    }


def queries(tenant: str, ids: dict[str, str]) -> dict[str, str]:
    t = f"/v1/tenants/{tenant}"
    return {
        "executions, newest": f"{t}/executions?limit=100",
        "executions, page 100": f"{t}/executions?limit=100&offset=10000",
        "executions by request": f"{t}/executions?request_ids={ids['request']}",
        "executions by device": f"{t}/executions?device_ids={ids['device']}",
        "executions by state (FAILED)": f"{t}/executions?state=FAILED&limit=100",
        "executions by state (QUEUED)": f"{t}/executions?state=QUEUED&limit=100",
        "executions by command": f"{t}/executions?command=WIPE&limit=100",
        "executions, no internal": f"{t}/executions?exclude_internal_commands=true&limit=100",
        "executions in an hour": f"{t}/executions?since={ids['since']}&until={ids['until']}",
        "requests in an hour": f"{t}/commands?since={ids['since']}&until={ids['until']}",
        "device history": f"{t}/devices/{ids['device']}/executions",
        "device history by state": f"{t}/devices/{ids['device']}/executions?state=SUCCEEDED",
        "requests, newest": f"{t}/commands?limit=100",
        "requests by command": f"{t}/commands?command=LOCK&limit=100",
        "requests by device": f"{t}/commands?devices={ids['device']}",
        "requests by issuer": f"{t}/commands?issued_by=apikey:user7&limit=100",
        "request with counts": f"{t}/commands/{ids['request']}",
        "request status list": f"{t}/commands/{ids['request']}/executions",
        "request status by state": f"{t}/commands/{ids['request']}/executions?state=FAILED",
        "execution": f"{t}/executions/{ids['execution']}",
        "execution history": f"{t}/executions/{ids['execution']}/history",
    }


async def time_queries(
    port: int, key: str, paths: dict[str, str], repeats: int
) -> dict[str, dict[str, float]]:
    connection = HttpConnection("127.0.0.1", port, key)
    await connection.open()
    results: dict[str, dict[str, float]] = {}
    clock: Callable[[], float] = time.perf_counter
    for path in paths.values():  # one pass first: the page cache, and what serve does at start
        await connection.request("GET", path)
    for name, path in paths.items():
        samples = []
        for _ in range(repeats):
            begun = clock()
            status, body = await connection.request("GET", path)
            samples.append((clock() - begun) * 1000)
            assert status == 200, (path, body)
        results[name] = {"p50_ms": percentile(samples, 0.5), "p99_ms": percentile(samples, 0.99)}
    await connection.close()
    return results


def generate_in_thread(path: Path, executions: int, tenant: str) -> asyncio.Future[None]:
    return asyncio.get_running_loop().run_in_executor(
        None, generate, path, executions, max(1000, executions // 100), 10, tenant
    )
