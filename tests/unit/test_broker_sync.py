"""The broker's user list: each MQTT username once, whatever the store holds."""

from __future__ import annotations

import logging

import pytest

from courier.broker_auth import BrokerUser, render_password_file
from courier.broker_sync import _unique
from courier.credentials import mosquitto_hash

HASH = mosquitto_hash("x")


def test_a_name_held_twice_keeps_the_first_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    own = BrokerUser("courier", HASH)
    device = BrokerUser("erp", HASH)
    service_user = BrokerUser("erp", mosquitto_hash("y"))
    with caplog.at_level(logging.ERROR, logger="courier.broker_sync"):
        users = _unique([own, device, BrokerUser("courier", HASH), service_user])
    assert users == [own, device]
    assert render_password_file(users).splitlines() == [f"courier:{HASH}", f"erp:{HASH}"]
    assert [r.user for r in caplog.records] == ["courier", "erp"]  # type: ignore[attr-defined]
