"""An in-memory MQTT broker and transport for unit tests: wildcards, retained messages,
persistent sessions, wills. Deliveries run as tasks; `settle()` waits for all of them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from courier.errors import TransportError
from courier.transport.base import (
    ConnectHandler,
    ConnectOptions,
    Message,
    MessageHandler,
    NowaitHandler,
)
from courier.transport.matching import topic_matches


@dataclass
class _Session:
    subscriptions: dict[str, int] = field(default_factory=dict)
    queued: list[Message] = field(default_factory=list)
    transport: MemoryTransport | None = None
    persistent: bool = False


class MemoryBroker:
    """Routes messages between MemoryTransports in one event loop."""

    def __init__(self) -> None:
        self.sessions: dict[str, _Session] = {}
        self.retained: dict[str, Message] = {}
        self.published: list[Message] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def transport(self, options: ConnectOptions) -> MemoryTransport:
        return MemoryTransport(self, options)

    def _route(self, message: Message) -> None:
        self.published.append(message)
        if message.retain:
            if message.payload:
                self.retained[message.topic] = message
            else:
                self.retained.pop(message.topic, None)
        for session in self.sessions.values():
            qos = _granted(session.subscriptions, message.topic)
            if qos is None:
                continue
            delivered = Message(
                message.topic,
                message.payload,
                min(qos, message.qos),
                False,
                message.response_topic,
                message.correlation_data,
                message.user_properties,
            )
            if session.transport is not None:
                self._deliver(session.transport, delivered)
            elif session.persistent and delivered.qos > 0:
                session.queued.append(delivered)

    def _deliver(self, transport: MemoryTransport, message: Message) -> None:
        task = asyncio.get_running_loop().create_task(transport._receive(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settle(self, rounds: int = 50) -> None:
        """Wait until no delivery is running (deliveries may cause more deliveries)."""
        for _ in range(rounds):
            await asyncio.sleep(0)
            if not self._tasks:
                await asyncio.sleep(0)
                if not self._tasks:
                    return
            else:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)


def _granted(subscriptions: dict[str, int], topic: str) -> int | None:
    granted = [qos for flt, qos in subscriptions.items() if topic_matches(flt, topic)]
    return max(granted) if granted else None


class MemoryTransport:
    """A `Transport` connected to a MemoryBroker."""

    def __init__(self, broker: MemoryBroker, options: ConnectOptions) -> None:
        self.broker = broker
        self.options = options
        self.on_message: MessageHandler | None = None
        self.on_message_nowait: NowaitHandler | None = None  # deliveries use on_message
        self.on_connect: ConnectHandler | None = None
        self.on_disconnect: Callable[[], None] | None = None
        self._connected = False

    @property
    def connected(self) -> bool:
        return self._connected

    async def connect(self) -> None:
        broker = self.broker
        client_id = self.options.client_id
        previous = broker.sessions.get(client_id)
        if previous is not None and previous.transport is not None:
            previous.transport._drop(send_will=True)
        if self.options.clean_start or previous is None:
            session = _Session(persistent=not self.options.clean_start)
            broker.sessions[client_id] = session
            present = False
        else:
            session, present = previous, True
        session.transport = self
        self._connected = True
        if self.on_connect is not None:
            self.on_connect(present)
        queued, session.queued = session.queued, []
        for message in queued:
            broker._deliver(self, message)

    async def disconnect(self) -> None:
        self._drop(send_will=False)

    def drop(self) -> None:
        """Lose the connection abruptly: the broker publishes the will."""
        self._drop(send_will=True)

    def _drop(self, send_will: bool) -> None:
        if not self._connected:
            return
        self._connected = False
        session = self.broker.sessions.get(self.options.client_id)
        if session is not None and session.transport is self:
            session.transport = None
            if not session.persistent:
                del self.broker.sessions[self.options.client_id]
        will = self.options.will
        if send_will and will is not None:
            self.broker._route(Message(will.topic, will.payload, will.qos, will.retain))
        if self.on_disconnect is not None:
            self.on_disconnect()

    async def subscribe(self, topics: Sequence[str], qos: int = 1) -> None:
        if not self._connected:
            raise TransportError("not connected")
        session = self.broker.sessions[self.options.client_id]
        for topic in topics:
            session.subscriptions[topic] = qos
            for retained in list(self.broker.retained.values()):
                if topic_matches(topic, retained.topic):
                    self.broker._deliver(self, retained)

    async def unsubscribe(self, topics: Sequence[str]) -> None:
        session = self.broker.sessions.get(self.options.client_id)
        if session is not None:
            for topic in topics:
                session.subscriptions.pop(topic, None)

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        expiry: int | None = None,
        response_topic: str | None = None,
        correlation_data: bytes | None = None,
        user_properties: Sequence[tuple[str, str]] = (),
    ) -> None:
        if not self._connected:
            raise TransportError("not connected")
        self.broker._route(
            Message(
                topic,
                payload,
                qos,
                retain,
                response_topic,
                correlation_data,
                tuple(user_properties),
            )
        )

    async def _receive(self, message: Message) -> None:
        if self._connected and self.on_message is not None:
            await self.on_message(message)
