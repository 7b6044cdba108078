"""The generated password and ACL files against a real Mosquitto: who may connect, read and
write what, and how a removed device is cut off."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gmqtt
import pytest
from gmqtt.mqtt.constants import MQTTv50, MQTTv311
from gmqtt.mqtt.handler import MQTTConnectError

from courier.broker_auth import (
    BrokerAuthFiles,
    BrokerUser,
    StaleBrokerPid,
    cut_off,
    disconnect_client,
    render_acl,
    render_password_file,
    write_atomically,
)
from courier.credentials import mosquitto_hash, mosquitto_verify, new_device_password
from courier.errors import ConfigError, InvalidInput, TransportError
from courier.mosquitto import MosquittoProcess, free_port
from tests.helpers import eventually

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 2.0
COURIER = "courier"
TENANTS = {"svc-acme": "acme", "svc-globex": "globex"}
DEVICES = ("dev-a", "dev-b", "gw-1")
# MQTT 5 / 3.1.1 CONNACK codes for a refused login.
NOT_AUTHORISED = {MQTTv50: 135, MQTTv311: 5}


class Probe:
    """A gmqtt client that records what it receives and stays out once disconnected."""

    def __init__(
        self,
        broker: MosquittoProcess,
        client_id: str,
        username: str | None,
        password: str | None,
        clean: bool = True,
        version: int = MQTTv50,
    ) -> None:
        self.broker = broker
        self.version = version
        self.topics: list[str] = []
        self.session_present: bool | None = None
        self.disconnected = asyncio.Event()
        self._subacks: dict[int, asyncio.Future[tuple[int, ...]]] = {}
        self._client: Any = gmqtt.Client(
            client_id, clean_session=clean, session_expiry_interval=0 if clean else 3600
        )
        if username is not None:
            self._client.set_auth_credentials(username, password)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._client.on_disconnect = self._on_disconnect

    async def connect(self) -> None:
        await asyncio.wait_for(
            self._client.connect(self.broker.host, self.broker.port, version=self.version),
            TIMEOUT,
        )

    async def subscribe(self, topic: str) -> tuple[int, ...]:
        """The SUBACK's codes."""
        mid = self._client.subscribe([gmqtt.Subscription(topic, qos=1)])
        waiter = self._subacks[mid] = asyncio.get_running_loop().create_future()
        return await asyncio.wait_for(waiter, TIMEOUT)

    def publish(self, topic: str, payload: bytes = b"{}") -> None:
        self._client.publish(topic, payload, qos=1)

    async def received(self, topic: str) -> None:
        await eventually(lambda: topic in self.topics, timeout=TIMEOUT, what=topic)

    async def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            await self._client.disconnect()

    def _on_connect(self, client: Any, flags: int, rc: int, properties: Any) -> None:
        self.session_present = bool(flags)

    def _on_message(self, client: Any, topic: str, payload: bytes, qos: int, props: Any) -> int:
        self.topics.append(topic)
        return 0

    def _on_subscribe(self, client: Any, mid: int, codes: Any, properties: Any) -> None:
        waiter = self._subacks.pop(mid, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(tuple(codes))

    def _on_disconnect(self, client: Any, packet: Any, exc: Any = None) -> None:
        # A client cut off must not come back by gmqtt's automatic reconnect.
        client._is_active = False
        self.disconnected.set()


@dataclass
class Secured:
    broker: MosquittoProcess
    files: BrokerAuthFiles
    prefix: str
    passwords: dict[str, str]
    probes: list[Probe] = field(default_factory=list)

    def users(self, without: Collection[str] = ()) -> list[BrokerUser]:
        return [
            BrokerUser(name, mosquitto_hash(password))
            for name, password in self.passwords.items()
            if name not in without
        ]

    def acl(self) -> str:
        return render_acl(self.prefix, COURIER, TENANTS)

    def probe(
        self,
        username: str | None,
        client_id: str | None = None,
        password: str | None = None,
        **options: Any,
    ) -> Probe:
        if password is None and username is not None:
            password = self.passwords[username]
        probe = Probe(
            self.broker, client_id or username or "anonymous", username, password, **options
        )
        self.probes.append(probe)
        return probe

    async def connected(self, username: str, **options: Any) -> Probe:
        probe = self.probe(username, **options)
        await probe.connect()
        return probe

    def topic(self, rest: str) -> str:
        return f"{self.prefix}/{rest}"


@pytest.fixture
async def secured(tmp_path: Path, prefix: str) -> AsyncIterator[Secured]:
    """A Mosquitto of its own with the generated files, anonymous access off."""
    password_file, acl_file = tmp_path / "passwords", tmp_path / "acl"
    passwords = {name: new_device_password() for name in (COURIER, *TENANTS, *DEVICES)}
    broker = MosquittoProcess(
        ROOT / "mosquitto.conf",
        free_port(),
        tmp_path / "mosquitto",
        # A later line wins over mosquitto.conf's `allow_anonymous true`: the anonymous
        # login below is refused.
        extra=f"allow_anonymous false\npassword_file {password_file}\nacl_file {acl_file}\n",
    )
    files = BrokerAuthFiles(password_file, acl_file, broker.pid_file)
    setup = Secured(broker, files, prefix, passwords)
    assert not files.write(setup.users(), setup.acl())  # not running yet: nothing to reload
    broker.start()
    yield setup
    for probe in setup.probes:
        await probe.close()
    broker.stop()


# --- rendering ------------------------------------------------------------------------------


def test_password_file_has_one_sorted_line_per_user() -> None:
    users = [BrokerUser("dev-b", "$7$101$c2FsdA==$aGFzaA=="), BrokerUser("dev-a", "$7$1$x$y")]
    assert render_password_file(users) == "dev-a:$7$1$x$y\ndev-b:$7$101$c2FsdA==$aGFzaA==\n"
    with pytest.raises(InvalidInput, match="twice"):
        render_password_file([*users, BrokerUser("dev-a", "$7$1$x$z")])


@pytest.mark.parametrize("username", ["", "a:b", "a\nb", "a b", "a/b", "a+", "#", "x" * 65])
def test_usernames_that_would_break_the_files_or_widen_a_pattern_are_refused(
    username: str,
) -> None:
    with pytest.raises(InvalidInput, match="username"):
        BrokerUser(username, "$7$101$c2FsdA==$aGFzaA==")
    with pytest.raises(InvalidInput, match="username"):
        render_acl("courier", username, {})
    with pytest.raises(InvalidInput, match="username"):
        render_acl("courier", "courier", {username: "acme"})


def test_a_hash_that_is_not_mosquittos_is_refused() -> None:
    for bad in ("plain", "$7$101$salt$hash\nevil:$7$1$x$y", "$7$1$x:y"):
        with pytest.raises(InvalidInput, match="hash"):
            BrokerUser("dev-a", bad)


def test_acl_confines_devices_by_pattern_and_each_service_user_to_its_tenant() -> None:
    acl = render_acl("P", "courier", {"svc-acme": "acme"})
    rules = [line for line in acl.splitlines() if line and not line.startswith("#")]
    assert rules == [
        "pattern read P/devices/%u/commands/#",
        "pattern write P/devices/%u/replies/#",
        "pattern write P/devices/%u/notify/#",
        "pattern write P/devices/%u/presence",
        "pattern write P/devices/%u/attached/#",
        "user courier",
        "topic readwrite P/#",
        "user svc-acme",
        "topic write P/tenants/acme/requests",
        "topic read P/tenants/acme/events",
        "topic read P/tenants/acme/responses/#",
        "topic deny P/devices/svc-acme/#",
    ]


def test_acl_gives_lwm2m_endpoints_their_own_uplink_and_downlink() -> None:
    acl = render_acl("P", "courier", {"svc-acme": "acme"}, lwm2m_mountpoint="lw")
    rules = [line for line in acl.splitlines() if line and not line.startswith("#")]
    assert "pattern read lw/%u/dn/#" in rules
    assert "pattern write lw/%u/up/#" in rules
    assert rules[rules.index("user courier") + 1 :][:2] == [
        "topic readwrite P/#",
        "topic readwrite lw/#",
    ]
    assert rules[-1] == "topic deny lw/svc-acme/#"
    with pytest.raises(ConfigError):
        render_acl("P", "courier", {}, lwm2m_mountpoint="P")
    with pytest.raises(ConfigError):
        render_acl("P", "courier", {}, lwm2m_mountpoint="lw/#")


def test_acl_refuses_a_bad_tenant_prefix_or_courier_as_a_tenant_user() -> None:
    with pytest.raises(InvalidInput, match="Courier's own"):
        render_acl("P", "courier", {"courier": "acme"})
    with pytest.raises(InvalidInput, match="tenant id"):
        render_acl("P", "courier", {"svc": "a/b"})
    for prefix in ("P/#", "P\ntopic readwrite #", ""):
        with pytest.raises(ConfigError):
            render_acl(prefix, "courier", {})


# --- files ----------------------------------------------------------------------------------


def test_write_atomically_replaces_the_file_with_its_mode_and_leaves_nothing_behind(
    tmp_path: Path,
) -> None:
    target = tmp_path / "acl"
    target.write_text("old")
    write_atomically(target, "new\n")
    write_atomically(tmp_path / "shared", "x", mode=0o640)
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "shared").stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acl", "shared"]


def test_without_a_pid_file_the_files_are_written_and_nothing_is_signalled(
    tmp_path: Path,
) -> None:
    users = [BrokerUser("dev-a", mosquitto_hash("pw"))]
    for pid_file in (None, tmp_path / "absent.pid"):
        files = BrokerAuthFiles(tmp_path / "passwords", tmp_path / "acl", pid_file)
        assert files.write(users, "# empty\n") is False
    assert (tmp_path / "passwords").read_text().startswith("dev-a:$7$101$")


def test_a_stale_pid_is_an_error_and_no_other_process_gets_the_signal(tmp_path: Path) -> None:
    pid_file = tmp_path / "mosquitto.pid"
    files = BrokerAuthFiles(tmp_path / "passwords", tmp_path / "acl", pid_file)
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    other = subprocess.Popen(["sleep", "30"])
    try:
        for content in (str(finished.pid), str(other.pid), "0", "-1", "garbage", ""):
            pid_file.write_text(content + "\n")
            with pytest.raises(StaleBrokerPid):
                files.reload()
        assert other.poll() is None  # SIGHUP would have ended it
    finally:
        other.kill()
        other.wait()


# --- against Mosquitto ----------------------------------------------------------------------


@pytest.mark.parametrize("version", [MQTTv50, MQTTv311], ids=["mqtt5", "mqtt311"])
async def test_courier_hashes_authenticate_and_wrong_or_missing_credentials_are_refused(
    secured: Secured, version: int
) -> None:
    await secured.connected("dev-a", version=version)
    code = f"code {NOT_AUTHORISED[version]}"
    with pytest.raises(MQTTConnectError, match=code):
        await secured.probe("dev-b", password="wrong", version=version).connect()
    with pytest.raises(MQTTConnectError, match=code):
        await secured.probe(None, client_id="nobody", version=version).connect()
    with pytest.raises(MQTTConnectError, match=code):
        await secured.probe("unknown", password="pw", version=version).connect()


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="no mosquitto_passwd")
def test_mosquitto_passwd_writes_the_format_courier_writes(tmp_path: Path) -> None:
    path = tmp_path / "passwords"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(path), "dev-a", "s3cret"], check=True)
    username, stored = path.read_text().strip().split(":")
    assert username == "dev-a"
    assert stored.startswith("$7$101$")
    assert mosquitto_verify("s3cret", stored)
    assert not mosquitto_verify("wrong", stored)


@pytest.mark.parametrize("version", [MQTTv50, MQTTv311], ids=["mqtt5", "mqtt311"])
async def test_a_device_receives_its_own_commands_and_nothing_of_another_device(
    secured: Secured, version: int
) -> None:
    courier = await secured.connected(COURIER)
    device = await secured.connected("dev-a", version=version)
    # Mosquitto checks read access on delivery: the SUBACK grants QoS 1 either way.
    assert await device.subscribe(secured.topic("devices/dev-b/commands/#")) == (1,)
    assert await device.subscribe(secured.topic("devices/+/commands/#")) == (1,)
    assert await device.subscribe(secured.topic("devices/dev-a/commands/#")) == (1,)
    courier.publish(secured.topic("devices/dev-b/commands/e1"))
    courier.publish(secured.topic("tenants/acme/events"))
    courier.publish(secured.topic("devices/dev-a/commands/e2"))
    # Mosquitto keeps one publisher's order: anything else would have arrived first.
    await device.received(secured.topic("devices/dev-a/commands/e2"))
    assert set(device.topics) == {secured.topic("devices/dev-a/commands/e2")}


async def test_a_device_writes_only_its_own_replies_presence_and_attached_devices(
    secured: Secured,
) -> None:
    courier = await secured.connected(COURIER)
    assert await courier.subscribe(secured.topic("#")) == (1,)
    gateway = await secured.connected("gw-1")
    allowed = [
        secured.topic("devices/gw-1/presence"),
        secured.topic("devices/gw-1/attached/dev-x/presence"),
        secured.topic("devices/gw-1/replies/e1"),
    ]
    for denied in (
        "devices/dev-b/replies/e1",
        "devices/dev-b/presence",
        "devices/dev-b/attached/dev-x/presence",
        "devices/dev-b/commands/e1",
        "devices/gw-1/commands/e1",
        "tenants/acme/requests",
        "tenants/acme/events",
    ):
        gateway.publish(secured.topic(denied))
    for topic in allowed:
        gateway.publish(topic)
    await courier.received(allowed[-1])
    assert courier.topics == allowed


async def test_courier_reads_replies_through_a_shared_subscription(secured: Secured) -> None:
    courier = await secured.connected(COURIER)
    shared = f"$share/courier/{secured.topic('devices/+/replies/+')}"
    assert await courier.subscribe(shared) == (1,)
    device = await secured.connected("dev-a")
    device.publish(secured.topic("devices/dev-a/replies/e1"))
    await courier.received(secured.topic("devices/dev-a/replies/e1"))


async def test_a_service_user_is_confined_to_its_tenant(secured: Secured) -> None:
    courier = await secured.connected(COURIER)
    assert await courier.subscribe(secured.topic("#")) == (1,)
    service = await secured.connected("svc-acme")
    for topic in ("tenants/+/events", "tenants/+/responses/#", "devices/svc-acme/commands/#"):
        assert await service.subscribe(secured.topic(topic)) == (1,)
    for denied in (
        "tenants/globex/requests",
        "tenants/acme/events",
        "tenants/acme/responses/r1",
        "devices/dev-a/commands/e1",
        # The pattern rules would let it act as a device named like it, but for the deny.
        "devices/svc-acme/replies/e1",
        "devices/svc-acme/presence",
    ):
        service.publish(secured.topic(denied))
    service.publish(secured.topic("tenants/acme/requests"))
    await courier.received(secured.topic("tenants/acme/requests"))
    assert courier.topics == [secured.topic("tenants/acme/requests")]

    for topic in (
        "tenants/globex/events",
        "tenants/globex/responses/r1",
        "devices/svc-acme/commands/e1",
        "tenants/acme/events",
        "tenants/acme/responses/r1",
    ):
        courier.publish(secured.topic(topic))
    await service.received(secured.topic("tenants/acme/responses/r1"))
    assert service.topics == [
        secured.topic("tenants/acme/events"),
        secured.topic("tenants/acme/responses/r1"),
    ]


async def test_reload_disconnects_a_removed_device_but_keeps_its_session(
    secured: Secured,
) -> None:
    device = await secured.connected("dev-a", clean=False)
    assert await device.subscribe(secured.topic("devices/dev-a/commands/+")) == (1,)
    assert secured.files.write(secured.users(without={"dev-a"}), secured.acl())
    await asyncio.wait_for(device.disconnected.wait(), TIMEOUT)
    with pytest.raises(MQTTConnectError, match="code 135"):
        await secured.probe("dev-a", clean=False).connect()

    courier = await secured.connected(COURIER)
    courier.publish(secured.topic("devices/dev-a/commands/queued"))
    await courier.close()
    secured.files.write(secured.users(), secured.acl())
    await eventually(lambda: _can_log_in(secured, "dev-a"), timeout=TIMEOUT, what="reload")
    back = await secured.connected("dev-a", clean=False)
    assert back.session_present
    await back.received(secured.topic("devices/dev-a/commands/queued"))


async def test_cut_off_disconnects_refuses_and_drops_the_session(secured: Secured) -> None:
    device = await secured.connected("dev-a", clean=False)
    assert await device.subscribe(secured.topic("devices/dev-a/commands/+")) == (1,)
    courier = await secured.connected(COURIER)
    courier.publish(secured.topic("devices/dev-a/commands/e1"))
    await device.received(secured.topic("devices/dev-a/commands/e1"))

    await cut_off(
        secured.files,
        secured.users(without={"dev-a"}),
        secured.acl(),
        ["dev-a"],
        broker_host=secured.broker.host,
        port=secured.broker.port,
        username=COURIER,
        password=secured.passwords[COURIER],
    )
    await asyncio.wait_for(device.disconnected.wait(), TIMEOUT)
    with pytest.raises(MQTTConnectError, match="code 135"):
        await secured.probe("dev-a", clean=False).connect()
    courier.publish(secured.topic("devices/dev-a/commands/e2"))

    # Registered again under the same id, it starts afresh: no subscription, nothing queued.
    secured.files.write(secured.users(), secured.acl())
    await eventually(lambda: _can_log_in(secured, "dev-a"), timeout=TIMEOUT, what="reload")
    again = await secured.connected("dev-a", clean=False)
    assert again.session_present is False
    assert await again.subscribe(secured.topic("devices/dev-a/commands/+")) == (1,)
    courier.publish(secured.topic("devices/dev-a/commands/e3"))
    await again.received(secured.topic("devices/dev-a/commands/e3"))
    assert again.topics == [secured.topic("devices/dev-a/commands/e3")]


async def test_cut_off_refuses_a_device_that_is_still_listed(secured: Secured) -> None:
    with pytest.raises(InvalidInput, match="still in the user list"):
        await cut_off(
            secured.files,
            secured.users(),
            secured.acl(),
            ["dev-a"],
            broker_host=secured.broker.host,
            port=secured.broker.port,
            username=COURIER,
            password=secured.passwords[COURIER],
        )


async def test_disconnect_client_reports_a_refused_login(secured: Secured) -> None:
    with pytest.raises(TransportError, match="cannot take over client 'dev-a'"):
        await disconnect_client(
            secured.broker.host, secured.broker.port, COURIER, "wrong", client_id="dev-a"
        )
    with pytest.raises(TransportError, match="cannot take over"):
        await disconnect_client("127.0.0.1", free_port(), COURIER, "pw", client_id="dev-a")


async def _can_log_in(secured: Secured, username: str) -> bool:
    probe = Probe(secured.broker, f"{username}-check", username, secured.passwords[username])
    try:
        await probe.connect()
    except MQTTConnectError:
        return False
    finally:
        await probe.close()
    return True


async def test_a_device_taking_over_anothers_client_id_gets_none_of_its_queued_commands(
    secured: Secured,
) -> None:
    """Mosquitto lets dev-a connect with dev-b's client id (ending dev-b's connection); the
    session it resumes must not hand dev-a what was queued for dev-b."""
    victim = await secured.connected("dev-b", clean=False)
    await victim.subscribe(secured.topic("devices/dev-b/commands/#"))
    await victim.close()
    courier = await secured.connected(COURIER)
    courier.publish(secured.topic("devices/dev-b/commands/queued-1"))
    await asyncio.sleep(0.3)  # queued in dev-b's offline session
    thief = secured.probe("dev-a", client_id="dev-b", clean=False)
    await thief.connect()
    courier.publish(secured.topic("devices/dev-b/commands/later-2"))
    await asyncio.sleep(0.5)
    assert thief.session_present  # the session was resumed...
    assert thief.topics == []  # ...but nothing of dev-b's reached dev-a
