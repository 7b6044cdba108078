"""The transport interface the bridge and the device SDK talk to, whatever the MQTT library.

A message handler that returns has consumed the message: the adapter acknowledges a QoS 1
message (PUBACK) only then, so a reply is acknowledged to the broker once it is committed.
A handler that raises leaves the message unacknowledged; the broker redelivers it when the
session resumes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from courier.errors import ConfigError
from courier.record import record


@record
class Message:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False
    response_topic: str | None = None
    correlation_data: bytes | None = None
    user_properties: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True, slots=True)
class ConnectOptions:
    client_id: str
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    clean_start: bool = False
    session_expiry: int = 7 * 24 * 3600
    keepalive: int = 30
    will: Will | None = None
    reconnect_delay: float = 1.0
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_url(cls, url: str, client_id: str, **kwargs: object) -> ConnectOptions:
        """Options from mqtt://user:pass@host:port; keyword arguments override."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "tcp"):
            raise ConfigError(f"broker URL must look like mqtt://user:pass@host:port, not {url!r}")
        values: dict[str, object] = {
            "host": parts.hostname or "127.0.0.1",
            "port": parts.port or 1883,
            "username": unquote(parts.username) if parts.username else None,
            "password": unquote(parts.password) if parts.password else None,
        }
        values.update(kwargs)
        return cls(client_id=client_id, **values)  # type: ignore[arg-type]


MessageHandler = Callable[[Message], Awaitable[None]]
# Takes a message without a task of its own: None when it is consumed already, else what to
# wait for before acknowledging it (failing withholds the PUBACK, as raising does).
NowaitHandler = Callable[[Message], asyncio.Future[Any] | None]
ConnectHandler = Callable[[bool], None]


class Transport(Protocol):
    """One MQTT connection that reconnects by itself and resubscribes after it does."""

    on_message: MessageHandler | None
    # Preferred over on_message where the adapter can use it (the bridge's hot path).
    on_message_nowait: NowaitHandler | None
    on_connect: ConnectHandler | None
    on_disconnect: Callable[[], None] | None

    @property
    def connected(self) -> bool: ...

    async def connect(self) -> None:
        """Connect once (raises TransportError); afterwards, reconnects on its own."""
        ...

    async def disconnect(self) -> None: ...

    async def subscribe(self, topics: Sequence[str], qos: int = 1) -> None:
        """Subscribe now and again after every reconnect."""
        ...

    async def unsubscribe(self, topics: Sequence[str]) -> None:
        """Stop receiving these topics (and do not subscribe again after a reconnect)."""
        ...

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
        """Queue a message for sending; raises TransportError when not connected."""
        ...
