"""`courier simulate --lwm2m` and `--attached` against a real `courier serve`."""

from __future__ import annotations

import json
import subprocess
import sys

from courier.core.deferred import decode_key
from courier.gateway.deferred import PayloadVerifier
from tests.e2e.conftest import CourierProcess


def _simulate(c: CourierProcess, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "courier", "simulate", *args],
        env=c.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_the_lwm2m_and_gateway_simulators_answer(courier_process: CourierProcess) -> None:
    c = courier_process
    mount = f"{c.prefix}-lwm2m"
    c.env |= {
        "COURIER_LWM2M_MOUNTPOINT": mount,
        "COURIER_FILES_DIR": str(c.workdir / "files"),
        "COURIER_KEY": c.new_key(),
    }
    c.start()
    endpoint, gateway = f"meter-{c.prefix}", f"gw-{c.prefix}"
    with c.api(c.env["COURIER_KEY"]) as api:
        created = api.post("/devices", json={"id": endpoint, "protocol": "lwm2m"})
        assert created.status_code == 201, created.text
        assert api.post("/devices", json={"id": gateway, "kind": "gateway"}).status_code == 201
    simulators = [
        _simulate(c, "--lwm2m", endpoint, "--lwm2m-mountpoint", mount),
        _simulate(c, "--device", gateway, "--attached", f"a-{c.prefix},b-{c.prefix}"),
    ]
    try:
        read = c.cli(
            "send",
            "lwm2m_request",
            "--device",
            endpoint,
            "--args",
            '{"type": "read", "endpoint": "/3/0/0"}',
            "--wait-timeout",
            "30",
        )
        (result,) = json.loads(read.stdout)
        assert result["state"] == "SUCCEEDED", result
        assert result["output"]["content"] == [{"path": "/3/0/0", "value": "Courier"}]
        relayed = c.cli(
            "send",
            "PING",
            "--device",
            f"a-{c.prefix}",
            "--device",
            f"b-{c.prefix}",
            "--wait-timeout",
            "30",
        )
        results = json.loads(relayed.stdout)
        assert sorted(r["state"] for r in results) == ["SUCCEEDED", "SUCCEEDED"]
    finally:
        for simulator in simulators:
            simulator.terminate()
            simulator.wait(10)
    assert c.terminate() == 0


def test_deferred_payloads_from_the_cli(courier_process: CourierProcess) -> None:
    c = courier_process
    c.env["COURIER_KEY"] = c.new_key()
    c.start()
    truck = f"truck-{c.prefix}"
    registered = json.loads(
        c.cli(
            "devices", "register", truck, "--authorization-id", "ann", "--authorization-id", "bo"
        ).stdout
    )
    assert registered["authorization_ids"] == ["ann", "bo"]
    with c.api(c.env["COURIER_KEY"]) as api:
        defined = api.post("/definitions", json={"name": "UNLOCK", "secure": True})
        assert defined.status_code == 201, defined.text
    lines = c.cli("payloads", truck, "UNLOCK", "--args", '{"door": "rear"}').stdout.split()
    verifier = PayloadVerifier(decode_key(registered["payload_key"]), c.workdir / "seen.json")
    opened = [verifier.open(line, secure=True) for line in lines]
    assert [(p.aid, p.page, p.dat) for p in opened] == [
        ("ann", "0x0200", {"door": "rear"}),
        ("bo", "0x0201", {"door": "rear"}),
    ]
    refused = c.cli("payloads", truck, "NO_SUCH", check=False)
    assert refused.returncode == 2
    assert "no definition NO_SUCH" in refused.stderr
