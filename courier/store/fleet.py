"""Verbs for fleets: groups, command definitions, tenant settings; and what a request needs
from them inside its transaction: its targets, each execution's schedule windows, rollouts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import partial

from courier.core import lifecycle
from courier.core.catalogue import BUILTINS, Definition
from courier.core.records import Change, CommandRequest, Device, Execution, Group, Tenant
from courier.core.rollout import should_abort
from courier.core.schedule import ScheduleKind, window_from, zone_of
from courier.errors import AlreadyExists, InvalidInput, NotFound, UnknownDevices, UnknownGroups
from courier.ids import new_id
from courier.schemas.states import TERMINAL, ExecutionState
from courier.store.tx import ReadTx, Tx

MAX_TARGETS = 100_000
S = ExecutionState


# --- targets ----------------------------------------------------------------------------------


def devices_by_id(
    tx: ReadTx, device_ids: Sequence[str], known: dict[str, Device] | None = None
) -> dict[str, Device]:
    """The registered devices among `device_ids`, taken from `known` when it has them (and
    those read added to it)."""
    if known is None:
        return tx.get_devices(device_ids)
    missing = [d for d in device_ids if d not in known]
    if missing:
        known.update(tx.get_devices(missing))
    return {d: known[d] for d in device_ids if d in known}


def resolve_targets(
    tx: Tx, request: CommandRequest, known: dict[str, Device] | None = None
) -> list[str]:
    """The device ids a request reaches, in a stable order, each once; unknown ids refused."""
    if request.command_type == "GROUP":
        _known_groups(tx, request.tenant, request.groups)
        targets = tx.members_of(request.groups)
    elif request.command_type == "DYNAMIC":
        flt = request.filter
        assert flt is not None
        _known_groups(tx, request.tenant, flt.groups)
        _known_devices(tx, request.tenant, flt.devices, known)
        targets = tx.find_devices(request.tenant, flt, MAX_TARGETS + 1)
    else:
        targets = list(dict.fromkeys(request.devices))
        _known_devices(tx, request.tenant, targets, known)
    if len(targets) > MAX_TARGETS:
        raise InvalidInput(f"the request reaches more than {MAX_TARGETS} devices; narrow it")
    return targets


def _known_devices(
    tx: Tx, tenant: str, device_ids: Sequence[str], known: dict[str, Device] | None = None
) -> None:
    devices = devices_by_id(tx, device_ids, known)
    unknown = [d for d in device_ids if d not in devices or devices[d].tenant != tenant]
    if unknown:
        raise UnknownDevices(unknown)


def _known_groups(tx: Tx, tenant: str, group_ids: Sequence[str]) -> None:
    unknown = []
    for group_id in group_ids:
        group = tx.get_group(group_id)
        if group is None or group.tenant != tenant:
            unknown.append(group_id)
    if unknown:
        raise UnknownGroups(unknown)


# --- schedules ----------------------------------------------------------------------------


def tenant_zone(tx: Tx, tenant: str) -> str | None:
    key = ("tenant-zone", tenant)
    if key not in tx.cache:
        found = tx.get_tenant(tenant)
        tx.cache[key] = None if found is None else found.timezone
    zone: str | None = tx.cache[key]
    return zone


def windows_of(tx: Tx, request: CommandRequest, device: Device | None) -> lifecycle.Windows | None:
    """The schedule windows of `request` for `device`, read in the right time zone."""
    schedule = request.schedule
    if schedule is None or schedule.kind is ScheduleKind.IMMEDIATE:
        return None
    zone = zone_of(
        schedule.time_type,
        None if device is None else device.timezone,
        tenant_zone(tx, request.tenant),
    )
    return lifecycle.Windows(
        partial(window_from, schedule, zone=zone), schedule.kind is ScheduleKind.RECURRING
    )


def cached_request(tx: Tx, request_id: str) -> CommandRequest:
    key = ("request", request_id)
    if key not in tx.cache:
        tx.cache[key] = tx.get_request(request_id)
    request: CommandRequest = tx.cache[key]
    return request


def windows_for(tx: Tx, execution: Execution) -> lifecycle.Windows | None:
    """The windows of an existing execution (None for an immediate request)."""
    request = cached_request(tx, execution.request_id)
    if request.schedule is None:
        return None
    key = ("device", execution.device_id)
    if key not in tx.cache:
        tx.cache[key] = tx.get_device(execution.device_id)
    return windows_of(tx, request, tx.cache[key])


def stagger(request: CommandRequest, index: int, now: float) -> float | None:
    """When the index-th execution of a rollout may be sent (max devices per minute)."""
    rollout = request.rollout
    if rollout is None or not rollout.max_per_minute:
        return None
    return now + index * 60.0 / rollout.max_per_minute


# --- rollouts -----------------------------------------------------------------------------


def check_rollouts(tx: Tx, changes: Sequence[Change], now: float) -> list[Change]:
    """Abort the rollouts whose failures passed their threshold: cancel what was not sent."""
    ended = {
        c.after.request_id
        for c in changes
        if c.state_changed and c.after.state in (S.FAILED, S.TIMED_OUT)
    }
    cancelled: list[Change] = []
    for request_id in ended:
        request = cached_request(tx, request_id)
        rollout = request.rollout
        if rollout is None or rollout.abort_failure_percent is None or request.rollout_state:
            continue
        counts = tx.request_state_counts(request_id)
        finished = sum(n for state, n in counts.items() if state in TERMINAL)
        failed = counts.get(S.FAILED, 0) + counts.get(S.TIMED_OUT, 0)
        if not should_abort(failed, finished, rollout):
            continue
        why = (
            f"rollout aborted: {failed} of {finished} finished executions failed "
            f"(threshold {rollout.abort_failure_percent:g} % of at least "
            f"{rollout.abort_min_finished})"
        )
        tx.set_rollout_state(request_id, why)
        tx.cache[("request", request_id)] = replace(request, rollout_state=why)
        for execution in tx.pending_of_request(request_id):
            if execution.state in (S.QUEUED, S.SCHEDULED):
                change = lifecycle.cancel(execution, now, lifecycle.BRIDGE, why)
                tx.update_execution(execution, change.after)
                cancelled.append(change)
    tx.insert_events([c.event for c in cancelled])
    tx.changes.extend(cancelled)
    return cancelled


# --- tenants, groups, definitions -------------------------------------------------------------


def tenant_of(tx: ReadTx, tenant: str) -> Tenant:
    found = tx.get_tenant(tenant)
    if found is None:
        raise NotFound(f"no tenant {tenant}")
    return found


def set_tenant_timezone(tx: Tx, tenant: str, timezone: str | None) -> Tenant:
    tenant_of(tx, tenant)
    tx.set_tenant_timezone(tenant, timezone)
    return Tenant(tenant, timezone)


def tenant_group(tx: ReadTx, tenant: str, group_id: str) -> Group:
    group = tx.get_group(group_id)
    if group is None or group.tenant != tenant:
        raise NotFound(f"no group {group_id}")
    return group


def create_group(
    tx: Tx, tenant: str, name: str, devices: Sequence[str], now: float, group_id: str | None
) -> Group:
    if tx.group_id_by_name(tenant, name) is not None:
        raise AlreadyExists(f"a group named {name!r} exists")
    group_id = group_id or new_id()
    if tx.get_group(group_id) is not None:
        raise AlreadyExists(f"group {group_id} exists")
    _known_devices(tx, tenant, list(devices))
    if not tx.tenant_exists(tenant):
        tx.insert_tenant(tenant, now)
    tx.put_group(Group(group_id, tenant, name, now, now))
    for device_id in dict.fromkeys(devices):
        tx.add_member(group_id, device_id, now)
    return tenant_group(tx, tenant, group_id)


def rename_group(tx: Tx, tenant: str, group_id: str, name: str, now: float) -> Group:
    group = tenant_group(tx, tenant, group_id)
    other = tx.group_id_by_name(tenant, name)
    if other is not None and other != group_id:
        raise AlreadyExists(f"a group named {name!r} exists")
    tx.put_group(replace(group, name=name, updated_at=now))
    return tenant_group(tx, tenant, group_id)


def delete_group(tx: Tx, tenant: str, group_id: str) -> None:
    tenant_group(tx, tenant, group_id)
    tx.delete_group(group_id)


def add_member(tx: Tx, tenant: str, group_id: str, device_id: str, now: float) -> bool:
    tenant_group(tx, tenant, group_id)
    device = tx.get_device(device_id)
    if device is None or device.tenant != tenant:
        raise NotFound(f"no device {device_id}")
    return tx.add_member(group_id, device_id, now)


def remove_member(tx: Tx, tenant: str, group_id: str, device_id: str) -> None:
    tenant_group(tx, tenant, group_id)
    if not tx.remove_member(group_id, device_id):
        raise NotFound(f"device {device_id} is not in group {group_id}")


def definition_of(tx: ReadTx, tenant: str, name: str) -> Definition | None:
    """The definition of a command: built-in, or the tenant's own; None if it has none."""
    return BUILTINS.get(name) or tx.get_definition(tenant, name)


def put_definition(tx: Tx, tenant: str, definition: Definition, now: float) -> Definition:
    if definition.name in BUILTINS:
        raise AlreadyExists(f"{definition.name} is a built-in definition and cannot be changed")
    if not tx.tenant_exists(tenant):
        tx.insert_tenant(tenant, now)
    tx.put_definition(tenant, replace(definition, source="tenant"), now)
    return replace(definition, source="tenant")


def delete_definition(tx: Tx, tenant: str, name: str) -> None:
    if name in BUILTINS:
        raise AlreadyExists(f"{name} is a built-in definition and cannot be deleted")
    if not tx.delete_definition(tenant, name):
        raise NotFound(f"no definition {name}")
