"""Many rows in a few statements.

Python's sqlite3 gives up the GIL around every step of a statement, and `executemany` steps
once per row. While the event loop thread is busy, the writer thread then waits for the GIL
again after each row (measured: half of its time under REST load). A statement of up to
CHUNK rows steps once: n rows take n // CHUNK statements and one for the rest. Each size is
prepared once and kept in the connection's statement cache (`STATEMENT_CACHE`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from itertools import chain
from typing import Any

CHUNK = 64
STATEMENT_CACHE = 1024  # statements a connection keeps prepared: every size of each
_insert_sql: dict[tuple[str, int], str] = {}
_update_sql: dict[tuple[str, tuple[str, ...], int], str] = {}


def _sized(rows: Sequence[tuple[Any, ...]]) -> list[tuple[int, list[Any]]]:
    """The rows cut into chunks of CHUNK and the rest, each as (size, its values in one
    flat list)."""
    return [
        (len(chunk), list(chain.from_iterable(chunk)))
        for chunk in (rows[start : start + CHUNK] for start in range(0, len(rows), CHUNK))
    ]


def multi_insert(one_row: str, size: int) -> str:
    """`INSERT ... VALUES (?, ...)` for `size` rows."""
    sql = _insert_sql.get((one_row, size))
    if sql is None:
        head, sep, marks = one_row.rpartition("VALUES")
        assert sep, f"not a one-row INSERT: {one_row}"
        marks = marks.strip()
        sql = _insert_sql[(one_row, size)] = f"{head}VALUES {', '.join([marks] * size)}"
    return sql


def insert_rows(conn: sqlite3.Connection, one_row: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert `rows` with the one-row INSERT `one_row`, in order."""
    for size, values in _sized(rows):
        conn.execute(one_row if size == 1 else multi_insert(one_row, size), values)


def multi_update(table: str, columns: tuple[str, ...], size: int) -> str:
    """UPDATE `columns` of `size` rows of `table` found by id; each row of values is the new
    values in the order of `columns`, then the id."""
    key = (table, columns, size)
    sql = _update_sql.get(key)
    if sql is None:
        marks = f"({', '.join(['?'] * (len(columns) + 1))})"
        if size == 1:
            assignments = ", ".join(f"{c} = ?" for c in columns)
            sql = f"UPDATE {table} SET {assignments} WHERE id = ?"
        else:
            assignments = ", ".join(f"{c} = v.column{i}" for i, c in enumerate(columns, 1))
            sql = (
                f"UPDATE {table} SET {assignments} "
                f"FROM (VALUES {', '.join([marks] * size)}) AS v "
                f"WHERE {table}.id = v.column{len(columns) + 1}"
            )
        _update_sql[key] = sql
    return sql


def update_rows(
    conn: sqlite3.Connection, table: str, columns: tuple[str, ...], rows: Sequence[tuple[Any, ...]]
) -> None:
    """Update rows of distinct ids: each row is its new values of `columns`, then its id."""
    for size, values in _sized(rows):
        conn.execute(multi_update(table, columns, size), values)
