"""Secure deferred payloads end to end: issued over REST, opened by the device SDK."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from courier.core.deferred import decode_key
from courier.credentials import mosquitto_verify
from courier.gateway.deferred import (
    PayloadExpired,
    PayloadNotYetValid,
    PayloadReplayed,
    PayloadTampered,
    PayloadVerifier,
)
from tests.integration.test_api import Api, make_api, problem

AIDS = ["alice", "bob", "carol"]


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async for made in make_api(tmp_path):
        yield made


async def setup(api: Api) -> str:
    """A device with three authorization ids and a secure UNLOCK; answers the device key."""
    registered = await api.call(
        "POST", "/v1/tenants/acme/devices", json={"id": "truck-1", "authorization_ids": AIDS}
    )
    assert registered.status_code == 201, registered.text
    assert registered.json()["authorization_ids"] == AIDS
    schema = {
        "type": "object",
        "properties": {"door": {"type": "string", "default": "rear"}},
        "additionalProperties": False,
    }
    for name, secure in (("UNLOCK", True), ("HONK", False)):
        created = await api.call(
            "POST",
            "/v1/tenants/acme/definitions",
            json={"name": name, "schema": schema, "secure": secure},
        )
        assert created.status_code == 201, created.text
    return str(registered.json()["payload_key"])


async def issue(api: Api, key: str = "execute", **body: Any) -> Any:
    return await api.call(
        "POST", "/v1/tenants/acme/devices/truck-1/payloads", key, json={"command": "UNLOCK", **body}
    )


async def test_one_encrypted_payload_per_authorization_id(api: Api, tmp_path: Path) -> None:
    device_key = decode_key(await setup(api))
    now = int(api.clock.now())
    response = await issue(api, valid_until=now + 600)
    assert response.status_code == 200, response.text
    payloads = response.json()["payloads"]
    assert len(payloads) == 3
    verifier = PayloadVerifier(device_key, tmp_path / "seen.json", clock=api.clock.now)
    opened = [verifier.open(p, secure=True) for p in payloads]
    assert [p.page for p in opened] == ["0x0300", "0x0301", "0x0302"]
    assert [p.aid for p in opened] == AIDS
    assert {p.cmd for p in opened} == {"UNLOCK"}
    assert all(p.dat == {"door": "rear"} and p.sta == now and p.stp == now + 600 for p in opened)
    assert len({p.pid for p in opened}) == 3
    assert len({base64.b64decode(p)[:12] for p in payloads}) == 3  # a fresh nonce each

    with pytest.raises(PayloadReplayed):
        PayloadVerifier(device_key, tmp_path / "seen.json", clock=api.clock.now).open(
            payloads[0], secure=True
        )
    other_key = decode_key(
        (await api.call("POST", "/v1/tenants/acme/devices/truck-1/payload_key")).json()[
            "payload_key"
        ]
    )
    fresh = PayloadVerifier(other_key, tmp_path / "other.json", clock=api.clock.now)
    with pytest.raises(PayloadTampered):
        fresh.open((await issue(api)).json()["payloads"][0][:-4] + "AAAA", secure=True)
    with pytest.raises(PayloadTampered):  # issued under the old key
        fresh.open(payloads[1], secure=True)


async def test_the_validity_window_is_checked_on_the_device(api: Api, tmp_path: Path) -> None:
    device_key = decode_key(await setup(api))
    now = int(api.clock.now())
    later = (await issue(api, valid_from=now + 100, valid_until=now + 200)).json()["payloads"]
    verifier = PayloadVerifier(device_key, tmp_path / "seen.json", clock=api.clock.now)
    with pytest.raises(PayloadNotYetValid):
        verifier.open(later[0], secure=True)
    api.clock.advance(150)
    assert verifier.open(later[0], secure=True).cmd == "UNLOCK"
    api.clock.advance(100)
    with pytest.raises(PayloadExpired):
        verifier.open(later[1], secure=True)


async def test_a_plain_command_gives_json_and_arguments_are_checked(api: Api) -> None:
    await setup(api)
    plain = await issue(api, command="HONK", args={"door": "left"})
    bodies = [orjson.loads(p) for p in plain.json()["payloads"]]
    assert [b["page"] for b in bodies] == ["0x0300", "0x0301", "0x0302"]
    assert bodies[0]["dat"] == {"door": "left"}
    assert bodies[0]["cmd"] == "HONK"
    assert set(bodies[0]) == {"ts", "sta", "stp", "aid", "pid", "cmd", "dat", "page"}
    problem(await issue(api, args={"window": 1}), 422)
    problem(await issue(api, command="NOPE"), 422)
    problem(await issue(api, valid_from=2_000_000_000, valid_until=1_900_000_000), 422)
    problem(await issue(api, key="read"), 403)
    response = await api.call(
        "POST", "/v1/tenants/other/devices/truck-1/payloads", "other", json={"command": "UNLOCK"}
    )
    problem(response, 404)


async def test_credentials_rotate_and_service_users_are_confined(api: Api) -> None:
    first = await api.device("pump-9")
    rotated = await api.call("POST", "/v1/tenants/acme/devices/pump-9/password")
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["username"] == "pump-9"
    assert rotated.json()["password"] != first["credentials"]["password"]
    stored = await api.service.store.get_device("acme", "pump-9")
    assert stored.password_hash is not None
    assert mosquitto_verify(rotated.json()["password"], stored.password_hash)
    assert not mosquitto_verify(first["credentials"]["password"], stored.password_hash)
    problem(await api.call("POST", "/v1/tenants/acme/devices/pump-9/password", "execute"), 403)
    problem(await api.call("POST", "/v1/tenants/other/devices/pump-9/password", "other"), 404)

    created = await api.call("POST", "/v1/tenants/acme/service_users", json={"username": "erp"})
    assert created.status_code == 201, created.text
    assert created.json()["tenant"] == "acme"
    assert len(created.json()["password"]) >= 24
    for username, status in (("erp", 409), ("pump-9", 409), ("a/b", 422), ("a+b", 422)):
        response = await api.call(
            "POST", "/v1/tenants/acme/service_users", json={"username": username}
        )
        problem(response, status)
    taken = await api.call(
        "POST", "/v1/tenants/other/service_users", "other", json={"username": "erp"}
    )
    problem(taken, 409)  # usernames are the broker's, shared by every tenant
    listed = (await api.call("GET", "/v1/tenants/acme/service_users")).json()
    assert [u["username"] for u in listed["results"]] == ["erp"]
    problem(await api.call("GET", "/v1/tenants/acme/service_users", "read"), 403)
    assert (await api.call("DELETE", "/v1/tenants/acme/service_users/erp")).status_code == 204
    problem(await api.call("DELETE", "/v1/tenants/acme/service_users/erp"), 404)
