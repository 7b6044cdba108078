"""The broker settings SPEC relies on stay in the repository's mosquitto.conf."""

from __future__ import annotations

from pathlib import Path

from courier.settings import Settings

CONF = Path(__file__).resolve().parents[2] / "mosquitto.conf"


def settings_of(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition(" ")
            found[name] = value.strip()
    return found


def test_the_broker_is_closed_persistent_and_roomy_enough_for_courier() -> None:
    conf = settings_of(CONF.read_text())
    defaults = Settings()
    assert conf["allow_anonymous"] == "false"
    assert {"password_file", "acl_file"} <= conf.keys()
    assert conf["persistent_client_expiration"].endswith(("d", "w"))
    # Courier's in-flight window per device stays far below the broker's per-client queue.
    assert int(conf["max_queued_messages"]) >= 100 * defaults.in_flight
    assert int(conf["max_packet_size"]) >= defaults.max_payload + 64 * 1024
    assert conf["set_tcp_nodelay"] == "true"
    assert conf["persistence"] == "false"  # Courier's store is the only truth
