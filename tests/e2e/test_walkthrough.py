"""The README walkthrough, command by command, against a real `courier serve`."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.e2e.conftest import CourierProcess


def test_readme_walkthrough(courier_process: CourierProcess) -> None:
    c = courier_process
    key = c.new_key()
    c.env["COURIER_KEY"] = key
    c.start()
    registered = json.loads(c.cli("devices", "register", "pump-7-" + c.prefix).stdout)
    device_id = registered["id"]
    password = registered["credentials"]["password"]
    simulator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "courier",
            "simulate",
            "--device",
            device_id,
            "--password",
            password,
            "--latency",
            "20",
        ],
        env=c.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        sent = c.cli(
            "send",
            "REBOOT",
            "--device",
            device_id,
            "--args",
            '{"delay": 1}',
            "--wait-timeout",
            "30",
        )
        results = json.loads(sent.stdout)
        assert [r["state"] for r in results] == ["SUCCEEDED"]
        assert results[0]["output"]["command"] == "REBOOT"
        shown = json.loads(c.cli("status", results[0]["id"]).stdout)
        assert [h["state"] for h in shown["history"]][-1] == "SUCCEEDED"
        listed = c.cli("devices", "list").stdout
        assert device_id in listed
        assert "online" in listed
        failing = c.cli("send", "REBOOT", "--device", "no-such-device", check=False)
        assert failing.returncode == 2
        assert "unknown device ids: no-such-device" in failing.stderr
    finally:
        simulator.terminate()
        simulator.wait(10)
    assert c.terminate() == 0
    assert '"courier stopped"' in c.log_text()
