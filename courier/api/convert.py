"""Records to REST answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from fastapi import Request

from courier.clock import isoformat
from courier.core.records import (
    ApiKey,
    CommandRequest,
    Device,
    Event,
    Execution,
    Group,
    Page,
    RetryPolicy,
)
from courier.core.rollout import rollout_status
from courier.schemas.api import (
    DEFAULT_POLICY,
    DEFAULT_RETRY,
    ApiKeyOut,
    BackoffIn,
    CommandRequestOut,
    DeviceOut,
    EventOut,
    ExecutionOut,
    ExecutionRef,
    PageOut,
    RetryIn,
    SkippedDevice,
)
from courier.schemas.fleet import GroupOut, RolloutOut
from courier.schemas.states import ESPER_STATES

T = TypeVar("T")
R = TypeVar("R")


def _iso(ts: float | None) -> str | None:
    return None if ts is None else isoformat(ts)


def device_out(d: Device) -> DeviceOut:
    return DeviceOut(
        id=d.id,
        tenant=d.tenant,
        kind=d.kind,
        gateway_id=d.gateway_id,
        protocol=d.protocol,
        labels=d.labels,
        timezone=d.timezone,
        delivery_policy=d.delivery_policy,
        authorization_ids=list(d.authorization_ids),
        online=d.online,
        last_seen=_iso(d.last_seen),
        created_on=isoformat(d.created_at),
        updated_on=isoformat(d.updated_at),
    )


def execution_out(e: Execution) -> ExecutionOut:
    return ExecutionOut(
        id=e.id,
        request_id=e.request_id,
        tenant=e.tenant,
        device_id=e.device_id,
        command=e.command,
        state=e.state,
        esper_state=ESPER_STATES[e.state],
        attempt=e.attempt,
        max_attempts=e.retry.max_attempts,
        reason=e.reason,
        progress=e.progress,
        output=e.output,
        created_on=isoformat(e.created_at),
        updated_on=isoformat(e.updated_at),
        sent_on=_iso(e.sent_at),
        expires_on=isoformat(e.expires_at),
        deadline_on=_iso(e.deadline),
        retry_of=e.retry_of,
    )


def event_out(e: Event) -> EventOut:
    return EventOut(
        at=isoformat(e.at),
        kind=e.kind,
        from_state=e.from_state,
        state=e.to_state,
        actor=e.actor,
        attempt=e.attempt,
        reason=e.reason,
        data=e.data,
    )


def retry_in(policy: RetryPolicy) -> RetryIn:
    if policy == DEFAULT_POLICY:
        return DEFAULT_RETRY
    return RetryIn(
        max_attempts=policy.max_attempts,
        on=policy.on,
        backoff=BackoffIn(
            initial=policy.initial, multiplier=policy.multiplier, max=policy.max_delay
        ),
    )


def request_out(
    r: CommandRequest,
    executions: list[Execution] | None = None,
    counts: dict[str, int] | None = None,
) -> CommandRequestOut:
    if counts is None and executions is not None:
        counts = {}
        for e in executions:
            counts[e.state] = counts.get(e.state, 0) + 1
    schedule_args = None
    if r.schedule is not None:
        schedule_args = {k: v for k, v in r.schedule.to_json().items() if k != "kind"}
    rollout = None
    if r.rollout is not None:
        total = sum(counts.values()) if counts is not None else 0
        rollout = RolloutOut(
            max_per_minute=r.rollout.max_per_minute,
            abort_failure_percent=r.rollout.abort_failure_percent,
            abort_min_finished=r.rollout.abort_min_finished,
            state=rollout_status(r.rollout_state, counts or {}, total)
            if counts is not None or r.rollout_state
            else "running",
            reason=r.rollout_state,
        )
    target_filter = None if r.filter is None else r.filter.to_json()
    return CommandRequestOut(
        id=r.id,
        tenant=r.tenant,
        command_type=r.command_type,
        devices=r.devices,
        groups=r.groups,
        filter=target_filter,
        device_type=r.device_type,
        command=r.command,
        args=r.args,
        internal=r.internal,
        schedule="IMMEDIATE" if r.schedule is None else r.schedule.kind.value,
        schedule_args=schedule_args,
        ttl=r.ttl,
        timeout=r.timeout,
        ack_timeout=r.ack_timeout,
        retry=retry_in(r.retry),
        priority=r.priority,
        issued_by=r.issued_by,
        created_on=isoformat(r.created_at),
        executions=None
        if executions is None
        else [ExecutionRef(id=e.id, device=e.device_id, state=e.state) for e in executions],
        skipped=[SkippedDevice(**s) for s in r.skipped],
        state_counts=counts if executions is None else None,
        rollout=rollout,
    )


def group_out(g: Group) -> GroupOut:
    return GroupOut(
        id=g.id,
        tenant=g.tenant,
        name=g.name,
        size=g.size,
        created_on=isoformat(g.created_at),
        updated_on=isoformat(g.updated_at),
    )


def api_key_out(k: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(
        id=k.id,
        tenant=k.tenant,
        name=k.name,
        scopes=sorted(k.scopes),
        created_on=isoformat(k.created_at),
        expires_on=_iso(k.expires_at),
        revoked_on=_iso(k.revoked_at),
    )


def page_out(
    request: Request, page: Page[T], limit: int, offset: int, convert: Callable[[T], R]
) -> PageOut[R]:
    """A page with links to the next and previous pages (same query, moved offset)."""

    def link(new_offset: int) -> str:
        return str(request.url.include_query_params(limit=limit, offset=new_offset))

    more = offset + limit < page.count or (page.capped and len(page.results) == limit)
    return PageOut[R](
        count=page.count,
        count_capped=page.capped,
        next=link(offset + limit) if more else None,
        previous=link(max(0, offset - limit)) if offset > 0 else None,
        results=[convert(item) for item in page.results],
    )
