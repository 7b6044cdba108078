"""`Tx` over one sqlite3 connection, inside a transaction its caller opened."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from courier.core.catalogue import Definition
from courier.core.records import (
    ApiKey,
    Change,
    CommandRequest,
    Device,
    Event,
    Execution,
    Group,
    Page,
    TargetFilter,
    Tenant,
)
from courier.schemas.states import PENDING
from courier.store import sqlite_rows as rows
from courier.store.filters import COUNT_CAP, DeviceFilter, ExecutionFilter, RequestFilter
from courier.store.queries import load_queries
from courier.store.sqlite_many import insert_rows, update_rows

Q = load_queries("sqlite", **rows.FRAGMENTS)
_CHUNK = 500
_PENDING_SQL = ", ".join(f"'{s.value}'" for s in sorted(PENDING))


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


# Online, and behind an online gateway when attached to one (what the API calls online).
_REACHABLE = (
    "(online = 1 AND (gateway_id IS NULL OR EXISTS "
    "(SELECT 1 FROM devices AS g WHERE g.id = devices.gateway_id AND g.online = 1)))"
)
_last_seq = [0]


def _event_seq() -> int:
    """Increasing numbers that order events (nanoseconds, never repeating)."""
    value = max(time.time_ns(), _last_seq[0] + 1)
    _last_seq[0] = value
    return value


def _count(
    conn: sqlite3.Connection, table: str, clause: str, params: Sequence[Any]
) -> tuple[int, bool]:
    """Matches of `clause`, counted up to COUNT_CAP: an exact count of a million rows
    would cost more than the page it describes."""
    sql = f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {clause} LIMIT {COUNT_CAP + 1})"
    found: int = conn.execute(sql, params).fetchone()[0]
    return min(found, COUNT_CAP), found > COUNT_CAP


def _marks(count: int) -> str:
    return ", ".join("?" * count)


class SqliteTx:
    """Reads and writes on a connection; the caller owns BEGIN and COMMIT, and calls
    `flush` before it.

    New requests, executions and events are written behind: kept in lists and inserted in
    statements of many rows (`sqlite_many`) when the transaction next reads (`conn` flushes
    them) or ends, so a batch of many requests costs a few statements, not a few per request.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.changes: list[Change] = []
        self._args: dict[str, tuple[dict[str, Any], float]] = {}
        self.cache: dict[Any, Any] = {}
        self._new_requests: list[tuple[Any, ...]] = []
        self._new_executions: list[tuple[Any, ...]] = []
        self._new_events: list[tuple[Any, ...]] = []

    @property
    def conn(self) -> sqlite3.Connection:
        """The connection, with every row written behind inserted: what is read sees it."""
        if self._new_requests or self._new_executions or self._new_events:
            self.flush()
        return self._conn

    def flush(self) -> None:
        """Insert the rows written behind (requests before their executions and events)."""
        conn = self._conn
        if self._new_requests:
            insert_rows(conn, Q["insert_request"], self._new_requests)
            self._new_requests = []
        if self._new_executions:
            insert_rows(conn, Q["insert_execution"], self._new_executions)
            self._new_executions = []
        if self._new_events:
            insert_rows(conn, Q["insert_event"], self._new_events)
            self._new_events = []

    def _one(self, sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self.conn.execute(sql, params).fetchone()
        return row

    # --- reads -------------------------------------------------------------------------

    def get_api_key(self, key_id: str) -> ApiKey | None:
        row = self._one(Q["get_api_key"], (key_id,))
        return None if row is None else rows.api_key_from_row(row)

    def list_api_keys(self, tenant: str) -> list[ApiKey]:
        return [rows.api_key_from_row(r) for r in self.conn.execute(Q["list_api_keys"], (tenant,))]

    def tenant_exists(self, tenant: str) -> bool:
        return self._one(Q["tenant_exists"], (tenant,)) is not None

    # Devices are never written behind: their reads need no flush.

    def get_device(self, device_id: str) -> Device | None:
        row = self._conn.execute(Q["get_device"], (device_id,)).fetchone()
        return None if row is None else rows.device_from_row(row)

    def get_devices(self, device_ids: Sequence[str]) -> dict[str, Device]:
        found: dict[str, Device] = {}
        for chunk in _chunks(device_ids):
            columns = rows.FRAGMENTS["device_columns"]
            sql = f"SELECT {columns} FROM devices WHERE id IN ({_marks(len(chunk))})"
            for row in self._conn.execute(sql, chunk):
                device = rows.device_from_row(row)
                found[device.id] = device
        return found

    def list_devices(self, tenant: str, flt: DeviceFilter, limit: int, offset: int) -> Page[Device]:
        where, params = ["tenant_id = ?"], [tenant]
        if flt.online is not None:
            where.append(_REACHABLE if flt.online else f"NOT {_REACHABLE}")
        if flt.kind is not None:
            where.append("kind = ?")
            params.append(flt.kind)
        clause = " AND ".join(where)
        count, capped = _count(self.conn, "devices", clause, params)
        sql = (
            f"SELECT {rows.FRAGMENTS['device_columns']} FROM devices WHERE {clause} "
            "ORDER BY id LIMIT ? OFFSET ?"
        )
        found = [rows.device_from_row(r) for r in self.conn.execute(sql, [*params, limit, offset])]
        return Page(count, found, capped)

    def get_request(self, request_id: str) -> CommandRequest | None:
        row = self._one(Q["get_request"], (request_id,))
        return None if row is None else rows.request_from_row(row)

    def list_requests(
        self, tenant: str, flt: RequestFilter, limit: int, offset: int
    ) -> Page[CommandRequest]:
        where, params = ["tenant_id = ?"], [tenant]
        for column, value in (
            ("command", flt.command),
            ("command_type", flt.command_type),
            ("device_type", flt.device_type),
            ("issued_by", flt.issued_by),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if flt.device_ids:
            where.append(
                "id IN (SELECT request_id FROM executions WHERE device_id IN "
                f"({_marks(len(flt.device_ids))}))"
            )
            params.extend(flt.device_ids)
        if flt.since is not None:
            where.append("created_at >= ?")
            params.append(flt.since)  # type: ignore[arg-type]
        if flt.until is not None:
            where.append("created_at < ?")
            params.append(flt.until)  # type: ignore[arg-type]
        clause = " AND ".join(where)
        count, capped = _count(self.conn, "requests", clause, params)
        # A time window is served by the created_at index, so it orders by it.
        timed = flt.since is not None or flt.until is not None
        order = "created_at DESC, seq DESC" if timed else "seq DESC"
        sql = (
            f"SELECT {rows.FRAGMENTS['request_columns']} FROM requests WHERE {clause} "
            f"ORDER BY {order} LIMIT ? OFFSET ?"
        )
        found = [rows.request_from_row(r) for r in self.conn.execute(sql, [*params, limit, offset])]
        return Page(count, found, capped)

    def request_state_counts(self, request_id: str) -> dict[str, int]:
        return dict(self.conn.execute(Q["request_state_counts"], (request_id,)).fetchall())

    def get_execution(self, execution_id: str) -> Execution | None:
        row = self._one(Q["get_execution"], (execution_id,))
        return None if row is None else rows.execution_from_row(row)

    def executions_of_request(self, request_id: str) -> list[Execution]:
        cursor = self.conn.execute(Q["executions_of_request"], (request_id,))
        return [rows.execution_from_row(r) for r in cursor]

    def list_executions(
        self, tenant: str, flt: ExecutionFilter, limit: int, offset: int
    ) -> Page[Execution]:
        where: list[str] = ["tenant_id = ?"]
        params: list[Any] = [tenant]
        for column, values in (
            ("request_id", flt.request_ids),
            ("device_id", flt.device_ids),
            ("state", tuple(s.value for s in flt.states)),
        ):
            if values:
                where.append(f"{column} IN ({_marks(len(values))})")
                params.extend(values)
        if flt.command is not None:
            where.append("command = ?")
            params.append(flt.command)
        if flt.internal is not None:
            where.append("internal = ?")
            params.append(int(flt.internal))
        if flt.since is not None:
            where.append("created_at >= ?")
            params.append(flt.since)
        if flt.until is not None:
            where.append("created_at < ?")
            params.append(flt.until)
        clause = " AND ".join(where)
        count, capped = _count(self.conn, "executions", clause, params)
        timed = flt.since is not None or flt.until is not None
        narrow = flt.request_ids or flt.device_ids
        order = "created_at DESC, seq DESC" if timed and not narrow else "seq DESC"
        sql = (
            f"SELECT {rows.FRAGMENTS['exec_columns']} FROM executions WHERE {clause} "
            f"ORDER BY {order} LIMIT ? OFFSET ?"
        )
        cursor = self.conn.execute(sql, [*params, limit, offset])
        return Page(count, [rows.execution_from_row(r) for r in cursor], capped)

    def history(self, execution_id: str) -> list[Event]:
        return [rows.event_from_row(r) for r in self.conn.execute(Q["history"], (execution_id,))]

    def next_wake(self) -> float | None:
        row = self._one(Q["next_wake"], ())
        return None if row is None else row[0]

    def state_counts(self) -> dict[str, int]:
        counts = {"QUEUED": self.conn.execute(Q["count_queued"]).fetchone()[0]}
        counts["SCHEDULED"] = self.conn.execute(Q["count_scheduled"]).fetchone()[0]
        counts.update(dict(self.conn.execute(Q["count_in_flight"]).fetchall()))
        return {k: v for k, v in counts.items() if v}

    # --- writes ------------------------------------------------------------------------

    def insert_tenant(self, tenant: str, now: float) -> None:
        self.conn.execute(Q["insert_tenant"], (tenant, now))

    def put_api_key(self, key: ApiKey) -> None:
        self.conn.execute(Q["put_api_key"], rows.api_key_params(key))

    def insert_device(self, device: Device) -> None:
        self.conn.execute(Q["put_device"], rows.device_params(device))

    def update_device(self, device: Device) -> None:
        self.conn.execute(Q["put_device"], rows.device_params(device))

    def delete_device(self, device_id: str) -> None:
        self.conn.execute(Q["delete_device"], (device_id,))

    def find_idempotent(self, tenant: str, key: str) -> tuple[str, float] | None:
        row = self._one(Q["find_idempotent"], (tenant, key))
        return None if row is None else (row[0], row[1])

    def forget_idempotency(self, tenant: str, key: str) -> None:
        self.conn.execute(Q["forget_idempotency"], (tenant, key))

    def insert_request(self, request: CommandRequest) -> None:
        self._new_requests.append(rows.request_params(request))

    def request_args(self, request_id: str) -> tuple[dict[str, Any], float]:
        cached = self._args.get(request_id)
        if cached is None:
            row = self._one(Q["request_args"], (request_id,))
            assert row is not None, f"execution of missing request {request_id}"
            cached = self._args[request_id] = (orjson.loads(row[0]), row[1])
        return cached

    def insert_executions(self, executions: Sequence[Execution]) -> None:
        self._new_executions.extend(rows.execution_params(e) for e in executions)

    def get_executions(self, execution_ids: Sequence[str]) -> dict[str, Execution]:
        found: dict[str, Execution] = {}
        for chunk in _chunks(execution_ids):
            sql = (
                f"SELECT {rows.FRAGMENTS['exec_columns']} FROM executions "
                f"WHERE id IN ({_marks(len(chunk))})"
            )
            for row in self.conn.execute(sql, chunk):
                execution = rows.execution_from_row(row)
                found[execution.id] = execution
        return found

    def update_execution(self, before: Execution, after: Execution) -> None:
        diff = rows.execution_diff(before, after)
        if diff:
            update_rows(self.conn, "executions", tuple(diff), [(*diff.values(), after.id)])

    def update_executions(self, pairs: Sequence[tuple[Execution, Execution]]) -> None:
        """Many updates; those that change the same columns share statements of many rows.
        Several updates of one execution are applied one by one, in order."""
        if len({after.id for _, after in pairs}) < len(pairs):
            for before, after in pairs:
                self.update_execution(before, after)
            return
        by_columns: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        for before, after in pairs:
            diff = rows.execution_diff(before, after)
            if diff:
                by_columns.setdefault(tuple(diff), []).append((*diff.values(), after.id))
        conn = self.conn
        for columns, params in by_columns.items():
            update_rows(conn, "executions", columns, params)

    def insert_events(self, events: Sequence[Event]) -> None:
        self._new_events.extend((*rows.event_params(e), _event_seq()) for e in events)

    def pending_counts(self, device_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for chunk in _chunks(device_ids):
            if len(chunk) == 1:
                sql, params = Q["pending_of_one"], chunk
            else:
                sql = (
                    "SELECT device_id, state, count(*) FROM executions "
                    f"WHERE device_id IN ({_marks(len(chunk))}) AND state IN ({_PENDING_SQL}) "
                    "GROUP BY device_id, state"
                )
                params = chunk
            for device_id, state, count in self.conn.execute(sql, params):
                counts.setdefault(device_id, {})[state] = count
        return counts

    def pending_of_device(self, device_id: str) -> list[Execution]:
        cursor = self.conn.execute(Q["pending_of_device"], (device_id,))
        return [rows.execution_from_row(r) for r in cursor]

    def pending_of_request(self, request_id: str) -> list[Execution]:
        cursor = self.conn.execute(Q["pending_of_request"], (request_id,))
        return [rows.execution_from_row(r) for r in cursor]

    def in_flight(self, route_id: str) -> dict[str, int]:
        return dict(self.conn.execute(Q["in_flight"], (route_id,)).fetchall())

    def queued(self, route_id: str, now: float, limit: int) -> list[Execution]:
        cursor = self.conn.execute(Q["queued"], (route_id, now, now, now, limit))
        return [rows.execution_from_row(r) for r in cursor]

    def has_due_ahead(self, route_id: str, now: float, priority: int) -> bool:
        return self._one(Q["has_due_ahead"], (route_id, now, now, priority, now)) is not None

    def routes_with_due(self, now: float, limit: int) -> list[str]:
        """Walked from the smaller side: the online devices, or the queued executions (a
        backlog for offline devices made every sweep scan it all). Counting both costs
        about a millisecond for tens of thousands."""
        online, queued = self._conn.execute(Q["sweep_sizes"]).fetchone()
        query = "online_routes_with_due" if online < queued else "routes_with_due"
        return [r[0] for r in self.conn.execute(Q[query], (now, now, now, limit))]

    def attached_to(self, gateway_id: str) -> list[str]:
        return [r[0] for r in self.conn.execute(Q["attached_to"], (gateway_id,))]

    def devices_speaking(self, protocol: str) -> list[str]:
        sql = "SELECT id FROM devices WHERE protocol = ?"
        return [r[0] for r in self.conn.execute(sql, (protocol,))]

    def device_passwords(self) -> list[tuple[str, str]]:
        sql = "SELECT id, password_hash FROM devices WHERE password_hash IS NOT NULL ORDER BY id"
        return [(r[0], r[1]) for r in self.conn.execute(sql)]

    def docs_of_kind(self, kind: str) -> list[dict[str, Any]]:
        cursor = self.conn.execute(
            "SELECT id, tenant_id, name, body, created_at FROM documents WHERE kind = ?", (kind,)
        )
        return [self._doc(r) for r in cursor]

    def queued_routes(self, limit: int) -> list[str]:
        return [r[0] for r in self.conn.execute(Q["queued_routes"], (limit,))]

    def due_timers(self, now: float, limit: int) -> list[Execution]:
        cursor = self.conn.execute(Q["due_timers"], (now, limit))
        return [rows.execution_from_row(r) for r in cursor]

    # --- tenants, groups, definitions, dynamic targets, rollouts ----------------------------

    def get_tenant(self, tenant: str) -> Tenant | None:
        row = self._one(Q["get_tenant"], (tenant,))
        return None if row is None else Tenant(row[0], row[1])

    def set_tenant_timezone(self, tenant: str, timezone: str | None) -> None:
        self.conn.execute(Q["set_tenant_timezone"], (timezone, tenant))

    def get_group(self, group_id: str) -> Group | None:
        row = self._one(Q["get_group"], (group_id,))
        return None if row is None else Group(*row)

    def group_id_by_name(self, tenant: str, name: str) -> str | None:
        row = self._one(Q["get_group_by_name"], (tenant, name))
        return None if row is None else str(row[0])

    def list_groups(self, tenant: str, limit: int, offset: int) -> Page[Group]:
        count = self.conn.execute(Q["count_groups"], (tenant,)).fetchone()[0]
        found = [Group(*r) for r in self.conn.execute(Q["list_groups"], (tenant, limit, offset))]
        return Page(count, found)

    def put_group(self, group: Group) -> None:
        self.conn.execute(
            Q["put_group"], (group.id, group.tenant, group.name, group.created_at, group.updated_at)
        )

    def delete_group(self, group_id: str) -> None:
        self.conn.execute(Q["delete_group_members"], (group_id,))
        self.conn.execute(Q["delete_group"], (group_id,))

    def add_member(self, group_id: str, device_id: str, now: float) -> bool:
        return self.conn.execute(Q["add_member"], (group_id, device_id, now)).rowcount > 0

    def remove_member(self, group_id: str, device_id: str) -> bool:
        return self.conn.execute(Q["remove_member"], (group_id, device_id)).rowcount > 0

    def remove_device_memberships(self, device_id: str) -> None:
        self.conn.execute(Q["remove_device_memberships"], (device_id,))

    def group_members(self, group_id: str, limit: int, offset: int) -> Page[Device]:
        count = self.conn.execute(Q["count_group_members"], (group_id,)).fetchone()[0]
        cursor = self.conn.execute(Q["group_members"], (group_id, limit, offset))
        return Page(count, [rows.device_from_row(r) for r in cursor])

    def members_of(self, group_ids: Sequence[str]) -> list[str]:
        found: dict[str, None] = {}
        for group_id in group_ids:
            cursor = self.conn.execute(
                "SELECT device_id FROM group_members WHERE group_id = ? "
                "ORDER BY added_at, device_id",
                (group_id,),
            )
            found.update((r[0], None) for r in cursor)
        return list(found)

    def find_devices(self, tenant: str, flt: TargetFilter, limit: int) -> list[str]:
        where: list[str] = ["tenant_id = ?"]
        params: list[Any] = [tenant]
        candidates = []
        if flt.devices:
            candidates.append(f"id IN ({_marks(len(flt.devices))})")
            params.extend(flt.devices)
        if flt.groups:
            candidates.append(
                "id IN (SELECT device_id FROM group_members "
                f"WHERE group_id IN ({_marks(len(flt.groups))}))"
            )
            params.extend(flt.groups)
        if candidates:
            where.append("(" + " OR ".join(candidates) + ")")
        for key, value in flt.labels:
            where.append("json_extract(labels, ?) = ?")
            params.extend(['$."' + key.replace('"', '""') + '"', value])
        if flt.kind is not None:
            where.append("kind = ?")
            params.append(flt.kind.value)
        if flt.online is not None:
            where.append(_REACHABLE if flt.online else f"NOT {_REACHABLE}")
        sql = f"SELECT id FROM devices WHERE {' AND '.join(where)} ORDER BY id LIMIT ?"
        return [r[0] for r in self.conn.execute(sql, [*params, limit])]

    def get_definition(self, tenant: str, name: str) -> Definition | None:
        row = self._one(Q["get_definition"], (tenant, name))
        return None if row is None else Definition.from_json(orjson.loads(row[0]))

    def list_definitions(self, tenant: str) -> list[Definition]:
        cursor = self.conn.execute(Q["list_definitions"], (tenant,))
        return [Definition.from_json(orjson.loads(r[0])) for r in cursor]

    def put_definition(self, tenant: str, definition: Definition, now: float) -> None:
        body = rows.dumps(definition.to_json())
        self.conn.execute(
            Q["put_definition"], (tenant, definition.name, body, tenant, definition.name, now, now)
        )

    def delete_definition(self, tenant: str, name: str) -> bool:
        return self.conn.execute(Q["delete_definition"], (tenant, name)).rowcount > 0

    def set_rollout_state(self, request_id: str, state: str) -> None:
        self.conn.execute(Q["set_rollout_state"], (state, request_id))

    # --- documents ----------------------------------------------------------------------

    @staticmethod
    def _doc(row: tuple[Any, ...]) -> dict[str, Any]:
        return {
            "id": row[0],
            "tenant": row[1],
            "name": row[2],
            "body": orjson.loads(row[3]),
            "created_at": row[4],
        }

    def get_doc(self, kind: str, doc_id: str) -> dict[str, Any] | None:
        row = self._one(
            "SELECT id, tenant_id, name, body, created_at FROM documents WHERE kind = ? AND id = ?",
            (kind, doc_id),
        )
        return None if row is None else self._doc(row)

    def list_docs(self, kind: str, tenant: str, limit: int, offset: int) -> Page[dict[str, Any]]:
        count, capped = _count(self.conn, "documents", "kind = ? AND tenant_id = ?", [kind, tenant])
        cursor = self.conn.execute(
            "SELECT id, tenant_id, name, body, created_at FROM documents "
            "WHERE kind = ? AND tenant_id = ? ORDER BY created_at, id LIMIT ? OFFSET ?",
            (kind, tenant, limit, offset),
        )
        return Page(count, [self._doc(r) for r in cursor], capped)

    def docs_named(self, kind: str, tenant: str, name: str) -> list[dict[str, Any]]:
        cursor = self.conn.execute(
            "SELECT id, tenant_id, name, body, created_at FROM documents "
            "WHERE kind = ? AND tenant_id = ? AND name = ?",
            (kind, tenant, name),
        )
        return [self._doc(r) for r in cursor]

    def put_doc(self, kind: str, row: dict[str, Any], unique: bool) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO documents "
            "(kind, id, tenant_id, name, unique_name, body, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                kind,
                row["id"],
                row["tenant"],
                row["name"],
                row["name"] if unique else None,
                rows.dumps(row["body"]),
                row["created_at"],
            ),
        )

    def delete_doc(self, kind: str, doc_id: str) -> bool:
        cursor = self.conn.execute(
            "DELETE FROM documents WHERE kind = ? AND id = ?", (kind, doc_id)
        )
        return cursor.rowcount > 0
