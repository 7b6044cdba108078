"""The LwM2M profile: devices with `protocol: lwm2m` are reached through an EMQX-format LwM2M
gateway. Commands go to `{mount}/{endpoint}/dn/courier`; responses, notifications and
register/update messages come back on `{mount}/{endpoint}/up/...`.

The request id is a hash of the execution id and attempt, so a response finds its execution
in the store after a restart and a late response to an earlier attempt is recognised.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import TYPE_CHECKING, Any

import orjson

from courier.core import lwm2m
from courier.core.records import Dispatch, Execution
from courier.errors import InvalidInput, TransportError
from courier.files.service import with_links
from courier.ids import is_device_id
from courier.schemas.mqtt import parse_json_object
from courier.schemas.states import IN_FLIGHT, ExecutionState
from courier.store import ExecutionFilter
from courier.store.verbs import IncomingReply
from courier.transport import Message

if TYPE_CHECKING:
    from courier.bridge.engine import Bridge

log = logging.getLogger(__name__)
S = ExecutionState
PACKAGE_URI = "/5/0/1"  # Firmware Update: the URI the device downloads its package from
LEASE_GRACE = 1.2  # a registration lasts its lifetime plus this share, as LwM2M servers allow


def request_id(execution_id: str, attempt: int) -> int:
    digest = hashlib.blake2b(f"{execution_id}:{attempt}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF


def lwm2m_command(dispatch: Dispatch, args: dict[str, Any]) -> dict[str, Any]:
    """The EMQX request for a command; InvalidInput for a command LwM2M cannot carry."""
    execution = dispatch.execution
    req_id = request_id(execution.id, execution.attempt)
    if execution.command == "lwm2m_request":
        return lwm2m.emqx_request(req_id, args)
    if execution.command == "lwm2m_file" and args.get("type") == "fileupload":
        write = {"type": "write", "endpoint": PACKAGE_URI, "data": args.get("url", "")}
        return lwm2m.emqx_request(req_id, write)
    raise InvalidInput(
        f"an LwM2M device takes lwm2m_request and lwm2m_file fileupload, not {execution.command}"
        + (f" {args.get('type')}" if execution.command == "lwm2m_file" else "")
    )


class Lwm2mProfile:
    def __init__(self, bridge: Bridge, mountpoint: str) -> None:
        self.bridge = bridge
        self.mount = mountpoint
        self.endpoints: set[str] = set()
        self._leases: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # An endpoint's uplinks are handled one at a time, in arrival order: its `ack` must
        # be recorded before the response that follows it.
        self._in_order: dict[str, asyncio.Lock] = {}

    @property
    def topics(self) -> list[str]:
        return [f"{self.mount}/+/up/{kind}" for kind in ("resp", "notify", "register", "update")]

    def command_topic(self, endpoint: str) -> str:
        return f"{self.mount}/{endpoint}/dn/courier"

    async def load(self) -> None:
        """The LwM2M endpoints, and the leases of those registered (a restart keeps them)."""
        self.endpoints.update(await self.bridge.store.devices_speaking("lwm2m"))
        for lease in await self.bridge.store.lwm2m_registrations():
            self._leases[lease.id] = lease.until

    def owns(self, topic: str) -> bool:
        return topic.startswith(self.mount + "/")

    # --- Courier -> device -------------------------------------------------------------

    def publish(self, dispatch: Dispatch, now: float) -> int:
        execution = dispatch.execution
        links = self.bridge.files.ready_links if self.bridge.files is not None else None
        args = with_links(
            links, execution.tenant, execution.id, execution.command, dispatch.args, now
        )
        try:
            command = lwm2m_command(dispatch, args)
        except InvalidInput as exc:
            self._spawn(self._refuse(execution, exc.message))
            return 0
        try:
            self.bridge.transport.publish(
                self.command_topic(execution.route_id), orjson.dumps(command), qos=1
            )
        except TransportError as exc:
            self.bridge.metrics.publish_errors.inc()
            log.warning("publish failed: %s", exc, extra={"execution": execution.id})
            return 0
        return 1

    async def _refuse(self, execution: Execution, why: str) -> None:
        reply = IncomingReply(
            execution.route_id, execution.id, S.FAILED, why, None, None, execution.attempt
        )
        await self.bridge.store.record_replies([reply], self.bridge.clock.now())

    def _spawn(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- device -> Courier -------------------------------------------------------------

    async def handle(self, message: Message) -> None:
        levels = message.topic[len(self.mount) + 1 :].split("/")
        if len(levels) != 3 or levels[1] != "up" or not is_device_id(levels[0]):
            self._reject(message, "bad_topic", "not an LwM2M uplink topic")
            return
        endpoint, kind = levels[0], levels[2]
        lock = self._in_order.setdefault(endpoint, asyncio.Lock())
        async with lock:
            await self._uplink(endpoint, kind, message)

    async def _uplink(self, endpoint: str, kind: str, message: Message) -> None:
        try:
            body = parse_json_object(message.payload, self.bridge.config.max_payload)
        except InvalidInput as exc:
            self._reject(message, str(exc.extra.get("why", "invalid")), exc.message)
            return
        if not isinstance(body, dict):
            self._reject(message, "bad_json", "not a JSON object")
            return
        device = await self.bridge.store.find_device(endpoint)
        if device is None or device.protocol != "lwm2m":
            self._reject(message, "unknown_device", f"no LwM2M device {endpoint}")
            return
        self.endpoints.add(endpoint)
        if kind in ("register", "update"):
            await self._registered(endpoint, body)
        elif kind == "resp":
            await self._response(device.tenant, endpoint, body, message)
        elif kind == "notify":
            await self._notification(device.tenant, endpoint, body, message)
        else:
            self._reject(message, "unexpected", f"LwM2M uplink {kind} is not consumed")

    async def _registered(self, endpoint: str, body: dict[str, Any]) -> None:
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        lifetime = data.get("lt") if isinstance(data, dict) else None
        now = self.bridge.clock.now()
        until = None
        if isinstance(lifetime, int) and not isinstance(lifetime, bool) and lifetime > 0:
            until = now + lifetime * LEASE_GRACE
            self._leases[endpoint] = until
        else:
            self._leases.pop(endpoint, None)
            lifetime = None
        if await self.bridge.store.register_lwm2m(endpoint, lifetime, until, now):
            self.bridge.metrics.presence.labels("true").inc()
            self.bridge.wake([endpoint])

    async def expire_leases(self) -> int:
        """Registrations not updated within their lifetime go offline."""
        now = self.bridge.clock.now()
        expired = [e for e, until in self._leases.items() if until <= now]
        for endpoint in expired:
            del self._leases[endpoint]
            await self.bridge.store.expire_lwm2m(endpoint, now)
            log.info("LwM2M registration expired", extra={"device": endpoint})
        return len(expired)

    async def _in_flight(self, tenant: str, endpoint: str, req_id: object) -> Execution | None:
        flt = ExecutionFilter(device_ids=(endpoint,), states=tuple(IN_FLIGHT))
        page = await self.bridge.store.list_executions(tenant, flt, 10, 0)
        for execution in page.results:
            if request_id(execution.id, execution.attempt) == req_id:
                return execution
        return None

    async def _response(
        self, tenant: str, endpoint: str, body: dict[str, Any], message: Message
    ) -> None:
        execution = await self._in_flight(tenant, endpoint, body.get("reqID"))
        if execution is None:
            self._reject(message, "unknown_execution", "no request in flight with this reqID")
            return
        try:
            answer = lwm2m.read_response(body)
        except InvalidInput as exc:
            self._reject(message, "invalid", exc.message)
            return
        now = self.bridge.clock.now()
        reply = IncomingReply(
            endpoint,
            execution.id,
            answer.state,
            answer.reason,
            None,
            answer.output,
            execution.attempt,
            answer.retry_as_timeout,
        )
        # An observe that succeeds starts its observation in the same transaction.
        await self.bridge.store.record_replies([reply], now)
        self.bridge.metrics.replies.labels("applied").inc()

    async def _notification(
        self, tenant: str, endpoint: str, body: dict[str, Any], message: Message
    ) -> None:
        data = body.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("reqPath"), str):
            self._reject(message, "invalid", "a notification names its reqPath")
            return
        kept = {k: data[k] for k in ("reqPath", "code", "content") if k in data}
        if "seqNum" in body:
            kept["seqNum"] = body["seqNum"]
        found = await self.bridge.store.record_notification(
            tenant, endpoint, data["reqPath"], kept, self.bridge.clock.now()
        )
        if found is None:
            self._reject(message, "not_observed", f"nothing observes {data['reqPath']}")

    def _reject(self, message: Message, reason: str, detail: str) -> None:
        self.bridge.metrics.rejected.labels("lwm2m", reason).inc()
        log.warning("rejected LwM2M message: %s", detail, extra={"topic": message.topic})
