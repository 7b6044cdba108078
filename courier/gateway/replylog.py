"""What the agent remembers per execution, so a duplicate is answered and never re-run.

Kept in memory, or in a small SQLite file when the device must remember across restarts.
Bounded: the oldest entries are forgotten past `capacity`.
"""

from __future__ import annotations

import sqlite3
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import orjson

RUNNING_STATES = frozenset({"RECEIVED", "ACKNOWLEDGED", "IN_PROGRESS"})


@dataclass
class Record:
    execution_id: str
    attempt: int
    state: str
    reply: dict[str, Any] | None = None
    updated_at: float = field(default_factory=time.time)

    @property
    def finished(self) -> bool:
        return self.state not in RUNNING_STATES


class ReplyLog:
    """Execution id -> last known state and reply."""

    def __init__(self, path: str | None = None, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._records: OrderedDict[str, Record] = OrderedDict()
        self._db: sqlite3.Connection | None = None
        if path is not None:
            self._db = sqlite3.connect(path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS replies (execution_id TEXT PRIMARY KEY, attempt "
                "INTEGER NOT NULL, state TEXT NOT NULL, reply TEXT, updated_at REAL NOT NULL)"
            )
            rows = self._db.execute(
                "SELECT execution_id, attempt, state, reply, updated_at FROM replies "
                "ORDER BY updated_at DESC LIMIT ?",
                (capacity,),
            ).fetchall()
            for execution_id, attempt, state, reply, updated_at in reversed(rows):
                self._records[execution_id] = Record(
                    execution_id,
                    attempt,
                    state,
                    None if reply is None else orjson.loads(reply),
                    updated_at,
                )

    def get(self, execution_id: str) -> Record | None:
        return self._records.get(execution_id)

    def put(self, record: Record) -> None:
        record.updated_at = time.time()
        self._records[record.execution_id] = record
        self._records.move_to_end(record.execution_id)
        if self._db is not None:
            self._db.execute(
                "INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?, ?)",
                (
                    record.execution_id,
                    record.attempt,
                    record.state,
                    None if record.reply is None else orjson.dumps(record.reply).decode(),
                    record.updated_at,
                ),
            )
        while len(self._records) > self.capacity:
            oldest, _ = self._records.popitem(last=False)
            if self._db is not None:
                self._db.execute("DELETE FROM replies WHERE execution_id = ?", (oldest,))

    def unfinished(self) -> list[Record]:
        return [r for r in self._records.values() if not r.finished]

    def recent(self, since: float) -> list[Record]:
        return [r for r in self._records.values() if r.updated_at >= since and r.reply is not None]

    def __len__(self) -> int:
        return len(self._records)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
