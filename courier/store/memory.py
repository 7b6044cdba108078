"""An in-memory backend for unit tests: dicts, with an undo log so a failed verb changes nothing."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

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
from courier.errors import StoreError
from courier.schemas.states import IN_FLIGHT, PENDING, ExecutionState
from courier.store.filters import COUNT_CAP, DeviceFilter, ExecutionFilter, RequestFilter
from courier.store.tx import ReadTx, Tx

T = TypeVar("T")
_MISSING = object()


class _Data:
    def __init__(self) -> None:
        self.tenants: dict[str, float] = {}
        self.api_keys: dict[str, ApiKey] = {}
        self.devices: dict[str, Device] = {}
        self.requests: dict[str, CommandRequest] = {}
        self.idempotency: dict[tuple[str, str], tuple[str, float]] = {}
        self.executions: dict[str, Execution] = {}
        self.events: dict[str, list[Event]] = {}
        self.seq = 0
        self.timezones: dict[str, str | None] = {}
        self.groups: dict[str, Group] = {}
        self.members: dict[str, dict[str, float]] = {}
        self.definitions: dict[tuple[str, str], Definition] = {}
        self.documents: dict[tuple[str, str], dict[str, Any]] = {}


def _page(found: list[T], limit: int, offset: int) -> Page[T]:
    return Page(min(len(found), COUNT_CAP), found[offset : offset + limit], len(found) > COUNT_CAP)


class MemoryTx:
    """Tx over `_Data`; every write is logged so `rollback` restores the previous values."""

    def __init__(self, data: _Data) -> None:
        self.d = data
        self.changes: list[Change] = []
        self.cache: dict[Any, Any] = {}
        self._undo: list[Callable[[], None]] = []

    def _set(self, mapping: dict[Any, Any], key: Any, value: Any) -> None:
        old = mapping.get(key, _MISSING)
        self._undo.append(
            lambda: mapping.pop(key, None) if old is _MISSING else mapping.__setitem__(key, old)
        )
        mapping[key] = value

    def _delete(self, mapping: dict[Any, Any], key: Any) -> None:
        if key in mapping:
            old = mapping.pop(key)
            self._undo.append(lambda: mapping.__setitem__(key, old))

    def rollback(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()

    # --- reads -------------------------------------------------------------------------

    def get_api_key(self, key_id: str) -> ApiKey | None:
        return self.d.api_keys.get(key_id)

    def list_api_keys(self, tenant: str) -> list[ApiKey]:
        return sorted(
            (k for k in self.d.api_keys.values() if k.tenant == tenant), key=lambda k: k.created_at
        )

    def tenant_exists(self, tenant: str) -> bool:
        return tenant in self.d.tenants

    def get_device(self, device_id: str) -> Device | None:
        return self.d.devices.get(device_id)

    def get_devices(self, device_ids: Sequence[str]) -> dict[str, Device]:
        return {i: self.d.devices[i] for i in device_ids if i in self.d.devices}

    def _reachable(self, device: Device) -> bool:
        if not device.online or device.gateway_id is None:
            return device.online
        gateway = self.d.devices.get(device.gateway_id)
        return gateway is not None and gateway.online

    def list_devices(self, tenant: str, flt: DeviceFilter, limit: int, offset: int) -> Page[Device]:
        found = sorted(
            (
                d
                for d in self.d.devices.values()
                if d.tenant == tenant
                and (flt.online is None or self._reachable(d) == flt.online)
                and (flt.kind is None or d.kind == flt.kind)
            ),
            key=lambda d: d.id,
        )
        return _page(found, limit, offset)

    def get_request(self, request_id: str) -> CommandRequest | None:
        return self.d.requests.get(request_id)

    def list_requests(
        self, tenant: str, flt: RequestFilter, limit: int, offset: int
    ) -> Page[CommandRequest]:
        def keep(r: CommandRequest) -> bool:
            return (
                r.tenant == tenant
                and (flt.command is None or r.command == flt.command)
                and (flt.command_type is None or r.command_type == flt.command_type)
                and (flt.device_type is None or r.device_type == flt.device_type)
                and (flt.issued_by is None or r.issued_by == flt.issued_by)
                and (not flt.device_ids or bool(set(flt.device_ids) & set(r.devices)))
                and (flt.since is None or r.created_at >= flt.since)
                and (flt.until is None or r.created_at < flt.until)
            )

        found = [r for r in reversed(self.d.requests.values()) if keep(r)]
        return _page(found, limit, offset)

    def request_state_counts(self, request_id: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for e in self.d.executions.values():
            if e.request_id == request_id:
                counts[e.state] = counts.get(e.state, 0) + 1
        return counts

    def get_execution(self, execution_id: str) -> Execution | None:
        return self.d.executions.get(execution_id)

    def get_executions(self, execution_ids: Sequence[str]) -> dict[str, Execution]:
        found = (self.d.executions.get(e) for e in execution_ids)
        return {e.id: e for e in found if e is not None}

    def executions_of_request(self, request_id: str) -> list[Execution]:
        return sorted(
            (e for e in self.d.executions.values() if e.request_id == request_id),
            key=lambda e: e.seq,
        )

    def list_executions(
        self, tenant: str, flt: ExecutionFilter, limit: int, offset: int
    ) -> Page[Execution]:
        def keep(e: Execution) -> bool:
            return (
                e.tenant == tenant
                and (not flt.request_ids or e.request_id in flt.request_ids)
                and (not flt.device_ids or e.device_id in flt.device_ids)
                and (not flt.states or e.state in flt.states)
                and (flt.command is None or e.command == flt.command)
                and (flt.internal is None or e.internal == flt.internal)
                and (flt.since is None or e.created_at >= flt.since)
                and (flt.until is None or e.created_at < flt.until)
            )

        found = sorted((e for e in self.d.executions.values() if keep(e)), key=lambda e: -e.seq)
        return _page(found, limit, offset)

    def history(self, execution_id: str) -> list[Event]:
        return list(self.d.events.get(execution_id, []))

    def next_wake(self) -> float | None:
        wakes = [e.wake_at for e in self.d.executions.values() if e.wake_at is not None]
        return min(wakes) if wakes else None

    def state_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for e in self.d.executions.values():
            if e.state in PENDING:
                counts[e.state] = counts.get(e.state, 0) + 1
        return counts

    # --- writes ------------------------------------------------------------------------

    def insert_tenant(self, tenant: str, now: float) -> None:
        self._set(self.d.tenants, tenant, now)

    def put_api_key(self, key: ApiKey) -> None:
        self._set(self.d.api_keys, key.id, key)

    def insert_device(self, device: Device) -> None:
        self._set(self.d.devices, device.id, device)

    def update_device(self, device: Device) -> None:
        self._set(self.d.devices, device.id, device)

    def delete_device(self, device_id: str) -> None:
        self._delete(self.d.devices, device_id)

    def find_idempotent(self, tenant: str, key: str) -> tuple[str, float] | None:
        return self.d.idempotency.get((tenant, key))

    def forget_idempotency(self, tenant: str, key: str) -> None:
        self._delete(self.d.idempotency, (tenant, key))

    def insert_request(self, request: CommandRequest) -> None:
        if request.id in self.d.requests:
            raise StoreError(f"duplicate request id {request.id}")
        self._set(self.d.requests, request.id, request)
        if request.idempotency_key is not None:
            entry = (request.id, request.created_at)
            self._set(self.d.idempotency, (request.tenant, request.idempotency_key), entry)

    def request_args(self, request_id: str) -> tuple[dict[str, Any], float]:
        request = self.d.requests[request_id]
        return request.args, request.created_at

    def insert_executions(self, executions: Sequence[Execution]) -> None:
        for execution in executions:
            if execution.id in self.d.executions:
                raise StoreError(f"duplicate execution id {execution.id}")
            self.d.seq += 1
            self._set(self.d.executions, execution.id, execution._replace(seq=self.d.seq))

    def update_execution(self, before: Execution, after: Execution) -> None:
        self._set(self.d.executions, after.id, after._replace(seq=before.seq))

    def update_executions(self, pairs: Sequence[tuple[Execution, Execution]]) -> None:
        for before, after in pairs:
            self.update_execution(before, after)

    def insert_events(self, events: Sequence[Event]) -> None:
        for event in events:
            log = self.d.events.setdefault(event.execution_id, [])
            log.append(event)
            self._undo.append(log.pop)  # type: ignore[arg-type]

    def pending_counts(self, device_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        wanted = set(device_ids)
        counts: dict[str, dict[str, int]] = {}
        for e in self.d.executions.values():
            if e.device_id in wanted and e.state in PENDING:
                by_state = counts.setdefault(e.device_id, {})
                by_state[e.state] = by_state.get(e.state, 0) + 1
        return counts

    def pending_of_device(self, device_id: str) -> list[Execution]:
        return sorted(
            (
                e
                for e in self.d.executions.values()
                if e.device_id == device_id and e.state in PENDING
            ),
            key=lambda e: e.seq,
        )

    def pending_of_request(self, request_id: str) -> list[Execution]:
        return sorted(
            (
                e
                for e in self.d.executions.values()
                if e.request_id == request_id and e.state in PENDING
            ),
            key=lambda e: e.seq,
        )

    def in_flight(self, route_id: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for e in self.d.executions.values():
            if e.route_id == route_id and e.state in IN_FLIGHT:
                counts[e.state] = counts.get(e.state, 0) + 1
        return counts

    def _due(self, e: Execution, now: float) -> bool:
        return (
            e.state is ExecutionState.QUEUED
            and e.not_before <= now < e.expires_at
            and (e.window_end is None or e.window_end > now)
        )

    def queued(self, route_id: str, now: float, limit: int) -> list[Execution]:
        def reachable(e: Execution) -> bool:  # an attached device must be online itself
            device = self.d.devices.get(e.device_id)
            return e.device_id == e.route_id or (device is not None and device.online)

        due = [
            e
            for e in self.d.executions.values()
            if e.route_id == route_id and self._due(e, now) and reachable(e)
        ]
        due.sort(key=lambda e: (-e.priority, e.seq))
        return due[:limit]

    def has_due_ahead(self, route_id: str, now: float, priority: int) -> bool:
        return any(
            e.route_id == route_id and self._due(e, now) and e.priority >= priority
            for e in self.d.executions.values()
        )

    def routes_with_due(self, now: float, limit: int) -> list[str]:
        routes: dict[str, None] = {}
        for e in sorted(self.d.executions.values(), key=lambda e: e.seq):
            device = self.d.devices.get(e.route_id)
            if self._due(e, now) and device is not None and device.online:
                routes[e.route_id] = None
        return list(routes)[:limit]

    def attached_to(self, gateway_id: str) -> list[str]:
        return sorted(d.id for d in self.d.devices.values() if d.gateway_id == gateway_id)

    def devices_speaking(self, protocol: str) -> list[str]:
        return sorted(d.id for d in self.d.devices.values() if d.protocol == protocol)

    def device_passwords(self) -> list[tuple[str, str]]:
        return sorted(
            (d.id, d.password_hash) for d in self.d.devices.values() if d.password_hash is not None
        )

    def docs_of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [r for (k, _), r in self.d.documents.items() if k == kind]

    def queued_routes(self, limit: int) -> list[str]:
        routes = {
            e.route_id: None for e in self.d.executions.values() if e.state is ExecutionState.QUEUED
        }
        return list(routes)[:limit]

    def due_timers(self, now: float, limit: int) -> list[Execution]:
        due = [e for e in self.d.executions.values() if e.wake_at is not None and e.wake_at <= now]
        due.sort(key=lambda e: (e.wake_at or 0.0, e.seq))
        return due[:limit]

    # --- tenants, groups, definitions, dynamic targets, rollouts ----------------------------

    def get_tenant(self, tenant: str) -> Tenant | None:
        if tenant not in self.d.tenants:
            return None
        return Tenant(tenant, self.d.timezones.get(tenant))

    def set_tenant_timezone(self, tenant: str, timezone: str | None) -> None:
        self._set(self.d.timezones, tenant, timezone)

    def get_group(self, group_id: str) -> Group | None:
        group = self.d.groups.get(group_id)
        if group is None:
            return None
        return replace(group, size=len(self.d.members.get(group_id, {})))

    def group_id_by_name(self, tenant: str, name: str) -> str | None:
        return next(
            (g.id for g in self.d.groups.values() if g.tenant == tenant and g.name == name), None
        )

    def list_groups(self, tenant: str, limit: int, offset: int) -> Page[Group]:
        found = sorted(
            (g for g in self.d.groups.values() if g.tenant == tenant), key=lambda g: g.name
        )
        page = _page(found, limit, offset)
        return Page(page.count, [self.get_group(g.id) or g for g in page.results], page.capped)

    def put_group(self, group: Group) -> None:
        self._set(self.d.groups, group.id, group)

    def delete_group(self, group_id: str) -> None:
        self._delete(self.d.members, group_id)
        self._delete(self.d.groups, group_id)

    def add_member(self, group_id: str, device_id: str, now: float) -> bool:
        members = dict(self.d.members.get(group_id, {}))
        if device_id in members:
            return False
        members[device_id] = now
        self._set(self.d.members, group_id, members)
        return True

    def remove_member(self, group_id: str, device_id: str) -> bool:
        members = dict(self.d.members.get(group_id, {}))
        if members.pop(device_id, None) is None:
            return False
        self._set(self.d.members, group_id, members)
        return True

    def remove_device_memberships(self, device_id: str) -> None:
        for group_id in list(self.d.members):
            self.remove_member(group_id, device_id)

    def group_members(self, group_id: str, limit: int, offset: int) -> Page[Device]:
        ids = sorted(self.d.members.get(group_id, {}))
        return _page([self.d.devices[i] for i in ids if i in self.d.devices], limit, offset)

    def members_of(self, group_ids: Sequence[str]) -> list[str]:
        found: dict[str, None] = {}
        for group_id in group_ids:
            members = self.d.members.get(group_id, {})
            found.update((d, None) for d in sorted(members, key=lambda d: (members[d], d)))
        return list(found)

    def find_devices(self, tenant: str, flt: TargetFilter, limit: int) -> list[str]:
        candidates: set[str] | None = None
        if flt.devices or flt.groups:
            candidates = set(flt.devices) | set(self.members_of(flt.groups))
        found = [
            d.id
            for d in sorted(self.d.devices.values(), key=lambda d: d.id)
            if d.tenant == tenant
            and (candidates is None or d.id in candidates)
            and all(d.labels.get(k) == v for k, v in flt.labels)
            and (flt.kind is None or d.kind == flt.kind)
            and (flt.online is None or self._reachable(d) == flt.online)
        ]
        return found[:limit]

    def get_definition(self, tenant: str, name: str) -> Definition | None:
        return self.d.definitions.get((tenant, name))

    def list_definitions(self, tenant: str) -> list[Definition]:
        return sorted(
            (v for (t, _), v in self.d.definitions.items() if t == tenant), key=lambda d: d.name
        )

    def put_definition(self, tenant: str, definition: Definition, now: float) -> None:
        self._set(self.d.definitions, (tenant, definition.name), definition)

    def delete_definition(self, tenant: str, name: str) -> bool:
        if (tenant, name) not in self.d.definitions:
            return False
        self._delete(self.d.definitions, (tenant, name))
        return True

    def get_doc(self, kind: str, doc_id: str) -> dict[str, Any] | None:
        return self.d.documents.get((kind, doc_id))

    def list_docs(self, kind: str, tenant: str, limit: int, offset: int) -> Page[dict[str, Any]]:
        found = sorted(
            (r for (k, _), r in self.d.documents.items() if k == kind and r["tenant"] == tenant),
            key=lambda r: (r["created_at"], r["id"]),
        )
        return _page(found, limit, offset)

    def docs_named(self, kind: str, tenant: str, name: str) -> list[dict[str, Any]]:
        return [
            r
            for (k, _), r in self.d.documents.items()
            if k == kind and r["tenant"] == tenant and r["name"] == name
        ]

    def put_doc(self, kind: str, row: dict[str, Any], unique: bool) -> None:
        if unique and any(
            r["id"] != row["id"] for r in self.docs_named(kind, row["tenant"], row["name"])
        ):
            raise StoreError(f"UNIQUE constraint: a {kind} named {row['name']!r} exists")
        self._set(self.d.documents, (kind, row["id"]), row)

    def delete_doc(self, kind: str, doc_id: str) -> bool:
        if (kind, doc_id) not in self.d.documents:
            return False
        self._delete(self.d.documents, (kind, doc_id))
        return True

    def set_rollout_state(self, request_id: str, state: str) -> None:
        self._set(
            self.d.requests, request_id, replace(self.d.requests[request_id], rollout_state=state)
        )


class MemoryBackend:
    """Runs each transaction at once on the event loop; nothing survives the process."""

    def __init__(self) -> None:
        self._data = _Data()
        self.on_commit: Callable[[Sequence[Change]], None] | None = None

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def write(self, fn: Callable[[Tx], T]) -> T:
        tx = MemoryTx(self._data)
        try:
            result = fn(tx)
        except BaseException:
            tx.rollback()
            raise
        if tx.changes and self.on_commit is not None:
            self.on_commit(tx.changes)
        return result

    async def read(self, fn: Callable[[ReadTx], T]) -> T:
        return fn(MemoryTx(self._data))
