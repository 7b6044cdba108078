"""The `Store`: Courier's durable state behind async domain verbs.

Backends differ only in how they run a transaction (`Backend.write` / `Backend.read`); the
verbs themselves live once in courier/store/verbs.py. Listeners hear every committed change
(after the commit, on the event loop), which is how the bridge learns what to publish.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from courier.core.catalogue import Definition
from courier.core.documents import (
    Document,
    Lwm2mRegistration,
    Observation,
    ServiceUser,
    SoftwareUpdate,
    StoredFile,
)
from courier.core.records import (
    ApiKey,
    Change,
    CommandRequest,
    Device,
    Dispatch,
    Event,
    Execution,
    Group,
    Ignored,
    Page,
    Tenant,
)
from courier.errors import CourierError, NotFound
from courier.schemas.states import ExecutionState
from courier.store import documents, fleet, verbs
from courier.store.filters import DeviceFilter, ExecutionFilter, RequestFilter
from courier.store.tx import ReadTx, Tx

T = TypeVar("T")
Item = TypeVar("Item")
# Items, or what takes them when the transaction starts (see courier.coalesce): items that
# arrive while a write waits for the writer still join it.
Gathered = Sequence[Item] | Callable[[], Sequence[Item]]


# A time, or the clock to read once the items are taken (no item is newer than its write).
Moment = float | Callable[[], float]


def taken(items: Gathered[Item]) -> Sequence[Item]:
    return items() if callable(items) else items


def read(now: Moment) -> float:
    return now() if callable(now) else now


DocT = TypeVar("DocT", bound=Document)
Listener = Callable[[Sequence[Change]], None]
log = logging.getLogger(__name__)


class Backend(Protocol):
    """Runs functions inside read or write transactions of one database."""

    on_commit: Callable[[Sequence[Change]], None] | None

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def write(self, fn: Callable[[Tx], T]) -> T: ...
    async def read(self, fn: Callable[[ReadTx], T]) -> T: ...


class Store:
    """Domain verbs over a backend; every write is committed before its verb returns."""

    def __init__(self, backend: Backend, rand: Callable[[], float] = random.random) -> None:
        self.backend = backend
        self._rand = rand
        self._listeners: list[Listener] = []
        backend.on_commit = self._notify

    async def open(self) -> None:
        await self.backend.open()

    async def close(self) -> None:
        await self.backend.close()

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def _notify(self, changes: Sequence[Change]) -> None:
        for listener in list(self._listeners):
            try:
                listener(changes)
            except Exception:
                log.exception("store listener failed")

    # --- tenants and API keys ----------------------------------------------------------

    async def add_api_key(self, key: ApiKey) -> None:
        await self.backend.write(lambda tx: verbs.add_api_key(tx, key))

    async def get_api_key(self, key_id: str) -> ApiKey | None:
        return await self.backend.read(lambda tx: tx.get_api_key(key_id))

    async def list_api_keys(self, tenant: str) -> list[ApiKey]:
        return await self.backend.read(lambda tx: tx.list_api_keys(tenant))

    async def revoke_api_key(self, tenant: str, key_id: str, now: float) -> ApiKey:
        return await self.backend.write(lambda tx: verbs.revoke_api_key(tx, tenant, key_id, now))

    # --- devices -----------------------------------------------------------------------

    async def add_device(self, device: Device) -> Device:
        return await self.backend.write(lambda tx: verbs.add_device(tx, device))

    async def get_device(self, tenant: str, device_id: str) -> Device:
        """A tenant's device as the API shows it (an attached device is online only while
        its gateway is); `find_device` answers the record as stored."""

        def read(tx: ReadTx) -> Device | None:
            device = tx.get_device(device_id)
            return None if device is None else verbs.presented(tx, [device])[0]

        device = await self.backend.read(read)
        if device is None or device.tenant != tenant:
            raise NotFound(f"no device {device_id}")
        return device

    async def find_device(self, device_id: str) -> Device | None:
        return await self.backend.read(lambda tx: tx.get_device(device_id))

    async def list_devices(
        self, tenant: str, flt: DeviceFilter, limit: int, offset: int
    ) -> Page[Device]:
        def read(tx: ReadTx) -> Page[Device]:
            page = tx.list_devices(tenant, flt, limit, offset)
            return Page(page.count, verbs.presented(tx, page.results), page.capped)

        return await self.backend.read(read)

    async def update_device(
        self, tenant: str, device_id: str, fields: dict[str, Any], now: float
    ) -> Device:
        return await self.backend.write(
            lambda tx: verbs.update_device(tx, tenant, device_id, fields, now)
        )

    async def delete_device(
        self, tenant: str, device_id: str, actor: str, now: float
    ) -> list[Change]:
        return await self.backend.write(
            lambda tx: verbs.delete_device(tx, tenant, device_id, actor, now)
        )

    async def set_presence(
        self, device_id: str, online: bool, now: float
    ) -> tuple[Device, bool] | None:
        return await self.backend.write(lambda tx: verbs.set_presence(tx, device_id, online, now))

    async def set_attached_presence(
        self, gateway_id: str, device_id: str, online: bool, now: float
    ) -> tuple[Device, bool] | str:
        return await self.backend.write(
            lambda tx: verbs.set_attached_presence(tx, gateway_id, device_id, online, now)
        )

    # --- command requests --------------------------------------------------------------

    async def create_request(
        self, request: CommandRequest, queue_bound: int, now: float, in_flight_cap: int = 0
    ) -> verbs.Created:
        """Store a request; with `in_flight_cap`, executions that can go now are created SENT."""
        return await self.backend.write(
            lambda tx: verbs.create_request(tx, request, queue_bound, now, in_flight_cap)
        )

    async def create_requests(
        self,
        requests: Gathered[CommandRequest],
        queue_bound: int,
        now: Moment,
        in_flight_cap: int,
    ) -> list[verbs.Created | CourierError]:
        """Many requests in one transaction; each result is its Created or its error."""
        return await self.backend.write(
            lambda tx: verbs.create_requests(
                tx, taken(requests), queue_bound, read(now), in_flight_cap
            )
        )

    async def get_request(self, tenant: str, request_id: str) -> CommandRequest:
        request = await self.backend.read(lambda tx: tx.get_request(request_id))
        if request is None or request.tenant != tenant:
            raise NotFound(f"no command request {request_id}")
        return request

    async def list_requests(
        self, tenant: str, flt: RequestFilter, limit: int, offset: int
    ) -> Page[CommandRequest]:
        return await self.backend.read(lambda tx: tx.list_requests(tenant, flt, limit, offset))

    async def request_state_counts(self, tenant: str, request_id: str) -> dict[str, int]:
        await self.get_request(tenant, request_id)
        return await self.backend.read(lambda tx: tx.request_state_counts(request_id))

    async def cancel_request(
        self, tenant: str, request_id: str, actor: str, reason: str | None, now: float
    ) -> list[Change]:
        return await self.backend.write(
            lambda tx: verbs.cancel_request(tx, tenant, request_id, actor, reason, now)
        )

    # --- executions --------------------------------------------------------------------

    async def get_execution(self, tenant: str, execution_id: str) -> Execution:
        execution = await self.backend.read(lambda tx: tx.get_execution(execution_id))
        if execution is None or execution.tenant != tenant:
            raise NotFound(f"no execution {execution_id}")
        return execution

    async def list_executions(
        self, tenant: str, flt: ExecutionFilter, limit: int, offset: int
    ) -> Page[Execution]:
        return await self.backend.read(lambda tx: tx.list_executions(tenant, flt, limit, offset))

    async def history(self, tenant: str, execution_id: str) -> list[Event]:
        await self.get_execution(tenant, execution_id)
        return await self.backend.read(lambda tx: tx.history(execution_id))

    async def cancel_execution(
        self, tenant: str, execution_id: str, actor: str, reason: str | None, now: float
    ) -> Change:
        return await self.backend.write(
            lambda tx: verbs.cancel_execution(tx, tenant, execution_id, actor, reason, now)
        )

    async def update_state(
        self,
        tenant: str,
        execution_id: str,
        state: ExecutionState,
        reason: str | None,
        output: Any,
        progress: int | None,
        actor: str,
        now: float,
    ) -> Execution:
        return await self.backend.write(
            lambda tx: verbs.update_state(
                tx, tenant, execution_id, state, reason, output, progress, actor, now, self._rand
            )
        )

    async def reissue(
        self, tenant: str, execution_id: str, actor: str, queue_bound: int, now: float
    ) -> Execution:
        return await self.backend.write(
            lambda tx: verbs.reissue(tx, tenant, execution_id, actor, queue_bound, now)
        )

    # --- tenants, groups, definitions -----------------------------------------------------

    async def get_tenant(self, tenant: str) -> Tenant:
        return await self.backend.read(lambda tx: fleet.tenant_of(tx, tenant))

    async def set_tenant_timezone(self, tenant: str, timezone: str | None) -> Tenant:
        return await self.backend.write(lambda tx: fleet.set_tenant_timezone(tx, tenant, timezone))

    async def create_group(
        self, tenant: str, name: str, devices: Sequence[str], now: float, group_id: str | None
    ) -> Group:
        return await self.backend.write(
            lambda tx: fleet.create_group(tx, tenant, name, devices, now, group_id)
        )

    async def get_group(self, tenant: str, group_id: str) -> Group:
        return await self.backend.read(lambda tx: fleet.tenant_group(tx, tenant, group_id))

    async def list_groups(self, tenant: str, limit: int, offset: int) -> Page[Group]:
        return await self.backend.read(lambda tx: tx.list_groups(tenant, limit, offset))

    async def rename_group(self, tenant: str, group_id: str, name: str, now: float) -> Group:
        return await self.backend.write(
            lambda tx: fleet.rename_group(tx, tenant, group_id, name, now)
        )

    async def delete_group(self, tenant: str, group_id: str) -> None:
        await self.backend.write(lambda tx: fleet.delete_group(tx, tenant, group_id))

    async def add_member(self, tenant: str, group_id: str, device_id: str, now: float) -> bool:
        return await self.backend.write(
            lambda tx: fleet.add_member(tx, tenant, group_id, device_id, now)
        )

    async def remove_member(self, tenant: str, group_id: str, device_id: str) -> None:
        await self.backend.write(lambda tx: fleet.remove_member(tx, tenant, group_id, device_id))

    async def group_members(
        self, tenant: str, group_id: str, limit: int, offset: int
    ) -> Page[Device]:
        await self.get_group(tenant, group_id)
        return await self.backend.read(lambda tx: tx.group_members(group_id, limit, offset))

    async def definition_of(self, tenant: str, name: str) -> Definition | None:
        """A command's definition (built-in or the tenant's); None when it has none."""
        return await self.backend.read(lambda tx: fleet.definition_of(tx, tenant, name))

    async def list_definitions(self, tenant: str) -> list[Definition]:
        """The tenant's own definitions (the built-ins are in courier.core.catalogue)."""
        return await self.backend.read(lambda tx: tx.list_definitions(tenant))

    async def put_definition(self, tenant: str, definition: Definition, now: float) -> Definition:
        return await self.backend.write(
            lambda tx: fleet.put_definition(tx, tenant, definition, now)
        )

    async def delete_definition(self, tenant: str, name: str) -> None:
        await self.backend.write(lambda tx: fleet.delete_definition(tx, tenant, name))

    # --- documents ------------------------------------------------------------------------

    async def put_document(self, doc: DocT) -> DocT:
        await self.backend.write(lambda tx: documents.put_document(tx, doc))
        return doc

    async def get_document(self, cls: type[DocT], tenant: str, doc_id: str) -> DocT:
        return await self.backend.read(lambda tx: documents.get_document(tx, cls, tenant, doc_id))

    async def list_documents(
        self, cls: type[DocT], tenant: str, limit: int, offset: int
    ) -> Page[DocT]:
        return await self.backend.read(
            lambda tx: documents.list_documents(tx, cls, tenant, limit, offset)
        )

    async def delete_document(self, cls: type[DocT], tenant: str, doc_id: str) -> DocT:
        return await self.backend.write(
            lambda tx: documents.delete_document(tx, cls, tenant, doc_id)
        )

    async def add_software_update(self, update: SoftwareUpdate) -> SoftwareUpdate:
        return await self.backend.write(lambda tx: documents.add_software_update(tx, update))

    async def delete_file(self, tenant: str, file_id: str) -> StoredFile:
        return await self.backend.write(lambda tx: documents.delete_file(tx, tenant, file_id))

    async def observation_of(self, execution_id: str) -> Observation | None:
        return await self.backend.read(lambda tx: documents.observation_of(tx, execution_id))

    async def start_observation(self, execution: Execution, path: str, now: float) -> None:
        await self.backend.write(lambda tx: documents.start_observation(tx, execution, path, now))

    async def stop_observations(self, tenant: str, device_id: str, path: str, now: float) -> int:
        return await self.backend.write(
            lambda tx: documents.stop_observations(tx, tenant, device_id, path, now)
        )

    async def record_notification(
        self, tenant: str, device_id: str, path: str, data: dict[str, Any], now: float
    ) -> str | None:
        return await self.backend.write(
            lambda tx: documents.record_notification(tx, tenant, device_id, path, data, now)
        )

    async def register_lwm2m(
        self, endpoint: str, lifetime: int | None, until: float | None, now: float
    ) -> bool:
        return await self.backend.write(
            lambda tx: documents.register_lwm2m(tx, endpoint, lifetime, until, now)
        )

    async def expire_lwm2m(self, endpoint: str, now: float) -> None:
        await self.backend.write(lambda tx: documents.expire_lwm2m(tx, endpoint, now))

    async def lwm2m_registrations(self) -> list[Lwm2mRegistration]:
        return await self.backend.read(
            lambda tx: [
                Lwm2mRegistration.from_row(r) for r in tx.docs_of_kind(Lwm2mRegistration.kind)
            ]
        )

    async def record_observed(
        self, route_id: str, execution_id: str, data: dict[str, Any], now: float
    ) -> str | None:
        return await self.backend.write(
            lambda tx: documents.record_observed(tx, route_id, execution_id, data, now)
        )

    async def record_upload(self, execution: Execution, stored: StoredFile, now: float) -> None:
        await self.backend.write(lambda tx: documents.record_upload(tx, execution, stored, now))

    async def add_service_user(self, user: ServiceUser) -> ServiceUser:
        return await self.backend.write(lambda tx: documents.add_service_user(tx, user))

    async def broker_credentials(self) -> tuple[list[tuple[str, str]], list[ServiceUser]]:
        """Every device's MQTT password hash, and every tenant's service users."""

        def read(tx: ReadTx) -> tuple[list[tuple[str, str]], list[ServiceUser]]:
            users = [ServiceUser.from_row(r) for r in tx.docs_of_kind(ServiceUser.kind)]
            return tx.device_passwords(), users

        return await self.backend.read(read)

    async def devices_speaking(self, protocol: str) -> list[str]:
        return await self.backend.read(lambda tx: tx.devices_speaking(protocol))

    async def server_secret(self, name: str, now: float) -> str:
        return await self.backend.write(lambda tx: documents.server_secret(tx, name, now))

    # --- the engine --------------------------------------------------------------------

    async def claim_due(
        self, route_ids: Sequence[str] | None, now: float, limit: int, in_flight_cap: int
    ) -> list[Dispatch]:
        return await self.backend.write(
            lambda tx: verbs.claim_due(tx, route_ids, now, limit, in_flight_cap)
        )

    async def record_reply(
        self,
        route_id: str,
        execution_id: str,
        state: ExecutionState,
        reason: str | None,
        progress: int | None,
        output: Any,
        attempt: int | None,
        now: float,
    ) -> Change | Ignored:
        return await self.backend.write(
            lambda tx: verbs.record_reply(
                tx,
                route_id,
                execution_id,
                state,
                reason,
                progress,
                output,
                attempt,
                now,
                self._rand,
            )
        )

    async def record_replies(
        self, replies: Gathered[verbs.IncomingReply], now: Moment
    ) -> list[Change | Ignored]:
        """Replies in arrival order, one transaction; outcomes in the same order."""
        return await self.backend.write(
            lambda tx: verbs.record_replies(tx, taken(replies), read(now), self._rand)
        )

    async def fire_timers(self, now: float, limit: int) -> list[Change]:
        return await self.backend.write(lambda tx: verbs.fire_timers(tx, now, limit, self._rand))

    async def queued_routes(self, limit: int = 100_000) -> list[str]:
        """Routes (devices or gateways) that have QUEUED executions."""
        return await self.backend.read(lambda tx: tx.queued_routes(limit))

    async def next_wake_at(self) -> float | None:
        return await self.backend.read(lambda tx: tx.next_wake())

    async def inbox(
        self, tenant: str, device_id: str, now: float, limit: int, in_flight_cap: int
    ) -> list[Dispatch]:
        return await self.backend.write(
            lambda tx: verbs.inbox(tx, tenant, device_id, now, limit, in_flight_cap)
        )

    async def state_counts(self) -> dict[str, int]:
        return await self.backend.read(lambda tx: tx.state_counts())
