"""Mapping between SQLite rows and Courier's records."""

from __future__ import annotations

from typing import Any

import orjson

from courier.core.records import (
    ApiKey,
    CommandRequest,
    DeliveryPolicy,
    Device,
    DeviceKind,
    DeviceType,
    Event,
    Execution,
    Protocol,
    RetryOn,
    RetryPolicy,
    Rollout,
    TargetFilter,
)
from courier.core.schedule import Schedule
from courier.schemas.states import PENDING, ExecutionState

# fmt: off
EXEC_COLUMNS = (
    "id", "tenant_id", "request_id", "device_id", "route_id", "command", "state", "attempt",
    "retry_max", "retry_on", "backoff_initial", "backoff_multiplier", "backoff_max", "priority",
    "timeout", "ack_timeout", "created_at", "updated_at", "expires_at", "not_before", "sent_at",
    "ack_deadline", "deadline", "wake_at", "reason", "output", "progress", "reply_floor",
    "retry_of", "internal", "window_end", "attempt_base", "seq",
)
DEVICE_COLUMNS = (
    "id", "tenant_id", "kind", "gateway_id", "protocol", "labels", "timezone", "delivery_policy",
    "password_hash", "online", "last_seen", "created_at", "updated_at", "authorization_ids",
    "payload_key",
)
REQUEST_COLUMNS = (
    "id", "tenant_id", "command_type", "command", "args", "devices", "device_type", "ttl",
    "timeout", "ack_timeout", "retry", "priority", "issued_by", "created_at", "idempotency_key",
    "body_hash", "skipped", "targets", "schedule", "rollout", "rollout_state", "internal",
)
# fmt: on
EXEC_INSERT_COLUMNS = EXEC_COLUMNS[:-1]

# Execution fields that an update may change, by their index in the record.
_MUTABLE = tuple(
    (Execution._fields.index(name), name)
    for name in (
        "state",
        "attempt",
        "priority",
        "timeout",
        "ack_timeout",
        "updated_at",
        "expires_at",
        "not_before",
        "sent_at",
        "ack_deadline",
        "deadline",
        "wake_at",
        "reason",
        "progress",
        "reply_floor",
        "retry_of",
        "window_end",
        "attempt_base",
    )
)
_OUTPUT = Execution._fields.index("output")
_INTERNAL = Execution._fields.index("internal")
_STATES = {s.value: s for s in ExecutionState}
_KINDS = {k.value: k for k in DeviceKind}
_PROTOCOLS = {p.value: p for p in Protocol}
_POLICIES = {p.value: p for p in DeliveryPolicy}
_RETRY: dict[tuple[Any, ...], RetryPolicy] = {}

FRAGMENTS = {
    "exec_columns": ", ".join(EXEC_COLUMNS),
    "exec_insert_columns": ", ".join(EXEC_INSERT_COLUMNS),
    "exec_insert_marks": ", ".join("?" * len(EXEC_INSERT_COLUMNS)),
    "device_columns": ", ".join(DEVICE_COLUMNS),
    "request_columns": ", ".join(REQUEST_COLUMNS),
    "request_marks": ", ".join("?" * len(REQUEST_COLUMNS)),
    "pending_states": ", ".join(f"'{s.value}'" for s in sorted(PENDING)),
}


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def loads_or_none(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


def _retry(key: tuple[Any, ...]) -> RetryPolicy:
    policy = _RETRY.get(key)
    if policy is None:
        policy = RetryPolicy(key[0], RetryOn(key[1]), key[2], key[3], key[4])
        if len(_RETRY) < 1024:
            _RETRY[key] = policy
    return policy


def execution_from_row(row: tuple[Any, ...]) -> Execution:
    """A row of EXEC_COLUMNS as a record (positional: this runs for every row the bridge reads)."""
    output = row[25]
    return Execution._make(
        (
            *row[:6],
            _STATES[row[6]],
            row[7],
            _retry(row[8:13]),
            *row[13:25],
            None if output is None else orjson.loads(output),
            *row[26:29],
            bool(row[29]),
            *row[30:33],
        )
    )


def execution_params(e: Execution) -> tuple[Any, ...]:
    r = e.retry
    return (
        e.id,
        e.tenant,
        e.request_id,
        e.device_id,
        e.route_id,
        e.command,
        e.state.value,
        e.attempt,
        r.max_attempts,
        r.on.value,
        r.initial,
        r.multiplier,
        r.max_delay,
        e.priority,
        e.timeout,
        e.ack_timeout,
        e.created_at,
        e.updated_at,
        e.expires_at,
        e.not_before,
        e.sent_at,
        e.ack_deadline,
        e.deadline,
        e.wake_at,
        e.reason,
        None if e.output is None else dumps(e.output),
        e.progress,
        e.reply_floor,
        e.retry_of,
        int(e.internal),
        e.window_end,
        e.attempt_base,
    )


def execution_diff(before: Execution, after: Execution) -> dict[str, Any]:
    """The columns whose values differ, so an UPDATE touches only the indexes it must."""
    diff: dict[str, Any] = {}
    for index, name in _MUTABLE:
        value = after[index]
        if value != before[index]:
            diff[name] = value
    if after[_OUTPUT] != before[_OUTPUT]:
        diff["output"] = None if after.output is None else dumps(after.output)
    if after[_INTERNAL] != before[_INTERNAL]:
        diff["internal"] = int(after.internal)
    return diff


def device_from_row(row: tuple[Any, ...]) -> Device:
    """Positional, enums by lookup, empty JSON without parsing: a fan-out reads a thousand."""
    (
        id_,
        tenant,
        kind,
        gateway_id,
        protocol,
        labels,
        timezone,
        policy,
        password_hash,
        online,
        last_seen,
        created_at,
        updated_at,
        authorization_ids,
        payload_key,
    ) = row
    return Device(
        id_,
        tenant,
        _KINDS[kind],
        gateway_id,
        _PROTOCOLS[protocol],
        {} if labels == "{}" else orjson.loads(labels),
        timezone,
        _POLICIES[policy],
        password_hash,
        bool(online),
        last_seen,
        created_at,
        updated_at,
        () if authorization_ids == "[]" else tuple(orjson.loads(authorization_ids)),
        payload_key,
    )


def device_params(d: Device) -> tuple[Any, ...]:
    return (
        d.id,
        d.tenant,
        d.kind.value,
        d.gateway_id,
        d.protocol.value,
        dumps(d.labels),
        d.timezone,
        d.delivery_policy.value,
        d.password_hash,
        int(d.online),
        d.last_seen,
        d.created_at,
        d.updated_at,
        dumps(list(d.authorization_ids)),
        d.payload_key,
    )


def request_from_row(row: tuple[Any, ...]) -> CommandRequest:
    (
        id_,
        tenant,
        command_type,
        command,
        args,
        devices,
        device_type,
        ttl,
        timeout,
        ack_timeout,
        retry,
        priority,
        issued_by,
        created_at,
        idempotency_key,
        body_hash,
        skipped,
        targets,
        schedule,
        rollout,
        rollout_state,
        internal,
    ) = row
    r = orjson.loads(retry)
    target_data = orjson.loads(targets)
    target_filter = target_data.get("filter")
    return CommandRequest(
        id=id_,
        tenant=tenant,
        command=command,
        args=orjson.loads(args),
        devices=orjson.loads(devices),
        device_type=DeviceType(device_type),
        ttl=ttl,
        timeout=timeout,
        ack_timeout=ack_timeout,
        retry=RetryPolicy(
            r["max_attempts"], RetryOn(r["on"]), r["initial"], r["multiplier"], r["max_delay"]
        ),
        priority=priority,
        issued_by=issued_by,
        created_at=created_at,
        command_type=command_type,
        idempotency_key=idempotency_key,
        body_hash=body_hash,
        skipped=orjson.loads(skipped),
        groups=target_data.get("groups", []),
        filter=None if target_filter is None else TargetFilter.from_json(target_filter),
        schedule=None if schedule is None else Schedule.from_json(orjson.loads(schedule)),
        rollout=None if rollout is None else Rollout(**orjson.loads(rollout)),
        rollout_state=rollout_state,
        internal=bool(internal),
    )


_RETRY_TEXT: dict[RetryPolicy, str] = {}
_NO_TARGETS = dumps({"groups": [], "filter": None})


def _retry_text(r: RetryPolicy) -> str:
    """A retry policy's JSON (most requests share a few policies: the text of each is kept)."""
    text = _RETRY_TEXT.get(r)
    if text is None:
        text = dumps(
            {
                "max_attempts": r.max_attempts,
                "on": r.on.value,
                "initial": r.initial,
                "multiplier": r.multiplier,
                "max_delay": r.max_delay,
            }
        )
        if len(_RETRY_TEXT) < 1024:
            _RETRY_TEXT[r] = text
    return text


def request_params(q: CommandRequest) -> tuple[Any, ...]:
    if q.groups or q.filter is not None:
        targets = dumps(
            {"groups": q.groups, "filter": None if q.filter is None else q.filter.to_json()}
        )
    else:
        targets = _NO_TARGETS
    rollout = None if q.rollout is None else q.rollout.to_json()
    return (
        q.id,
        q.tenant,
        q.command_type,
        q.command,
        dumps(q.args) if q.args else "{}",
        dumps(q.devices),
        q.device_type.value,
        q.ttl,
        q.timeout,
        q.ack_timeout,
        _retry_text(q.retry),
        q.priority,
        q.issued_by,
        q.created_at,
        q.idempotency_key,
        q.body_hash,
        dumps(q.skipped) if q.skipped else "[]",
        targets,
        None if q.schedule is None else dumps(q.schedule.to_json()),
        None if rollout is None else dumps(rollout),
        q.rollout_state,
        int(q.internal),
    )


def api_key_from_row(row: tuple[Any, ...]) -> ApiKey:
    id_, tenant, secret_hash, scopes, name, created_at, expires_at, revoked_at = row
    return ApiKey(
        id=id_,
        tenant=tenant,
        secret_hash=secret_hash,
        scopes=frozenset(s for s in scopes.split(",") if s),
        name=name,
        created_at=created_at,
        expires_at=expires_at,
        revoked_at=revoked_at,
    )


def api_key_params(k: ApiKey) -> tuple[Any, ...]:
    return (
        k.id,
        k.tenant,
        k.secret_hash,
        ",".join(sorted(k.scopes)),
        k.name,
        k.created_at,
        k.expires_at,
        k.revoked_at,
    )


def event_from_row(row: tuple[Any, ...]) -> Event:
    execution_id, tenant, at, kind, from_state, to_state, actor, attempt, reason, data = row
    return Event(
        execution_id=execution_id,
        tenant=tenant,
        at=at,
        kind=kind,
        from_state=None if from_state is None else ExecutionState(from_state),
        to_state=ExecutionState(to_state),
        actor=actor,
        attempt=attempt,
        reason=reason,
        data=loads_or_none(data),
    )


def event_params(e: Event) -> tuple[Any, ...]:
    return (
        e.execution_id,
        e.tenant,
        e.at,
        e.kind,
        None if e.from_state is None else e.from_state.value,
        e.to_state.value,
        e.actor,
        e.attempt,
        e.reason,
        None if e.data is None else dumps(e.data),
    )
