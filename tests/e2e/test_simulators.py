"""`courier simulate --lwm2m` and `--attached` against a real `courier serve`."""

from __future__ import annotations

import json
import subprocess
import sys

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
