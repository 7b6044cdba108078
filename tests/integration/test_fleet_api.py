"""Fleet routes over REST: groups, targets and their limits, the catalogue, tenant, schedules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_api import Api, make_api, problem


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async for made in make_api(tmp_path):
        made.service.config = type(made.service.config)(queue_bound=100)
        yield made


async def devices(api: Api, *names: str, **labels: str) -> None:
    for name in names:
        response = await api.call(
            "POST", "/v1/tenants/acme/devices", json={"id": name, "labels": labels}
        )
        assert response.status_code == 201, response.text


async def group(
    api: Api, name: str, members: list[str], group_id: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "devices": members}
    if group_id:
        body["id"] = group_id
    response = await api.call("POST", "/v1/tenants/acme/groups", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def command(api: Api, **body: Any) -> Any:
    return await api.call(
        "POST", "/v1/tenants/acme/commands", "execute", json={"command": "REBOOT", **body}
    )


async def test_groups_over_rest(api: Api) -> None:
    await devices(api, "a", "b", "c")
    created = await group(api, "north", ["a", "b"], "g-north")
    assert (created["id"], created["size"]) == ("g-north", 2)
    problem(await api.call("POST", "/v1/tenants/acme/groups", json={"name": "north"}), 409)
    assert problem(
        await api.call("POST", "/v1/tenants/acme/groups", json={"name": "x", "devices": ["zz"]}),
        422,
    )["devices"] == ["zz"]
    assert (await api.call("PUT", "/v1/tenants/acme/groups/g-north/devices/c")).status_code == 204
    members = (await api.call("GET", "/v1/tenants/acme/groups/g-north/devices", "read")).json()
    assert [d["id"] for d in members["results"]] == ["a", "b", "c"]
    assert (
        await api.call("DELETE", "/v1/tenants/acme/groups/g-north/devices/a")
    ).status_code == 204
    problem(await api.call("DELETE", "/v1/tenants/acme/groups/g-north/devices/a"), 404)
    problem(await api.call("PUT", "/v1/tenants/acme/groups/g-north/devices/a%2Bb"), 422)
    renamed = await api.call("PATCH", "/v1/tenants/acme/groups/g-north", json={"name": "North"})
    assert renamed.json()["name"] == "North"
    listed = (await api.call("GET", "/v1/tenants/acme/groups", "read")).json()
    assert [(g["name"], g["size"]) for g in listed["results"]] == [("North", 2)]
    problem(await api.call("GET", "/v1/tenants/acme/groups/g-north", "other"), 404)
    problem(await api.call("GET", "/v1/tenants/other/groups/g-north", "other"), 404)
    problem(await api.call("POST", "/v1/tenants/acme/groups", "execute", json={"name": "y"}), 403)
    assert (await api.call("DELETE", "/v1/tenants/acme/groups/g-north")).status_code == 204
    problem(await api.call("GET", "/v1/tenants/acme/groups/g-north", "read"), 404)


async def test_group_request_to_overlapping_groups_runs_once_per_device(api: Api) -> None:
    await devices(api, "a", "b", "c", "d")
    await group(api, "one", ["a", "b"], "g1")
    await group(api, "two", ["b", "c"], "g2")
    await group(api, "three", ["c", "d", "a"], "g3")
    response = await command(api, command_type="GROUP", groups=["g1", "g2", "g3"])
    assert response.status_code == 201, response.text
    body = response.json()
    assert sorted(e["device"] for e in body["executions"]) == ["a", "b", "c", "d"]
    assert body["groups"] == ["g1", "g2", "g3"]
    status = await api.call(
        "GET", f"/v1/tenants/acme/commands/{body['id']}/executions?device=c", "read"
    )
    assert [e["device_id"] for e in status.json()["results"]] == ["c"]


async def test_dynamic_requests(api: Api) -> None:
    await devices(api, "n1", "n2", site="north")
    await devices(api, "s1", site="south")
    response = await command(api, command_type="DYNAMIC", filter={"labels": {"site": "north"}})
    assert sorted(e["device"] for e in response.json()["executions"]) == ["n1", "n2"]
    assert response.json()["filter"]["labels"] == {"site": "north"}
    problem(await command(api, command_type="DYNAMIC", filter={}), 422)


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"command_type": "GROUP", "groups": [f"g{i}" for i in range(501)]}, "groups"),
        ({"command_type": "GROUP"}, "groups"),
        ({"command_type": "GROUP", "groups": ["g1"], "devices": ["a"]}, "devices"),
        ({"command_type": "DYNAMIC"}, "filter"),
        ({"devices": ["a"], "filter": {"online": True}}, "filter"),
        ({"devices": ["a"], "rollout": {"max_per_minute": 5}}, "rollout"),
        (
            {"command_type": "GROUP", "groups": ["g"], "rollout": {"abort_failure_percent": 0}},
            "rollout.abort_failure_percent",
        ),
        ({"devices": ["a"], "schedule": "WINDOW"}, "schedule_args"),
        ({"devices": ["a"], "schedule_args": {"window_start_time": "09:00"}}, "schedule_args"),
        (
            {
                "devices": ["a"],
                "schedule": "WINDOW",
                "schedule_args": {
                    "start_datetime": "2026-12-02T00:00:00",
                    "end_datetime": "2026-12-01T00:00:00",
                },
            },
            "schedule_args",
        ),
        (
            {
                "devices": ["a"],
                "schedule": "RECURRING",
                "schedule_args": {"window_start_time": "09:00", "window_end_time": "09:00"},
            },
            "schedule_args",
        ),
        (
            {"devices": ["a"], "schedule": "WINDOW", "schedule_args": {"days": ["funday"]}},
            "schedule_args.days",
        ),
    ],
)
async def test_bad_targets_schedules_and_rollouts_are_422(
    api: Api, body: dict[str, Any], where: str
) -> None:
    details = problem(await command(api, **body), 422)
    assert any(e["loc"].startswith(where) for e in details["errors"]), details


async def test_unknown_groups_are_422_and_nothing_is_created(api: Api) -> None:
    await devices(api, "a")
    await group(api, "one", ["a"], "g1")
    body = problem(await command(api, command_type="GROUP", groups=["g1", "nope", "gone"]), 422)
    assert body["groups"] == ["nope", "gone"]
    assert (await api.call("GET", "/v1/tenants/acme/executions", "read")).json()["count"] == 0


async def test_the_catalogue(api: Api) -> None:
    listed = (await api.call("GET", "/v1/tenants/acme/definitions", "read")).json()
    names = {d["name"] for d in listed}
    assert len([d for d in listed if d["source"] == "esper"]) == 37
    assert {"SET_BRIGHTNESS_SCALE", "NOTIFY_DEVICE", "ENOS_SERVICE_INVOKE"} <= names
    one = (await api.call("GET", "/v1/tenants/acme/definitions/SET_STREAM_VOLUME", "read")).json()
    assert one["schema"]["required"] == ["stream", "volume_level"]
    assert one["builtin"] is True
    problem(
        await api.call("PUT", "/v1/tenants/acme/definitions/REBOOT", json={"name": "REBOOT"}), 409
    )
    problem(await api.call("DELETE", "/v1/tenants/acme/definitions/REBOOT"), 409)
    bad = await api.call(
        "POST",
        "/v1/tenants/acme/definitions",
        json={"name": "X", "schema": {"type": "object", "properties": {"a": {"type": "nope"}}}},
    )
    assert "not valid JSON Schema" in problem(bad, 422)["detail"]
    problem(
        await api.call(
            "POST", "/v1/tenants/acme/definitions", json={"name": "X", "schema": {"type": "array"}}
        ),
        422,
    )
    mine = {
        "name": "OPEN_VALVE",
        "schema": {
            "type": "object",
            "required": ["valve"],
            "properties": {"valve": {"type": "integer", "minimum": 1, "maximum": 8}},
        },
        "internal": True,
        "timeout": 5,
        "max_timeout": 10,
    }
    created = await api.call("POST", "/v1/tenants/acme/definitions", json=mine)
    assert created.status_code == 201, created.text
    problem(await api.call("POST", "/v1/tenants/acme/definitions", json=mine), 409)
    assert (await api.call("GET", "/v1/tenants/acme/definitions?builtin=false", "read")).json()[0][
        "name"
    ] == "OPEN_VALVE"
    await devices(api, "v1")
    wrong = await command(api, devices=["v1"], command="OPEN_VALVE", args={"valve": 9})
    assert problem(wrong, 422)["errors"][0]["loc"] == "args.valve"
    too_long = await command(
        api, devices=["v1"], command="OPEN_VALVE", args={"valve": 2}, timeout=11
    )
    assert problem(too_long, 422)["errors"][0]["loc"] == "timeout"
    ok = await command(api, devices=["v1"], command="OPEN_VALVE", args={"valve": 2})
    assert ok.json()["timeout"] == 5
    assert ok.json()["internal"] is True
    visible = await api.call(
        "GET", "/v1/tenants/acme/executions?exclude_internal_commands=true", "read"
    )
    assert visible.json()["count"] == 0
    assert (await api.call("DELETE", "/v1/tenants/acme/definitions/OPEN_VALVE")).status_code == 204
    free = await command(api, devices=["v1"], command="OPEN_VALVE", args={"anything": True})
    assert free.status_code == 201  # without a definition a command is free-form


@pytest.mark.parametrize(
    ("name", "args", "where"),
    [
        ("SET_BRIGHTNESS_SCALE", {"brightness_value": 0}, "args.brightness_value"),
        ("SET_BRIGHTNESS_SCALE", {"brightness_value": 101}, "args.brightness_value"),
        ("SET_BRIGHTNESS_SCALE", {}, "args"),
        ("SET_SCREEN_OFF_TIMEOUT", {"screen_off_timeout": 4999}, "args.screen_off_timeout"),
        ("SET_SCREEN_OFF_TIMEOUT", {"screen_off_timeout": 1_800_001}, "args.screen_off_timeout"),
        ("SET_STREAM_VOLUME", {"stream": 4, "volume_level": 50}, "args.stream"),
        ("SET_STREAM_VOLUME", {"stream": 1, "volume_level": 101}, "args.volume_level"),
        ("SET_GPS_STATE", {"gps_state": 5}, "args.gps_state"),
        ("SET_ROTATION_STATE", {"rotate_state": 3}, "args.rotate_state"),
        (
            "SET_APP_PERMISSION",
            {"package_name": "a", "grant_state": "MAYBE", "permission": "x"},
            "args.grant_state",
        ),
        ("SET_DEVICE_LANGUAGE", {"locale": "english"}, "args.locale"),
        (
            "SET_STATIC_IP",
            {
                "interface": "eth0",
                "static_ip": "10.0.0.300",
                "primary_dns": "1.1.1.1",
                "subnet_mask": "255.255.255.0",
                "gateway": "10.0.0.1",
                "dhcp_enabled": False,
            },
            "args.static_ip",
        ),
        ("NOTIFY_DEVICE", {"title": "t", "message": "m", "name": "n"}, "args"),
        ("SET_TIMEZONE", {"timezone_string": "Mars/Olympus"}, "args.timezone_string"),
        ("ENOS_MEASUREPOINT_SET", {"inputData": {}}, "args.inputData"),
        ("ENOS_SERVICE_INVOKE", {"inputData": {}}, "args"),
    ],
)
async def test_seed_argument_rules(api: Api, name: str, args: dict[str, Any], where: str) -> None:
    await devices(api, "d1")
    errors = problem(await command(api, devices=["d1"], command=name, args=args), 422)["errors"]
    assert errors[0]["loc"] == where, errors


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("SET_SCREEN_OFF_TIMEOUT", {"screen_off_timeout": -1}),
        ("SET_SCREEN_OFF_TIMEOUT", {"screen_off_timeout": 5000}),
        ("SET_DEVICE_LANGUAGE", {"locale": "zh_Hant_TW"}),
        (
            "SET_STATIC_IP",
            {
                "interface": "eth0",
                "static_ip": "10.0.0.3",
                "primary_dns": "1.1.1.1",
                "subnet_mask": "255.255.255.0",
                "gateway": "10.0.0.1",
                "dhcp_dnabled": False,
            },
        ),
        (
            "NOTIFY_DEVICE",
            {
                "title": "t",
                "message": "m",
                "name": "n",
                "time_type": "device",
                "start_datetime": "2026-12-01T08:00:00Z",
                "end_datetime": "2026-12-02T08:00:00Z",
            },
        ),
        ("CAPTURE_SCREENSHOT", {}),
        ("ENOS_MEASUREPOINT_SET", {"inputData": {"temp_setpoint": 21.5}}),
    ],
)
async def test_seed_arguments_accepted(api: Api, name: str, args: dict[str, Any]) -> None:
    await devices(api, "d1")
    response = await command(api, devices=["d1"], command=name, args=args)
    assert response.status_code == 201, response.text


async def test_enos_timing_rules(api: Api) -> None:
    await devices(api, "d1")
    enos = {
        "devices": ["d1"],
        "command": "ENOS_SERVICE_INVOKE",
        "args": {"tslIdentifier": "reboot", "inputData": {}},
    }
    default = await api.call("POST", "/v1/tenants/acme/commands", "execute", json=enos)
    assert (default.json()["timeout"], default.json()["ttl"]) == (30.0, 0)
    problem(
        await api.call(
            "POST", "/v1/tenants/acme/commands", "execute", json={**enos, "timeout": 61}
        ),
        422,
    )
    problem(
        await api.call(
            "POST", "/v1/tenants/acme/commands", "execute", json={**enos, "ttl": 48 * 3600 + 1}
        ),
        422,
    )
    ok = await api.call(
        "POST",
        "/v1/tenants/acme/commands",
        "execute",
        json={**enos, "timeout": 60, "ttl": 48 * 3600},
    )
    assert ok.status_code == 201


async def test_tenant_settings_and_scheduled_requests(api: Api) -> None:
    await devices(api, "d1")
    assert (await api.call("GET", "/v1/tenants/acme", "read")).json() == {
        "id": "acme",
        "timezone": None,
    }
    problem(await api.call("PATCH", "/v1/tenants/acme", json={"timezone": "Nowhere/City"}), 422)
    problem(await api.call("PATCH", "/v1/tenants/acme", "read", json={"timezone": "UTC"}), 403)
    patched = await api.call("PATCH", "/v1/tenants/acme", json={"timezone": "Europe/Paris"})
    assert patched.json()["timezone"] == "Europe/Paris"
    response = await command(
        api,
        devices=["d1"],
        schedule="RECURRING",
        schedule_args={
            "window_start_time": "02:00",
            "window_end_time": "03:00",
            "days": ["sunday"],
            "start_datetime": "2030-01-01T00:00:00",
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["schedule"] == "RECURRING"
    assert body["schedule_args"]["days"] == ["sunday"]
    assert body["executions"][0]["state"] == "SCHEDULED"
