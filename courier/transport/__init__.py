"""Courier's own MQTT transport interface, a gmqtt adapter and an in-memory broker for tests."""

from courier.transport.base import (
    ConnectOptions,
    Message,
    MessageHandler,
    NowaitHandler,
    Transport,
    Will,
)
from courier.transport.matching import topic_matches

__all__ = [
    "ConnectOptions",
    "Message",
    "MessageHandler",
    "NowaitHandler",
    "Transport",
    "Will",
    "topic_matches",
]
