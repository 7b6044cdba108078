"""Many rows in few statements: the same rows as one statement per row, in fewer steps."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from courier.core.records import RetryOn, RetryPolicy, TargetFilter
from courier.store.sqlite import connect
from courier.store.sqlite_many import CHUNK, _sized, insert_rows, update_rows
from courier.store.sqlite_rows import REQUEST_COLUMNS, request_from_row, request_params
from tests.helpers import request

ONE_ROW = "INSERT INTO t (id, n, x, s, b) VALUES (?, ?, ?, ?, ?)"


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(tmp_path / "many.db", isolation_level=None)
    conn.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, id TEXT UNIQUE, n, x, s, b)")
    yield conn
    conn.close()


def rows(count: int) -> list[tuple[object, ...]]:
    return [
        (f"r{i}", i if i % 3 else None, i / 7, "é" * (i % 4), bytes([i % 256]))
        for i in range(count)
    ]


@pytest.mark.parametrize("count", [0, 1, 2, 3, 63, 64, 65, 127, 200, 1000])
def test_chunks_cover_every_row_once_in_order(count: int) -> None:
    data = rows(count)
    chunks = _sized(data)
    assert all(1 <= size <= CHUNK for size, _ in chunks)
    flat = [v for _, values in chunks for v in values]
    assert flat == [v for row in data for v in row]
    assert len(chunks) == -(-count // CHUNK)


@pytest.mark.parametrize("count", [1, 5, 64, 65, 200])
def test_inserted_rows_are_those_of_one_statement_each_in_order(
    conn: sqlite3.Connection, count: int
) -> None:
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    insert_rows(conn, ONE_ROW, rows(count))
    conn.set_trace_callback(None)
    stored = conn.execute("SELECT id, n, x, s, b FROM t ORDER BY seq").fetchall()
    assert stored == rows(count)
    assert len(statements) == -(-count // CHUNK)


def test_a_failing_row_fails_its_statement_and_is_reported(conn: sqlite3.Connection) -> None:
    insert_rows(conn, ONE_ROW, rows(3))
    with pytest.raises(sqlite3.IntegrityError):
        insert_rows(conn, ONE_ROW, rows(5))  # r0..r2 exist already (id is unique)


@pytest.mark.parametrize("count", [1, 2, 70])
def test_updates_change_exactly_the_rows_named(conn: sqlite3.Connection, count: int) -> None:
    insert_rows(conn, ONE_ROW, rows(100))
    changes = [(f"new{i}", -i, f"r{i * 2}") for i in range(count)]  # every other row
    update_rows(conn, "t", ("s", "n"), changes)
    found = {r[0]: (r[1], r[2]) for r in conn.execute("SELECT id, s, n FROM t")}
    for row in rows(100):
        index = int(str(row[0])[1:])
        if index % 2 == 0 and index // 2 < count:
            assert found[str(row[0])] == (f"new{index // 2}", -(index // 2))
        else:
            assert found[str(row[0])] == (row[3], row[1])


def test_none_and_bool_bind_as_null_and_integers_through_their_adapters(tmp_path: Path) -> None:
    assert (type(None), sqlite3.PrepareProtocol) in sqlite3.adapters
    assert (bool, sqlite3.PrepareProtocol) in sqlite3.adapters
    conn = connect(str(tmp_path / "adapt.db"), "FULL")
    conn.execute("CREATE TABLE a (x, y, z)")
    insert_rows(conn, "INSERT INTO a (x, y, z) VALUES (?, ?, ?)", [(None, True, False)] * 3)
    assert (
        conn.execute("SELECT x, typeof(x), y, typeof(y), z FROM a").fetchall()
        == [(None, "null", 1, "integer", 0)] * 3
    )
    assert conn.execute("SELECT count(*) FROM a WHERE x IS NULL AND y = ?", (True,)).fetchone() == (
        3,
    )
    conn.close()


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"args": {"delay": 5}, "skipped": [{"device": "d9", "reason": "offline"}]},
        {"groups": ["g1"], "retry": RetryPolicy(5, RetryOn.BOTH, 0.5, 3.0, 30.0)},
        {"filter": TargetFilter(labels=(("site", "north"),), online=True)},
    ],
)
def test_request_rows_keep_what_the_request_says(changes: dict[str, Any]) -> None:
    """The JSON columns of a request row, the defaults' texts kept or not, read back."""
    made = replace(request(["d1", "d2"]), **changes)
    params = request_params(made)
    assert len(params) == len(REQUEST_COLUMNS)
    assert request_from_row(params) == made
    columns = dict(zip(REQUEST_COLUMNS, params, strict=True))
    assert orjson.loads(columns["args"]) == made.args
    assert orjson.loads(columns["skipped"]) == made.skipped
    assert orjson.loads(columns["targets"]) == {
        "groups": made.groups,
        "filter": None if made.filter is None else made.filter.to_json(),
    }
