"""MQTT -> store: replies and presence. Bad input is rejected, logged and counted, never fatal."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING, Any

from courier.core.records import Change, Ignored
from courier.errors import InvalidInput
from courier.schemas.mqtt import decode_presence, decode_reply, parse_json_object
from courier.schemas.states import ExecutionState
from courier.store.verbs import IncomingReply
from courier.topics import ParsedTopic, TopicKind
from courier.transport import Message

if TYPE_CHECKING:
    from courier.bridge.engine import Bridge

log = logging.getLogger(__name__)


Outcome = Change | Ignored
# Replies, their messages, and what is done once they are committed.
Batch = tuple[list[IncomingReply], list[Message], "asyncio.Future[None]"]


class InboundHandler:
    """Handles every message the bridge is subscribed to. Returning acknowledges it."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self._lock = threading.Lock()  # the store's writer thread takes the batch
        self._pending: Batch | None = None  # the batch that waits to be taken

    async def handle(self, message: Message) -> None:
        pending = self.handle_nowait(message)
        if pending is not None:
            await pending

    def handle_nowait(self, message: Message) -> asyncio.Future[Any] | None:
        """Take a message; answers None when it is consumed already, or what to wait for
        before acknowledging it (a reply: the commit of its batch)."""
        if self.bridge.lwm2m.owns(message.topic):
            return asyncio.ensure_future(self.bridge.lwm2m.handle(message))
        parsed = self.bridge.topics.parse(message.topic)
        if parsed is None:
            self._reject(message, "unknown", "bad_topic", "topic is not one of Courier's")
            return None
        if parsed.kind is TopicKind.REPLY:
            return self._reply(message, parsed)
        if parsed.kind is TopicKind.PRESENCE:
            return asyncio.ensure_future(self._presence(message, parsed))
        if parsed.kind is TopicKind.REQUESTS and self.bridge.ingress is not None:
            assert parsed.tenant is not None
            ingress = self.bridge.ingress.handle(parsed.tenant, message, self.bridge.transport)
            return asyncio.ensure_future(ingress)
        if parsed.kind is TopicKind.ATTACHED_PRESENCE:
            return asyncio.ensure_future(self._attached_presence(message, parsed))
        if parsed.kind is TopicKind.NOTIFY:
            return asyncio.ensure_future(self._notification(message, parsed))
        self._reject(message, parsed.kind.value, "unexpected", "not a topic Courier consumes")
        return None

    def _reply(self, message: Message, parsed: ParsedTopic) -> asyncio.Future[None] | None:
        assert parsed.device is not None
        assert parsed.execution is not None
        try:
            reply = decode_reply(message.payload, self.bridge.config.max_payload)
        except InvalidInput as exc:
            self._refuse(message, "reply", exc)
            return None
        item = IncomingReply(
            parsed.device,
            parsed.execution,
            ExecutionState(reply.state),
            reply.reason,
            reply.progress,
            reply.output,
            reply.attempt,
        )
        return self._enqueue(item, message)

    def _enqueue(self, item: IncomingReply, message: Message) -> asyncio.Future[None]:
        """Join the batch of replies that one store transaction will record; the future is
        done once it is committed (it fails if the store did: no PUBACK, redelivered).

        The batch is handed to the store once the messages already received in this loop
        iteration have joined it, and closed only when its transaction starts (see
        courier.coalesce): while the writer is busy, the batch keeps growing in its queue,
        and is committed together with the commands created meanwhile.
        """
        with self._lock:
            if self._pending is None:
                loop = asyncio.get_running_loop()
                self._pending = ([], [], loop.create_future())
                loop.call_soon(self._flush)
            items, messages, future = self._pending
            items.append(item)
            messages.append(message)
        return future

    def _flush(self) -> None:
        taken: list[Batch] = []

        def take() -> list[IncomingReply]:
            """The batch, the first time; nothing after that (nor after it was given up)."""
            with self._lock:
                if taken or self._pending is None:
                    return []
                taken.append(self._pending)
                self._pending = None
            return taken[0][0]

        clock = self.bridge.clock
        task = asyncio.ensure_future(self.bridge.store.record_replies(take, clock.now))

        def done(finished: asyncio.Future[list[Outcome]]) -> None:
            take()  # refused before it started: nothing else may take it now
            _, messages, future = taken[0]
            if finished.cancelled():
                future.cancel()
            elif (error := finished.exception()) is not None:
                future.set_exception(error)
            else:
                applied = 0
                for message, outcome in zip(messages, finished.result(), strict=True):
                    if isinstance(outcome, Change):
                        applied += 1
                    else:
                        self._count_refused(message, outcome)
                if applied:
                    self.bridge.metrics.replies.labels("applied").inc(applied)
                future.set_result(None)

        task.add_done_callback(done)

    def _count_refused(self, message: Message, outcome: Ignored) -> None:
        """Metrics and logs of a reply the store did not apply."""
        why = outcome.why
        if why in ("unknown execution", "foreign execution"):
            self._reject_why(message, "reply", why)
        elif why.startswith("illegal"):
            self.bridge.metrics.replies.labels("illegal").inc()
            log.warning("reply refused: %s", why, extra={"topic": message.topic})
        else:
            self.bridge.metrics.replies.labels(why.replace(" ", "_")).inc()

    def _refuse(self, message: Message, kind: str, exc: InvalidInput) -> None:
        """A payload that failed its checks: the reason is the check's `why`."""
        self._reject(message, kind, str(exc.extra.get("why", "invalid")), exc.message)

    def _reject_why(self, message: Message, kind: str, why: str) -> None:
        """Refused by the store, which says why in words."""
        self._reject(message, kind, why.replace(" ", "_"), why)

    def _reject(self, message: Message, kind: str, reason: str, detail: str) -> None:
        self.bridge.metrics.rejected.labels(kind, reason).inc()
        log.warning(
            "rejected MQTT message: %s", detail, extra={"topic": message.topic, "reason": reason}
        )

    async def _notification(self, message: Message, parsed: ParsedTopic) -> None:
        """A native device reports a change of what an observe execution watches."""
        assert parsed.device is not None
        assert parsed.execution is not None
        try:
            data = parse_json_object(message.payload, self.bridge.config.max_payload)
        except InvalidInput as exc:
            self._refuse(message, "notify", exc)
            return
        if not isinstance(data, dict):
            self._reject(message, "notify", "invalid", "a notification is a JSON object")
            return
        why = await self.bridge.store.record_observed(
            parsed.device, parsed.execution, data, self.bridge.clock.now()
        )
        if why is not None:
            self._reject_why(message, "notify", why)

    async def _attached_presence(self, message: Message, parsed: ParsedTopic) -> None:
        """A gateway announces one of its attached devices (registering it if new)."""
        bridge = self.bridge
        assert parsed.device is not None
        assert parsed.attached is not None
        if not message.payload:
            return
        try:
            presence = decode_presence(message.payload, bridge.config.max_payload)
        except InvalidInput as exc:
            self._refuse(message, "attached_presence", exc)
            return
        result = await bridge.store.set_attached_presence(
            parsed.device, parsed.attached, presence.online, bridge.clock.now()
        )
        if isinstance(result, str):
            self._reject_why(message, "attached_presence", result)
            return
        device, changed = result
        bridge.metrics.presence.labels(str(presence.online).lower()).inc()
        if changed:
            log.info(
                "attached device %s",
                "online" if device.online else "offline",
                extra={"device": device.id, "gateway": parsed.device},
            )
        if device.online:
            bridge.wake([parsed.device])

    async def _presence(self, message: Message, parsed: ParsedTopic) -> None:
        bridge = self.bridge
        assert parsed.device is not None
        if not message.payload:
            return  # a cleared retained presence
        try:
            presence = decode_presence(message.payload, bridge.config.max_payload)
        except InvalidInput as exc:
            self._refuse(message, "presence", exc)
            return
        result = await bridge.store.set_presence(parsed.device, presence.online, bridge.clock.now())
        if result is None:
            self._reject(message, "presence", "unknown_device", f"no device {parsed.device}")
            return
        device, changed = result
        bridge.metrics.presence.labels(str(presence.online).lower()).inc()
        if changed:
            log.info(
                "device %s", "online" if device.online else "offline", extra={"device": device.id}
            )
        if device.online:
            bridge.wake([device.id])
