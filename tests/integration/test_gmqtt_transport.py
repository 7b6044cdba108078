"""The gmqtt transport against a real Mosquitto."""

from __future__ import annotations

import asyncio
import socket

import pytest

from courier.errors import TransportError
from courier.mosquitto import MosquittoProcess
from courier.transport import ConnectOptions, Message
from courier.transport.gmqtt_transport import GmqttTransport
from tests.helpers import eventually


def options(broker: MosquittoProcess, client_id: str, **extra: object) -> ConnectOptions:
    return ConnectOptions.from_url(broker.url, client_id=client_id, reconnect_delay=0.2, **extra)


async def test_round_trip_with_mqtt5_properties(broker: MosquittoProcess, prefix: str) -> None:
    received: list[Message] = []
    sub = GmqttTransport(options(broker, f"{prefix}-sub", clean_start=True))

    async def collect(message: Message) -> None:
        received.append(message)

    sub.on_message = collect
    pub = GmqttTransport(options(broker, f"{prefix}-pub", clean_start=True))
    await sub.connect()
    await pub.connect()
    await sub.subscribe([f"{prefix}/+/x"])
    pub.publish(
        f"{prefix}/a/x",
        b"hello",
        qos=1,
        expiry=60,
        response_topic=f"{prefix}/resp",
        correlation_data=b"c1",
        user_properties=[("k", "v")],
    )
    await eventually(lambda: len(received) == 1, what="the message")
    message = received[0]
    assert message.payload == b"hello"
    assert message.response_topic == f"{prefix}/resp"
    assert message.correlation_data == b"c1"
    assert message.user_properties == (("k", "v"),)
    sock = pub._client._connection._transport.get_extra_info("socket")
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    await pub.disconnect()
    await sub.disconnect()
    assert not pub.connected
    with pytest.raises(TransportError, match="not connected"):
        pub.publish(f"{prefix}/a/x", b"late")


async def test_acknowledged_qos1_packets_leave_the_replay_store_and_free_their_ids(
    broker: MosquittoProcess, prefix: str
) -> None:
    """Each PUBACK takes its packet out of what a resumed session would replay and frees its
    packet id; a QoS 0 packet is never kept."""
    pub = GmqttTransport(options(broker, f"{prefix}-pub", clean_start=True))
    await pub.connect()
    client = pub._client
    storage, ids = client._persistent_storage, client._package_handler.id_generator
    for i in range(300):
        pub.publish(f"{prefix}/a/{i}", b"x", qos=1)
        pub.publish(f"{prefix}/b/{i}", b"y", qos=0)
    assert len(storage._messages) == 300
    await eventually(lambda: storage.is_empty, what="every PUBACK")
    assert not ids._used_ids
    await pub.disconnect()


async def test_a_message_whose_handler_fails_is_not_acknowledged_and_comes_back(
    broker: MosquittoProcess, prefix: str
) -> None:
    attempts: list[bytes] = []
    fail = True

    async def handler(message: Message) -> None:
        attempts.append(message.payload)
        if fail:
            raise RuntimeError("store unavailable")

    sub = GmqttTransport(options(broker, f"{prefix}-sub"))
    sub.on_message = handler
    await sub.connect()
    await sub.subscribe([f"{prefix}/in"])
    pub = GmqttTransport(options(broker, f"{prefix}-pub", clean_start=True))
    await pub.connect()
    pub.publish(f"{prefix}/in", b"reply-1")
    await eventually(lambda: len(attempts) == 1, what="first delivery")
    await sub.disconnect()
    fail = False
    again = GmqttTransport(options(broker, f"{prefix}-sub"))
    again.on_message = handler
    await again.connect()
    await eventually(lambda: len(attempts) == 2, what="redelivery of the unacknowledged message")
    assert attempts == [b"reply-1", b"reply-1"]
    await asyncio.sleep(0.2)
    await again.disconnect()
    third = GmqttTransport(options(broker, f"{prefix}-sub"))
    third.on_message = handler
    await third.connect()
    await asyncio.sleep(0.3)
    assert len(attempts) == 2  # acknowledged once handled: not delivered again
    await third.disconnect()
    await pub.disconnect()


async def test_reconnects_and_resubscribes_after_a_broker_restart(
    own_broker: MosquittoProcess, prefix: str
) -> None:
    received: list[bytes] = []
    connects: list[bool] = []

    async def collect(message: Message) -> None:
        received.append(message.payload)

    sub = GmqttTransport(options(own_broker, f"{prefix}-sub"))
    sub.on_message = collect
    sub.on_connect = connects.append
    await sub.connect()
    await sub.subscribe([f"{prefix}/t"])
    own_broker.kill()
    await eventually(lambda: not sub.connected, what="the drop")
    own_broker.start()
    await eventually(lambda: sub.connected and len(connects) == 2, timeout=15, what="reconnect")
    assert connects == [False, False]  # the broker keeps no sessions across restarts
    pub = GmqttTransport(options(own_broker, f"{prefix}-pub", clean_start=True))
    await pub.connect()

    async def delivered() -> bool:
        pub.publish(f"{prefix}/t", b"after")
        await asyncio.sleep(0.1)
        return b"after" in received

    await eventually(delivered, what="delivery after resubscription")
    await pub.disconnect()
    await sub.disconnect()


async def test_connect_failure_is_a_transport_error(prefix: str) -> None:
    from courier.mosquitto import free_port

    transport = GmqttTransport(
        ConnectOptions(client_id=prefix, port=free_port(), reconnect_delay=0.2)
    )
    with pytest.raises(TransportError, match="cannot connect"):
        await transport.connect()
