"""The store's domain verbs, written once over `Tx` and run inside a backend's transaction.

Each verb loads rows, asks courier.core.lifecycle what changes, and persists the answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import field, replace
from typing import Any

from courier.core import lifecycle
from courier.core.documents import ServiceUser
from courier.core.policy import over_queue_bound, select_by_presence
from courier.core.records import (
    ApiKey,
    Change,
    CommandRequest,
    DeliveryPolicy,
    Device,
    DeviceKind,
    Dispatch,
    Execution,
    Ignored,
    Protocol,
)
from courier.errors import (
    AlreadyExists,
    CourierError,
    IdempotencyConflict,
    IllegalTransition,
    InvalidInput,
    NotFound,
    QueueFull,
)
from courier.ids import new_id
from courier.record import record
from courier.schemas.states import IN_FLIGHT, PENDING, TERMINAL, ExecutionState
from courier.store import documents, fleet
from courier.store.tx import ReadTx, Tx

IDEMPOTENCY_WINDOW = 24 * 3600.0
Rand = Callable[[], float]


@record
class Created:
    request: CommandRequest
    executions: list[Execution]
    replayed: bool


def apply(tx: Tx, changes: Sequence[Change]) -> None:
    """Persist decided changes and their events, and remember them for the listeners."""
    tx.insert_executions([c.after for c in changes if c.before is None])
    tx.update_executions([(c.before, c.after) for c in changes if c.before is not None])
    tx.insert_events([c.event for c in changes])
    tx.changes.extend(changes)


def route_of(device: Device) -> str:
    """The device whose MQTT topics carry this device's commands (its gateway if attached)."""
    return device.gateway_id or device.id


def reachable(tx: ReadTx, device: Device, known: dict[str, Device] | None = None) -> bool:
    """Online, and behind an online gateway when attached to one."""
    if not device.online:
        return False
    if device.gateway_id is None:
        return True
    gateway = fleet.devices_by_id(tx, [device.gateway_id], known).get(device.gateway_id)
    return gateway is not None and gateway.online


def presented(tx: ReadTx, devices: list[Device]) -> list[Device]:
    """Devices as the API shows them: an attached device is online only while its gateway
    is too (the device's own flag is what its gateway last announced)."""
    gateways = fleet.devices_by_id(tx, list({d.gateway_id for d in devices if d.gateway_id}))
    return [
        d if not d.online or reachable(tx, d, gateways) else replace(d, online=False)
        for d in devices
    ]


# --- tenants, keys, devices -------------------------------------------------------------


def add_api_key(tx: Tx, key: ApiKey) -> None:
    if not tx.tenant_exists(key.tenant):
        tx.insert_tenant(key.tenant, key.created_at)
    tx.put_api_key(key)


def revoke_api_key(tx: Tx, tenant: str, key_id: str, now: float) -> ApiKey:
    key = tx.get_api_key(key_id)
    if key is None or key.tenant != tenant:
        raise NotFound(f"no API key {key_id}")
    if key.revoked_at is None:
        key = replace(key, revoked_at=now)
        tx.put_api_key(key)
    return key


def add_device(tx: Tx, device: Device) -> Device:
    if tx.get_device(device.id) is not None:
        raise AlreadyExists(f"device {device.id} is already registered")
    if any(row["name"] == device.id for row in tx.docs_of_kind(ServiceUser.kind)):
        raise AlreadyExists(f"{device.id} is a service user's name; MQTT usernames are shared")
    if device.gateway_id is not None:
        gateway = tx.get_device(device.gateway_id)
        if gateway is None or gateway.tenant != device.tenant:
            raise InvalidInput(f"gateway_id: no gateway {device.gateway_id}")
        if gateway.kind is not DeviceKind.GATEWAY:
            raise InvalidInput(f"gateway_id: {device.gateway_id} is not a gateway")
        if device.kind is DeviceKind.GATEWAY:
            raise InvalidInput("a gateway cannot be attached to another gateway")
    if not tx.tenant_exists(device.tenant):
        tx.insert_tenant(device.tenant, device.created_at)
    tx.insert_device(device)
    return device


def tenant_device(tx: Tx, tenant: str, device_id: str) -> Device:
    device = tx.get_device(device_id)
    if device is None or device.tenant != tenant:
        raise NotFound(f"no device {device_id}")
    return device


def update_device(
    tx: Tx, tenant: str, device_id: str, fields: dict[str, Any], now: float
) -> Device:
    device = replace(tenant_device(tx, tenant, device_id), updated_at=now, **fields)
    tx.update_device(device)
    return device


def delete_device(tx: Tx, tenant: str, device_id: str, actor: str, now: float) -> list[Change]:
    """Delete a device (and a gateway's attached devices); their pending work is cancelled."""
    device = tenant_device(tx, tenant, device_id)
    doomed = [device_id]
    if device.kind is DeviceKind.GATEWAY:
        doomed += tx.attached_to(device_id)
    changes: list[Change] = []
    for doomed_id in doomed:
        reason = "device deleted" if doomed_id == device_id else f"its gateway {device_id} deleted"
        changes += [
            lifecycle.cancel(e, now, actor, reason) for e in tx.pending_of_device(doomed_id)
        ]
    apply(tx, changes)
    for doomed_id in doomed:
        tx.remove_device_memberships(doomed_id)
        tx.delete_device(doomed_id)
    return changes


def set_presence(tx: Tx, device_id: str, online: bool, now: float) -> tuple[Device, bool] | None:
    """Record presence; answers the device and whether it changed, or None if unknown."""
    device = tx.get_device(device_id)
    if device is None:
        return None
    changed = device.online != online
    tx.update_device(replace(device, online=online, last_seen=now))
    return replace(device, online=online, last_seen=now), changed


def set_attached_presence(
    tx: Tx, gateway_id: str, device_id: str, online: bool, now: float
) -> tuple[Device, bool] | str:
    """A gateway announces an attached device: registered on first sight (in the gateway's
    tenant), its presence recorded. Answers (device, changed), or why it was refused."""
    gateway = tx.get_device(gateway_id)
    if gateway is None:
        return "unknown gateway"
    if gateway.kind is not DeviceKind.GATEWAY:
        return "not a gateway"
    device = tx.get_device(device_id)
    if device is None:
        device = Device(
            id=device_id,
            tenant=gateway.tenant,
            gateway_id=gateway_id,
            online=online,
            last_seen=now,
            created_at=now,
            updated_at=now,
        )
        tx.insert_device(device)
        return device, True
    if device.gateway_id != gateway_id:
        return "attached to another gateway" if device.gateway_id else "not an attached device"
    changed = device.online != online
    device = replace(device, online=online, last_seen=now)
    tx.update_device(device)
    return device, changed


# --- requests -----------------------------------------------------------------------------


@record
class Known:
    """What the requests of one transaction share: their devices, read once, and each
    device's unfinished executions per state, kept up to date as executions are created."""

    devices: dict[str, Device] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    counted: set[str] = field(default_factory=set)

    @classmethod
    def read(cls, tx: Tx, device_ids: Sequence[str]) -> Known:
        known = cls()
        wanted = list(dict.fromkeys(device_ids))
        known.devices.update(tx.get_devices(wanted))
        known.pending_counts(tx, wanted)
        return known

    def pending_counts(self, tx: Tx, device_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        missing = [d for d in device_ids if d not in self.counted]
        if missing:
            self.counts.update(tx.pending_counts(missing))
            self.counted.update(missing)
        return {d: self.counts[d] for d in device_ids if d in self.counts}

    def created(self, executions: Sequence[Execution]) -> None:
        for execution in executions:
            if execution.state in PENDING:
                by_state = self.counts.setdefault(execution.device_id, {})
                by_state[execution.state] = by_state.get(execution.state, 0) + 1


def create_request(
    tx: Tx,
    request: CommandRequest,
    queue_bound: int,
    now: float,
    in_flight_cap: int = 0,
    known: Known | None = None,
) -> Created:
    """Store a request and one execution per selected device, atomically.

    With `in_flight_cap`, an execution whose device is reachable and would be the next one
    sent is created already SENT (its dispatch rides on the change for the bridge to
    publish after the commit): one transaction instead of two for the common case.
    `known` carries what a batch of requests read once for all of them.
    """
    key = request.idempotency_key
    if key is not None:
        found = tx.find_idempotent(request.tenant, key)
        if found is not None and found[1] > now - IDEMPOTENCY_WINDOW:
            prior = tx.get_request(found[0])
            assert prior is not None
            if prior.body_hash != request.body_hash:
                raise IdempotencyConflict(
                    "Idempotency-Key was already used for a different request within 24 h"
                )
            return Created(prior, tx.executions_of_request(prior.id), replayed=True)
        if found is not None:
            tx.forget_idempotency(request.tenant, key)
    if known is None:
        known = Known()
    targets = fleet.resolve_targets(tx, request, known.devices)
    devices = fleet.devices_by_id(tx, targets, known.devices)
    presence = {d: reachable(tx, devices[d], known.devices) for d in targets}
    selected, skipped = select_by_presence(((d, presence[d]) for d in targets), request.device_type)
    counts = known.pending_counts(tx, selected)
    full = over_queue_bound({d: sum(counts.get(d, {}).values()) for d in selected}, queue_bound)
    if full:
        raise QueueFull(
            f"queue bound of {queue_bound} pending executions reached for: {', '.join(full)}",
            devices=full,
        )
    if request.command_type == "DEVICE" and request.devices != targets:
        request = replace(request, devices=targets)
    if request.skipped != skipped:
        request = replace(request, skipped=skipped)
    tx.insert_request(request)
    changes: list[Change] = []
    for index, device_id in enumerate(selected):
        device = devices[device_id]
        route = route_of(device)
        created = lifecycle.new_execution(
            request,
            new_id(),
            device_id,
            route,
            presence[device_id],
            now,
            windows=fleet.windows_of(tx, request, device),
            not_before=fleet.stagger(request, index, now),
        )
        changes.append(created)
        if (
            in_flight_cap
            and presence[device_id]
            and created.after.state is ExecutionState.QUEUED
            and created.after.not_before <= now
            and _room(
                delivery_policy(device),
                _in_flight_of(tx, route, device_id, counts),
                in_flight_cap,
            )
            > 0
            and not _due_ahead(tx, route, device_id, counts, now, request.priority)
        ):
            sent = lifecycle.send(created.after, now)
            dispatch = Dispatch(sent.after, request.args, request.created_at)
            changes.append(Change(created.after, sent.after, sent.event, dispatch))
    executions = _apply_new(tx, changes)
    known.created(executions)
    return Created(request, executions, replayed=False)


def _in_flight_of(
    tx: Tx, route: str, device_id: str, counts: dict[str, dict[str, int]]
) -> dict[str, int]:
    if route != device_id:  # an attached device: its gateway's window counts
        return tx.in_flight(route)
    return {s: n for s, n in counts.get(device_id, {}).items() if s in IN_FLIGHT}


def _due_ahead(
    tx: Tx,
    route: str,
    device_id: str,
    counts: dict[str, dict[str, int]],
    now: float,
    priority: int,
) -> bool:
    if route == device_id and not counts.get(device_id, {}).get(ExecutionState.QUEUED):
        return False
    return tx.has_due_ahead(route, now, priority)


def create_requests(
    tx: Tx, requests: Sequence[CommandRequest], queue_bound: int, now: float, in_flight_cap: int
) -> list[Created | CourierError]:
    """Several requests in one transaction; each succeeds or fails on its own.

    Safe without savepoints because `create_request` checks everything before it writes.
    The devices the requests name are read once for all of them.
    """
    known = Known.read(tx, [d for q in requests if q.command_type == "DEVICE" for d in q.devices])
    results: list[Created | CourierError] = []
    for request in requests:
        try:
            results.append(create_request(tx, request, queue_bound, now, in_flight_cap, known))
        except CourierError as exc:
            results.append(exc)
    return results


def _apply_new(tx: Tx, changes: list[Change]) -> list[Execution]:
    """Persist the changes of new executions: one insert per execution, in its final state."""
    executions = _latest(changes)
    tx.insert_executions(executions)
    tx.insert_events([c.event for c in changes])
    tx.changes.extend(changes)
    return executions


def _latest(changes: list[Change]) -> list[Execution]:
    """Each execution as the last of `changes` leaves it, in order of first appearance."""
    final: dict[str, Execution] = {}
    for change in changes:
        final[change.after.id] = change.after
    return list(final.values())


def tenant_request(tx: Tx, tenant: str, request_id: str) -> CommandRequest:
    request = tx.get_request(request_id)
    if request is None or request.tenant != tenant:
        raise NotFound(f"no command request {request_id}")
    return request


def cancel_request(
    tx: Tx, tenant: str, request_id: str, actor: str, reason: str | None, now: float
) -> list[Change]:
    tenant_request(tx, tenant, request_id)
    changes = [lifecycle.cancel(e, now, actor, reason) for e in tx.pending_of_request(request_id)]
    apply(tx, changes)
    return changes


# --- executions -------------------------------------------------------------------------


def tenant_execution(tx: Tx, tenant: str, execution_id: str) -> Execution:
    execution = tx.get_execution(execution_id)
    if execution is None or execution.tenant != tenant:
        raise NotFound(f"no execution {execution_id}")
    return execution


def cancel_execution(
    tx: Tx, tenant: str, execution_id: str, actor: str, reason: str | None, now: float
) -> Change:
    change = lifecycle.cancel(tenant_execution(tx, tenant, execution_id), now, actor, reason)
    apply(tx, [change])
    return change


def update_state(
    tx: Tx,
    tenant: str,
    execution_id: str,
    state: ExecutionState,
    reason: str | None,
    output: Any,
    progress: int | None,
    actor: str,
    now: float,
    rand: Rand,
) -> Execution:
    execution = tenant_execution(tx, tenant, execution_id)
    change = lifecycle.update_state(
        execution,
        state,
        now,
        rand(),
        actor,
        reason=reason,
        output=output,
        progress=progress,
        windows=fleet.windows_for(tx, execution),
    )
    if change is None:
        return execution
    apply(tx, [change])
    documents.follow_observations(tx, [change], now)
    fleet.check_rollouts(tx, [change], now)
    return change.after


def reissue(
    tx: Tx, tenant: str, execution_id: str, actor: str, queue_bound: int, now: float
) -> Execution:
    """A new execution of a terminal one's request for the same device, linked to it."""
    old = tenant_execution(tx, tenant, execution_id)
    if old.state not in TERMINAL:
        raise IllegalTransition(old.state, "re-issue", "only an ended execution can be re-issued")
    device = tx.get_device(old.device_id)
    if device is None or device.tenant != tenant:
        raise InvalidInput(f"device {old.device_id} is no longer registered")
    pending = {d: sum(states.values()) for d, states in tx.pending_counts([device.id]).items()}
    if over_queue_bound(pending, queue_bound):
        raise QueueFull(f"queue bound of {queue_bound} pending executions reached for {device.id}")
    request = tx.get_request(old.request_id)
    assert request is not None
    request = replace(request, issued_by=actor)
    change = lifecycle.new_execution(
        request,
        new_id(),
        device.id,
        route_of(device),
        reachable(tx, device),
        now,
        old.id,
        windows=fleet.windows_of(tx, request, device),
    )
    apply(tx, [change])
    return change.after


# --- the engine's verbs -----------------------------------------------------------------


def delivery_policy(device: Device) -> DeliveryPolicy:
    """LwM2M allows one outstanding request per endpoint, whatever the device says."""
    if device.protocol is Protocol.LWM2M:
        return DeliveryPolicy.SEQUENTIAL_ON_RESULT
    return device.delivery_policy


def _room(policy: DeliveryPolicy, in_flight: dict[str, int], cap: int) -> int:
    """How many more executions may go to a device now, by its delivery policy."""
    total = sum(in_flight.values())
    if policy is DeliveryPolicy.SEQUENTIAL_ON_RESULT:
        return 0 if total else 1
    if policy is DeliveryPolicy.SEQUENTIAL_ON_ACK:
        return 0 if in_flight.get(ExecutionState.SENT, 0) else min(1, cap - total)
    return cap - total


def claim_due(
    tx: Tx,
    route_ids: Sequence[str] | None,
    now: float,
    limit: int,
    in_flight_cap: int,
    actor: str = lifecycle.BRIDGE,
    require_online: bool = True,
    publish: bool = True,
) -> list[Dispatch]:
    """Mark due QUEUED executions SENT (committed before anything is published).

    With `publish`, each change carries its dispatch, which the bridge publishes once the
    commit is done; the inbox passes False, since a polling device takes them over HTTP.
    """
    routes = list(route_ids) if route_ids is not None else tx.routes_with_due(now, limit)
    out: list[Dispatch] = []
    for route in routes:
        if len(out) >= limit:
            break
        device = tx.get_device(route)
        if device is None or (require_online and not device.online):
            continue
        room = min(
            _room(delivery_policy(device), tx.in_flight(route), in_flight_cap), limit - len(out)
        )
        if room <= 0:
            continue
        changes = []
        for execution in tx.queued(route, now, room):
            change = lifecycle.send(execution, now, actor)
            args, created = tx.request_args(execution.request_id)
            dispatch = Dispatch(change.after, args, created)
            changes.append(
                Change(change.before, change.after, change.event, dispatch if publish else None)
            )
            out.append(dispatch)
        apply(tx, changes)
    return out


def record_reply(
    tx: Tx,
    route_id: str,
    execution_id: str,
    state: ExecutionState,
    reason: str | None,
    progress: int | None,
    output: Any,
    attempt: int | None,
    now: float,
    rand: Rand,
) -> Change | Ignored:
    """A reply from the device (or gateway) that owns the topic it arrived on."""
    execution = tx.get_execution(execution_id)
    if execution is None:
        return Ignored("unknown execution")
    if execution.route_id != route_id:
        return Ignored("foreign execution")
    outcome = lifecycle.reply(
        execution, state, now, rand(), f"device:{route_id}", reason, progress, output, attempt
    )
    if isinstance(outcome, Change):
        apply(tx, [outcome])
    elif outcome.event is not None:
        tx.insert_events([outcome.event])
    return outcome


@record
class IncomingReply:
    route_id: str
    execution_id: str
    state: ExecutionState
    reason: str | None
    progress: int | None
    output: Any
    attempt: int | None
    timed_out: bool = False


def record_replies(
    tx: Tx, replies: Sequence[IncomingReply], now: float, rand: Rand
) -> list[Change | Ignored]:
    """Many replies in arrival order; an execution read and written once however many it got."""
    found = tx.get_executions(list(dict.fromkeys(r.execution_id for r in replies)))
    current: dict[str, Execution | None] = dict(found)
    first: dict[str, Execution] = {}
    outcomes: list[Change | Ignored] = []
    events = []
    for item in replies:
        execution_id = item.execution_id
        execution = current.get(execution_id)
        if execution is None:
            outcomes.append(Ignored("unknown execution"))
            continue
        if execution.route_id != item.route_id:
            outcomes.append(Ignored("foreign execution"))
            continue
        outcome = lifecycle.reply(
            execution,
            item.state,
            now,
            rand(),
            f"device:{item.route_id}",
            item.reason,
            item.progress,
            item.output,
            item.attempt,
            # Only a failure may wait for a window (a retry, a recurring schedule's next one):
            # the request is read for those alone, not for every acknowledgement.
            fleet.windows_for(tx, execution) if item.state is ExecutionState.FAILED else None,
            item.timed_out,
        )
        outcomes.append(outcome)
        if isinstance(outcome, Change):
            first.setdefault(execution_id, execution)
            current[execution_id] = outcome.after
            events.append(outcome.event)
            tx.changes.append(outcome)
        elif outcome.event is not None:
            events.append(outcome.event)
    updates = []
    for execution_id, before in first.items():
        after = current[execution_id]
        assert after is not None
        updates.append((before, after))
    tx.update_executions(updates)
    tx.insert_events(events)
    changed = [o for o in outcomes if isinstance(o, Change)]
    documents.follow_observations(tx, changed, now)
    fleet.check_rollouts(tx, changed, now)
    return outcomes


def fire_timers(tx: Tx, now: float, limit: int, rand: Rand) -> list[Change]:
    changes = []
    for execution in tx.due_timers(now, limit):
        change = lifecycle.on_timer(execution, now, rand(), fleet.windows_for(tx, execution))
        if change is not None:
            changes.append(change)
    apply(tx, changes)
    return changes + fleet.check_rollouts(tx, changes, now)


def inbox(
    tx: Tx, tenant: str, device_id: str, now: float, limit: int, in_flight_cap: int
) -> list[Dispatch]:
    """Hand a polling device its due commands, marking them SENT."""
    device = tenant_device(tx, tenant, device_id)
    tx.update_device(replace(device, last_seen=now))
    return claim_due(
        tx,
        [device.id],
        now,
        limit,
        in_flight_cap,
        actor=f"inbox:{device_id}",
        require_online=False,
        publish=False,
    )
