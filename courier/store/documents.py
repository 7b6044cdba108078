"""Verbs on documents (files, software updates, settings, stored commands, observations)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, TypeVar

from courier.core import lifecycle
from courier.core.documents import (
    Document,
    Lwm2mRegistration,
    Observation,
    ServiceUser,
    SoftwareUpdate,
    StoredFile,
)
from courier.core.records import Change, Execution, Page
from courier.errors import AlreadyExists, InvalidInput, NotFound
from courier.schemas.states import ExecutionState
from courier.store.tx import ReadTx, Tx

D = TypeVar("D", bound=Document)


def put_document(tx: Tx, doc: Document) -> Document:
    """Store a document (replacing the one with its id); names stay unique where they must."""
    if doc.unique_names:
        for other in tx.docs_named(doc.kind, doc.tenant, doc.name):
            if other["id"] != doc.id:
                raise AlreadyExists(f"a {doc.kind.replace('_', ' ')} named {doc.name!r} exists")
    if not tx.tenant_exists(doc.tenant) and doc.tenant != "_":
        tx.insert_tenant(doc.tenant, doc.created_at)
    row = {
        "id": doc.id,
        "tenant": doc.tenant,
        "name": doc.name,
        "body": doc.body(),
        "created_at": doc.created_at,
    }
    tx.put_doc(doc.kind, row, doc.unique_names)
    return doc


def get_document(tx: ReadTx, cls: type[D], tenant: str, doc_id: str) -> D:
    row = tx.get_doc(cls.kind, doc_id)
    if row is None or row["tenant"] != tenant:
        raise NotFound(f"no {cls.kind.replace('_', ' ')} {doc_id}")
    return cls.from_row(row)


def list_documents(tx: ReadTx, cls: type[D], tenant: str, limit: int, offset: int) -> Page[D]:
    page = tx.list_docs(cls.kind, tenant, limit, offset)
    return Page(page.count, [cls.from_row(r) for r in page.results], page.capped)


def named_documents(tx: ReadTx, cls: type[D], tenant: str, name: str) -> list[D]:
    return [cls.from_row(r) for r in tx.docs_named(cls.kind, tenant, name)]


def delete_document(tx: Tx, cls: type[D], tenant: str, doc_id: str) -> D:
    doc = get_document(tx, cls, tenant, doc_id)
    tx.delete_doc(cls.kind, doc_id)
    return doc


def add_software_update(tx: Tx, update: SoftwareUpdate) -> SoftwareUpdate:
    try:
        get_document(tx, StoredFile, update.tenant, update.file_id)
    except NotFound:
        raise InvalidInput(f"file_id: no file {update.file_id}; upload the package first") from None
    put_document(tx, update)
    return update


def delete_file(tx: Tx, tenant: str, file_id: str) -> StoredFile:
    """Delete a file's record (its bytes go next); refused while an update uses it."""
    stored = get_document(tx, StoredFile, tenant, file_id)
    offset = 0
    while True:
        page = tx.list_docs(SoftwareUpdate.kind, tenant, 500, offset)
        for row in page.results:
            if row["body"].get("file_id") == file_id:
                raise AlreadyExists(f"software update {row['id']} uses this file; delete it first")
        offset += 500
        if offset >= page.count:
            break
    tx.delete_doc(StoredFile.kind, file_id)
    return stored


def observation_of(tx: ReadTx, execution_id: str) -> Observation | None:
    row = tx.get_doc(Observation.kind, execution_id)
    return None if row is None else Observation.from_row(row)


def stop_observations(tx: Tx, tenant: str, device_id: str, path: str, now: float) -> int:
    """End the observations of `path` on a device (an observe_stop succeeded)."""
    stopped = 0
    for observation in named_documents(tx, Observation, tenant, f"{device_id} {path}"):
        if observation.stopped_at is None:
            put_document(tx, _stopped(observation, now))
            stopped += 1
    return stopped


def start_observation(tx: Tx, execution: Execution, path: str, now: float) -> Observation:
    """An observe succeeded: its notifications are kept as events of `execution`."""
    observation = Observation(
        id=execution.id,
        tenant=execution.tenant,
        name=f"{execution.device_id} {path}",
        created_at=now,
        device_id=execution.device_id,
        path=path,
    )
    put_document(tx, observation)
    return observation


def record_notification(
    tx: Tx, tenant: str, device_id: str, path: str, data: dict[str, Any], now: float
) -> str | None:
    """An event on the observe execution of `path` (None when nothing observes it)."""
    for observation in named_documents(tx, Observation, tenant, f"{device_id} {path}"):
        if observation.stopped_at is not None:
            continue
        execution = tx.get_execution(observation.id)
        if execution is None:
            continue
        note(tx, execution, now, "notification", device_id, f"notification of {path}", data)
        return execution.id
    return None


def note(
    tx: Tx,
    execution: Execution,
    now: float,
    kind: str,
    device_id: str,
    reason: str,
    data: dict[str, Any],
) -> None:
    """An event in an execution's history that changes nothing of it."""
    tx.insert_events([lifecycle.note(execution, now, f"device:{device_id}", reason, kind, data)])


def _stopped(observation: Observation, now: float) -> Observation:
    return replace(observation, stopped_at=now)


def server_secret(tx: Tx, name: str, now: float) -> str:
    """A secret of this deployment (made on first use, shared by every instance)."""
    row = tx.get_doc("secret", name)
    if row is not None:
        value: str = row["body"]["value"]
        return value
    value = secrets.token_hex(32)
    tx.put_doc(
        "secret",
        {"id": name, "tenant": "_", "name": name, "body": {"value": value}, "created_at": now},
        unique=False,
    )
    return value


def add_service_user(tx: Tx, user: ServiceUser) -> ServiceUser:
    """A tenant's MQTT user: its name must be no device's and no other service user's."""
    if tx.get_device(user.name) is not None:
        raise AlreadyExists(f"{user.name} is a device id; MQTT usernames are shared")
    if any(row["name"] == user.name for row in tx.docs_of_kind(ServiceUser.kind)):
        raise AlreadyExists(f"a service user named {user.name!r} exists")
    put_document(tx, user)
    return user


def check_unique_id(tx: ReadTx, cls: type[D], doc_id: str) -> None:
    if tx.get_doc(cls.kind, doc_id) is not None:
        raise InvalidInput(f"{doc_id} is taken")


def register_lwm2m(
    tx: Tx, endpoint: str, lifetime: int | None, until: float | None, now: float
) -> bool:
    """An endpoint registered (or updated): online, and its lease kept when it has one.
    False for an unknown device."""
    device = tx.get_device(endpoint)
    if device is None:
        return False
    tx.update_device(replace(device, online=True, last_seen=now))
    if until is None:
        tx.delete_doc(Lwm2mRegistration.kind, endpoint)
    else:
        lease = Lwm2mRegistration(endpoint, device.tenant, endpoint, now, lifetime or 0, until)
        put_document(tx, lease)
    return True


def expire_lwm2m(tx: Tx, endpoint: str, now: float) -> None:
    """A registration that was not updated in time: the endpoint is offline."""
    tx.delete_doc(Lwm2mRegistration.kind, endpoint)
    device = tx.get_device(endpoint)
    if device is not None:
        tx.update_device(replace(device, online=False, last_seen=now))


def record_upload(tx: Tx, execution: Execution, stored: StoredFile, now: float) -> None:
    """A device uploaded a file for its execution: the history names it."""
    data = {"file_id": stored.id, "name": stored.name, "size": stored.size, "sha256": stored.sha256}
    reason = f"uploaded {stored.name} ({stored.size} bytes, sha256 {stored.sha256})"
    note(tx, execution, now, "file", execution.route_id, reason, data)


def record_observed(
    tx: Tx, route_id: str, execution_id: str, data: dict[str, Any], now: float
) -> str | None:
    """A native device's notification for its observe execution: an event of it while the
    observation runs. Answers why it was refused, or None."""
    execution = tx.get_execution(execution_id)
    if execution is None:
        return "unknown execution"
    if execution.route_id != route_id:
        return "foreign execution"
    observation = observation_of(tx, execution_id)
    if observation is None or observation.stopped_at is not None:
        return "not observed"
    note(tx, execution, now, "notification", route_id, f"notification of {observation.path}", data)
    return None


def follow_observations(tx: Tx, changes: Sequence[Change], now: float) -> None:
    """An lwm2m_request observe that succeeded starts an observation of its path; an
    observe_stop that succeeded ends those of the device's path (whatever the protocol)."""
    for change in changes:
        after = change.after
        if after.command != "lwm2m_request" or after.state is not ExecutionState.SUCCEEDED:
            continue
        if not change.state_changed:
            continue
        args, _ = tx.request_args(after.request_id)
        path = args.get("endpoint")
        if not isinstance(path, str):
            continue
        if args.get("type") == "observe":
            start_observation(tx, after, path, now)
        elif args.get("type") == "observe_stop":
            stop_observations(tx, after.tenant, after.device_id, path, now)
