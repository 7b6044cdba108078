"""The `Transport` over gmqtt (MQTT 5): the fastest asyncio client measured here.

gmqtt with `optimistic_acknowledgement=False` sends the PUBACK of a QoS 1 message only when
its async handler returns, which is how a reply is acknowledged only after its commit.
asyncio and uvloop set TCP_NODELAY on TCP sockets, so Nagle's algorithm is off.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import gmqtt
from gmqtt.mqtt.constants import UNLIMITED_RECONNECTS, MQTTCommands, MQTTv50

from courier.errors import TransportError
from courier.transport.base import (
    ConnectHandler,
    ConnectOptions,
    Message,
    MessageHandler,
    NowaitHandler,
)
from courier.transport.packets import publish_packet

log = logging.getLogger(__name__)
SUBACK_TIMEOUT = 10.0


def _puback(mid: int) -> bytes:
    """PUBACK with success and no properties: the short form both MQTT 3.1.1 and 5 read."""
    return bytes((0x40, 0x02, mid >> 8, mid & 0xFF))


def _first(values: Any) -> Any:
    if isinstance(values, list):
        return values[0] if values else None
    return values


class GmqttTransport:
    """One gmqtt client: connects, reconnects by itself, resubscribes after each connect."""

    def __init__(self, options: ConnectOptions) -> None:
        self.options = options
        self.on_message: MessageHandler | None = None
        self.on_message_nowait: NowaitHandler | None = None
        self.on_connect: ConnectHandler | None = None
        self.on_disconnect: Callable[[], None] | None = None
        self._topics: dict[str, int] = {}
        self._client: Any = None
        self._suback: dict[int, asyncio.Future[None]] = {}
        self._closing = False
        self._topic_cache: dict[str, bytes] = {}
        self._outgoing: list[bytes] = []
        self._outgoing_to: Any = None  # the connection the outgoing packets are for

    @property
    def connected(self) -> bool:
        return self._live_connection() is not None

    def _live_connection(self) -> Any:
        """gmqtt's connection while it is up and acknowledged (CONNACK), else None."""
        client = self._client
        if client is None:
            return None
        connection = client._connection
        if connection is None or connection.is_closing() or not client._connack_received.is_set():
            return None
        return connection

    def _make_client(self) -> Any:
        opts = self.options
        will = None
        if opts.will is not None:
            will = gmqtt.Message(
                opts.will.topic, opts.will.payload, qos=opts.will.qos, retain=opts.will.retain
            )
        client = gmqtt.Client(
            opts.client_id,
            clean_session=opts.clean_start,
            optimistic_acknowledgement=False,
            will_message=will,
            logger=log,
            session_expiry_interval=0 if opts.clean_start else opts.session_expiry,
        )
        client.set_config(
            {"reconnect_retries": UNLIMITED_RECONNECTS, "reconnect_delay": opts.reconnect_delay}
        )
        if opts.username is not None:
            client.set_auth_credentials(opts.username, opts.password)
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_message = self._handle_message
        client.on_subscribe = self._handle_suback
        # Incoming PUBLISH packets come here first; gmqtt handles every other packet.
        handler = client._package_handler
        handler._handle_packet = partial(
            self._dispatch, client, handler._handle_packet, handler._handle_publish_packet
        )
        return client

    async def connect(self) -> None:
        self._closing = False
        client = self._client = self._make_client()
        try:
            await client.connect(
                self.options.host,
                self.options.port,
                keepalive=self.options.keepalive,
                version=MQTTv50,
            )
        except (OSError, gmqtt.mqtt.handler.MQTTConnectError) as exc:
            client.stop_reconnect()
            self._client = None
            raise TransportError(
                f"cannot connect to mqtt://{self.options.host}:{self.options.port} "
                f"as {self.options.client_id}: {exc}"
            ) from exc

    async def disconnect(self) -> None:
        self._closing = True
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.disconnect()
            except (OSError, RuntimeError) as exc:
                log.debug("disconnect failed: %s", exc)

    async def subscribe(self, topics: Sequence[str], qos: int = 1) -> None:
        for topic in topics:
            self._topics[topic] = qos
        if self.connected:
            await self._send_subscribe(list(topics), qos)

    async def unsubscribe(self, topics: Sequence[str]) -> None:
        for topic in topics:
            self._topics.pop(topic, None)
        if self.connected:
            self._client.unsubscribe(list(topics))

    async def _send_subscribe(self, topics: list[str], qos: int) -> None:
        subscriptions = [gmqtt.Subscription(t, qos=qos) for t in topics]
        mid = self._client.subscribe(subscriptions)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._suback[mid] = waiter
        try:
            await asyncio.wait_for(waiter, SUBACK_TIMEOUT)
        except TimeoutError as exc:
            raise TransportError(f"no SUBACK for {topics} within {SUBACK_TIMEOUT} s") from exc
        finally:
            self._suback.pop(mid, None)

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
        connection = self._live_connection()
        if connection is None:
            raise TransportError("not connected to the broker")
        if response_topic is None and correlation_data is None and not user_properties:
            self._publish_direct(connection, topic, payload, qos, retain, expiry)
            return
        properties: dict[str, Any] = {}
        if expiry is not None:
            properties["message_expiry_interval"] = max(1, int(expiry))
        if response_topic is not None:
            properties["response_topic"] = response_topic
        if correlation_data is not None:
            properties["correlation_data"] = correlation_data
        if user_properties:
            properties["user_property"] = list(user_properties)
        self._client.publish(topic, payload, qos=qos, retain=retain, **properties)

    def _publish_direct(
        self,
        connection: Any,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool,
        expiry: int | None,
    ) -> None:
        """Build the packet here and hand it to gmqtt's connection: a QoS 1 packet is kept
        in gmqtt's store, as its own publish would, for replay when the session resumes."""
        client = self._client
        mqtt5 = client._connection_state.protocol_version == MQTTv50
        topic_bytes = self._topic_cache.get(topic)
        if topic_bytes is None:
            topic_bytes = topic.encode()
            if len(self._topic_cache) < 10_000:
                self._topic_cache[topic] = topic_bytes
        mid = connection._protocol.id_generator.next_id() if qos else None
        packet = publish_packet(
            topic_bytes,
            payload,
            qos,
            retain,
            mid,
            None if expiry is None else max(1, expiry),
            mqtt5,
        )
        if qos:
            client._persistent_storage.push_message(mid, packet)
        self._send_soon(connection, packet)

    def _send_soon(self, connection: Any, packet: bytes) -> None:
        """One socket write for all that is sent in this loop iteration, not one each."""
        if self._outgoing and self._outgoing_to is not connection:
            self._flush_outgoing()
        if not self._outgoing:
            self._outgoing_to = connection
            asyncio.get_running_loop().call_soon(self._flush_outgoing)
        self._outgoing.append(packet)

    def _flush_outgoing(self) -> None:
        packets, self._outgoing = self._outgoing, []
        connection, self._outgoing_to = self._outgoing_to, None
        if not packets:
            return
        client = self._client
        if client is not None and connection is client._connection and not connection.is_closing():
            connection.send_package(b"".join(packets))
        # Otherwise the connection is gone: QoS 1 packets are replayed from gmqtt's store
        # when the session resumes (or resent after their ack timeout); QoS 0 may be lost,
        # and the broker delivers again what was not acknowledged.

    # --- gmqtt callbacks ---------------------------------------------------------------

    def _handle_connect(self, client: Any, flags: int, rc: int, properties: Any) -> None:
        session_present = bool(flags)
        if self._topics:
            by_qos: dict[int, list[str]] = {}
            for topic, qos in self._topics.items():
                by_qos.setdefault(qos, []).append(topic)
            for qos, topics in by_qos.items():
                client.subscribe([gmqtt.Subscription(t, qos=qos) for t in topics])
        if self.on_connect is not None:
            self.on_connect(session_present)

    def _handle_disconnect(self, client: Any, packet: Any, exc: Any = None) -> None:
        if self.on_disconnect is not None and not self._closing:
            self.on_disconnect()

    def _handle_suback(self, client: Any, mid: int, qos: Any, properties: Any) -> None:
        waiter = self._suback.get(mid)
        if waiter is not None and not waiter.done():
            if any(q >= 0x80 for q in qos):
                waiter.set_exception(TransportError(f"subscription refused (codes {qos})"))
            else:
                waiter.set_result(None)

    def _dispatch(self, client: Any, handle: Any, fallback: Any, cmd: int, raw: bytes) -> None:
        kind = cmd & 0xF0
        if kind == MQTTCommands.PUBLISH:
            self._handle_publish(client, fallback, cmd, raw)
        elif kind == MQTTCommands.PUBACK and len(raw) >= 2:
            # What gmqtt does with a PUBACK (its reason code unread, as there), one for every
            # command sent, without its two debug log calls and the five calls in between:
            # the packet id is free again and its packet leaves the store kept for replay.
            mid = (raw[0] << 8) | raw[1]
            client._package_handler.id_generator.free_id(mid)
            client._persistent_storage.remove_message_by_mid(mid)
        else:
            handle(cmd, raw)

    def _handle_publish(self, client: Any, fallback: Any, cmd: int, raw: bytes) -> None:
        """A PUBLISH without properties, for a `on_message_nowait` handler: parsed here and
        handed over without a task; its PUBACK waits for what the handler answers. Anything
        else (QoS 2, properties, topic aliases) goes through gmqtt as before."""
        handler = self.on_message_nowait
        qos = (cmd >> 1) & 0x03
        if handler is None or qos == 2:
            fallback(cmd, raw)
            return
        size = (raw[0] << 8) | raw[1]
        position = 2 + size
        mid = 0
        if qos:
            mid = (raw[position] << 8) | raw[position + 1]
            position += 2
        if client._connection_state.protocol_version == MQTTv50:
            if raw[position] != 0:  # properties: gmqtt parses them
                fallback(cmd, raw)
                return
            position += 1
        try:
            topic = raw[2 : 2 + size].decode()
        except UnicodeDecodeError:
            fallback(cmd, raw)
            return
        if not topic:
            fallback(cmd, raw)
            return
        connection = client._connection
        try:
            pending = handler(Message(topic, raw[position:], qos, bool(cmd & 0x01)))
        except Exception:
            log.exception("message handler failed; not acknowledged", extra={"topic": topic})
            return
        if not qos:
            return
        if pending is None:
            self._send_soon(connection, _puback(mid))
        else:
            pending.add_done_callback(partial(self._ack_when_done, connection, mid))

    def _ack_when_done(self, connection: Any, mid: int, done: asyncio.Future[Any]) -> None:
        if done.cancelled() or done.exception() is not None:
            return  # unacknowledged: the broker delivers it again when the session resumes
        if self._client is not None and connection is self._client._connection:
            self._send_soon(connection, _puback(mid))

    async def _handle_message(
        self, client: Any, topic: str | bytes, payload: bytes, qos: int, properties: Any
    ) -> int:
        if isinstance(topic, bytes):
            topic = topic.decode("utf-8", "replace")
        message = Message(
            topic=topic,
            payload=payload,
            qos=qos,
            retain=bool(properties.get("retain")),
            response_topic=_first(properties.get("response_topic")),
            correlation_data=_first(properties.get("correlation_data")),
            user_properties=tuple(tuple(p) for p in properties.get("user_property", [])),
        )
        handler = self.on_message
        if handler is not None:
            await handler(message)  # raising withholds the PUBACK
        return 0
