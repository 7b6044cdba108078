"""The service layer: what the REST API, MQTT ingress, CLI and benchmarks ask of Courier."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import orjson

from courier.broker_sync import BrokerSync
from courier.clock import Clock
from courier.coalesce import Coalescer, Take
from courier.core.catalogue import Definition, check_timing, validate_args
from courier.core.deferred import encode_key, new_device_key
from courier.core.records import ApiKey, CommandRequest, Device, Dispatch
from courier.credentials import (
    mosquitto_hash,
    new_api_key,
    new_device_password,
    parse_api_key,
    secret_matches,
)
from courier.errors import AlreadyExists, CourierError, Forbidden, InvalidInput, Unauthorized
from courier.files.service import Files
from courier.ids import new_id
from courier.references import resolve_args
from courier.schemas.api import DEFAULT_POLICY, DEFAULT_RETRY, CommandRequestIn, DeviceIn
from courier.schemas.fleet import DefinitionIn, check_schedule
from courier.store import Store
from courier.store.verbs import Created

KEY_CACHE_SECONDS = 5.0
DEFINITION_CACHE_SECONDS = 5.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_TTL = 86400


def _first(*values: float | None) -> float:
    """The first value given."""
    for value in values:
        if value is not None:
            return float(value)
    raise AssertionError("a default is always given")


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    queue_bound: int = 10_000
    ack_timeout: float = 10.0
    in_flight: int = 100
    inbox_limit: int = 100
    claim_on_create: bool = False  # a bridge runs in this process and publishes the sends
    files_dir: str = "courier-files"
    max_file_size: int = 100 * 1024 * 1024
    public_url: str = "http://127.0.0.1:8080"
    url_ttl: float = 3600.0


class Service:
    """Courier's use cases over the store. Stateless but for a short API-key cache."""

    def __init__(
        self,
        store: Store,
        config: ServiceConfig,
        clock: Clock,
        rand: Callable[[], float] = random.random,
        files: Files | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.rand = rand
        self.files = files or Files(
            store, Path(config.files_dir), config.max_file_size, config.public_url, config.url_ttl
        )
        self.broker: BrokerSync | None = None  # set when Courier manages the broker's users
        self._keys: dict[str, tuple[ApiKey, float]] = {}
        self._definitions: dict[tuple[str, str], tuple[Definition | None, float]] = {}
        # Requests created at the same time share a transaction (each still stands alone).
        self._creates: Coalescer[CommandRequest, Created] = Coalescer(self._create_group)

    # --- API keys ----------------------------------------------------------------------

    async def create_api_key(
        self, tenant: str, scopes: list[str], name: str = "", expires_in: int | None = None
    ) -> tuple[ApiKey, str]:
        """A new key for `tenant` (creating the tenant); the full key is returned only here."""
        if expires_in is not None and expires_in < 60:
            raise InvalidInput(f"expires_in must be at least 60 seconds, not {expires_in}")
        now = self.clock.now()
        key_id, token, secret_hash = new_api_key()
        key = ApiKey(
            id=key_id,
            tenant=tenant,
            secret_hash=secret_hash,
            scopes=frozenset(scopes),
            name=name,
            created_at=now,
            expires_at=None if expires_in is None else now + expires_in,
        )
        await self.store.add_api_key(key)
        return key, token

    async def authenticate(self, token: str) -> ApiKey:
        """The key a bearer token names, if valid now; else Unauthorized (no detail leaks)."""
        parsed = parse_api_key(token)
        if parsed is None:
            raise Unauthorized("invalid API key")
        now = self.clock.now()
        cached = self._keys.get(parsed.key_id)
        if cached is not None and cached[1] > now:
            key: ApiKey | None = cached[0]
        else:
            key = await self.store.get_api_key(parsed.key_id)
            if key is not None:
                self._keys[parsed.key_id] = (key, now + KEY_CACHE_SECONDS)
        if key is None or not secret_matches(parsed.secret, key.secret_hash):
            raise Unauthorized("invalid API key")
        if key.revoked_at is not None:
            raise Unauthorized("this API key was revoked")
        if key.expires_at is not None and key.expires_at <= now:
            raise Unauthorized("this API key has expired")
        return key

    @staticmethod
    def require_scope(key: ApiKey, scope: str) -> None:
        if scope not in key.scopes and "admin" not in key.scopes:
            raise Forbidden(f"this API key lacks the {scope!r} scope")

    async def revoke_api_key(self, tenant: str, key_id: str) -> ApiKey:
        key = await self.store.revoke_api_key(tenant, key_id, self.clock.now())
        self._keys.pop(key_id, None)
        return key

    # --- devices -----------------------------------------------------------------------

    async def register_device(self, tenant: str, body: DeviceIn) -> tuple[Device, str | None, str]:
        """Register a device; answers it, its MQTT password (kept only as a hash; none for an
        attached device, which has no MQTT connection) and its deferred-payload key."""
        self.check_username_free(body.id)
        now = self.clock.now()
        password = None if body.gateway_id else new_device_password()
        payload_key = encode_key(new_device_key())
        device = Device(
            id=body.id,
            tenant=tenant,
            kind=body.kind,
            gateway_id=body.gateway_id,
            protocol=body.protocol,
            labels=dict(body.labels),
            timezone=body.timezone,
            delivery_policy=body.delivery_policy,
            password_hash=None if password is None else mosquitto_hash(password),
            created_at=now,
            updated_at=now,
            authorization_ids=tuple(dict.fromkeys(body.authorization_ids)),
            payload_key=payload_key,
        )
        added = await self.store.add_device(device)
        if password is not None:
            await self.sync_broker()
        return added, password, payload_key

    def check_username_free(self, name: str) -> None:
        """MQTT usernames are one namespace: a device id or service user may not be the one
        Courier itself connects with (the store checks devices against service users)."""
        if self.broker is not None and name == self.broker.username:
            raise AlreadyExists(f"{name} is Courier's own MQTT username")

    async def delete_device(self, tenant: str, device_id: str, actor: str) -> None:
        """Delete a device (a gateway with its attached devices) and cut its session off."""
        device = await self.store.get_device(tenant, device_id)
        await self.store.delete_device(tenant, device_id, actor, self.clock.now())
        if device.password_hash is not None:
            await self.sync_broker(cut_off=[device_id])

    async def rotate_password(self, tenant: str, device_id: str) -> str:
        """A new MQTT password (shown once); the old one stops working and its session ends."""
        device = await self.store.get_device(tenant, device_id)
        if device.gateway_id is not None:
            raise InvalidInput(
                f"{device_id} is attached to {device.gateway_id}: it has no password"
            )
        password = new_device_password()
        fields = {"password_hash": mosquitto_hash(password)}
        await self.store.update_device(tenant, device_id, fields, self.clock.now())
        await self.sync_broker(cut_off=[device_id])
        return password

    async def rotate_payload_key(self, tenant: str, device_id: str) -> str:
        """A new deferred-payload key (shown once); payloads issued before no longer decrypt."""
        key = encode_key(new_device_key())
        await self.store.update_device(tenant, device_id, {"payload_key": key}, self.clock.now())
        return key

    async def sync_broker(self, cut_off: list[str] | None = None) -> None:
        """Rewrite the broker's users and ACL (when Courier manages them), ending the
        sessions of `cut_off`."""
        if self.broker is not None:
            await self.broker.sync(cut_off or ())

    # --- command requests --------------------------------------------------------------

    async def definition(self, tenant: str, name: str) -> Definition | None:
        """The definition of a command (cached for a few seconds), None if it has none."""
        now = self.clock.now()
        cached = self._definitions.get((tenant, name))
        if cached is not None and cached[1] > now:
            return cached[0]
        found = await self.store.definition_of(tenant, name)
        self._definitions[(tenant, name)] = (found, now + DEFINITION_CACHE_SECONDS)
        return found

    async def put_definition(self, tenant: str, body: DefinitionIn) -> Definition:
        self._definitions.pop((tenant, body.name), None)
        return await self.store.put_definition(tenant, body.record(), self.clock.now())

    async def delete_definition(self, tenant: str, name: str) -> None:
        self._definitions.pop((tenant, name), None)
        await self.store.delete_definition(tenant, name)

    def build_request(
        self,
        tenant: str,
        body: CommandRequestIn,
        issued_by: str,
        definition: Definition | None = None,
        idempotency_key: str | None = None,
    ) -> CommandRequest:
        """A request record from a validated body: the command's definition checks the
        arguments and gives the defaults and limits of timeout and ttl."""
        now = self.clock.now()
        if definition is not None:
            validate_args(definition, body.args)
        timeout = _first(body.timeout, definition.timeout if definition else None, DEFAULT_TIMEOUT)
        ttl = int(_first(body.ttl, definition.ttl if definition else None, DEFAULT_TTL))
        if definition is not None:
            check_timing(definition, timeout, ttl)
        body_hash = None
        if idempotency_key is not None:
            canonical = orjson.dumps(body.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
            body_hash = hashlib.sha256(canonical).hexdigest()
        ack_timeout = body.ack_timeout if body.ack_timeout is not None else self.config.ack_timeout
        return CommandRequest(
            id=new_id(),
            tenant=tenant,
            command=body.command,
            args=body.args,
            devices=list(body.devices),
            device_type=body.device_type,
            ttl=ttl,
            timeout=timeout,
            ack_timeout=ack_timeout,
            retry=DEFAULT_POLICY if body.retry is DEFAULT_RETRY else body.retry.record(),
            priority=body.priority,
            issued_by=issued_by,
            created_at=now,
            command_type=body.command_type,
            idempotency_key=idempotency_key,
            body_hash=body_hash,
            groups=list(dict.fromkeys(body.groups)),
            filter=None if body.filter is None else body.filter.record(),
            schedule=check_schedule(body.schedule, body.schedule_args),
            rollout=None if body.rollout is None else body.rollout.record(),
            internal=definition is not None and definition.internal,
        )

    async def create_command(
        self,
        tenant: str,
        body: CommandRequestIn,
        issued_by: str,
        idempotency_key: str | None = None,
    ) -> Created:
        """Store a request and its executions; committed before this returns."""
        definition = await self.definition(tenant, body.command)
        request = self.build_request(tenant, body, issued_by, definition, idempotency_key)
        return await self._creates.submit(await self._resolved(request))

    async def _create_group(self, take: Take[CommandRequest]) -> list[Created | Exception]:
        created = await self.store.create_requests(
            take, self.config.queue_bound, self.clock.now, self._claim_cap
        )
        return list(created)

    async def create_commands(
        self, tenant: str, bodies: list[CommandRequestIn], issued_by: str
    ) -> list[Created | CourierError]:
        """Many requests in one transaction (bulk callers, benchmarks); one result each."""
        results: list[Created | CourierError | None] = []
        requests: list[CommandRequest] = []
        for body in bodies:
            try:
                definition = await self.definition(tenant, body.command)
                request = self.build_request(tenant, body, issued_by, definition)
                requests.append(await self._resolved(request))
                results.append(None)
            except CourierError as exc:
                results.append(exc)
        created = iter(
            await self.store.create_requests(
                requests, self.config.queue_bound, self.clock.now(), self._claim_cap
            )
        )
        return [next(created) if r is None else r for r in results]

    async def _resolved(self, request: CommandRequest) -> CommandRequest:
        args = await resolve_args(self.store, request.tenant, request.command, request.args)
        return request if args is request.args else replace(request, args=args)

    @property
    def _claim_cap(self) -> int:
        return self.config.in_flight if self.config.claim_on_create else 0

    # --- device inbox ------------------------------------------------------------------

    async def inbox(self, tenant: str, device_id: str) -> list[Dispatch]:
        """Due commands of a polling device, marked SENT (it reports back over REST)."""
        return await self.store.inbox(
            tenant, device_id, self.clock.now(), self.config.inbox_limit, self.config.in_flight
        )
