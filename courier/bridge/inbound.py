"""MQTT -> store: replies and presence. Bad input is rejected, logged and counted, never fatal."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from courier.core.records import Change
from courier.errors import InvalidInput
from courier.schemas.mqtt import decode_presence, decode_reply
from courier.schemas.states import ExecutionState
from courier.topics import ParsedTopic, TopicKind
from courier.transport import Message

if TYPE_CHECKING:
    from courier.bridge.engine import Bridge

log = logging.getLogger(__name__)


class InboundHandler:
    """Handles every message the bridge is subscribed to. Returning acknowledges it."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge

    def _reject(self, message: Message, kind: str, reason: str, detail: str) -> None:
        self.bridge.metrics.rejected.labels(kind, reason).inc()
        log.warning(
            "rejected MQTT message: %s", detail, extra={"topic": message.topic, "reason": reason}
        )

    async def handle(self, message: Message) -> None:
        parsed = self.bridge.topics.parse(message.topic)
        if parsed is None:
            self._reject(message, "unknown", "bad_topic", "topic is not one of Courier's")
            return
        if parsed.kind is TopicKind.REPLY:
            await self._reply(message, parsed)
        elif parsed.kind is TopicKind.PRESENCE:
            await self._presence(message, parsed)
        elif parsed.kind is TopicKind.ATTACHED_PRESENCE:
            self._reject(
                message, "attached_presence", "unsupported", "attached devices are not supported"
            )
        else:
            self._reject(message, parsed.kind.value, "unexpected", "not a topic Courier consumes")

    async def _reply(self, message: Message, parsed: ParsedTopic) -> None:
        bridge = self.bridge
        assert parsed.device is not None
        assert parsed.execution is not None
        try:
            reply = decode_reply(message.payload, bridge.config.max_payload)
        except InvalidInput as exc:
            self._reject(message, "reply", str(exc.extra.get("why", "invalid")), exc.message)
            return
        outcome = await bridge.store.record_reply(
            parsed.device,
            parsed.execution,
            ExecutionState(reply.state),
            reply.reason,
            reply.progress,
            reply.output,
            reply.attempt,
            bridge.clock.now(),
        )
        if isinstance(outcome, Change):
            bridge.metrics.replies.labels("applied").inc()
            return
        why = outcome.why
        if why in ("unknown execution", "foreign execution"):
            self._reject(message, "reply", why.replace(" ", "_"), why)
        elif why.startswith("illegal"):
            bridge.metrics.replies.labels("illegal").inc()
            log.warning("reply refused: %s", why, extra={"topic": message.topic})
        else:
            bridge.metrics.replies.labels(why.replace(" ", "_")).inc()

    async def _presence(self, message: Message, parsed: ParsedTopic) -> None:
        bridge = self.bridge
        assert parsed.device is not None
        if not message.payload:
            return  # a cleared retained presence
        try:
            presence = decode_presence(message.payload, bridge.config.max_payload)
        except InvalidInput as exc:
            self._reject(message, "presence", str(exc.extra.get("why", "invalid")), exc.message)
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
